"""Joining and splitting blobs: Concat, Slice, Split, Silence."""
from __future__ import annotations

from . import register
from .base import DYNAMIC, Emission, Layer, LayerError, canonical_axis, fmt_shape
from .reshape import no_inplace


@register
class Concat(Layer):
    TYPES = ("Concat",)
    BOTTOMS = (1, None)
    OPENCV = frozenset({"Concat"})

    def opencv_gap(self, node):
        p = self.proto.concat_param
        if p.HasField("concat_dim") and p.concat_dim != 1:
            # docs/opencv-deviations.md: concat-concat-dim-0 (axis: 0 itself agrees)
            return "OpenCV ignores Concat's concat_dim"
        return super().opencv_gap(node)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise LayerError("give either axis or concat_dim, not both")
        self.axis = p.concat_dim if p.HasField("concat_dim") else p.axis

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""

    def infer(self, inputs):
        first = inputs[0]
        axis = canonical_axis(self.axis, len(first))
        total = 0
        for shape in inputs:
            if len(shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis
            ):
                raise LayerError(
                    f"bottoms {fmt_shape(first)} and {fmt_shape(shape)} differ outside axis {axis}"
                )
            total = DYNAMIC if DYNAMIC in (total, shape[axis]) else total + shape[axis]
        out = list(first)
        out[axis] = total
        return [tuple(out)]

    def emit(self, ctx):
        if self.n_bottoms == 1:
            return Emission([], alias=True)
        dim = canonical_axis(self.axis, ctx.ndim)
        items = ", ".join(f"{{{i}}}" for i in range(self.n_bottoms))
        return Emission([f"torch.cat([{items}], {dim})"])


@register
class Slice(Layer):
    TYPES = ("Slice",)
    TOPS = (1, None)
    OPENCV = frozenset({"Slice"})

    def opencv_gap(self, node):
        sp = self.proto.slice_param
        if sp.HasField("slice_dim") and not sp.HasField("axis") and sp.slice_dim != 1:
            return "OpenCV ignores Slice's slice_dim"
        if not len(sp.slice_point) and len(node.outputs) > 1:
            return "OpenCV cannot slice into equal parts without slice points"
        return super().opencv_gap(node)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise LayerError("give either axis or slice_dim, not both")
        self.axis = p.slice_dim if p.HasField("slice_dim") else p.axis
        self.points = list(p.slice_point)
        if self.points and len(self.points) != self.n_tops - 1:
            raise LayerError(f"{len(self.points)} slice points for {self.n_tops} tops")

    def describe(self):
        pts = ",".join(map(str, self.points)) if self.points else "equal"
        return f"axis {self.axis} at {pts}"

    def sizes(self, dim: int) -> list[int]:
        if self.points:
            bounds = [0, *self.points, dim]
            sizes = [b - a for a, b in zip(bounds, bounds[1:])]
            if any(s <= 0 for s in sizes):
                raise LayerError(f"slice points {self.points} must increase within 1..{dim - 1}")
            return sizes
        if dim % self.n_tops:
            raise LayerError(f"size {dim} does not split into {self.n_tops} equal parts")
        return [dim // self.n_tops] * self.n_tops

    def infer(self, inputs):
        (shape,) = inputs
        axis = canonical_axis(self.axis, len(shape))
        if shape[axis] == DYNAMIC:
            raise LayerError("cannot slice an axis of unknown size")
        out = []
        for size in self.sizes(shape[axis]):
            s = list(shape)
            s[axis] = size
            out.append(tuple(s))
        return out

    def emit(self, ctx):
        if self.n_tops == 1:
            return Emission([], alias=True)
        shape = ctx.in_shapes[0]
        dim = canonical_axis(self.axis, len(shape))
        sizes = self.sizes(shape[dim])
        return Emission([f"torch.split({{0}}, {sizes}, dim={dim})"], alias=True)


@register
class Split(Layer):
    TYPES = ("Split",)
    TOPS = (1, None)
    OPENCV = frozenset({"Split"})

    def __init__(self, proto):
        super().__init__(proto)
        no_inplace(proto)  # SplitLayer::Reshape checks top[i] != bottom[0]

    def infer(self, inputs):
        return [inputs[0]] * self.n_tops

    def emit(self, ctx):
        return Emission([], alias=True)


@register
class Silence(Layer):
    """Swallows its bottoms (marks them used); no tops."""

    TYPES = ("Silence",)
    DISCARDS = True
    BOTTOMS = (1, None)
    TOPS = (0, 0)
    OPENCV = frozenset({"Silence"})

    def infer(self, inputs):
        return []

    def emit(self, ctx):
        return Emission([])
