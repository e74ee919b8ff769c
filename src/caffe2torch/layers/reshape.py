"""Layers that rearrange a blob: Reshape, Flatten, Permute, ShuffleChannel, Tile, Crop, and the
reductions Reduction and ArgMax."""
from __future__ import annotations

import math

from . import register
from .base import (
    DYNAMIC,
    Emission,
    Helper,
    Layer,
    LayerError,
    Schema,
    canonical_axis,
    count,
    fmt_shape,
    num,
)

CHANNEL_SHUFFLE = Helper("channel_shuffle", '''
def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle: (N, groups * k, ...) -> (N, k * groups, ...)."""
    n, c = x.shape[:2]
    x = x.reshape(n, groups, c // groups, *x.shape[2:])
    return x.transpose(1, 2).reshape(n, c, *x.shape[3:])
''')

CAFFE_ARGMAX = Helper("caffe_argmax", '''
def caffe_argmax(x: Tensor, top_k: int, out_max_val: bool, axis: int | None = None) -> Tensor:
    """Caffe's ArgMax. Caffe sorts (value, index) pairs in descending order, so the largest
    values come first and, among equal values, the larger index first.

    Without an axis: over all of each sample's values; the positions as floats, shaped
    (N, 1, top_k, 1...) with at least 3 axes, or (N, 2, top_k, 1...) with out_max_val (the
    values after the positions). With an axis: the positions along it, or with out_max_val
    the values."""
    out_dims = max(x.dim(), 3)
    dim = 1 if axis is None else axis
    if axis is None:
        x = x.reshape(x.shape[0], -1)
    n = x.shape[dim]
    # A stable descending sort of the reversed axis puts, among equal values, the larger
    # original index first.
    values, order = torch.sort(torch.flip(x, [dim]), dim=dim, descending=True, stable=True)
    values = values.narrow(dim, 0, top_k)
    indices = (n - 1 - order.narrow(dim, 0, top_k)).to(x.dtype)
    if axis is not None:
        return values if out_max_val else indices
    out = torch.stack([indices, values], 1) if out_max_val else indices.unsqueeze(1)
    return out.reshape(*out.shape, *[1] * (out_dims - 3))
''')


def no_inplace(proto) -> None:
    """Layers whose Caffe LayerSetUp/Reshape checks ``top[0] != bottom[0]``."""
    if len(proto.top) and len(proto.bottom) and proto.top[0] == proto.bottom[0]:
        raise LayerError(
            f"{proto.type} does not allow in-place computation (top '{proto.top[0]}' is its "
            "bottom)"
        )


def legacy_4d(shape, what: str = "input") -> tuple[int, int, int, int]:
    """Caffe's legacy num/channels/height/width accessors (Blob::LegacyShape): at most 4 axes,
    missing trailing axes read as 1."""
    if len(shape) > 4:
        raise LayerError(
            f"{what} {fmt_shape(shape)} has {len(shape)} axes; Caffe reads it as "
            "num/channels/height/width, which allows 4 at most"
        )
    return tuple(shape) + (1,) * (4 - len(shape))  # type: ignore[return-value]


def as_4d(ndim: int, x: str = "{0}") -> str:
    """An expression giving ``x`` (of ``ndim`` axes, at most 4) the 4-D shape Caffe's legacy
    accessors see: trailing axes of size 1 added."""
    if ndim >= 4:
        return x
    if ndim == 0:
        return f"{x}.reshape(1, 1, 1, 1)"
    return f"{x}[{', '.join([':'] * ndim + ['None'] * (4 - ndim))}]"


@register
class Reshape(Layer):
    TYPES = ("Reshape",)
    OPENCV = frozenset({"Reshape"})

    def __init__(self, proto):
        super().__init__(proto)
        no_inplace(proto)
        p = proto.reshape_param
        self.dims = list(p.shape.dim)
        self.axis, self.num_axes = p.axis, p.num_axes
        if sum(1 for d in self.dims if d == -1) > 1:
            raise LayerError("at most one dimension can be -1 (inferred)")
        if any(d < -1 for d in self.dims):
            raise LayerError(f"invalid dimension in shape {self.dims}")
        if self.num_axes < -1:
            raise LayerError(f"num_axes {self.num_axes} must be -1 or more")

    def describe(self):
        return "shape " + "x".join(str(d) for d in self.dims)

    def infer(self, inputs):
        (shape,) = inputs
        n = len(shape)
        start = self.axis if self.axis >= 0 else n + self.axis + 1
        if not 0 <= start <= n:
            raise LayerError(f"axis {self.axis} is out of range for a {n}-D input")
        end = n if self.num_axes == -1 else start + self.num_axes
        if end > n:
            raise LayerError(f"axis {start} + num_axes {self.num_axes} exceed the input's {n} axes")
        new = []
        for i, d in enumerate(self.dims):
            if d == 0:
                if start + i >= n:
                    raise LayerError(f"dimension {i} copies input axis {start + i}, which does not exist")
                new.append(shape[start + i])
            else:
                new.append(d)
        out = list(shape[:start]) + new + list(shape[end:])
        if -1 in self.dims:
            idx = start + self.dims.index(-1)
            known = [d for i, d in enumerate(out) if i != idx]
            if DYNAMIC in shape:
                # The unknown size flows into the inferred axis (e.g. a count of proposals).
                if DYNAMIC in known:
                    raise LayerError("cannot infer a dimension of a blob with unknown sizes")
                out[idx] = DYNAMIC
            else:
                total, rest = math.prod(shape), math.prod(known)
                if rest == 0 or total % rest:
                    raise LayerError(f"cannot reshape {fmt_shape(shape)} into {self.dims}")
                out[idx] = total // rest
        elif DYNAMIC not in shape and math.prod(out) != math.prod(shape):
            raise LayerError(
                f"cannot reshape {fmt_shape(shape)} ({math.prod(shape)} values) into "
                f"{fmt_shape(out)} ({math.prod(out)} values)"
            )
        return [tuple(out)]

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        n = len(shape)
        start = self.axis if self.axis >= 0 else n + self.axis + 1
        end = n if self.num_axes == -1 else start + self.num_axes
        # Dimensions Caffe copies from the input stay symbolic, so other batch sizes work.
        dims = [f"{{0}}.shape[{i}]" for i in range(start)]
        for i, d in enumerate(self.dims):
            dims.append(f"{{0}}.shape[{start + i}]" if d == 0 else str(d))
        if end < n:
            dims.append(f"*{{0}}.shape[{end}:]")
        if tuple(ctx.out_shapes[0]) == tuple(shape) and all(
            d == f"{{0}}.shape[{i}]" for i, d in enumerate(dims)
        ):
            return Emission([], alias=True)
        return Emission([f"{{0}}.reshape({', '.join(dims)})"], alias=True)


@register
class Flatten(Layer):
    TYPES = ("Flatten",)
    OPENCV = frozenset({"Flatten"})

    def __init__(self, proto):
        super().__init__(proto)
        no_inplace(proto)
        p = proto.flatten_param
        self.axis, self.end_axis = p.axis, p.end_axis

    def _axes(self, ndim: int) -> tuple[int, int]:
        a = canonical_axis(self.axis, ndim)
        e = canonical_axis(self.end_axis, ndim, "end_axis")
        # Caffe: count(axis, end_axis + 1) needs axis <= end_axis + 1; end_axis = axis - 1
        # flattens nothing and inserts an axis of size 1.
        if e < a - 1:
            raise LayerError(f"end_axis {e} comes before axis {a}")
        return a, e

    def infer(self, inputs):
        (shape,) = inputs
        a, e = self._axes(len(shape))
        part = shape[a : e + 1]
        merged = DYNAMIC if DYNAMIC in part else math.prod(part)
        return [(*shape[:a], merged, *shape[e + 1 :])]

    def emit(self, ctx):
        n = ctx.ndim
        a, e = self._axes(n)
        if e == a - 1:
            return Emission([f"{{0}}.unsqueeze({a})"], alias=True)
        end = "" if e == n - 1 else f", {e}"
        return Emission([f"torch.flatten({{0}}, {a}{end})"], alias=True)


@register
class Permute(Layer):
    TYPES = ("Permute",)
    CAFFE_FORKS = {"ssd": frozenset({"Permute"})}
    OPENCV = frozenset({"Permute"})

    def __init__(self, proto):
        super().__init__(proto)
        self.order = list(proto.permute_param.order)
        if len(set(self.order)) != len(self.order):
            raise LayerError(f"order {self.order} repeats an axis")

    def describe(self):
        return "order " + ",".join(map(str, self.order))

    def full_order(self, ndim: int) -> list[int]:
        if any(o >= ndim for o in self.order):
            raise LayerError(f"order {self.order} names an axis beyond the input's {ndim}")
        # SSD's rule: axes not named keep their relative order after the named ones.
        return self.order + [i for i in range(ndim) if i not in self.order]

    def infer(self, inputs):
        (shape,) = inputs
        return [tuple(shape[i] for i in self.full_order(len(shape)))]

    def emit(self, ctx):
        order = self.full_order(ctx.ndim)
        if order == sorted(order):
            return Emission([], alias=True)
        return Emission([f"{{0}}.permute({', '.join(map(str, order))})"], alias=True)


@register
class ShuffleChannel(Layer):
    """ShuffleNet's channel shuffle (farmingyard/ShuffleNet). Its Reshape makes the top
    num x channels x height x width with the legacy accessors: at most 4 axes, and a smaller
    input comes out 4-D."""

    TYPES = ("ShuffleChannel",)
    SCHEMA = Schema(
        messages={
            "ShuffleChannelParameter": (("optional", "uint32", "group", 1, "1", False),),
        },
        layer_fields=(
            ("ShuffleChannelParameter", "shuffle_channel_param", 164),
        ),
    )
    OPENCV = frozenset({"ShuffleChannel"})

    def __init__(self, proto):
        super().__init__(proto)
        self.group = proto.shuffle_channel_param.group
        if self.group == 0:
            raise LayerError("group must be greater than 0")

    def describe(self):
        return f"group {self.group}"

    def infer(self, inputs):
        (shape,) = inputs
        out = legacy_4d(shape)
        if out[1] != DYNAMIC and out[1] % self.group:
            raise LayerError(f"channels of {fmt_shape(shape)} are not divisible by group {self.group}")
        return [out]

    def emit(self, ctx):
        x = as_4d(ctx.ndim)
        return Emission([f"channel_shuffle({x}, {self.group})"], helpers=(CHANNEL_SHUFFLE,))


@register
class Tile(Layer):
    TYPES = ("Tile",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.tile_param
        if not p.HasField("tiles") or p.tiles <= 0:
            raise LayerError("tile_param.tiles is required and must be positive")
        self.axis, self.tiles = p.axis, p.tiles

    def infer(self, inputs):
        (shape,) = inputs
        a = canonical_axis(self.axis, len(shape))
        out = list(shape)
        out[a] = DYNAMIC if shape[a] == DYNAMIC else shape[a] * self.tiles
        return [tuple(out)]

    def emit(self, ctx):
        a = canonical_axis(self.axis, ctx.ndim)
        reps = ["1"] * ctx.ndim
        reps[a] = str(self.tiles)
        return Emission([f"{{0}}.repeat({', '.join(reps)})"])


@register
class BatchReindex(Layer):
    """BVLC's BatchReindexLayer: ``top[i] = bottom0[int(bottom1[i])]``, selecting, reordering
    or repeating the items of a batch. Bottom 1 holds the indices as floats, which Caffe casts
    to int (truncating) and checks against the batch size when the net runs."""

    TYPES = ("BatchReindex",)
    BOTTOMS = (2, 2)

    def infer(self, inputs):
        data, index = inputs
        if len(index) != 1:  # BatchReindexLayer::Reshape: CHECK_EQ(1, bottom[1]->num_axes())
            raise LayerError(f"needs 1-D indices as its second bottom, got {fmt_shape(index)}")
        if not data:
            raise LayerError("needs a first bottom with a batch axis, got a scalar")
        return [(index[0], *data[1:])]

    def emit(self, ctx):
        return Emission(["{0}[{1}.long()]"], comment="Caffe casts the indices to int (truncating)")


@register
class Crop(Layer):
    """Crop bottom 0 to the size of bottom 1 from ``axis`` on, at the given offsets."""

    TYPES = ("Crop",)
    BOTTOMS = (2, 2)
    OPENCV = frozenset({"Crop"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.crop_param
        self.axis, self.offset = p.axis, list(p.offset)

    def describe(self):
        return f"axis {self.axis}, offset {','.join(map(str, self.offset)) or '0'}"

    def offsets(self, ndim: int) -> list[int]:
        a = canonical_axis(self.axis, ndim)
        n = ndim - a
        if not self.offset:
            return [0] * n
        if len(self.offset) == 1:
            return self.offset * n
        if len(self.offset) != n:
            raise LayerError(f"{len(self.offset)} offsets for {n} cropped axes")
        return self.offset

    def infer(self, inputs):
        src, ref = inputs
        # Caffe reads bottom[1]->shape(i) for every cropped axis i of bottom 0: the reference
        # needs at least as many axes (more are ignored).
        if len(ref) < len(src):
            raise LayerError(
                f"the reference bottom {fmt_shape(ref)} has fewer axes than the cropped "
                f"{fmt_shape(src)}"
            )
        a = canonical_axis(self.axis, len(src))
        out = list(src[:a])
        for i, off in zip(range(a, len(src)), self.offsets(len(src))):
            if src[i] != DYNAMIC and off + ref[i] > src[i]:
                raise LayerError(
                    f"crop of {ref[i]} at offset {off} does not fit axis {i} of size {src[i]}"
                )
            out.append(ref[i])
        return [tuple(out)]

    def emit(self, ctx):
        n = ctx.ndim
        a = canonical_axis(self.axis, n)
        index = [":"] * a
        for i, off in zip(range(a, n), self.offsets(n)):
            # The crop size follows bottom 1 at run time, so other input sizes work (FCN).
            index.append(f"{off}:{off} + {{1}}.shape[{i}]" if off else f":{{1}}.shape[{i}]")
        while index and index[-1] == ":":
            index.pop()
        return Emission([f"{{0}}[{', '.join(index)}]"], alias=True)


@register
class Reduction(Layer):
    TYPES = ("Reduction",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.reduction_param
        self.operation = {1: "sum", 2: "asum", 3: "sumsq", 4: "mean"}[p.operation]
        self.axis, self.coeff = p.axis, p.coeff

    def infer(self, inputs):
        (shape,) = inputs
        return [tuple(shape[: canonical_axis(self.axis, len(shape))])]

    def emit(self, ctx):
        a = canonical_axis(self.axis, ctx.ndim)
        x = f"torch.flatten({{0}}, {a})" if a < ctx.ndim - 1 else "{0}"
        expr = {
            "sum": f"{x}.sum(-1)",
            "asum": f"{x}.abs().sum(-1)",
            "sumsq": f"{x}.pow(2).sum(-1)",
            "mean": f"{x}.mean(-1)",
        }[self.operation]
        if self.coeff != 1:
            expr += f" * {num(self.coeff)}"
        return Emission([expr])


@register
class ArgMax(Layer):
    """Caffe's ArgMaxLayer: LayerSetUp checks top_k against count(1) (no axis) or
    shape(axis); Reshape gives at least 3 axes without an axis, (N, 1 or 2, top_k, 1...)."""

    TYPES = ("ArgMax",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, p.top_k
        self.axis = p.axis if p.HasField("axis") else None
        if self.top_k < 1:
            raise LayerError("top_k must be at least 1")

    def describe(self):
        parts = [f"top {self.top_k}"] if self.top_k != 1 else []
        if self.axis is not None:
            parts.append(f"axis {self.axis}")
        if self.out_max_val:
            parts.append("values")
        return ", ".join(parts)

    def infer(self, inputs):
        (shape,) = inputs
        if not shape:
            raise LayerError("needs an input with at least one axis, got a scalar")
        if self.axis is None:
            per_sample = shape[1:]
            if DYNAMIC not in per_sample and self.top_k > count(per_sample):
                raise LayerError(
                    f"top_k {self.top_k} exceeds the {count(per_sample)} values per sample "
                    "(Caffe: top_k must be <= count(1))"
                )
            out = [1] * max(len(shape), 3)
            out[0], out[1], out[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
            return [tuple(out)]
        a = canonical_axis(self.axis, len(shape))
        if shape[a] != DYNAMIC and self.top_k > shape[a]:
            raise LayerError(
                f"top_k {self.top_k} exceeds axis {a} of size {shape[a]} "
                "(Caffe: top_k must be <= shape(axis))"
            )
        out = list(shape)
        out[a] = self.top_k
        return [tuple(out)]

    def emit(self, ctx):
        args = f"{self.top_k}, out_max_val={self.out_max_val}"
        if self.axis is not None:
            args += f", axis={canonical_axis(self.axis, ctx.ndim)}"
        return Emission([f"caffe_argmax({{0}}, {args})"], helpers=(CAFFE_ARGMAX,))
