"""Inferred shapes agree with OpenCV's dnn module (an independent Caffe implementation) on
corpus nets, run with seeded random weights written by synth-weights."""
from __future__ import annotations

import numpy as np
import pytest

from caffe2torch.api import load_graph
from caffe2torch.caffe.caffemodel import read_caffemodel
from caffe2torch.layers import DYNAMIC
from caffe2torch.synth import write_synth_weights

cv2 = pytest.importorskip("cv2")
from caffe2torch.verify.opencv import run_opencv  # noqa: E402

NETS = [
    # (corpus file, input shapes); together they cover every layer family OpenCV runs.
    ("bvlc_alexnet/deploy_V1.prototxt", None),
    ("bvlc_googlenet/deploy.prototxt", None),
    ("bvlc_reference_caffenet/imagenet_deploy_V0.prototxt", {"data": (1, 3, 227, 227)}),
    ("cifar10_full_bvlc/cifar10_full_V0.prototxt", None),
    ("lightcnn_A/LightenedCNN_A_deploy.prototxt", {"data": (2, 1, 128, 128)}),
    ("vgg16_ilsvrc/VGG_ILSVRC_16_layers_deploy_V1.prototxt", None),
    ("resnet50/ResNet-50-deploy.prototxt", None),
    ("densenet121/DenseNet_121.prototxt", None),
    ("squeezenet_v1.1/deploy.prototxt", None),
    ("mobilenet_v2_shicai/mobilenet_v2_deploy.prototxt", None),
    ("shufflenet_v1_g3/shufflenet_1x_g3_deploy.prototxt", None),
    ("senet_se_resnet50/SE-ResNet-50.prototxt", None),
    ("soeaver_inception-v3/deploy_inception-v3.prototxt", None),
    ("soeaver_xception-dw/deploy_xception-dw.prototxt", None),
    ("fcn8s_voc/deploy.prototxt", {"data": (1, 3, 128, 160)}),
    ("ocv_fcn8s_heavy_pascal/fcn8s-heavy-pascal.prototxt", None),
    ("mobilenet_ssd_voc/MobileNetSSD_deploy.prototxt", None),
    ("opencv_face_detector_res10_ssd/deploy.prototxt", {"data": (1, 3, 300, 300)}),
    ("ocv_faster_rcnn_zf_proposal/faster_rcnn_zf.prototxt", None),
    ("dnn_objdetect_squeezedet/SqueezeDet_deploy.prototxt", None),
    ("openpose_hand/pose_deploy.prototxt", {"image": (1, 3, 96, 96)}),
    ("x2paddle_segflow/deploy.prototxt", None),
    ("ocv_layer_interp/layer_interp.prototxt", None),
    ("ocv_prior_box/prior_box.prototxt", None),
    ("ocv_nonstandard_resample_accum/accum.prototxt", None),
    ("ocv_layer_prelu_fc/layer_prelu_fc.prototxt", None),
    ("ocv_shared_weights/shared_weights.prototxt", None),
]


def _same(ours, theirs) -> bool:
    return len(ours) == len(theirs) and all(a == b or a == DYNAMIC for a, b in zip(ours, theirs))


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("rel,shapes", NETS, ids=[n.split("/")[0] for n, _ in NETS])
def test_shapes_agree_with_opencv(corpus, tmp_path, rel, shapes):
    proto = corpus / rel
    graph = load_graph(proto, input_shapes=shapes)
    weights = tmp_path / "w.caffemodel"
    write_synth_weights(graph, weights, seed=1)
    rng = np.random.default_rng(0)
    inputs = {v.name: rng.random(v.shape, dtype=np.float32) for v in graph.inputs}
    ref = run_opencv(proto, weights, inputs)
    compared = 0
    for node in graph.layers:
        if node.name not in ref or node.id != node.name:
            continue
        ours = [v.shape for v in node.outputs]
        theirs = [tuple(o.shape) for o in ref[node.name]][: len(ours)]
        assert len(theirs) == len(ours) and all(map(_same, ours, theirs)), (node.id, ours, theirs)
        compared += 1
    # OpenCV keeps nearly every layer with fusion off (it drops or renames a few).
    assert compared >= max(1, int(0.9 * len({n.name for n in graph.layers}))), compared
    # Everything synth-weights wrote reads back and fits the net.
    stored = read_caffemodel(weights).layers
    assert {k for k, v in stored.items() if v.blobs} == {n.name for n in graph.nodes if n.weight_shapes}
