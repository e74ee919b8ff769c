"""Softmax (layers/softmax.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, check_opencv, one  # noqa: E402


@pytest.mark.formula("Softmax")
@pytest.mark.opencv("Softmax")
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
