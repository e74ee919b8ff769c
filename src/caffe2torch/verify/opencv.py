"""OpenCV's dnn module as the reference Caffe engine.

``cv2.dnn.readNetFromCaffe`` reads the same prototxt and caffemodel natively; with fusion off
it keeps every layer's outputs. OpenCV 5 dropped the Caffe importer, so 4.x is required.

OpenCV reads deploy nets. For anything else, :func:`reference_prototxt` writes the net as
OpenCV needs it, with the semantics unchanged:

- data layers (``Data``, ``ImageData``, ``MemoryData``...) become one ``Input`` layer with the
  shapes the graph inferred, and layers the phase excludes or that only train are left out;
- each layer is rewritten by its family's ``Layer.opencv_layer`` where OpenCV reads the same
  semantics under other names (``DepthwiseConvolution`` becomes ``Convolution``, Axpy's last
  two bottoms are swapped, Pooling's ``round_mode: FLOOR`` becomes ``ceil_mode: false``).

What OpenCV can check is declared beside each layer (``Layer.OPENCV``, ``Layer.opencv_gap``,
``Layer.opencv_top_gap``); where it computes something else, the tests compare with Caffe's
formula instead.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from google.protobuf import text_format

from ..caffe.prototxt import read_prototxt
from ..caffe.schema import pb
from ..errors import CaffeError


class ReferenceError(CaffeError):
    """The reference engine cannot load or run the net."""


def opencv():
    """Import cv2, checking that it can read Caffe files."""
    try:
        import cv2
    except ImportError:
        raise ReferenceError(
            "OpenCV is not installed: pip install 'opencv-python-headless>=4.8,<5'"
        ) from None
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ReferenceError(
            f"OpenCV {cv2.__version__} has no Caffe importer (dropped in 5.x): "
            "pip install 'opencv-python-headless>=4.8,<5'"
        )
    return cv2


def cv2_error():
    return opencv().error


def opencv_gap(node) -> str:
    """Why OpenCV cannot check this layer ("" when it can): the layer's family says
    (``Layer.OPENCV`` and ``Layer.opencv_gap``, beside the layer)."""
    return node.op.opencv_gap(node)


def needs_rewrite(graph) -> bool:
    """Whether OpenCV must get :func:`reference_prototxt` instead of the original file."""
    if any(n.is_source and n.type != "Input" for n in graph.nodes):
        return True
    if any(n.op.opencv_layer(_copy(n)) for n in graph.nodes if not n.is_source):
        return True
    # Layers the graph left out (other phase, training only) are still in the file.
    return len(read_prototxt(graph.path).net.layer) != len(graph.nodes)


def _copy(node):
    layer = type(node.op.proto)()
    layer.CopyFrom(node.op.proto)
    return layer


def _layer_proto(node, bottoms: list[str] | None = None):
    """The layer as OpenCV should get it (same semantics, names OpenCV reads), reading
    ``bottoms`` instead of its own where given (its ``opencv_layer`` may reorder them, as
    Axpy's does)."""
    layer = _copy(node)
    layer.ClearField("include")
    layer.ClearField("exclude")
    if bottoms is not None:
        layer.ClearField("bottom")
        layer.bottom.extend(bottoms)
    node.op.opencv_layer(layer)
    return layer


def _input_layer(net, names: set[str], values: list[tuple[str, tuple]]):
    source = net.layer.add()
    source.name = next(n for n in ("input", "data_input", "reference_input") if n not in names)
    source.type = "Input"
    for name, shape in values:
        source.top.append(name)
        source.input_param.shape.add().dim.extend(shape)


def reference_prototxt(graph) -> str:
    """The graph as a V2 deploy prototxt that OpenCV runs with Caffe's semantics."""
    net = pb.NetParameter()
    net.name = graph.name
    _input_layer(net, {n.name for n in graph.nodes}, [(v.name, v.shape) for v in graph.inputs])
    for node in graph.nodes:
        if not node.is_source:
            net.layer.add().CopyFrom(_layer_proto(node))
    return text_format.MessageToString(net)


@dataclass
class ReferenceNet:
    """A part of the graph for OpenCV to run layer by layer.

    Every value gets a blob name of its own (in-place layers write new blobs), so that a value
    the reference cannot compute (a layer in ``cuts``) can be given to it as an input. Layers
    keep their names (weights are found by them)."""

    text: str
    blob: dict[int, str]  # id(Value) -> blob name in ``text``
    inputs: list  # Values the reference reads: the net's inputs, then the cut layers' outputs
    layers: list  # Nodes it runs, in order


def reference_net(graph, nodes, cuts: Mapping[str, str]) -> ReferenceNet:
    """``nodes`` (computing layers in graph order) without the ``cuts`` (layer id -> reason),
    whose outputs become inputs."""
    run = [n for n in nodes if n.id not in cuts]
    taken: set[str] = set()
    blob: dict[int, str] = {}

    def name_of(v) -> str:
        if id(v) not in blob:
            name = v.name if v.version == 0 else f"{v.name}@{v.producer.name}"
            while name in taken:
                name += "_"
            taken.add(name)
            blob[id(v)] = name
        return blob[id(v)]

    read = {id(v) for n in run for v in n.inputs}
    inputs = [v for v in graph.inputs if id(v) in read]
    made = {id(v) for n in run for v in n.outputs} | {id(v) for v in graph.inputs}
    for n in run:
        for v in n.inputs:
            if id(v) not in made and all(v is not u for u in inputs):
                inputs.append(v)
    if not inputs:
        inputs = list(graph.inputs)
    for v in inputs:
        name_of(v)
    net = pb.NetParameter()
    net.name = graph.name
    _input_layer(net, {n.name for n in graph.nodes}, [(blob[id(v)], v.shape) for v in inputs])
    for node in run:
        layer = _layer_proto(node, [str(i) for i in range(len(node.inputs))])
        order = [node.inputs[int(i)] for i in layer.bottom]
        layer.ClearField("bottom")
        layer.bottom.extend(name_of(v) for v in order)
        layer.ClearField("top")
        layer.top.extend(name_of(v) for v in node.outputs)
        net.layer.add().CopyFrom(layer)
    # OpenCV keeps only output 0 of each layer it is asked for; its memory manager may give the
    # memory of the others to a later layer (an activation runs in place on it). A Silence
    # layer at the end reads each of them, so they live to the end of the run.
    # (Not an output OpenCV does not make as Caffe does: Pooling's mask, for its MaxUnpool.)
    extra = [v for n in run for k, v in enumerate(n.outputs[1:], 1) if not n.op.opencv_top_gap(k)]
    if extra:
        names = {n.name for n in graph.nodes}
        hold = net.layer.add()
        hold.name = next(f"keep_{k}" for k in range(len(names) + 1) if f"keep_{k}" not in names)
        hold.type = "Silence"
        hold.bottom.extend(blob[id(v)] for v in extra)
    return ReferenceNet(text_format.MessageToString(net), blob, inputs, run)


class LoadedReference:
    """``ref`` read by OpenCV in a background thread (OpenCV releases the GIL while it parses
    the weights), so the converted model can be built meanwhile; :meth:`run` waits for it.
    ``warm``: also set the net up on zeros (it allocates on its first forward)."""

    def __init__(self, ref: ReferenceNet, caffemodel: str | Path, shown=None, warm: bool = True) -> None:
        self.ref, self.shown, self.warm = ref, shown, warm
        self.layer_names = [n.name for n in ref.layers]
        self.error: BaseException | None = None
        self.net = None
        self.seconds = {"load": 0.0, "run": 0.0}
        self._tmp = tempfile.TemporaryDirectory()
        self._path = Path(self._tmp.name) / "reference.prototxt"
        self._path.write_text(ref.text)
        self._thread = threading.Thread(target=self._load, args=(caffemodel,), daemon=True)
        self._thread.start()

    def _load(self, caffemodel) -> None:
        start = time.perf_counter()
        try:
            net = _load(self._path, caffemodel, self.shown or self._path)
            if self.warm:
                # OpenCV sets the net up (allocates, repacks weights) on the first forward for
                # a set of outputs: run that once here, on zeros, while the model loads.
                zeros = {self.ref.blob[id(v)]: np.zeros(v.shape, np.float32) for v in self.ref.inputs}
                _forward(net, zeros, self.layer_names, self.shown)
            self.net = net
        except cv2_error() as e:
            self.error = ReferenceError(
                f"OpenCV cannot set the net up: {_first_line(e)}", file=self.shown
            )
        except BaseException as e:  # noqa: BLE001 - raised again in run()
            self.error = e
        self.seconds["load"] = time.perf_counter() - start

    def close(self) -> None:
        """Give up on the reference (the check stopped): wait for the loader, drop its files."""
        self._thread.join()
        self._tmp.cleanup()  # (a second cleanup does nothing)
        self.net = None

    def run(self, arrays: Mapping[int, np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Outputs of every layer by layer name, for ``arrays`` (id(Value) -> array for each
        input of the reference net)."""
        self._thread.join()
        self._tmp.cleanup()
        if self.error is not None:
            raise self.error
        start = time.perf_counter()
        named = {self.ref.blob[id(v)]: arrays[id(v)] for v in self.ref.inputs}
        out = _forward(self.net, named, self.layer_names, self.shown)
        self.net = None  # its own copies of every output go with it
        self.seconds["run"] = time.perf_counter() - start
        return out


class SegmentedReference:
    """The reference net run in segments (consecutive layers whose outputs together stay
    within a memory budget), each when a value of it is first asked for, so that the
    reference never holds more than one segment's outputs, plus the values later segments
    read (a U-Net's skip connections). A net that fits the budget is one segment, read in the
    background while the converted model is built.

    :meth:`start` gives the values the reference cannot make (the net's inputs, the outputs
    of layers it cannot run); :meth:`outputs` gives a layer's outputs, running segments as
    needed; :meth:`value` a value read across segments; :meth:`rewind` starts a second pass."""

    def __init__(self, graph, nodes, cuts: Mapping[str, str], caffemodel, shown, segments) -> None:
        self.graph, self.caffemodel, self.shown = graph, caffemodel, shown
        run = [n for n in nodes if n.id not in cuts]
        self.nets: list[ReferenceNet] = []
        self.segment_of: dict[int, int] = {}
        for k, seg in enumerate(segments(run)):
            self.nets.append(reference_net(graph, seg, cuts))
            for n in seg:
                self.segment_of[id(n)] = k
        self.layers = run
        made_here = {id(v) for n in run for v in n.outputs}
        self.inputs = []  # what the reference reads but cannot make
        seen: set[int] = set()
        for net in self.nets:
            for v in net.inputs:
                if id(v) not in made_here and id(v) not in seen:
                    seen.add(id(v))
                    self.inputs.append(v)
        self.seconds = {"load": 0.0, "run": 0.0}
        self._given: dict[int, np.ndarray] = {}
        self._carry: dict[int, np.ndarray] = {}
        self._current = -1
        self._outputs: dict[str, list[np.ndarray]] = {}
        self._pending = None
        self._loader = LoadedReference(self.nets[0], caffemodel, shown=shown) if self.nets else None

    def close(self) -> None:
        for loader in (self._loader, self._pending):
            if loader is not None:
                loader.close()
        self._loader = self._pending = None
        self._outputs, self._carry, self._given = {}, {}, {}

    def start(self, given: Mapping[int, np.ndarray]) -> None:
        self._given = dict(given)
        self._carry = {}
        self._current = -1
        self._outputs = {}

    def rewind(self) -> None:
        self.start(self._given)

    def _run(self, k: int) -> None:
        net = self.nets[k]
        loader = self._loader if (k == 0 and self._loader is not None) else LoadedReference(
            net, self.caffemodel, shown=self.shown, warm=False
        )
        self._loader = None
        self._pending = loader  # closed if the check stops while it loads
        arrays = {}
        for v in net.inputs:
            a = self._given.get(id(v))
            if a is None:
                a = self._carry.get(id(v))
            if a is None:  # pragma: no cover - segments are run in order
                raise ReferenceError(f"no value for '{v.label}' before segment {k}", file=self.shown)
            arrays[id(v)] = a
        self._outputs = {}  # the previous segment's outputs go (what later ones read is kept)
        outs = loader.run(arrays)
        self._pending = None
        self.seconds["load"] += loader.seconds["load"]
        self.seconds["run"] += loader.seconds["run"]
        later = {id(v) for m in self.nets[k + 1 :] for v in m.inputs}
        for n in [x for x in self.layers if self.segment_of[id(x)] == k]:
            got = outs.get(n.name)
            if got is None:
                alias = net.blob[id(n.outputs[0])]
                got = outs.get(alias)
            if got is None:
                continue
            self._outputs[n.name] = got
            for v, a in zip(n.outputs, got):
                if id(v) in later:
                    self._carry[id(v)] = a
        self._current = k

    def _advance(self, k: int) -> None:
        while self._current < k:
            self._run(self._current + 1)

    def outputs(self, node) -> list[np.ndarray] | None:
        """The outputs of ``node`` (None when the reference does not run it, or they belong to
        a segment already dropped)."""
        k = self.segment_of.get(id(node))
        if k is None:
            return None
        self._advance(k)
        return self._outputs.get(node.name) if k == self._current else None

    def value(self, v) -> np.ndarray | None:
        """A value: given, carried across segments, or made by a segment not yet dropped."""
        for store in (self._given, self._carry):
            if id(v) in store:
                return store[id(v)]
        outs = self.outputs(v.producer)
        i = v.producer.outputs.index(v)
        return outs[i] if outs is not None and i < len(outs) else None


def run_opencv(
    prototxt: str | Path, caffemodel: str | Path, inputs: Mapping[str, np.ndarray], graph=None
) -> dict[str, list[np.ndarray]]:
    """Run the net in OpenCV; returns every layer's outputs by layer name (in OpenCV's order).

    With ``graph``, a net OpenCV cannot read as it is runs as :func:`reference_prototxt`."""
    if graph is not None and needs_rewrite(graph):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "reference.prototxt"
            path.write_text(reference_prototxt(graph))
            return _run(path, caffemodel, inputs, shown=prototxt)
    return _run(prototxt, caffemodel, inputs, shown=prototxt)


def _run(prototxt, caffemodel, inputs, shown) -> dict[str, list[np.ndarray]]:
    return _forward(_load(prototxt, caffemodel, shown), inputs, None, shown)


def _load(prototxt, caffemodel, shown):
    cv2 = opencv()
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as e:
        raise ReferenceError(f"OpenCV cannot load the net: {_first_line(e)}", file=shown) from None
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def _forward(net, inputs, layers, shown) -> dict[str, list[np.ndarray]]:
    """Every layer's outputs: ``layers`` first (by name), then any OpenCV named otherwise."""
    cv2 = opencv()
    names = list(net.getLayerNames())
    if layers is not None:
        known = set(names)
        names = list(dict.fromkeys(n for n in layers if n in known))
        names += sorted(known - set(layers))
    try:
        for name, array in inputs.items():
            net.setInput(np.ascontiguousarray(array, dtype=np.float32), name)
        outputs = net.forwardAndRetrieve(names)
    except cv2.error as e:
        raise ReferenceError(f"OpenCV cannot run the net: {_first_line(e)}", file=shown) from None
    return {name: list(outs) for name, outs in zip(names, outputs)}


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return text.splitlines()[0] if text else repr(e)
