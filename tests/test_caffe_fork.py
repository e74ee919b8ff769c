"""The SSD fork of Caffe (weiliu89/caffe's ssd branch, as PyPI's brocolli-caffe 9.0.2, built by
``make caffe-ref-ssd`` into .caffe/ssd) as the reference for the fork's layers.

Converted models against the fork itself: Normalize, Permute, Pooling's ``ceil_mode`` (the
fork's field 13), ReLU6, an SSD head's loc and conf branches, PriorBox's values for every
setting and DetectionOutput's detections (as sets); the project's shapes and refusals against
the fork's Reshape and LayerSetUp; and the check never lets the fork touch files
(save_output_param). Every test skips with one line when the fork is not built."""
from __future__ import annotations

import numpy as np
import pytest
from layer_harness import ATOL, RTOL, net_text, one, run

from caffe2torch.api import load_graph
from caffe2torch.emit import convert
from caffe2torch.errors import CaffeError
from caffe2torch.synth import write_synth_weights
from caffe2torch.verify.caffe_ref import ReferenceError, caffe_prefix, run_caffe
from caffe2torch.verify.parity import compare, random_inputs, run_model


@pytest.fixture(autouse=True)
def fork_caffe(monkeypatch):
    # The fork's prefix ($CAFFE2TORCH_CAFFE_SSD, else .caffe/ssd), as the prefix run_caffe uses.
    try:
        prefix = caffe_prefix("ssd")
    except ReferenceError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("CAFFE2TORCH_CAFFE", str(prefix))
    return prefix


def _close(y, ref, what="out"):
    c = compare(np.asarray(y), np.asarray(ref).reshape(np.shape(y)), what, "", atol=ATOL, rtol=RTOL)
    assert c.ok, f"{what}: max|y - caffe| = {c.max_abs:.3g} > bound {c.bound:.3g}"
    return c


def _against_fork(tmp_path, inputs, layers, **kw):
    r = run(tmp_path, inputs, layers, **kw)
    blobs = run_caffe(r.path, r.weights, r.inputs)
    for y, v in zip(r.ours, r.conversion.graph.layers[-1].outputs):
        _close(y, blobs[v.name], v.name)
    return r, blobs


def _write(tmp_path, inputs, layers):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "net.prototxt"
    path.write_text(net_text(inputs, layers))
    return path


def _fork_shapes(path, inputs):
    """The shape of every blob after the fork's forward pass (no weights, random inputs)."""
    rng = np.random.default_rng(5)
    feed = {k: rng.standard_normal(s).astype(np.float32) for k, s in inputs.items()}
    weights = path.with_suffix(".caffemodel")
    weights.write_bytes(b"")
    return {k: v.shape for k, v in run_caffe(path, weights, feed).items()}


# ------------------------------------------------------------------------- converted layers
@pytest.mark.parametrize("across_spatial", [False, True])
@pytest.mark.parametrize("channel_shared", [False, True])
def test_normalize_matches_the_fork(tmp_path, across_spatial, channel_shared):
    # A shared scale is a 0-axis blob in the fork (and in the caffemodel the harness writes).
    param = (f"norm_param {{ across_spatial: {str(across_spatial).lower()} "
             f"channel_shared: {str(channel_shared).lower()} }}")
    _against_fork(tmp_path, {"data": (2, 6, 5, 4)}, one("Normalize", param))


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (0, 3, 1, 2), (1, 0, 3, 2), (0, 2)])
def test_permute_matches_the_fork(tmp_path, order):
    # (0, 2): the axes not named follow in their order (the fork's PermuteLayer::LayerSetUp).
    param = "permute_param { " + " ".join(f"order: {o}" for o in order) + " }"
    _against_fork(tmp_path, {"data": (2, 3, 4, 5)}, one("Permute", param))


@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_ceil_mode_matches_the_fork(tmp_path, ceil_mode, pool):
    # The fork's field 13 is ceil_mode (BVLC's is round_mode): 8x8, kernel 3, stride 2, pad 1
    # is 5x5 rounded up and 4x4 rounded down; the last window of ceil reaches past the padding.
    param = (f"pooling_param {{ pool: {pool} kernel_size: 3 stride: 2 pad: 1 "
             f"ceil_mode: {str(ceil_mode).lower()} }}")
    r, _ = _against_fork(tmp_path, {"data": (2, 3, 8, 8)}, one("Pooling", param))
    assert r.ours[0].shape[2:] == ((5, 5) if ceil_mode else (4, 4))


def test_relu6_matches_the_fork(tmp_path):
    # Values well beyond 6 on both sides: the fork's ReLU6 clips at its threshold (6).
    x = np.random.default_rng(3).uniform(-12, 12, (2, 3, 4, 5))
    _against_fork(tmp_path, {"data": x.shape}, one("ReLU6"), data={"data": x})


# ----------------------------------------------------------------------------- an SSD head
SSD_HEAD = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv1_norm" type: "Normalize" bottom: "conv1" top: "conv1_norm"
  norm_param { across_spatial: false channel_shared: false } }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
""" + "".join(
    f"""
layer {{ name: "{f}_loc" type: "Convolution" bottom: "{f}" top: "{f}_loc"
  convolution_param {{ num_output: {4 * k} kernel_size: 3 pad: 1 }} }}
layer {{ name: "{f}_loc_perm" type: "Permute" bottom: "{f}_loc" top: "{f}_loc_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{f}_loc_flat" type: "Flatten" bottom: "{f}_loc_perm" top: "{f}_loc_flat"
  flatten_param {{ axis: 1 }} }}
layer {{ name: "{f}_conf" type: "Convolution" bottom: "{f}" top: "{f}_conf"
  convolution_param {{ num_output: {3 * k} kernel_size: 3 pad: 1 }} }}
layer {{ name: "{f}_conf_perm" type: "Permute" bottom: "{f}_conf" top: "{f}_conf_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "{f}_conf_flat" type: "Flatten" bottom: "{f}_conf_perm" top: "{f}_conf_flat"
  flatten_param {{ axis: 1 }} }}
layer {{ name: "{f}_prior" type: "PriorBox" bottom: "{f}" bottom: "data" top: "{f}_prior"
  prior_box_param {{ {prior} }} }}
"""
    for f, k, prior in (
        # 4 priors: 1, 2, 1/2 and sqrt(min * max); clipped, the default step
        ("conv1_norm", 4, "min_size: 8 max_size: 16 aspect_ratio: 2 flip: true clip: true "
                          "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2"),
        # 3 priors: 1, 2, 3 (no flip, no max_size); step and offset given, one variance
        ("conv2", 3, "min_size: 16 aspect_ratio: 2 aspect_ratio: 3 flip: false clip: false "
                     "step: 8 offset: 0.25 variance: 0.1"),
    )
) + """
layer { name: "mbox_loc" type: "Concat" bottom: "conv1_norm_loc_flat" bottom: "conv2_loc_flat"
  top: "mbox_loc" concat_param { axis: 1 } }
layer { name: "mbox_conf" type: "Concat" bottom: "conv1_norm_conf_flat" bottom: "conv2_conf_flat"
  top: "mbox_conf" concat_param { axis: 1 } }
layer { name: "mbox_priorbox" type: "Concat" bottom: "conv1_norm_prior" bottom: "conv2_prior"
  top: "mbox_priorbox" concat_param { axis: 2 } }
layer { name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "mbox_conf_reshape"
  reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }
layer { name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape"
  top: "mbox_conf_softmax" softmax_param { axis: 2 } }
layer { name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax"
  top: "mbox_conf_flatten" flatten_param { axis: 1 } }
layer { name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc"
  bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"
  detection_output_param { num_classes: 3 share_location: true background_label_id: 0
    nms_param { nms_threshold: 0.45 top_k: 50 } code_type: CENTER_SIZE keep_top_k: 20
    confidence_threshold: 0.01 } }
"""


def test_ssd_head_matches_the_fork(tmp_path):
    """Two feature maps (16x16 after a Normalize, 8x8), their loc and conf branches converted
    and compared; every blob has the fork's shape."""
    inputs = {"data": (1, 3, 32, 32)}
    path = _write(tmp_path, inputs, SSD_HEAD)
    graph = load_graph(path)
    weights = tmp_path / "net.caffemodel"
    write_synth_weights(graph, weights, seed=2)
    conv = convert(path, weights, outputs=["mbox_loc", "mbox_conf_flatten"])
    feed = random_inputs(conv.graph.inputs, 4)
    ours = run_model(conv.module(), conv.graph.inputs, feed)
    blobs = run_caffe(path, weights, feed)
    for y, v in zip(ours, conv.outputs):
        _close(y, blobs[v.name], v.name)
    # Every blob the project infers has the fork's shape (the detections' count is dynamic).
    for node in graph.layers:
        for v in node.outputs:
            if node.type == "DetectionOutput":
                assert blobs[v.name].shape[:2] == (1, 1) and blobs[v.name].shape[3] == 7
                assert v.shape == (1, 1, -1, 7)
            else:
                assert blobs[v.name].shape == tuple(v.shape), v.name
    assert blobs["mbox_priorbox"].shape == (1, 2, (16 * 16 * 4 + 8 * 8 * 3) * 4)


def test_ssd_head_detections_match_the_fork(tmp_path):
    # The whole head converted, the detections compared as sets (layers/detection.py).
    inputs = {"data": (2, 3, 32, 32)}
    path = _write(tmp_path, inputs, SSD_HEAD)
    graph = load_graph(path)
    weights = tmp_path / "net.caffemodel"
    write_synth_weights(graph, weights, seed=2)
    conv = convert(path, weights)
    feed = random_inputs(conv.graph.inputs, 4)
    (ours,) = run_model(conv.module(), conv.graph.inputs, feed)
    theirs = run_caffe(path, weights, feed)["detection_out"]
    form = graph.layers[-1].op.compare_form
    assert ours.shape[2] > 10
    np.testing.assert_allclose(form(0, ours), form(0, theirs), atol=1e-5)


def test_the_check_never_lets_the_fork_delete_files(tmp_path):
    # The fork's DetectionOutput::LayerSetUp deletes save_output_param's output_directory:
    # the reference net leaves save_output_param out.
    keep = tmp_path / "results"
    keep.mkdir()
    (keep / "mine.txt").write_text("not yours")
    text = SSD_HEAD.replace(
        "confidence_threshold: 0.01 } }",
        f'confidence_threshold: 0.01 save_output_param {{ output_directory: "{keep}" }} }} }}',
    )
    assert text != SSD_HEAD
    path = _write(tmp_path, {"data": (1, 3, 32, 32)}, text)
    weights = tmp_path / "net.caffemodel"
    write_synth_weights(load_graph(path), weights, seed=2)
    from caffe2torch.verify.run import verify_conversion

    v = verify_conversion(convert(path, weights))
    assert v.passed and any(r.type == "DetectionOutput" and r.status == "pass" for r in v.rows)
    assert (keep / "mine.txt").read_text() == "not yours"


# -------------------------------------------------------------- PriorBox and DetectionOutput
PRIOR_INPUTS = {"f": (1, 8, 5, 4), "i": (1, 3, 40, 32)}  # not square: height and width differ


def _prior(param):
    return one("PriorBox", f"prior_box_param {{ {param} }}", bottoms=("f", "i"))


PRIOR_SETTINGS = (
    "min_size: 10",
    "min_size: 10 max_size: 20 aspect_ratio: 2 aspect_ratio: 3 flip: true",
    "min_size: 10 min_size: 15 max_size: 20 max_size: 30 aspect_ratio: 2 flip: false clip: true",
    "min_size: 10 aspect_ratio: 2 aspect_ratio: 2 aspect_ratio: 0.5 flip: true",  # duplicates
    "min_size: 10 step_h: 8 step_w: 6 offset: 0 img_h: 40 img_w: 30",
    "min_size: 10 step: 7.5 img_size: 32 variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2",
)


def test_prior_box_shapes_match_the_fork(tmp_path):
    # One net, one PriorBox per setting (one run of the fork for all).
    layers = "".join(
        one("PriorBox", f"prior_box_param {{ {p} }}", bottoms=("f", "i"), tops=(f"p{k}",), name=f"p{k}")
        for k, p in enumerate(PRIOR_SETTINGS)
    )
    path = _write(tmp_path, PRIOR_INPUTS, layers)
    fork = _fork_shapes(path, PRIOR_INPUTS)
    for k, node in enumerate(load_graph(path).layers):
        (v,) = node.outputs
        assert fork[v.name] == tuple(v.shape), PRIOR_SETTINGS[k]


def test_prior_box_values_match_the_fork(tmp_path):
    # Every setting converted and compared with the fork's values (clip given: see
    # PriorBox.caffe_gap for this build's default).
    for k, setting in enumerate(PRIOR_SETTINGS):
        if "clip" not in setting:
            setting += " clip: false"
        _against_fork(tmp_path / str(k), PRIOR_INPUTS, _prior(setting))


def test_prior_box_of_a_3d_feature_map_matches_the_fork(tmp_path):
    # width() and height() of a 3-D blob: H and 1 (the legacy accessors)
    inputs = {"f": (1, 8, 5), "i": (1, 3, 30, 30)}
    path = _write(tmp_path, inputs, _prior("min_size: 10"))
    (v,) = load_graph(path).layers[-1].outputs
    assert _fork_shapes(path, inputs)["out"] == tuple(v.shape) == (1, 2, 5 * 4)


DET_INPUTS = {"l": (1, 8), "c": (1, 6), "p": (1, 2, 8)}  # 2 priors, 3 classes


def _det(param=""):
    return one("DetectionOutput", f"detection_output_param {{ {param} }}", bottoms=("l", "c", "p"))


REFUSED = {
    "prior: no min_size": (PRIOR_INPUTS, _prior("")),
    "prior: max_size not above min_size": (PRIOR_INPUTS, _prior("min_size: 10 max_size: 10")),
    "prior: 2 max_size for 1 min_size": (PRIOR_INPUTS, _prior("min_size: 10 max_size: 20 max_size: 30")),
    "prior: a variance 0": (
        PRIOR_INPUTS, _prior("min_size: 10 variance: 0.1 variance: 0 variance: 0.2 variance: 0.2")
    ),
    "prior: 2 variances": (PRIOR_INPUTS, _prior("min_size: 10 variance: 0.1 variance: 0.2")),
    "prior: img_h alone": (PRIOR_INPUTS, _prior("min_size: 10 img_h: 300")),
    "prior: img_size and img_h/img_w": (
        PRIOR_INPUTS, _prior("min_size: 10 img_size: 300 img_h: 300 img_w: 300")
    ),
    "prior: step 0": (PRIOR_INPUTS, _prior("min_size: 10 step: 0")),
    "det: no num_classes": (DET_INPUTS, _det()),
    "det: eta 0": (DET_INPUTS, _det("num_classes: 3 nms_param { eta: 0 }")),
    "det: negative nms_threshold": (DET_INPUTS, _det("num_classes: 3 nms_param { nms_threshold: -0.1 }")),
    "det: loc priors in axis 2": ({**DET_INPUTS, "l": (1, 2, 4)}, _det("num_classes: 3")),
    "det: conf of 3 priors": ({**DET_INPUTS, "c": (1, 9)}, _det("num_classes: 3")),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_project_refuses_the_fork_refuses(tmp_path, case):
    inputs, layers = REFUSED[case]
    path = _write(tmp_path, inputs, layers)
    with pytest.raises(CaffeError):
        load_graph(path)
    with pytest.raises(ReferenceError, match="real Caffe cannot run the net: Check failed"):
        _fork_shapes(path, inputs)


def test_detection_output_layouts_the_project_accepts_run_in_the_fork(tmp_path):
    # loc and conf as N x C (C holds the priors), priors 1 x 2 x 8: accepted by both.
    path = _write(tmp_path, DET_INPUTS, _det("num_classes: 3 nms_param { nms_threshold: 0.5 }"))
    (v,) = load_graph(path).layers[-1].outputs
    shape = _fork_shapes(path, DET_INPUTS)["out"]
    assert v.shape == (1, 1, -1, 7) and shape[:2] == (1, 1) and shape[3] == 7


# --------------------------------------------------------------------- what the fork is not
def test_the_forks_one_bottom_upsample_matches_the_fork(tmp_path):
    # The fork's Upsample repeats each value scale x scale times (one bottom): converted as
    # such (SegNet's two-bottom Upsample is unpooling: below).
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 4))
    r, _ = _against_fork(tmp_path, {"data": x.shape}, one("Upsample", "upsample_param { scale: 3 }"), data={"data": x})
    np.testing.assert_allclose(r.ours[0], x.repeat(3, axis=2).repeat(3, axis=3), atol=1e-6)


def test_the_forks_upsample_ignores_a_segnet_mask(tmp_path):
    # A SegNet net (values and the MAX pooling's mask) runs in the fork as well: its Upsample
    # reads bottom 0 only and repeats it. The fork is no reference for a two-bottom Upsample
    # (the check would call a correct conversion divergent): Upsample.caffe_gap says so.
    layers = (
        one("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", tops=("p", "m"), name="pool")
        + one("Upsample", "upsample_param { scale: 2 }", bottoms=("p", "m"))
    )
    r = run(tmp_path, {"data": (1, 2, 4, 4)}, layers)
    blobs = run_caffe(r.path, r.weights, r.inputs)
    np.testing.assert_array_equal(blobs["out"], blobs["p"].repeat(2, axis=2).repeat(2, axis=3))
    assert not compare(r.ours[0], blobs["out"], "out", "", atol=ATOL, rtol=RTOL).ok
    node = r.conversion.graph.layers[-1]
    assert "ignores the mask" in node.op.caffe_gap(node, "ssd")

