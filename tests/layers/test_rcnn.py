"""Two-stage detectors' layers (layers/rcnn.py): ROIPooling, PSROIPooling, OpenCV's Proposal
and py-faster-rcnn's Python ProposalLayer, against numpy copies of caffe-fast-rcnn's and
caffe-rfcn's loops written here and against OpenCV (which runs all four natively)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, check_opencv, opencv_outputs, run  # noqa: E402


def c_round(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def rois_for(n_images=2, count=7, size=(40, 56), seed=0):
    """ROIs in image pixels, some with halves (rounding), some past the border."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-8, size[1] - 4, count).round(1)
    y1 = rng.uniform(-8, size[0] - 4, count).round(1)
    w, h = rng.uniform(2, 30, count).round(1), rng.uniform(2, 30, count).round(1)
    rois = np.stack([rng.integers(0, n_images, count), x1, y1, x1 + w, y1 + h], 1)
    rois[0, 1:] = [4.5, 2.5, 17.5, 11.5]  # halves round away from zero
    return rois.astype(np.float32)


def caffe_roi_pool(x, rois, ph, pw, scale):
    """ROIPoolingLayer::Forward_cpu of caffe-fast-rcnn, loop for loop (float32 bin sizes)."""
    n, c, height, width = x.shape
    out = np.zeros((len(rois), c, ph, pw))
    for r, roi in enumerate(rois):
        b = int(roi[0])
        sw, sh, ew, eh = (c_round(float(np.float32(v) * np.float32(scale))) for v in roi[1:])
        rh, rw = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
        bh, bw = np.float32(rh) / np.float32(ph), np.float32(rw) / np.float32(pw)
        for i in range(ph):
            for j in range(pw):
                hs = min(max(int(np.floor(np.float32(i) * bh)) + sh, 0), height)
                he = min(max(int(np.ceil(np.float32(i + 1) * bh)) + sh, 0), height)
                ws = min(max(int(np.floor(np.float32(j) * bw)) + sw, 0), width)
                we = min(max(int(np.ceil(np.float32(j + 1) * bw)) + sw, 0), width)
                if he > hs and we > ws:
                    out[r, :, i, j] = x[b, :, hs:he, ws:we].max((1, 2))
    return out


ROI_NET = 'layer { name: "out" type: "ROIPooling" bottom: "data" bottom: "rois" top: "out" roi_pooling_param { pooled_h: 3 pooled_w: 4 spatial_scale: 0.5 } }'


@pytest.mark.formula("ROIPooling")
@pytest.mark.opencv("ROIPooling")
def test_roi_pooling(tmp_path):
    rois = rois_for()
    inputs = {"data": (2, 3, 20, 28), "rois": rois.shape}
    formula = lambda i, b: [caffe_roi_pool(i["data"], i["rois"], 3, 4, 0.5)]  # noqa: E731
    check_numpy(tmp_path, inputs, ROI_NET, formula, data={"rois": rois})
    check_opencv(tmp_path / "cv", inputs, ROI_NET, data={"rois": rois})


def caffe_psroi_pool(x, rois, dim, group, scale):
    """PSROIPoolingForward of caffe-rfcn (its CUDA kernel; the CPU one is not implemented)."""
    out = np.zeros((len(rois), dim, group, group))
    f = np.float32
    height, width = x.shape[2:]
    for r, roi in enumerate(rois):
        b = int(roi[0])
        sw, sh = f(c_round(roi[1])) * f(scale), f(c_round(roi[2])) * f(scale)
        ew, eh = f(c_round(roi[3]) + 1.0) * f(scale), f(c_round(roi[4]) + 1.0) * f(scale)
        bw, bh = f(max(ew - sw, f(0.1))) / f(group), f(max(eh - sh, f(0.1))) / f(group)
        for d in range(dim):
            for i in range(group):
                for j in range(group):
                    hs = min(max(int(np.floor(f(i) * bh + sh)), 0), height)
                    he = min(max(int(np.ceil(f(i + 1) * bh + sh)), 0), height)
                    ws = min(max(int(np.floor(f(j) * bw + sw)), 0), width)
                    we = min(max(int(np.ceil(f(j + 1) * bw + sw)), 0), width)
                    if he > hs and we > ws:
                        out[r, d, i, j] = x[b, (d * group + i) * group + j, hs:he, ws:we].mean()
    return out


PSROI_NET = 'layer { name: "out" type: "PSROIPooling" bottom: "data" bottom: "rois" top: "out" psroi_pooling_param { spatial_scale: 0.5 output_dim: 2 group_size: 3 } }'


@pytest.mark.formula("PSROIPooling")
@pytest.mark.opencv("PSROIPooling")
def test_psroi_pooling(tmp_path):
    rois = rois_for()
    inputs = {"data": (2, 18, 20, 28), "rois": rois.shape}
    formula = lambda i, b: [caffe_psroi_pool(i["data"], i["rois"], 2, 3, 0.5)]  # noqa: E731
    check_numpy(tmp_path, inputs, PSROI_NET, formula, data={"rois": rois})
    check_opencv(tmp_path / "cv", inputs, PSROI_NET, data={"rois": rois})


# ------------------------------------------------------------------------------ proposals
def rpn_inputs(h=12, w=16, stride=16, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (1, 2, 9 * h, w))
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {
        "scores": prob.reshape(1, 18, h, w).astype(np.float32),
        "deltas": rng.normal(0, spread, (1, 36, h, w)).astype(np.float32),
        "im_info": np.array([[h * stride, w * stride, 1.0]], np.float32),
    }


def _shapes(x):
    return {k: v.shape for k, v in x.items()}


PROPOSAL = ('layer { name: "out" type: "Proposal" bottom: "scores" bottom: "deltas" bottom: "im_info" '
            'top: "out" proposal_param { ratio: 0.5 ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 post_nms_topn: 50 } }')
PYTHON = ('layer { name: "out" type: "Python" bottom: "scores" bottom: "deltas" bottom: "im_info" top: "out" '
          'python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "\'feat_stride\': 16" } }')


@pytest.mark.opencv("Proposal")
def test_opencv_proposal(tmp_path):
    x = rpn_inputs()
    r = check_opencv(tmp_path, _shapes(x), PROPOSAL, data=x)
    assert np.count_nonzero(r.ours[0].any(1)) == 50


def py_faster_rcnn_anchors():
    # generate_anchors() of py-faster-rcnn (base 16, ratios 0.5 1 2, scales 8 16 32).
    return np.array([
        [-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
        [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
        [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359],
    ], float)


def test_python_proposal_layer_anchors_are_py_faster_rcnns(tmp_path):
    from caffe2torch.layers.rcnn import anchors

    np.testing.assert_array_equal(anchors(16, (0.5, 1, 2), (8, 16, 32)), py_faster_rcnn_anchors())


def test_python_proposal_layer_matches_opencv(tmp_path):
    # Small deltas: no box falls under py-faster-rcnn's 16 pixels, which OpenCV does not drop.
    x = rpn_inputs(spread=0.1)
    r = run(tmp_path, _shapes(x), PYTHON, data=x)
    ref = opencv_outputs(run(tmp_path / "cv", _shapes(x), PYTHON.replace("Python", "Proposal").replace(
        'python_param { module: "rpn.proposal_layer" layer: "ProposalLayer" param_str: "\'feat_stride\': 16" }',
        "proposal_param { ratio: 0.5 ratio: 1 ratio: 2 scale: 8 scale: 16 scale: 32 }"), data=x))[0]
    ours, ref = r.ours[0], ref.reshape(300, 5)
    assert 100 < len(ours) < 300  # what NMS leaves; OpenCV pads its 300 rows with zeros
    np.testing.assert_allclose(ours, ref[: len(ours)], atol=1e-3)
    assert not ref[len(ours):].any()


def test_python_proposal_layer_drops_small_boxes(tmp_path):
    # Large deltas: boxes under 16 pixels x im_info's scale go before NMS (py-faster-rcnn's
    # _filter_boxes); none of the rois left is smaller.
    x = rpn_inputs(spread=1.5)
    x["im_info"][0, 2] = 2.0
    r = run(tmp_path, _shapes(x), PYTHON, data=x)
    rois = r.ours[0]
    assert 0 < len(rois) < 300
    assert ((rois[:, 3] - rois[:, 1] + 1 >= 32) & (rois[:, 4] - rois[:, 2] + 1 >= 32)).all()
    op = r.conversion.graph.layers[-1].op
    want = op.exact([x["scores"].astype(float), x["deltas"].astype(float), x["im_info"].astype(float)], [])
    np.testing.assert_allclose(rois, want[0], atol=1e-3)


@pytest.mark.parametrize(
    "param_str,message",
    [("'feat_stride': 16, 'num_classes': 3", "'num_classes'"), ("import os", "not a dict of literals")],
)
def test_python_proposal_layer_param_str(tmp_path, param_str, message):
    from caffe2torch.errors import CaffeError

    text = PYTHON.replace("'feat_stride': 16", param_str)
    with pytest.raises(CaffeError, match=message):
        run(tmp_path, _shapes(rpn_inputs()), text)


def test_unknown_python_layer_is_refused_with_its_name(tmp_path):
    from caffe2torch.errors import CaffeError

    text = PYTHON.replace('module: "rpn.proposal_layer"', 'module: "my.layers"')
    with pytest.raises(CaffeError, match=r"my\.layers\.ProposalLayer"):
        run(tmp_path, _shapes(rpn_inputs()), text)
