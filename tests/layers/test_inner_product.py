"""InnerProduct (layers/inner_product.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, check_opencv, one  # noqa: E402


def _ip(x, blobs, axis, transpose=False):
    w = blobs[0].T if transpose else blobs[0]
    y = x.reshape(*x.shape[:axis], -1) @ w.T
    return y + blobs[1] if len(blobs) > 1 else y


@pytest.mark.opencv("InnerProduct")
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


@pytest.mark.formula("InnerProduct")
def test_inner_product_transpose(tmp_path):
    # Caffe stores the weights K x N (OpenCV ignores `transpose`).
    layers = one("InnerProduct", "inner_product_param { num_output: 4 transpose: true }")
    check_numpy(tmp_path, {"data": (2, 3, 2, 2)}, layers, lambda i, b: [_ip(i["data"], b, 1, True)])
