"""What every layer module provides, and the shape arithmetic helpers they share.

A layer family is a subclass of :class:`Layer` registered for one or more Caffe type names.
An instance holds one layer's typed parameters (read from its ``*_param`` message in
``__init__``) and knows:

- ``infer(inputs)``: the output shapes from the input shapes, with Caffe's own arithmetic;
- ``weight_shapes(inputs)``: the shapes of its learnable blobs, in Caffe's order;
- ``init_weights(inputs, rng)``: seeded random blobs for ``synth-weights``.

Shapes are tuples of ints. A dimension that is only known when the net runs (the number of
detections, of region proposals) is ``DYNAMIC`` (-1); arithmetic helpers pass it through.
Layers raise :class:`LayerError` with a plain message; the graph adds the file, line and
layer name.
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import numpy as np

from ..errors import CaffeError

Shape = tuple[int, ...]
DYNAMIC = -1
MAX_DIM = 1 << 31  # Caffe stores dimensions as int32
MAX_COUNT = 1 << 40  # no real blob has a trillion elements


class LayerError(CaffeError):
    """A layer's parameters or input shapes do not fit; the graph adds where."""


def fmt_shape(shape: Sequence[int] | None) -> str:
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "scalar"
    return "x".join("?" if d == DYNAMIC else str(d) for d in shape)


def count(shape: Sequence[int]) -> int:
    """Number of elements; DYNAMIC dims are not counted (treated as 1)."""
    return math.prod(d for d in shape if d != DYNAMIC)


def canonical_axis(axis: int, ndim: int, what: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise LayerError(f"{what} {axis} is out of range for a {ndim}-D input")
    return axis + ndim if axis < 0 else axis


def four_d(shape: Sequence[int], what: str = "input") -> Sequence[int]:
    """Check that ``shape`` is N,C,H,W and return it."""
    if len(shape) != 4:
        raise LayerError(f"needs a 4-D {what} (N,C,H,W), got {fmt_shape(shape)}")
    return shape


class Layer:
    """Base class of layer families. Subclasses set the class attributes and override."""

    TYPES: ClassVar[tuple[str, ...]] = ()
    BOTTOMS: ClassVar[tuple[int, int | None]] = (1, 1)  # (min, max or None for no limit)
    TOPS: ClassVar[tuple[int, int | None]] = (1, 1)
    SOURCE: ClassVar[bool] = False  # produces the net's inputs (Input, Data, ...)
    TRAINING_ONLY: ClassVar[bool] = False  # needs labels or only trains (losses, Accuracy)

    def __init__(self, proto) -> None:
        self.proto = proto
        self.name: str = proto.name
        self.type: str = proto.type
        self.n_bottoms = len(proto.bottom)
        self.n_tops = len(proto.top)

    def check_arity(self) -> None:
        for what, n, (lo, hi) in (
            ("bottom", self.n_bottoms, self.BOTTOMS),
            ("top", self.n_tops, self.TOPS),
        ):
            if n < lo or (hi is not None and n > hi):
                want = str(lo) if hi == lo else (f"{lo} or more" if hi is None else f"{lo} to {hi}")
                raise LayerError(f"takes {want} {what}s, has {n}")

    # -- what families override --------------------------------------------------------------
    def infer(self, inputs: list[Shape]) -> list[Shape]:
        raise NotImplementedError

    def weight_shapes(self, inputs: list[Shape]) -> list[Shape]:
        return []

    def init_weights(self, inputs: list[Shape], rng: np.random.Generator) -> list[np.ndarray]:
        """Seeded random blobs: He-scaled weights, small biases (see ``synth.py``)."""
        from ..synth import default_init

        return default_init(self.weight_shapes(inputs), rng)

    def accepts_blob(self, index: int, expected: Shape, blob) -> bool:
        """Whether a stored blob fits: Caffe's Blob::ShapeEquals. Blobs stored with the legacy
        (num, channels, height, width) fields compare as 4-D with leading 1s."""
        if blob.legacy:
            return len(expected) <= 4 and (1,) * (4 - len(expected)) + tuple(expected) == blob.shape
        return tuple(expected) == blob.shape

    def describe(self) -> str:
        """A short summary of the parameters that matter, for tables."""
        return ""


class SameShape(Layer):
    """Element-wise layers: every top has the shape of the (first) bottom."""

    def infer(self, inputs):
        return [inputs[0]] * self.n_tops
