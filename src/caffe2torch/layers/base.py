"""What every layer module provides, and the shape arithmetic helpers they share.

A layer family is a subclass of :class:`Layer` registered for one or more Caffe type names.
An instance holds one layer's typed parameters (read from its ``*_param`` message in
``__init__``) and knows:

- ``infer(inputs)``: the output shapes from the input shapes, with Caffe's own arithmetic;
- ``weight_shapes(inputs)``: the shapes of its learnable blobs, in Caffe's order;
- ``init_weights(inputs, rng)``: seeded random blobs for ``synth-weights``;
- ``emit(ctx)``: the PyTorch it becomes (see :class:`Emission`): the submodule declared in
  ``__init__`` with the state_dict entries made from its Caffe blobs, and the expression(s)
  of ``forward``. A family without ``emit`` is reported as not convertible.

Shapes are tuples of ints. A dimension that is only known when the net runs (the number of
detections, of region proposals) is ``DYNAMIC`` (-1); arithmetic helpers pass it through.
Layers raise :class:`LayerError` with a plain message; the graph adds the file, line and
layer name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import CaffeError

if TYPE_CHECKING:
    from ..graph import Node

Shape = tuple[int, ...]
DYNAMIC = -1
MAX_DIM = (1 << 31) - 1  # Caffe stores dimensions as int32 (INT_MAX)
MAX_BLOB = (1 << 31) - 1  # Blob::Reshape: a blob's count is at most INT_MAX
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


def default_init(shapes: list[Shape], rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded random blobs for ``synth-weights``: He-scaled (``std = sqrt(2 / fan_in)``) for
    blobs of two or more axes, so activations keep their magnitude through deep ReLU nets;
    uniform in (-0.1, 0.1) for biases and other vectors."""
    out = []
    for s in shapes:
        if len(s) >= 2:
            fan_in = math.prod(s[1:])
            out.append(rng.standard_normal(s, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in)))
        else:
            out.append(rng.uniform(-0.1, 0.1, s).astype(np.float32))
    return out


# --------------------------------------------------------------------------------- emitting
def num(value: float) -> str:
    """A Caffe float (stored as float32) as Python source: the shortest text that gives the
    same float32, so ``1e-5`` reads ``1e-05`` and not ``9.999999747378752e-06``."""
    v = np.float32(value)
    if not np.isfinite(v):
        return 'float("nan")' if np.isnan(v) else ('float("inf")' if v > 0 else '-float("inf")')
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v)}.0"
    return str(v)


def ints(values: Sequence[int]) -> str:
    """A kernel/stride/pad argument: ``3`` when all equal, else ``(3, 5)``."""
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return str(values[0])
    return "(" + ", ".join(map(str, values)) + ")"


def kwargs(*pairs: tuple[str, str | None]) -> str:
    """``name=value`` pairs, skipping those whose value is None."""
    return ", ".join(f"{k}={v}" for k, v in pairs if v is not None)


HELPER_NAMES: set[str] = set()  # generated code must not shadow these


@dataclass(frozen=True)
class Helper:
    """A function or class that generated code needs besides torch (defined in ``model.py``
    above the model class, once, in order of first use)."""

    name: str
    source: str

    def __post_init__(self) -> None:
        HELPER_NAMES.add(self.name)


@dataclass
class EmitContext:
    """What a layer knows when it emits code.

    ``blobs`` are its Caffe blobs as float32 arrays in Caffe's order and in the shapes
    ``weight_shapes`` gives (legacy 4-D shapes already reshaped). ``inplace`` says the layer
    may overwrite its input (Caffe wrote the blob in place and nothing else still needs the
    tensor). ``absorbed`` holds the nodes this layer folded in (``absorbs``) with their blobs.
    """

    node: "Node"
    in_shapes: list[Shape]
    out_shapes: list[Shape]
    blobs: list[np.ndarray]
    inplace: bool = False
    absorbed: list[tuple["Node", list[np.ndarray]]] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.in_shapes[0]) if self.in_shapes else 0


@dataclass
class Emission:
    """The PyTorch code of one layer.

    - ``module``: the constructor of its submodule (``"nn.Conv2d(3, 64, kernel_size=3)"``), or
      None for a layer that is plain tensor code ("functional" in ``layer_map``);
    - ``state``: the submodule's state_dict entries (``{"weight": array, "bias": array}``);
    - ``forward``: expressions run in order, each assigned to the output; ``{m}`` is the
      submodule, ``{0}``, ``{1}``... the inputs (for the second and later expressions, ``{0}``
      is the result of the one before). An expression for a layer with several tops gives a
      tuple. An empty list means the outputs are the inputs (Split, identities).
    - ``helpers``: definitions the expressions use;
    - ``comment``: one line, where Caffe differs from what PyTorch's defaults would suggest;
    - ``alias``: the output may share memory with input 0 (views, identities).
    """

    forward: list[str]
    module: str | None = None
    state: dict[str, np.ndarray] = field(default_factory=dict)
    helpers: tuple[Helper, ...] = ()
    comment: str = ""
    alias: bool = False


@dataclass(frozen=True)
class Schema:
    """What a fork added to Caffe's schema for a family's layers (BVLC's and SSD's own fields
    are in ``caffe/_tables.py``); :mod:`caffe2torch.caffe.schema` builds the messages.

    A field is ``(label, type, name, number, default, packed)`` as in ``_tables.py``.
    ``messages``: new messages by name; ``fields``: fields added to existing messages;
    ``layer_fields``: ``(message, field name, number)`` added to LayerParameter; ``enums``:
    new enums by qualified name. The forks disagree on field numbers, so the numbers here are
    only unique (prototxts are text; weights are read by layer name)."""

    messages: Mapping[str, tuple] = field(default_factory=dict)
    fields: Mapping[str, tuple] = field(default_factory=dict)
    layer_fields: tuple[tuple[str, str, int], ...] = ()
    enums: Mapping[str, tuple] = field(default_factory=dict)


class NotConvertible(LayerError):
    """The layer type is known but has no PyTorch form (yet), or these parameters have none."""


class Layer:
    """Base class of layer families. Subclasses set the class attributes and override."""

    TYPES: ClassVar[tuple[str, ...]] = ()
    # For a class registered with ``register_python``: the ``module.layer`` names of the Caffe
    # Python layers it reimplements (TYPES is then empty; the layer's type is "Python").
    PYTHON: ClassVar[tuple[str, ...]] = ()
    BOTTOMS: ClassVar[tuple[int, int | None]] = (1, 1)  # (min, max or None for no limit)
    TOPS: ClassVar[tuple[int, int | None]] = (1, 1)
    SOURCE: ClassVar[bool] = False  # produces the net's inputs (Input, Data, ...)
    # A data layer that reads images with OpenCV (BGR, pixels 0..255): preprocess.json says so.
    READS_IMAGES: ClassVar[bool] = False
    # Its output is class probabilities (predict shows the top classes).
    PROBABILITIES: ClassVar[bool] = False
    # Only discards its bottoms (Silence): a blob it alone reads still counts as unread.
    DISCARDS: ClassVar[bool] = False
    TRAINING_ONLY: ClassVar[bool] = False  # needs labels or only trains (losses, Accuracy)
    # Its backward pass reads its own output (sigmoid, tanh, relu...), so a following layer
    # must not overwrite that output in place.
    SAVES_OUTPUT: ClassVar[bool] = False
    # May overwrite its input when Caffe wrote the blob in place (ReLU and friends).
    INPLACE: ClassVar[bool] = False
    # The parameters forks added to Caffe's schema for these types (see :class:`Schema`).
    SCHEMA: ClassVar[Schema] = Schema()

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
        """Seeded random blobs: He-scaled weights, small biases (:func:`default_init`)."""
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

    def emit(self, ctx: EmitContext) -> Emission:
        """The PyTorch code of this layer (see :class:`Emission`)."""
        raise NotConvertible(f"layer type '{self.type}' has no PyTorch conversion yet")

    def absorbs(self, node: "Node", next_node: "Node") -> bool:
        """Whether this layer folds ``next_node`` (its output's only reader) into its own
        module, as BatchNorm does with the Scale after it."""
        return False

    # -- input conventions (preprocess/fold.py) -----------------------------------------------
    # The types of TYPES whose weights can take a net input's channel order, mean and scale
    # (a Convolution or InnerProduct reading the input: its weights see every input channel).
    FOLDS_INPUT: ClassVar[frozenset[str]] = frozenset()

    def fold_gap(self, node: "Node", padding_matters: bool) -> str:
        """For a FOLDS_INPUT type: why these parameters keep the input convention out of the
        weights ("" when it folds exactly). ``padding_matters``: a mean is being folded, and
        Caffe pads the normalized input with zeros."""
        return ""

    def reads_only_shape(self, bottom: int) -> bool:
        """Whether this layer reads only the shape of bottom ``bottom`` (PriorBox reads the
        image for its size): channel order, mean and scale do not change what it computes."""
        return False

    # -- reference engines (verify/) ----------------------------------------------------------
    # Declared here, beside the layer, so that adding a type is one file: a test keeps every
    # convertible type checked by an engine or by a numpy formula (tests/test_registry.py).
    # The types of TYPES that OpenCV's dnn module runs as Caffe does
    # (../shared/docs/opencv-reference.md, measured with OpenCV 4.12).
    OPENCV: ClassVar[frozenset[str]] = frozenset()

    def opencv_gap(self, node: "Node") -> str:
        """Why OpenCV cannot check this layer ("" when it can): it lacks the type, or computes
        something other than Caffe for these parameters (each case measured in tests/)."""
        return "" if self.type in self.OPENCV else f"OpenCV has no {self.type} layer"

    def sample_input(self, node: "Node", bottom: int) -> np.ndarray | None:
        """A meaningful value for a net input that this layer reads as bottom ``bottom``, for
        the check's inputs (im_info for a proposal layer), or None for the usual random one."""
        return None

    def compare_form(self, top: int, value):
        """Output ``top`` (a tensor or an array) in the form the check compares: as is, or for
        a layer whose rows come in no fixed order (DetectionOutput), its rows sorted."""
        return value

    def opencv_top_gap(self, top: int) -> str:
        """Why OpenCV's value of output ``top`` is not Caffe's ("" when it is)."""
        return ""

    def opencv_layer(self, layer) -> bool:
        """Rewrite ``layer`` (a copy of this layer's LayerParameter) into what OpenCV reads
        with the same semantics (a fork's type name, a field OpenCV ignores); returns whether
        anything changed. The graph's other layers are not affected."""
        return False

    def caffe_layer(self, layer) -> bool:
        """Rewrite ``layer`` (a copy of this layer's LayerParameter) for real Caffe, leaving out
        what acts outside the net (files it writes or deletes); returns whether anything
        changed."""
        return False

    # The types of TYPES that a fork's Caffe build (``make caffe-ref-ssd``: "ssd") runs with
    # the semantics this family converts, each measured (tests/test_caffe_fork.py). A fork's
    # build checks nothing else: its other layers may share a name and differ.
    CAFFE_FORKS: ClassVar[dict[str, frozenset[str]]] = {}

    def caffe_gap(self, node: "Node", build: str = "bvlc") -> str:
        """Why this Caffe build cannot check this layer ("" when it can), beyond what the build
        says itself (the types it registers, the fields its schema reads: verify/caffe_ref.py)."""
        if build != "bvlc" and self.type not in self.CAFFE_FORKS.get(build, ()):
            return f"the {build} fork's {self.type} is not known to be the one converted here"
        return ""


class SameShape(Layer):
    """Element-wise layers: every top has the shape of the (first) bottom."""

    def infer(self, inputs):
        return [inputs[0]] * self.n_tops
