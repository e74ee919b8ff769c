"""Convolution, Deconvolution and the forks' depthwise names (layers/conv.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one  # noqa: E402

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


@pytest.mark.opencv("Convolution")
@pytest.mark.parametrize("param", CONV.values(), ids=CONV.keys())
def test_convolution(tmp_path, param):
    check_opencv(tmp_path, X4, one("Convolution", f"convolution_param {{ {param} }}"))


FORK_TYPES = ["ConvolutionDepthwise", "DepthwiseConvolution"]


@pytest.mark.opencv(*FORK_TYPES)
@pytest.mark.parametrize("type_", FORK_TYPES)
def test_depthwise_fork_types(tmp_path, type_):
    param = "num_output: 6 kernel_size: 3 pad: 1" + (" group: 6" if type_ == "DepthwiseConvolution" else "")
    r = check_opencv(tmp_path, X4, one(type_, f"convolution_param {{ {param} }}"))
    assert "groups=6" in r.conversion.code


@pytest.mark.opencv("Convolution")
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


@pytest.mark.formula("Deconvolution")
@pytest.mark.opencv("Deconvolution")
@pytest.mark.parametrize("name", DECONV)
def test_deconvolution(tmp_path, name):
    layers = one("Deconvolution", f"convolution_param {{ {DECONV[name]} }}")
    check_numpy(tmp_path, X4, layers, lambda i, b: [caffe_deconv(i["data"], b, *DECONV_GEOMETRY[name])])
    if name != "dilation2":  # OpenCV ignores dilation in Deconvolution
        check_opencv(tmp_path / "b", X4, layers)
