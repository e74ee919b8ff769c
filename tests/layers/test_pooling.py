"""Pooling (layers/pooling.py): Caffe's ceil-mode window arithmetic over a grid of corner
cases, MAX and AVE, global and floor rounding."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, compare_opencv, one, run  # noqa: E402

from caffe2torch.layers.pooling import pooled_size  # noqa: E402


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


@pytest.mark.formula("Pooling")
@pytest.mark.opencv("Pooling")
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
    compare_opencv(r)


@pytest.mark.formula("Pooling")
@pytest.mark.opencv("Pooling")
@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling(tmp_path, method):
    layers = one("Pooling", f"pooling_param {{ pool: {method} global_pooling: true }}")
    check_opencv(tmp_path, X4, layers)
    check_numpy(
        tmp_path, X4, layers,
        lambda i, b: [caffe_pool(i["data"], None, None, None, method == "AVE", global_=True)],
    )


@pytest.mark.formula("Pooling")
@pytest.mark.opencv("Pooling")
@pytest.mark.parametrize("param", ["ceil_mode: false", "round_mode: FLOOR"])
def test_pooling_floor(tmp_path, param):
    layers = one("Pooling", f"pooling_param {{ pool: MAX kernel_size: 3 stride: 2 {param} }}")
    r = check_numpy(
        tmp_path, {"data": (1, 2, 14, 14)}, layers,
        lambda i, b: [caffe_pool(i["data"], (3, 3), (2, 2), (0, 0), False, ceil=False)],
    )
    assert r.ours[0].shape == (1, 2, 6, 6)
    compare_opencv(r)  # OpenCV gets round_mode as ceil_mode: false


def test_pooling_uses_torch_module_when_it_matches(tmp_path):
    r = run(tmp_path, X4, one("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"))
    assert "nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)" in r.conversion.code
    r = run(tmp_path, X4, one("Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }"))
    assert "caffe_pool2d(" in r.conversion.code  # PyTorch rejects pad > kernel / 2
