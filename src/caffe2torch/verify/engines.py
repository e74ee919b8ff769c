"""The reference engines of the per-layer check, and ``--reference caffe|opencv|auto``.

- ``caffe``: real Caffe (pycaffe built from pinned source by ``make caffe-ref``), in its own
  process (:mod:`.caffe_ref`). What it can run, it says itself: the layer types its build
  registers and the fields its own schema parses, asked once per net; a family may add a
  ``Layer.caffe_gap``. Its values are the truth: none is ever called the reference's fault.
  ``make caffe-ref-ssd`` also builds weiliu89's SSD fork (engine ``caffe-ssd``), which then
  runs the fork layers a family declares measured against it (``Layer.CAFFE_FORKS``:
  PriorBox, DetectionOutput, Normalize, Permute...), after BVLC.
- ``opencv``: OpenCV's dnn module (:mod:`.opencv`). What it can run is declared beside each
  layer (``Layer.OPENCV``, ``Layer.opencv_gap``, ``Layer.opencv_top_gap``), and how it must be
  given a layer (``Layer.opencv_layer``). Where its value is shown to be wrong (not finite,
  or unlike an exact float64 computation the model matches), the value is a reference-error.
- ``auto`` (the default): real Caffe where it is built, and OpenCV for the layers Caffe
  cannot run; OpenCV alone where Caffe is not built.
"""

from __future__ import annotations

from typing import Sequence

from google.protobuf.message import Message

from .caffe_ref import CaffeLoaded, caffe_build, caffe_prefix
from .opencv import LoadedReference, opencv
from .reference import ReferenceError, ReferenceNet, reference_net

CHOICES = ("auto", "caffe", "opencv")


class OpenCVEngine:
    key, name, may_fault = "opencv", "OpenCV", True

    def __init__(self) -> None:
        self.label = f"OpenCV {opencv().__version__} (cv2.dnn)"

    def gap(self, node) -> str:
        return node.op.opencv_gap(node)

    def can_run(self, node) -> bool:
        return not self.gap(node)

    def top_gap(self, node, top: int) -> str:
        return node.op.opencv_top_gap(top)

    def net(self, graph, nodes, cuts) -> ReferenceNet:
        # OpenCV keeps only output 0 of each layer it is asked for; its memory manager may give
        # the memory of the others to a later layer (an activation runs in place on it). A
        # Silence layer at the end reads each of them, so they live to the end of the run
        # (not an output OpenCV does not make as Caffe does: Pooling's mask, for its MaxUnpool).
        return reference_net(
            graph, nodes, cuts,
            rewrite=lambda node, layer: node.op.opencv_layer(layer),
            hold=lambda node, k: not node.op.opencv_top_gap(k),
        )

    def loader(self, net: ReferenceNet, caffemodel, shown, warm: bool):
        return LoadedReference(net, caffemodel, shown=shown, warm=warm)


class CaffeEngine:
    may_fault = False

    def __init__(self, build: str = "bvlc") -> None:
        self.build, self.build_name = caffe_build(build), build
        self.key = "caffe" if build == "bvlc" else f"caffe-{build}"
        self.name, self.label = self.build.name, self.build.label

    def gap(self, node) -> str:
        return self.build.gap(node) or node.op.caffe_gap(node, self.build_name)

    def can_run(self, node) -> bool:
        return not self.gap(node)

    def top_gap(self, node, top: int) -> str:
        return ""

    def net(self, graph, nodes, cuts) -> ReferenceNet:
        return reference_net(graph, nodes, cuts, rewrite=_any_engine)

    def loader(self, net: ReferenceNet, caffemodel, shown, warm: bool):
        return CaffeLoaded(net, caffemodel, shown=shown, prefix=self.build.prefix)


def _any_engine(node, layer) -> None:
    """``engine: CUDNN`` (or CAFFE) chooses an implementation, not what is computed: this
    CPU-only build refuses CUDNN ("unknown engine"), so each layer gets its default. The
    family's own rewrite follows (``Layer.caffe_layer``: no files written or deleted)."""
    for _, value in layer.ListFields():
        if isinstance(value, Message) and "engine" in value.DESCRIPTOR.fields_by_name:
            value.ClearField("engine")
    node.op.caffe_layer(layer)


def caffe_available(build: str = "bvlc") -> bool:
    try:
        caffe_prefix(build)
    except ReferenceError:
        return False
    return True


def _caffes() -> list:
    """BVLC Caffe, and the SSD fork where it is built (for the layers BVLC lacks)."""
    return [CaffeEngine()] + ([CaffeEngine("ssd")] if caffe_available("ssd") else [])


def select(choice: str = "auto") -> list:
    """The engines for ``--reference``, in the order each layer is offered to them: ``caffe``
    is BVLC Caffe, then the SSD fork where it is built."""
    if choice not in CHOICES:
        raise ReferenceError(f"unknown reference '{choice}': choose one of {', '.join(CHOICES)}")
    if choice == "opencv":
        return [OpenCVEngine()]
    if choice == "caffe":
        return _caffes()
    engines: list = _caffes() if caffe_available() else []
    try:
        engines.append(OpenCVEngine())
    except ReferenceError as e:
        if not engines:
            raise ReferenceError(
                f"no reference engine: real Caffe is not built (make caffe-ref), and {e}"
            ) from None
    return engines


def describe(engines: Sequence) -> str:
    """The reference as the report names it."""
    text = engines[0].label
    for e in engines[1:]:
        text += f"; {e.label} where the above cannot run a layer"
    return text


def gap(engines: Sequence, node) -> str:
    """Why none of ``engines`` can check ``node`` ("" when one can)."""
    reasons = []
    for e in engines:
        why = e.gap(node)
        if not why:
            return ""
        reasons.append(why)
    return "; ".join(dict.fromkeys(reasons))


__all__ = ["CHOICES", "CaffeEngine", "OpenCVEngine", "caffe_available", "describe", "gap", "select"]
