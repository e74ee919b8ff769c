"""BatchNorm, the forks' BN, LRN, MVN and SSD's Normalize (layers/normalization.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one, run  # noqa: E402


def caffe_bn(x, blobs, eps=1e-5):
    mean, var, f = blobs
    s = 0 if f[0] == 0 else 1 / f[0]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - (mean * s).reshape(shape)) / np.sqrt((var * s).reshape(shape) + eps)


BN = {
    "default": ("", None),
    "eps": ("batch_norm_param { eps: 0.001 }", None),
    "factor0": ("", "factor0"),
}


@pytest.mark.formula("BatchNorm")
@pytest.mark.opencv("BatchNorm")
@pytest.mark.parametrize("param,special", BN.values(), ids=BN.keys())
@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (3, 4)], ids=["4d", "2d"])
def test_batch_norm(tmp_path, param, special, shape):
    c = shape[1]
    rng = np.random.default_rng(7)
    blobs = None
    if special == "factor0":  # Caffe: a zero factor means mean = var = 0, y = x / sqrt(eps)
        blobs = {"out": [rng.standard_normal(c), rng.uniform(1, 2, c), np.zeros(1)]}
    layers = one("BatchNorm", param)
    eps = 0.001 if "eps" in param else 1e-5
    check_numpy(tmp_path, {"data": shape}, layers, lambda i, b: [caffe_bn(i["data"], b, eps)], blobs=blobs)
    check_opencv(tmp_path / "b", {"data": shape}, layers, blobs=blobs)


@pytest.mark.formula("BatchNorm")
def test_batch_norm_batch_statistics(tmp_path):
    layers = one("BatchNorm", "batch_norm_param { use_global_stats: false }")

    def f(i, b):
        x = i["data"].astype(np.float64)
        m = x.mean((0, 2, 3), keepdims=True)
        v = x.var((0, 2, 3), keepdims=True)
        return [(x - m) / np.sqrt(v + 1e-5)]

    r = check_numpy(tmp_path, {"data": (4, 3, 5, 5)}, layers, f)
    assert "track_running_stats=False" in r.conversion.code


@pytest.mark.opencv("Scale")  # the Scale after the BatchNorm, folded into it
@pytest.mark.parametrize("bias", [True, False])
def test_batch_norm_scale_fold_into_one_module(tmp_path, bias):
    layers = (
        one("BatchNorm", "", tops=("b",), name="bn")
        + one("Scale", f"scale_param {{ bias_term: {'true' if bias else 'false'} }}", bottoms=("b",), tops=("b",), name="scale")
    )
    r = check_opencv(tmp_path, X4, layers)
    code = r.conversion.code
    assert "nn.BatchNorm2d(6)" in code and "Scale" not in code.split("class ")[-1]
    assert r.conversion.generated.layer_map["scale"] == "bn"


def caffe_lrn_across(x, size, alpha, beta, k):
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
    window = sum(sq[:, i : i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def caffe_lrn_within(x, size, alpha, beta):
    p = (size - 1) // 2
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), (0, 0), (p, p), (p, p)))
    h, w = x.shape[2:]
    window = sum(sq[:, :, i : i + h, j : j + w] for i in range(size) for j in range(size))
    return x / (1 + alpha * window / size**2) ** beta


@pytest.mark.formula("LRN")
@pytest.mark.opencv("LRN")
@pytest.mark.parametrize(
    "size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0)], ids=["alexnet", "k2"]
)
def test_lrn_across_channels(tmp_path, size, alpha, beta, k):
    layers = one("LRN", f"lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} }}")
    if k == 1:  # OpenCV ignores k
        check_opencv(tmp_path, X4, layers)
    check_numpy(tmp_path / "b", X4, layers, lambda i, b: [caffe_lrn_across(i["data"], size, alpha, beta, k)])


@pytest.mark.formula("LRN")
@pytest.mark.opencv("LRN")
@pytest.mark.parametrize("size", [3, 5])
def test_lrn_within_channel(tmp_path, size):
    layers = one("LRN", f"lrn_param {{ local_size: {size} alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }}")
    check_opencv(tmp_path, X4, layers)
    check_numpy(tmp_path / "b", X4, layers, lambda i, b: [caffe_lrn_within(i["data"], size, 0.5, 0.75)])


def caffe_mvn(x, across, variance, eps):
    dims = (1, 2, 3) if across else (2, 3)
    x = x.astype(np.float64) - x.mean(dims, keepdims=True)
    if variance:
        x = x / (np.sqrt((x**2).mean(dims, keepdims=True)) + eps)
    return x


@pytest.mark.opencv("MVN")
@pytest.mark.formula("MVN")
@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("variance", [False, True])
def test_mvn(tmp_path, across, variance):
    param = f"mvn_param {{ across_channels: {str(across).lower()} normalize_variance: {str(variance).lower()} }}"
    layers = one("MVN", param)
    check_numpy(tmp_path, X4, layers, lambda i, b: [caffe_mvn(i["data"], across, variance, 1e-9)])
    if not variance:  # with it OpenCV adds eps to the variance: MVN.opencv_gap (it may differ
        check_opencv(tmp_path / "b", X4, layers)  # where a channel is constant)


@pytest.mark.formula("MVN")
def test_mvn_eps_on_the_standard_deviation(tmp_path):
    # Caffe adds eps to the standard deviation (OpenCV adds it to the variance).
    param = "mvn_param { eps: 0.1 }"
    check_numpy(tmp_path, X4, one("MVN", param), lambda i, b: [caffe_mvn(i["data"], False, True, 0.1)])


# ------------------------------------------------------------------------ fork layers (extra)
@pytest.mark.formula("BN")
def test_pspnet_bn(tmp_path):
    layers = one("BN", "bn_param { slope_filler { type: 'constant' value: 1 } eps: 0.0001 }")

    def f(i, b):
        slope, bias, mean, var = (a.reshape(1, -1, 1, 1) for a in b)
        return [slope * (i["data"] - mean) / np.sqrt(var + 1e-4) + bias]

    check_numpy(tmp_path, X4, layers, f)


@pytest.mark.formula("BN")
def test_segnet_bn_inference(tmp_path):
    layers = one("BN", "bn_param { bn_mode: INFERENCE scale_filler { type: 'constant' value: 1 } }")
    check_numpy(
        tmp_path, X4, layers, lambda i, b: [i["data"] * b[0].reshape(1, -1, 1, 1) + b[1].reshape(1, -1, 1, 1)]
    )


def test_segnet_bn_learn_mode_is_refused(tmp_path):
    from caffe2torch.errors import UnsupportedLayerError

    with pytest.raises(UnsupportedLayerError, match="LEARN mode normalises with each batch's statistics"):
        run(tmp_path, X4, one("BN", "bn_param { scale_filler { type: 'constant' value: 1 } }"))


def caffe_normalize(x, scale, across, shared, eps=1e-10):
    """SSD's NormalizeLayer::Forward_cpu: x / sqrt(sum of squares + eps) (over channels at each
    position, or over the whole sample across_spatial), times the scale (shared or per channel)."""
    x = x.astype(np.float64)
    dims = (1, 2, 3) if across else (1,)
    scale = scale.reshape(()) if shared else scale.reshape(1, -1, 1, 1)
    return x / np.sqrt((x**2).sum(dims, keepdims=True) + eps) * scale


@pytest.mark.formula("Normalize")
@pytest.mark.opencv("Normalize")
@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_normalize(tmp_path, across, shared):
    param = f"norm_param {{ across_spatial: {str(across).lower()} channel_shared: {str(shared).lower()} }}"
    check_numpy(tmp_path, X4, one("Normalize", param), lambda i, b: [caffe_normalize(i["data"], b[0], across, shared)])
    if not (across and not shared):  # OpenCV fails on a per-channel scale across spatial
        check_opencv(tmp_path / "b", X4, one("Normalize", param))


@pytest.mark.formula("NormalizeBBox")
@pytest.mark.parametrize(
    "param,across,shared",
    [
        ("", True, True),  # normalize_bbox_param's defaults: across spatial, one shared scale
        ("normalize_bbox_param { across_spatial: false channel_shared: false }", False, False),
        ("normalize_bbox_param { across_spatial: false eps: 0.001 }", False, True),
    ],
    ids=["defaults", "per_position_per_channel", "eps"],
)
def test_normalize_bbox(tmp_path, param, across, shared):
    # The older SSD name, with normalize_bbox_param: the same formula as Normalize.
    eps = 0.001 if "eps" in param else 1e-10
    check_numpy(
        tmp_path, X4, one("NormalizeBBox", param),
        lambda i, b: [caffe_normalize(i["data"], b[0], across, shared, eps)],
    )


# -------------------------------------------------- the forks' BatchNorm with scale and bias
def fork_bn(x, blobs, eps, affine):
    """BVLC's statistics, then blob 3 as scale and blob 4 as bias (NVCaffe's scale_bias,
    Intel Caffe's use_weight_bias/bias_term): y = x_norm * scale + bias."""
    y = caffe_bn(x, blobs[:3], eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if affine[0]:
        y = y * blobs[3].reshape(shape)
    if affine[1]:
        y = y + blobs[4].reshape(shape)
    return y


FORK_BN = {
    "nvcaffe_scale_bias": ("batch_norm_param { scale_bias: true eps: 1e-6 }", (True, True), 1e-5),
    "nvcaffe_filler": ('batch_norm_param { scale_filler { type: "constant" value: 1 } }', (True, True), 1e-5),
    "intel_default": ("batch_norm_param { bias_term: true }", (True, True), 1e-5),
    "intel_no_bias": ("batch_norm_param { bias_term: false }", (True, False), 1e-5),
    "intel_stats_only": ("batch_norm_param { use_weight_bias: false }", (False, False), 1e-5),
}


@pytest.mark.formula("BatchNorm")
@pytest.mark.opencv("BatchNorm")
@pytest.mark.parametrize("name", FORK_BN)
def test_forks_batchnorm_with_scale_and_bias(tmp_path, name):
    param, affine, eps = FORK_BN[name]
    r = check_numpy(
        tmp_path, X4, one("BatchNorm", param), lambda i, b: [fork_bn(i["data"], b, eps, affine)]
    )
    assert len(r.blobs["out"]) == 3 + sum(affine)
    node = r.conversion.graph.layers[-1]
    assert bool(node.op.opencv_gap(node)) == affine[0]  # OpenCV takes 3 blobs only
    if not affine[0]:
        check_opencv(tmp_path / "cv", X4, one("BatchNorm", param))
