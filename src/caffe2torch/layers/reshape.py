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
    SameShape,
    canonical_axis,
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
def caffe_argmax(x: Tensor, top_k: int, out_max_val: bool) -> Tensor:
    """Caffe's ArgMax without an axis: the top_k positions over each sample's values, as
    floats, shaped (N, 1, top_k, 1...), or (N, 2, top_k, 1...) with the values after them."""
    values, indices = torch.topk(torch.flatten(x, 1), top_k, dim=1)
    out = indices.to(x.dtype).unsqueeze(1)
    if out_max_val:
        out = torch.cat([out, values.unsqueeze(1)], 1)
    return out.reshape(*out.shape, *[1] * (x.dim() - 3))
''')



@register
class Reshape(Layer):
    TYPES = ("Reshape",)

    def __init__(self, proto):
        super().__init__(proto)
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

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.flatten_param
        self.axis, self.end_axis = p.axis, p.end_axis

    def infer(self, inputs):
        (shape,) = inputs
        a = canonical_axis(self.axis, len(shape))
        e = canonical_axis(self.end_axis, len(shape), "end_axis")
        if e < a:
            raise LayerError(f"end_axis {e} comes before axis {a}")
        part = shape[a : e + 1]
        merged = DYNAMIC if DYNAMIC in part else math.prod(part)
        return [(*shape[:a], merged, *shape[e + 1 :])]

    def emit(self, ctx):
        n = ctx.ndim
        a = canonical_axis(self.axis, n)
        e = canonical_axis(self.end_axis, n, "end_axis")
        end = "" if e == n - 1 else f", {e}"
        return Emission([f"torch.flatten({{0}}, {a}{end})"], alias=True)


@register
class Permute(Layer):
    TYPES = ("Permute",)

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
class ShuffleChannel(SameShape):
    TYPES = ("ShuffleChannel",)

    def __init__(self, proto):
        super().__init__(proto)
        self.group = proto.shuffle_channel_param.group
        if self.group == 0:
            raise LayerError("group must be positive")

    def describe(self):
        return f"group {self.group}"

    def infer(self, inputs):
        (shape,) = inputs
        if len(shape) < 2 or shape[1] % self.group:
            raise LayerError(f"channels of {fmt_shape(shape)} are not divisible by group {self.group}")
        return [shape]

    def emit(self, ctx):
        return Emission([f"channel_shuffle({{0}}, {self.group})"], helpers=(CHANNEL_SHUFFLE,))


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
class Crop(Layer):
    """Crop bottom 0 to the size of bottom 1 from ``axis`` on, at the given offsets."""

    TYPES = ("Crop",)
    BOTTOMS = (2, 2)

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
        if len(src) != len(ref):
            raise LayerError(f"bottoms {fmt_shape(src)} and {fmt_shape(ref)} differ in rank")
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
    TYPES = ("ArgMax",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.argmax_param
        self.out_max_val, self.top_k = p.out_max_val, p.top_k
        self.axis = p.axis if p.HasField("axis") else None
        if self.top_k < 1:
            raise LayerError("top_k must be at least 1")

    def infer(self, inputs):
        (shape,) = inputs
        if self.axis is None:
            # Caffe: over all of C*H*W; shape (N, 1 or 2 with out_max_val, top_k, 1, ...).
            if len(shape) < 3:
                raise LayerError(f"without axis, needs a 3-D or larger input, got {fmt_shape(shape)}")
            out = [1] * len(shape)
            out[0], out[1], out[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
            return [tuple(out)]
        a = canonical_axis(self.axis, len(shape))
        if shape[a] != DYNAMIC and self.top_k > shape[a]:
            raise LayerError(f"top_k {self.top_k} exceeds axis {a} of size {shape[a]}")
        out = list(shape)
        out[a] = self.top_k
        return [tuple(out)]

    def emit(self, ctx):
        if self.axis is None:
            return Emission(
                [f"caffe_argmax({{0}}, {self.top_k}, out_max_val={self.out_max_val})"],
                helpers=(CAFFE_ARGMAX,),
            )
        a = canonical_axis(self.axis, ctx.ndim)
        part = "values" if self.out_max_val else "indices.to({0}.dtype)"
        return Emission([f"torch.topk({{0}}, {self.top_k}, dim={a}).{part}"])
