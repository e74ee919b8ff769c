"""OpenCV's dnn module as the reference Caffe engine.

``cv2.dnn.readNetFromCaffe`` reads the same prototxt and caffemodel natively; with fusion off
it keeps every layer's outputs. OpenCV 5 dropped the Caffe importer, so 4.x is required.
"""
from __future__ import annotations

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


def run_opencv(
    prototxt: str | Path, caffemodel: str | Path, inputs: Mapping[str, np.ndarray]
) -> dict[str, list[np.ndarray]]:
    """Run the net in OpenCV; returns every layer's outputs by layer name (in OpenCV's order)."""
    cv2 = opencv()
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as e:
        raise ReferenceError(f"OpenCV cannot load the net: {_first_line(e)}", file=prototxt) from None
    net.enableFusion(False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = list(net.getLayerNames())
    try:
        for name, array in inputs.items():
            net.setInput(np.ascontiguousarray(array, dtype=np.float32), name)
        outputs = net.forwardAndRetrieve(names)
    except cv2.error as e:
        raise ReferenceError(f"OpenCV cannot run the net: {_first_line(e)}", file=prototxt) from None
    return {name: list(outs) for name, outs in zip(names, outputs)}


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return text.splitlines()[0] if text else repr(e)
