"""Eltwise and SENet's Axpy (layers/eltwise.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, check_opencv, one  # noqa: E402

ELTWISE = {
    "sum2": ("", 2),
    "sum_coeff": ("eltwise_param { operation: SUM coeff: 1 coeff: -1 }", 2),
    "sum3_coeff": ("eltwise_param { operation: SUM coeff: 0.5 coeff: 2 coeff: -1 }", 3),
    "prod3": ("eltwise_param { operation: PROD }", 3),
    "max3": ("eltwise_param { operation: MAX }", 3),
    "sum4": ("", 4),
}


@pytest.mark.formula("Eltwise")
@pytest.mark.opencv("Eltwise")
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


@pytest.mark.formula("Axpy")
@pytest.mark.opencv("Axpy")
def test_axpy(tmp_path):
    # SENet's Caffe: top = a * x + y (OpenCV reads it as a * y + x; see Axpy.opencv_layer).
    inputs = {"a": (2, 3, 1, 1), "x": (2, 3, 4, 5), "y": (2, 3, 4, 5)}
    layers = one("Axpy", bottoms=("a", "x", "y"))
    check_numpy(tmp_path, inputs, layers, lambda i, b: [i["a"] * i["x"] + i["y"]])
    # OpenCV, with the bottoms swapped for it, on one sample (its Scale takes a batch of 1).
    inputs = {"a": (1, 3, 1, 1), "x": (1, 3, 4, 5), "y": (1, 3, 4, 5)}
    check_opencv(tmp_path / "b", inputs, layers)
