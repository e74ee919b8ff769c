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
from pathlib import Path
from typing import Mapping

import numpy as np

from google.protobuf import text_format

from ..caffe.prototxt import read_prototxt
from ..caffe.schema import pb
from ..extras import install_hint, require
from .reference import ReferenceError, ReferenceNet, input_layer, layer_copy


def opencv():
    """Import cv2, checking that it can read Caffe files."""
    cv2 = require("cv2", "verify", "verifying", error=ReferenceError)
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ReferenceError(
            f"OpenCV {cv2.__version__} has no Caffe importer (dropped in 5.x): "
            f"{install_hint('verify')} (OpenCV 4)"
        )
    return cv2


def cv2_error():
    return opencv().error


def needs_rewrite(graph) -> bool:
    """Whether OpenCV must get :func:`reference_prototxt` instead of the original file."""
    if any(n.is_source and n.type != "Input" for n in graph.nodes):
        return True
    if any(n.op.opencv_layer(layer_copy(n)) for n in graph.nodes if not n.is_source):
        return True
    # Layers the graph left out (other phase, training only) are still in the file.
    return len(read_prototxt(graph.path).net.layer) != len(graph.nodes)


def _layer_proto(node):
    """The layer as OpenCV should get it (same semantics, names OpenCV reads)."""
    layer = layer_copy(node)
    node.op.opencv_layer(layer)
    return layer


def reference_prototxt(graph) -> str:
    """The graph as a V2 deploy prototxt that OpenCV runs with Caffe's semantics."""
    net = pb.NetParameter()
    net.name = graph.name
    input_layer(net, {n.name for n in graph.nodes}, [(v.name, v.shape) for v in graph.inputs])
    for node in graph.nodes:
        if not node.is_source:
            net.layer.add().CopyFrom(_layer_proto(node))
    return text_format.MessageToString(net)


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
            if self.warm and all(-1 not in (v.shape or ()) for v in self.ref.inputs):
                # OpenCV sets the net up (allocates, repacks weights) on the first forward for
                # a set of outputs: run that once here, on zeros, while the model loads (not
                # when an input's size is known only at run time: rois, detections).
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
