"""Every layer type the emitter supports, converted and compared with a reference.

The reference is OpenCV's dnn module (an independent Caffe implementation) on seeded random
input and weights, over parameter grids that include the corner cases; where OpenCV lacks a
layer or differs from Caffe, it is a numpy implementation of Caffe's formula written here.
Tolerance: ``max|y - ref| <= 1e-5 + 1e-4 * max|ref|``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, check_opencv, run  # noqa: E402

from caffe2torch.layers.pooling import pooled_size  # noqa: E402

X4 = {"data": (2, 6, 9, 11)}


def one(type_: str, param: str = "", *, bottoms=("data",), tops=("out",), name="out") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {param} }}\n'


# ----------------------------------------------------------------------------- convolution
CONV = {
    "k3p1": "num_output: 8 kernel_size: 3 pad: 1",
    "k3s2": "num_output: 8 kernel_size: 3 stride: 2",
    "hw": "num_output: 4 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 stride_h: 2 stride_w: 1",
    "dilation2": "num_output: 4 kernel_size: 3 dilation: 2 pad: 2",
    "group2": "num_output: 4 kernel_size: 3 group: 2 pad: 1",
    "depthwise": "num_output: 6 kernel_size: 3 group: 6 pad: 1 stride: 2",
    "no_bias": "num_output: 5 kernel_size: 1 bias_term: false",
    "k1": "num_output: 3 kernel_size: 1",
}


@pytest.mark.parametrize("param", CONV.values(), ids=CONV.keys())
def test_convolution(tmp_path, param):
    check_opencv(tmp_path, X4, one("Convolution", f"convolution_param {{ {param} }}"))


@pytest.mark.parametrize("type_", ["ConvolutionDepthwise", "DepthwiseConvolution"])
def test_depthwise_fork_types(tmp_path, type_):
    param = "num_output: 6 kernel_size: 3 pad: 1" + (" group: 6" if type_ == "DepthwiseConvolution" else "")
    r = check_opencv(tmp_path, X4, one(type_, f"convolution_param {{ {param} }}"))
    assert "groups=6" in r.conversion.code


def test_convolution_two_bottoms_share_weights(tmp_path):
    layers = one("Convolution", "convolution_param { num_output: 4 kernel_size: 3 }",
                 bottoms=("a", "b"), tops=("ya", "yb"))
    r = check_opencv(tmp_path, {"a": (1, 3, 8, 8), "b": (1, 3, 8, 8)}, layers)
    assert r.conversion.code.count("nn.Conv2d(") == 1


DECONV = {
    "k4s2p1": "num_output: 4 kernel_size: 4 stride: 2 pad: 1",
    "group2": "num_output: 6 kernel_size: 3 stride: 2 group: 2",
    "dilation2": "num_output: 3 kernel_size: 3 dilation: 2",
    "no_bias_hw": "num_output: 3 kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 bias_term: false",
    "fcn_upsample": "num_output: 6 kernel_size: 4 stride: 2 group: 6 bias_term: false",
}


def caffe_deconv(x, blobs, kernel, stride, pad, dilation, group):
    """Caffe's Deconvolution: each input pixel scatters its kernel into the output (col2im)."""
    w = blobs[0]
    n, c, h, wd = x.shape
    out_c = w.shape[1] * group
    oh = stride[0] * (h - 1) + dilation[0] * (kernel[0] - 1) + 1 - 2 * pad[0]
    ow = stride[1] * (wd - 1) + dilation[1] * (kernel[1] - 1) + 1 - 2 * pad[1]
    full = np.zeros((n, out_c, oh + 2 * pad[0] + stride[0] * kernel[0], ow + 2 * pad[1] + stride[1] * kernel[1]))
    cin, cout = c // group, out_c // group
    for g in range(group):
        xg = x[:, g * cin : (g + 1) * cin].astype(np.float64)
        wg = w[g * cin : (g + 1) * cin].astype(np.float64)  # cin x cout x kh x kw
        for a in range(kernel[0]):
            for b in range(kernel[1]):
                contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, a, b])
                r0, c0 = a * dilation[0], b * dilation[1]
                full[:, g * cout : (g + 1) * cout, r0 : r0 + stride[0] * h : stride[0], c0 : c0 + stride[1] * wd : stride[1]] += contrib
    y = full[:, :, pad[0] : pad[0] + oh, pad[1] : pad[1] + ow]
    if len(blobs) > 1:
        y = y + blobs[1].reshape(1, -1, 1, 1)
    return y


DECONV_GEOMETRY = {
    "k4s2p1": ((4, 4), (2, 2), (1, 1), (1, 1), 1),
    "group2": ((3, 3), (2, 2), (0, 0), (1, 1), 2),
    "dilation2": ((3, 3), (1, 1), (0, 0), (2, 2), 1),
    "no_bias_hw": ((2, 3), (2, 1), (0, 0), (1, 1), 1),
    "fcn_upsample": ((4, 4), (2, 2), (0, 0), (1, 1), 6),
}


@pytest.mark.parametrize("name", DECONV)
def test_deconvolution(tmp_path, name):
    layers = one("Deconvolution", f"convolution_param {{ {DECONV[name]} }}")
    check_numpy(tmp_path, X4, layers, lambda i, b: [caffe_deconv(i["data"], b, *DECONV_GEOMETRY[name])])
    if name != "dilation2":  # OpenCV ignores dilation in Deconvolution
        check_opencv(tmp_path / "b", X4, layers)


# ---------------------------------------------------------------------------- inner product
def _ip(x, blobs, axis, transpose=False):
    w = blobs[0].T if transpose else blobs[0]
    y = x.reshape(*x.shape[:axis], -1) @ w.T
    return y + blobs[1] if len(blobs) > 1 else y


@pytest.mark.parametrize(
    "shape,param",
    [
        ((2, 6, 4, 5), "num_output: 7"),
        ((3, 10), "num_output: 4"),
        ((2, 6, 4, 5), "num_output: 3 bias_term: false"),
        ((2, 6, 4, 5), "num_output: 3 axis: 2"),
        ((2, 3, 4), "num_output: 5 axis: -1"),
    ],
    ids=["4d", "2d", "no_bias", "axis2", "axis-1"],
)
def test_inner_product(tmp_path, shape, param):
    check_opencv(tmp_path, {"data": shape}, one("InnerProduct", f"inner_product_param {{ {param} }}"))


def test_inner_product_transpose(tmp_path):
    # Caffe stores the weights K x N (OpenCV ignores `transpose`).
    layers = one("InnerProduct", "inner_product_param { num_output: 4 transpose: true }")
    check_numpy(tmp_path, {"data": (2, 3, 2, 2)}, layers, lambda i, b: [_ip(i["data"], b, 1, True)])


# ---------------------------------------------------------------------------------- pooling
def caffe_pool(x, kernel, stride, pad, ave, ceil=True, global_=False):
    """Caffe's PoolingLayer::Forward_cpu, written out."""
    n, c, h, w = x.shape
    if global_:
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    oh = pooled_size(h, kernel[0], stride[0], pad[0], ceil)
    ow = pooled_size(w, kernel[1], stride[1], pad[1], ceil)
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride[0] - pad[0], j * stride[1] - pad[1]
            he, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            if ave:
                out[:, :, i, j] = window.sum((2, 3)) / size
            else:
                out[:, :, i, j] = window.max((2, 3)) if window.size else -np.finfo(np.float32).max
    return out


POOL = {
    # name: (input H, W, kernel, stride, pad, extra)
    "k3s2_ceil_ne_floor": (14, 14, (3, 3), (2, 2), (0, 0), ""),
    "k3s2_exact": (13, 13, (3, 3), (2, 2), (0, 0), ""),
    "k2s2_pad1_clip": (5, 7, (2, 2), (2, 2), (1, 1), ""),
    "k3s2_pad1": (10, 9, (3, 3), (2, 2), (1, 1), ""),
    "k3s1_pad1": (7, 8, (3, 3), (1, 1), (1, 1), ""),
    "stride_gt_kernel": (8, 11, (2, 2), (3, 3), (0, 0), ""),
    "pad_over_half_kernel": (9, 10, (3, 3), (2, 2), (2, 2), ""),
    "k4_pad3": (9, 9, (4, 4), (3, 3), (3, 3), ""),
    "hw": (9, 12, (3, 2), (2, 1), (1, 0), ""),
}


def _pool_param(kernel, stride, pad, method):
    if kernel[0] == kernel[1] and stride[0] == stride[1] and pad[0] == pad[1]:
        geo = f"kernel_size: {kernel[0]} stride: {stride[0]} pad: {pad[0]}"
    else:
        geo = (
            f"kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]} "
            f"pad_h: {pad[0]} pad_w: {pad[1]}"
        )
    return f"pooling_param {{ pool: {method} {geo} }}"


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("case", POOL.values(), ids=POOL.keys())
def test_pooling(tmp_path, case, method):
    h, w, kernel, stride, pad, _ = case
    layers = one("Pooling", _pool_param(kernel, stride, pad, method))
    ave = method == "AVE"
    r = check_numpy(
        tmp_path, {"data": (2, 3, h, w)}, layers,
        lambda i, b: [caffe_pool(i["data"], kernel, stride, pad, ave)],
    )
    # OpenCV agrees wherever every window overlaps the input.
    if not (ave and any(s > k for s, k in zip(stride, kernel))):
        from layer_harness import assert_close, opencv_outputs

        assert_close(r.ours, opencv_outputs(r))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(tmp_path, method):
    layers = one("Pooling", f"pooling_param {{ pool: {method} global_pooling: true }}")
    check_opencv(tmp_path, X4, layers)
    check_numpy(
        tmp_path, X4, layers,
        lambda i, b: [caffe_pool(i["data"], None, None, None, method == "AVE", global_=True)],
    )


@pytest.mark.parametrize("param", ["ceil_mode: false", "round_mode: FLOOR"])
def test_pooling_floor(tmp_path, param):
    layers = one("Pooling", f"pooling_param {{ pool: MAX kernel_size: 3 stride: 2 {param} }}")
    r = check_numpy(
        tmp_path, {"data": (1, 2, 14, 14)}, layers,
        lambda i, b: [caffe_pool(i["data"], (3, 3), (2, 2), (0, 0), False, ceil=False)],
    )
    assert r.ours[0].shape == (1, 2, 6, 6)
    from layer_harness import assert_close, opencv_outputs

    assert_close(r.ours, opencv_outputs(r))  # OpenCV gets round_mode as ceil_mode: false


def test_pooling_uses_torch_module_when_it_matches(tmp_path):
    r = run(tmp_path, X4, one("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"))
    assert "nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)" in r.conversion.code
    r = run(tmp_path, X4, one("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }"))
    assert "caffe_pool2d(" in r.conversion.code  # PyTorch rejects pad > kernel / 2


# ------------------------------------------------------------------------------ activations
ACT = {
    "relu": ("ReLU", ""),
    "leaky": ("ReLU", "relu_param { negative_slope: 0.1 }"),
    "relu6": ("ReLU6", ""),
    "sigmoid": ("Sigmoid", ""),
    "tanh": ("TanH", ""),
    "absval": ("AbsVal", ""),
    "bnll": ("BNLL", ""),
    "elu": ("ELU", ""),
    "elu_alpha": ("ELU", "elu_param { alpha: 0.5 }"),
    "power": ("Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
    "power_shift_only": ("Power", "power_param { shift: -0.5 }"),
    "exp": ("Exp", ""),
    "exp_base2": ("Exp", "exp_param { base: 2 scale: 0.5 shift: 1 }"),
}


@pytest.mark.parametrize("type_,param", ACT.values(), ids=ACT.keys())
def test_activation(tmp_path, type_, param):
    check_opencv(tmp_path, X4, one(type_, param))


POSITIVE = {
    "power_sqrt": ("Power", "power_param { power: 0.5 scale: 2 }"),
    "log": ("Log", ""),
}


@pytest.mark.parametrize("type_,param", POSITIVE.values(), ids=POSITIVE.keys())
def test_activation_positive_input(tmp_path, type_, param):
    check_opencv(tmp_path, X4, one(type_, param), positive=True)


NUMPY_ACT = {
    "threshold": ("threshold_param { threshold: 0.3 }", "Threshold", lambda x: (x > 0.3).astype(np.float32)),
    "clip": ("clip_param { min: -0.5 max: 0.7 }", "Clip", lambda x: np.clip(x, -0.5, 0.7)),
    "log_e": ("", "Log", lambda x: np.log(x)),
    # OpenCV ignores Log's parameters.
    "log_base10": ("log_param { base: 10 scale: 2 shift: 0.5 }", "Log", lambda x: np.log10(2 * x.astype(np.float64) + 0.5)),
    "exp_shift": ("exp_param { base: -1 scale: 2 shift: 0.5 }", "Exp", lambda x: np.exp(0.5 + 2 * x.astype(np.float64))),
    "bnll": ("", "BNLL", lambda x: np.log1p(np.exp(x.astype(np.float64)))),
    "swish": ("swish_param { beta: 1.5 }", "Swish", lambda x: x / (1 + np.exp(-1.5 * x.astype(np.float64)))),
    "selu": ("", "SeLu", lambda x: 1.050700987 * np.where(x > 0, x, 1.67326324 * (np.exp(x.astype(np.float64)) - 1))),
}


@pytest.mark.parametrize("param,type_,f", NUMPY_ACT.values(), ids=NUMPY_ACT.keys())
def test_activation_numpy(tmp_path, param, type_, f):
    data = None
    if type_ == "Log":
        data = {"data": np.abs(np.random.default_rng(3).standard_normal(X4["data"])) + 0.1}
    check_numpy(tmp_path, X4, one(type_, param), lambda i, b: [f(i["data"])], data=data)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (3, 5)])
def test_prelu(tmp_path, shared, shape):
    param = "prelu_param { channel_shared: true }" if shared else ""
    check_opencv(tmp_path, {"data": shape}, one("PReLU", param))


def test_relu_in_place_chain(tmp_path):
    layers = (
        one("Convolution", "convolution_param { num_output: 4 kernel_size: 1 }", tops=("c",), name="conv")
        + one("ReLU", bottoms=("c",), tops=("c",), name="relu")
    )
    r = check_opencv(tmp_path, X4, layers)
    assert "nn.ReLU(inplace=True)" in r.conversion.code


# --------------------------------------------------------------------------- normalisation
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


def test_batch_norm_batch_statistics(tmp_path):
    layers = one("BatchNorm", "batch_norm_param { use_global_stats: false }")

    def f(i, b):
        x = i["data"].astype(np.float64)
        m = x.mean((0, 2, 3), keepdims=True)
        v = x.var((0, 2, 3), keepdims=True)
        return [(x - m) / np.sqrt(v + 1e-5)]

    r = check_numpy(tmp_path, {"data": (4, 3, 5, 5)}, layers, f)
    assert "track_running_stats=False" in r.conversion.code


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


SCALE = {
    "bias": ("scale_param { bias_term: true }", (2, 4, 3, 5)),
    "no_bias": ("", (2, 4, 3, 5)),
    "axis1_num2": ("scale_param { axis: 1 num_axes: 2 bias_term: true }", (2, 4, 3, 5)),
    "2d": ("scale_param { bias_term: true }", (3, 6)),
    "axis0_all": ("scale_param { axis: 0 num_axes: -1 }", (2, 3, 4)),
}


def _broadcast(p, shape, axis):
    return p.reshape(p.shape + (1,) * (len(shape) - axis - p.ndim))


@pytest.mark.parametrize("param,shape", SCALE.values(), ids=SCALE.keys())
def test_scale(tmp_path, param, shape):
    axis = 0 if "axis: 0" in param else 1

    def f(i, b):
        x = i["data"]
        y = x * _broadcast(b[0], x.shape, axis)
        return [y + _broadcast(b[1], x.shape, axis) if len(b) > 1 else y]

    check_numpy(tmp_path, {"data": shape}, one("Scale", param), f)
    if shape == (2, 4, 3, 5):
        check_opencv(tmp_path / "b", {"data": shape}, one("Scale", param))


@pytest.mark.parametrize("bias", [False, True])
def test_scale_second_bottom(tmp_path, bias):
    param = "scale_param { axis: 0 bias_term: true }" if bias else "scale_param { axis: 0 }"
    inputs = {"data": (2, 3, 4, 5), "s": (2, 3)}

    def f(i, b):
        y = i["data"] * i["s"][:, :, None, None]
        return [y + b[0][:, :, None, None] if bias else y]

    check_numpy(tmp_path, inputs, one("Scale", param, bottoms=("data", "s")), f)


def test_bias(tmp_path):
    check_numpy(
        tmp_path, X4, one("Bias"), lambda i, b: [i["data"] + b[0].reshape(1, -1, 1, 1)]
    )
    check_numpy(
        tmp_path / "b", {"data": (2, 3, 4), "b": (2, 3, 4)},
        one("Bias", "bias_param { axis: 0 }", bottoms=("data", "b")),
        lambda i, b: [i["data"] + i["b"]],
    )


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


@pytest.mark.parametrize(
    "size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0)], ids=["alexnet", "k2"]
)
def test_lrn_across_channels(tmp_path, size, alpha, beta, k):
    layers = one("LRN", f"lrn_param {{ local_size: {size} alpha: {alpha} beta: {beta} k: {k} }}")
    if k == 1:  # OpenCV ignores k
        check_opencv(tmp_path, X4, layers)
    check_numpy(tmp_path / "b", X4, layers, lambda i, b: [caffe_lrn_across(i["data"], size, alpha, beta, k)])


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


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("variance", [False, True])
def test_mvn(tmp_path, across, variance):
    param = f"mvn_param {{ across_channels: {str(across).lower()} normalize_variance: {str(variance).lower()} }}"
    check_opencv(tmp_path, X4, one("MVN", param))  # default eps 1e-9: OpenCV's formula agrees


def test_mvn_eps_on_the_standard_deviation(tmp_path):
    # Caffe adds eps to the standard deviation (OpenCV adds it to the variance).
    param = "mvn_param { eps: 0.1 }"
    check_numpy(tmp_path, X4, one("MVN", param), lambda i, b: [caffe_mvn(i["data"], False, True, 0.1)])


# ---------------------------------------------------------------------------- combinations
ELTWISE = {
    "sum2": ("", 2),
    "sum_coeff": ("eltwise_param { operation: SUM coeff: 1 coeff: -1 }", 2),
    "sum3_coeff": ("eltwise_param { operation: SUM coeff: 0.5 coeff: 2 coeff: -1 }", 3),
    "prod3": ("eltwise_param { operation: PROD }", 3),
    "max3": ("eltwise_param { operation: MAX }", 3),
    "sum4": ("", 4),
}


@pytest.mark.parametrize("param,n", ELTWISE.values(), ids=ELTWISE.keys())
def test_eltwise(tmp_path, param, n):
    names = [f"in{i}" for i in range(n)]
    inputs = {name: (2, 3, 4, 5) for name in names}
    layers = one("Eltwise", param, bottoms=names)
    check_opencv(tmp_path, inputs, layers)
    coeff = [float(c.split()[0]) for c in param.split("coeff: ")[1:]] if "coeff" in param else [1.0] * n

    def f(i, b):
        xs = [i[name].astype(np.float64) for name in names]
        if "PROD" in param:
            return [math.prod(xs)]
        if "MAX" in param:
            return [np.max(xs, axis=0)]
        return [sum(c * x for c, x in zip(coeff, xs))]

    check_numpy(tmp_path / "b", inputs, layers, f)


def test_axpy(tmp_path):
    # SENet's Caffe: top = a * x + y (OpenCV reads it as a * y + x; see verify/opencv.py).
    inputs = {"a": (2, 3, 1, 1), "x": (2, 3, 4, 5), "y": (2, 3, 4, 5)}
    layers = one("Axpy", bottoms=("a", "x", "y"))
    check_numpy(tmp_path, inputs, layers, lambda i, b: [i["a"] * i["x"] + i["y"]])
    # OpenCV, with the bottoms swapped for it, on one sample (its Scale takes a batch of 1).
    inputs = {"a": (1, 3, 1, 1), "x": (1, 3, 4, 5), "y": (1, 3, 4, 5)}
    check_opencv(tmp_path / "b", inputs, layers)


@pytest.mark.parametrize(
    "param,shapes",
    [
        ("", [(2, 3, 4, 5), (2, 2, 4, 5), (2, 1, 4, 5)]),
        ("concat_param { axis: 2 }", [(2, 3, 4, 5), (2, 3, 2, 5)]),
        ("concat_param { concat_dim: 0 }", [(2, 3, 4, 5), (1, 3, 4, 5)]),
        ("concat_param { axis: -1 }", [(2, 3), (2, 4)]),
    ],
    ids=["channels3", "axis2", "concat_dim0", "2d_last"],
)
def test_concat(tmp_path, param, shapes):
    names = [f"in{i}" for i in range(len(shapes))]
    layers = one("Concat", param, bottoms=names)
    axis = 2 if "axis: 2" in param else 0 if "concat_dim: 0" in param else -1 if "-1" in param else 1
    inputs = dict(zip(names, shapes))
    check_numpy(tmp_path, inputs, layers, lambda i, b: [np.concatenate([i[n] for n in names], axis)])
    if axis != 0:  # OpenCV cannot concatenate along the batch axis
        check_opencv(tmp_path / "b", inputs, layers)


@pytest.mark.parametrize(
    "param,tops,axis,points",
    [
        ("slice_param { axis: 1 slice_point: 1 slice_point: 4 }", 3, 1, [1, 4]),
        ("slice_param { axis: 1 }", 2, 1, None),
        ("slice_param { slice_dim: 2 slice_point: 3 }", 2, 2, [3]),
    ],
    ids=["points", "equal", "slice_dim"],
)
def test_slice(tmp_path, param, tops, axis, points):
    names = [f"s{i}" for i in range(tops)]
    layers = one("Slice", param, tops=names)

    def f(i, b):
        x = i["data"]
        return np.split(x, points if points else tops, axis)

    check_numpy(tmp_path, X4, layers, f)
    if points and "slice_dim" not in param:  # OpenCV ignores slice_dim, fails on equal parts
        check_opencv(tmp_path / "b", X4, layers)


def test_split(tmp_path):
    layers = one("Split", tops=("a", "b"))
    check_numpy(tmp_path, X4, layers, lambda i, b: [i["data"], i["data"]])


def test_silence_branch_is_dropped(tmp_path):
    layers = (
        one("Split", tops=("a", "b"), name="split")
        + one("Silence", bottoms=("b",), tops=(), name="silence")
        + one("TanH", bottoms=("a",), name="out")
    )
    r = check_numpy(tmp_path, X4, layers, lambda i, b: [np.tanh(i["data"])])
    assert r.conversion.generated.layer_map["silence"] == "dropped"


# ------------------------------------------------------------------------------ rearranging
@pytest.mark.parametrize(
    "param,expect",
    [
        ("", lambda x: x.reshape(x.shape[0], -1)),
        ("flatten_param { axis: 2 }", lambda x: x.reshape(*x.shape[:2], -1)),
        ("flatten_param { axis: 1 end_axis: 2 }", lambda x: x.reshape(x.shape[0], -1, x.shape[3])),
    ],
    ids=["default", "axis2", "end_axis2"],
)
def test_flatten(tmp_path, param, expect):
    check_numpy(tmp_path, X4, one("Flatten", param), lambda i, b: [expect(i["data"])])
    check_opencv(tmp_path / "b", X4, one("Flatten", param))


@pytest.mark.parametrize(
    "param,shape",
    [
        ("reshape_param { shape { dim: 0 dim: -1 } }", (2, 54, 11)),
        ("reshape_param { shape { dim: 0 dim: 3 dim: 2 dim: -1 } }", (2, 3, 2, 99)),
        ("reshape_param { shape { dim: 2 dim: 3 } axis: 1 num_axes: 1 }", (2, 2, 3, 9, 11)),
        ("reshape_param { shape { dim: -1 } axis: 2 }", (2, 6, 99)),
    ],
    ids=["copy_infer", "split_channels", "axis_num_axes", "flatten_tail"],
)
def test_reshape(tmp_path, param, shape):
    check_numpy(tmp_path, X4, one("Reshape", param), lambda i, b: [i["data"].reshape(shape)])
    check_opencv(tmp_path / "b", X4, one("Reshape", param))


@pytest.mark.parametrize(
    "shape,param", [((2, 6, 9, 11), ""), ((2, 6, 9, 11), "softmax_param { axis: 2 }"), ((3, 7), "")],
    ids=["4d_channels", "4d_axis2", "2d"],
)
def test_softmax(tmp_path, shape, param):
    axis = 2 if "axis: 2" in param else 1

    def f(i, b):
        x = i["data"].astype(np.float64)
        e = np.exp(x - x.max(axis, keepdims=True))
        return [e / e.sum(axis, keepdims=True)]

    check_numpy(tmp_path, {"data": shape}, one("Softmax", param), f)
    check_opencv(tmp_path / "b", {"data": shape}, one("Softmax", param))


def test_dropout_is_identity_in_eval(tmp_path):
    check_opencv(tmp_path, X4, one("Dropout", "dropout_param { dropout_ratio: 0.3 }"))


def test_dropout_without_train_scaling(tmp_path):
    # py-faster-rcnn's fork: scale_train: false scales by (1 - ratio) at test time.
    param = "dropout_param { dropout_ratio: 0.3 scale_train: false }"
    check_numpy(tmp_path, X4, one("Dropout", param), lambda i, b: [i["data"] * 0.7])


@pytest.mark.parametrize(
    "param,offsets",
    [("crop_param { axis: 2 offset: 1 offset: 3 }", (1, 3)), ("crop_param { axis: 2 offset: 2 }", (2, 2)),
     ("crop_param { axis: 1 offset: 1 }", (1, 1, 1))],
    ids=["axis2_two", "axis2_one", "axis1"],
)
def test_crop(tmp_path, param, offsets):
    inputs = {"data": (2, 6, 9, 11), "ref": (2, 4, 5, 6)}
    axis = 1 if "axis: 1" in param else 2

    def f(i, b):
        x = i["data"]
        idx = [slice(None)] * axis + [slice(o, o + s) for o, s in zip(offsets, inputs["ref"][axis:])]
        return [x[tuple(idx)]]

    layers = one("Crop", param, bottoms=("data", "ref"))
    check_numpy(tmp_path, inputs, layers, f)
    check_opencv(tmp_path / "b", inputs, layers)


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (0, 3, 1, 2), (1, 0, 2, 3)])
def test_permute(tmp_path, order):
    param = "permute_param { " + " ".join(f"order: {o}" for o in order) + " }"
    check_numpy(tmp_path, X4, one("Permute", param), lambda i, b: [i["data"].transpose(order)])
    check_opencv(tmp_path / "b", X4, one("Permute", param))


@pytest.mark.parametrize("axis,tiles", [(1, 3), (2, 2), (-1, 2)])
def test_tile(tmp_path, axis, tiles):
    param = f"tile_param {{ axis: {axis} tiles: {tiles} }}"
    reps = [1] * 4
    reps[axis] = tiles
    check_numpy(tmp_path, X4, one("Tile", param), lambda i, b: [np.tile(i["data"], reps)])


REDUCTION = {
    "sum": lambda x: x.sum(-1),
    "asum": lambda x: np.abs(x).sum(-1),
    "sumsq": lambda x: (x.astype(np.float64) ** 2).sum(-1),
    "mean": lambda x: x.mean(-1),
}


@pytest.mark.parametrize("op", REDUCTION)
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, 2.0), (2, -0.5)])
def test_reduction(tmp_path, op, axis, coeff):
    param = f"reduction_param {{ operation: {op.upper()} axis: {axis} coeff: {coeff} }}"

    def f(i, b):
        x = i["data"]
        return [REDUCTION[op](x.reshape(*x.shape[:axis], -1)) * coeff]

    check_numpy(tmp_path, X4, one("Reduction", param), f)


def caffe_argmax(x, top_k, out_max_val, axis=None):
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        idx = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
        out = idx[:, None, :].astype(np.float32)
        if out_max_val:
            out = np.concatenate([out, np.take_along_axis(flat, idx, 1)[:, None, :]], 1)
        return out.reshape(*out.shape, *[1] * (x.ndim - 3))
    idx = np.argsort(-x, axis=axis, kind="stable").take(range(top_k), axis=axis)
    return np.take_along_axis(x, idx, axis) if out_max_val else idx.astype(np.float32)


@pytest.mark.parametrize(
    "param,top_k,out_max_val,axis",
    [
        ("", 1, False, None),
        ("argmax_param { top_k: 3 }", 3, False, None),
        ("argmax_param { top_k: 2 out_max_val: true }", 2, True, None),
        ("argmax_param { axis: 1 }", 1, False, 1),
        ("argmax_param { axis: 1 top_k: 2 out_max_val: true }", 2, True, 1),
    ],
    ids=["default", "top3", "top2_values", "axis1", "axis1_values"],
)
def test_argmax(tmp_path, param, top_k, out_max_val, axis):
    check_numpy(
        tmp_path, X4, one("ArgMax", param),
        lambda i, b: [caffe_argmax(i["data"], top_k, out_max_val, axis)],
    )


@pytest.mark.parametrize("group", [2, 3])
def test_shuffle_channel(tmp_path, group):
    param = f"shuffle_channel_param {{ group: {group} }}"

    def f(i, b):
        x = i["data"]
        n, c, h, w = x.shape
        return [x.reshape(n, group, c // group, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)]

    check_numpy(tmp_path, X4, one("ShuffleChannel", param), f)
    check_opencv(tmp_path / "b", X4, one("ShuffleChannel", param))


# ------------------------------------------------------------------------ fork layers (extra)
def test_pspnet_bn(tmp_path):
    layers = one("BN", "bn_param { slope_filler { type: 'constant' value: 1 } eps: 0.0001 }")

    def f(i, b):
        slope, bias, mean, var = (a.reshape(1, -1, 1, 1) for a in b)
        return [slope * (i["data"] - mean) / np.sqrt(var + 1e-4) + bias]

    check_numpy(tmp_path, X4, layers, f)


def test_segnet_bn_inference(tmp_path):
    layers = one("BN", "bn_param { bn_mode: INFERENCE scale_filler { type: 'constant' value: 1 } }")
    check_numpy(
        tmp_path, X4, layers, lambda i, b: [i["data"] * b[0].reshape(1, -1, 1, 1) + b[1].reshape(1, -1, 1, 1)]
    )


def test_segnet_bn_learn_mode_is_refused(tmp_path):
    from caffe2torch.errors import UnsupportedLayerError

    with pytest.raises(UnsupportedLayerError, match="LEARN mode normalises with each batch's statistics"):
        run(tmp_path, X4, one("BN", "bn_param { scale_filler { type: 'constant' value: 1 } }"))


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_normalize(tmp_path, across, shared):
    param = f"norm_param {{ across_spatial: {str(across).lower()} channel_shared: {str(shared).lower()} }}"

    def f(i, b):
        x = i["data"].astype(np.float64)
        dims = (1, 2, 3) if across else (1,)
        scale = b[0].reshape(()) if shared else b[0].reshape(1, -1, 1, 1)
        return [x / np.sqrt((x**2).sum(dims, keepdims=True) + 1e-10) * scale]

    check_numpy(tmp_path, X4, one("Normalize", param), f)
    if not (across and not shared):  # OpenCV fails on a per-channel scale across spatial
        check_opencv(tmp_path / "b", X4, one("Normalize", param))


def _bilinear_align_corners(x, oh, ow):
    n, c, h, w = x.shape
    ys = np.linspace(0, h - 1, oh) if oh > 1 else np.zeros(1)
    xs = np.linspace(0, w - 1, ow) if ow > 1 else np.zeros(1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = lambda a, b: x[:, :, a][:, :, :, b]  # noqa: E731
    return (g(y0, x0) * (1 - wy) * (1 - wx) + g(y0, x1) * (1 - wy) * wx
            + g(y1, x0) * wy * (1 - wx) + g(y1, x1) * wy * wx)


@pytest.mark.parametrize(
    "param,size",
    [("interp_param { height: 13 width: 17 }", (13, 17)), ("interp_param { zoom_factor: 3 }", (25, 31)),
     ("interp_param { shrink_factor: 2 }", (5, 6))],
    ids=["size", "zoom", "shrink"],
)
def test_interp(tmp_path, param, size):
    layers = one("Interp", param)
    check_numpy(tmp_path, X4, layers, lambda i, b: [_bilinear_align_corners(i["data"].astype(np.float64), *size)])
    if "shrink" not in param:  # OpenCV fails on shrink_factor
        check_opencv(tmp_path / "b", X4, layers)


def test_upsample_with_pooling_mask(tmp_path):
    layers = (
        one("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", tops=("pool", "mask"), name="pool")
        + one("Upsample", "upsample_param { scale: 2 upsample_h: 9 upsample_w: 11 }", bottoms=("pool", "mask"))
    )

    def f(i, b):
        x = i["data"]
        n, c, h, w = x.shape
        out = np.zeros_like(x)
        for r in range((h + 1) // 2):
            for q in range((w + 1) // 2):
                win = x[:, :, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2]
                k = win.reshape(n, c, -1).argmax(-1)
                dr, dq = np.divmod(k, win.shape[3])
                for a in range(n):
                    for ch in range(c):
                        out[a, ch, 2 * r + dr[a, ch], 2 * q + dq[a, ch]] = win[a, ch, dr[a, ch], dq[a, ch]]
        return [out]

    r = check_numpy(tmp_path, X4, layers, f)
    assert "return_indices=True" in r.conversion.code
