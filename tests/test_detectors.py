"""Whole detectors of the corpus, end to end: SSD nets (MobileNet-SSD, the res10 face SSD,
VGG SSD300) against the SSD fork's Caffe where it is built (else OpenCV) at the heads and at
DetectionOutput, and Faster R-CNN (VGG16, ZF) and R-FCN with py-faster-rcnn's Python proposal
layer, converted natively, against OpenCV, which runs the proposals as its Proposal layer.

Seeded random weights saturate the softmax of a detector's scores (many ties at 1.0) and make
random box deltas: neither gives meaningful detections. Each net here gets seeded weights
(seed 1) with its score heads scaled down (``*_mbox_conf``, ``rpn_cls_score``, ``cls_score``:
softmax outputs spread, no ties) and its box-delta heads scaled down (``rpn_bbox_pred``:
proposals near their anchors, none under py-faster-rcnn's 16 pixels, which OpenCV's Proposal
does not drop), so the reference finds boxes; the check then compares every value, and the
detections as sets."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import CORPUS

from caffe2torch.api import load_graph
from caffe2torch.caffe.caffemodel import LayerRecord, write_caffemodel
from caffe2torch.emit import convert
from caffe2torch.synth import synth_blobs
from caffe2torch.verify.parity import random_inputs, run_model
from caffe2torch.verify.run import verify_conversion

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# Each SSD net with the factor of its score heads: its scores spread (no ties), and enough of
# them pass its confidence_threshold (MobileNet-SSD's 0.25 over 21 classes needs more spread).
SSD = {
    "mobilenet_ssd": ("mobilenet_ssd_voc/MobileNetSSD_deploy.prototxt", 0.7),
    "res10_face_ssd": ("opencv_face_detector_res10_ssd/deploy.prototxt", 0.02),
    "vgg_ssd300": ("ssd_vgg16_voc0712_300/VGG_VOC0712_SSD_300x300_iter_60000.prototxt", 0.2),
}
# Each two-stage net with the factors of its RPN heads, measured: seeded weights make box
# deltas and objectness logits of std 3-4 (VGG16, ZF) or ~300 (ResNet-50 with random BatchNorm
# statistics); scaled to deltas of std ~0.02 and logits of std ~1.5.
TWO_STAGE = {
    "faster_rcnn_vgg16": ("faster_rcnn_vgg16_voc/test.prototxt", {"rpn_bbox_pred": 5e-3, "rpn_cls_score": 0.4}),
    "faster_rcnn_zf": ("faster_rcnn_zf_voc/test.prototxt", {"rpn_bbox_pred": 6e-3, "rpn_cls_score": 0.4}),
    "rfcn_resnet50": ("rfcn_resnet50_voc/test_agnostic.prototxt", {"rpn_bbox_pred": 7e-5, "rpn_cls_score": 5e-3}),
}
# Layer name (or *suffix) -> factor of its weights and bias.
SCALED = {"*_mbox_conf": 0.02, "cls_score": 0.05, "bbox_pred": 0.1}


def _weights(path, out, scaled=SCALED):
    """Seeded weights (seed 1), the score and box heads scaled by ``scaled``."""
    graph = load_graph(path)
    blobs = synth_blobs(graph, seed=1)
    for node in graph.nodes:
        for key, factor in scaled.items():
            if node.id in blobs and (node.name == key or key[0] == "*" and node.name.endswith(key[1:])):
                blobs[node.id] = [b * np.float32(factor) for b in blobs[node.id]]
    write_caffemodel(
        out, (LayerRecord(n.name, n.type, [], [], blobs.get(n.id, [])) for n in graph.nodes if not n.is_source),
        net_name=graph.name,
    )
    return graph


def _converted(tmp_path, rel, scaled=SCALED):
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not in ../shared")
    weights = tmp_path / "w.caffemodel"
    _weights(path, weights, scaled)
    c = convert(path, weights)
    return path, weights, c, verify_conversion(c)


@pytest.mark.parametrize("name", SSD)
def test_ssd_matches_the_reference_at_the_heads_and_detections(tmp_path, name):
    rel, conf = SSD[name]
    path, weights, c, v = _converted(tmp_path, rel, dict(SCALED, **{"*_mbox_conf": conf}))
    assert v.passed, v.explanation
    heads = [r for r in v.rows if r.layer.endswith(("_mbox_loc", "_mbox_conf"))]
    assert heads and all(r.status == "pass" for r in heads)
    (det,) = [r for r in v.rows if r.type == "DetectionOutput"]
    assert det.status == "pass" and det.engine in ("caffe-ssd", "opencv"), (det.status, det.engine, det.note)
    # The boxes above 0.05, as sets: the model's DetectionOutput and the engine's on the same
    # heads (the model's, which the check found equal to the reference's).
    node = c.graph.node(det.layer)
    names = [u.name for u in node.inputs]
    x = random_inputs(c.graph.inputs, 0)
    given = dict(zip(names, run_model(convert(path, weights, outputs=names).module(), c.graph.inputs, x)))
    ours = run_model(c.module(), c.graph.inputs, x)[0].reshape(-1, 7)
    theirs = _engine_detections(tmp_path, node, given, det.engine, c.graph).reshape(-1, 7)
    ours, theirs = (node.op.compare_form(0, d[d[:, 2] > 0.05]) for d in (ours, theirs))
    assert len(ours) >= 5, "the reference finds boxes"
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def _engine_detections(tmp_path, node, given, engine, graph):
    """The engine's DetectionOutput alone, the layer as the check gives it, on ``given``."""
    from caffe2torch.verify.engines import CaffeEngine, OpenCVEngine

    eng = CaffeEngine("ssd") if engine == "caffe-ssd" else OpenCVEngine()
    ref = eng.net(graph, [node], {})
    net = tmp_path / "detection.prototxt"
    net.write_text(ref.text)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    feed = {ref.blob[id(u)]: given[u.name] for u in ref.inputs}
    if engine == "caffe-ssd":
        from caffe2torch.verify.caffe_ref import run_caffe

        return run_caffe(net, empty, feed, prefix=eng.build.prefix)[ref.blob[id(node.outputs[0])]]
    from caffe2torch.verify.opencv import run_opencv

    return np.asarray(run_opencv(net, empty, feed)[node.name][0])


@pytest.mark.parametrize("name", TWO_STAGE)
def test_two_stage_detector_matches_opencv_with_its_proposals(tmp_path, name):
    rel, rpn = TWO_STAGE[name]
    _, _, c, v = _converted(tmp_path, rel, dict(SCALED, **rpn))
    assert v.passed, v.explanation
    (proposal,) = [r for r in v.rows if r.layer == "proposal"]
    # OpenCV checked the proposals themselves (not a reference-error, not skipped).
    assert proposal.status == "pass" and proposal.engine == "opencv", (proposal.status, proposal.note)
    assert proposal.shape[0] > 50
    final = {r.blob: r for r in v.rows if r.blob in ("cls_prob", "bbox_pred")}  # the last value of each
    assert set(final) == {"cls_prob", "bbox_pred"}
    assert all(r.status == "pass" for r in final.values()), [(r.layer, r.status) for r in final.values()]


def test_ssd_exports_up_to_the_heads_and_priors(tmp_path):
    # torch.export takes the model up to the heads and the priors (PriorBox computes from the
    # sizes); DetectionOutput's NMS is a loop over the data, and is left out.
    import torch

    rel, conf = SSD["mobilenet_ssd"]
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not in ../shared")
    weights = tmp_path / "w.caffemodel"
    _weights(path, weights, dict(SCALED, **{"*_mbox_conf": conf}))
    m = convert(path, weights, outputs=["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]).module()
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = m(x)
        got = torch.export.export(m, (x,)).module()(x)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
