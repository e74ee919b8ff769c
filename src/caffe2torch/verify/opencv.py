"""OpenCV's dnn module as the reference Caffe engine.

``cv2.dnn.readNetFromCaffe`` reads the same prototxt and caffemodel natively; with fusion off
it keeps every layer's outputs. OpenCV 5 dropped the Caffe importer, so 4.x is required.

OpenCV reads deploy nets. For anything else, :func:`reference_prototxt` writes the net as
OpenCV needs it, with the semantics unchanged:

- data layers (``Data``, ``ImageData``, ``MemoryData``...) become one ``Input`` layer with the
  shapes the graph inferred, and layers the phase excludes or that only train are left out;
- ``DepthwiseConvolution`` (a fork's name for a grouped ``Convolution``) is renamed;
- ``Axpy``: OpenCV computes ``b0 * b2 + b1`` where SENet's Caffe (axpy_layer.cpp) computes
  ``top = b0 * b1 + b2``; its last two bottoms are swapped so that OpenCV computes Caffe's;
- Pooling's ``round_mode: FLOOR`` (BVLC), which OpenCV ignores, becomes ``ceil_mode: false``
  (the older fork field it reads).

Known differences remain; for these the tests compare with Caffe's formula instead: OpenCV's
MVN adds ``eps`` to the variance (Caffe: to the standard deviation); it ignores LRN's ``k``,
Log's ``base``/``scale``/``shift``, InnerProduct's ``transpose``, Deconvolution's
``dilation`` and Slice's ``slice_dim``; it cannot concatenate along the batch axis or slice
into equal parts without slice points.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

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


RENAMED_TYPES = {"DepthwiseConvolution": "Convolution"}


def needs_rewrite(graph) -> bool:
    """Whether OpenCV must get :func:`reference_prototxt` instead of the original file."""
    if any(n.is_source and n.type != "Input" for n in graph.nodes):
        return True
    if any(n.type in RENAMED_TYPES or n.type == "Axpy" for n in graph.nodes):
        return True
    if any(n.type == "Pooling" and not n.op.ceil for n in graph.nodes):
        return True
    # Layers the graph left out (other phase, training only) are still in the file.
    from ..caffe.prototxt import read_prototxt

    return len(read_prototxt(graph.path).net.layer) != len(graph.nodes)


def reference_prototxt(graph) -> str:
    """The graph as a V2 deploy prototxt that OpenCV runs with Caffe's semantics."""
    from google.protobuf import text_format

    from ..caffe.schema import pb

    net = pb.NetParameter()
    net.name = graph.name
    names = {n.name for n in graph.nodes}
    source = net.layer.add()
    source.name = next(n for n in ("input", "data_input", "reference_input") if n not in names)
    source.type = "Input"
    for v in graph.inputs:
        source.top.append(v.name)
        source.input_param.shape.add().dim.extend(v.shape)
    for node in graph.nodes:
        if node.is_source:
            continue
        layer = net.layer.add()
        layer.CopyFrom(node.op.proto)
        layer.ClearField("include")
        layer.ClearField("exclude")
        layer.type = RENAMED_TYPES.get(layer.type, layer.type)
        if layer.type == "Axpy":
            layer.bottom[1], layer.bottom[2] = layer.bottom[2], layer.bottom[1]
        if layer.type == "Pooling" and not node.op.ceil:
            layer.pooling_param.ClearField("round_mode")
            layer.pooling_param.ceil_mode = False
    return text_format.MessageToString(net)


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
    cv2 = opencv()
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as e:
        raise ReferenceError(f"OpenCV cannot load the net: {_first_line(e)}", file=shown) from None
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = list(net.getLayerNames())
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
