"""Scale and Bias, with a learned or a second-bottom operand (layers/scale.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one  # noqa: E402

SCALE = {
    "bias": ("scale_param { bias_term: true }", (2, 4, 3, 5)),
    "no_bias": ("", (2, 4, 3, 5)),
    "axis1_num2": ("scale_param { axis: 1 num_axes: 2 bias_term: true }", (2, 4, 3, 5)),
    "2d": ("scale_param { bias_term: true }", (3, 6)),
    "axis0_all": ("scale_param { axis: 0 num_axes: -1 }", (2, 3, 4)),
}


def _broadcast(p, shape, axis):
    return p.reshape(p.shape + (1,) * (len(shape) - axis - p.ndim))


@pytest.mark.formula("Scale")
@pytest.mark.opencv("Scale")
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


@pytest.mark.formula("Scale")
@pytest.mark.parametrize("bias", [False, True])
def test_scale_second_bottom(tmp_path, bias):
    param = "scale_param { axis: 0 bias_term: true }" if bias else "scale_param { axis: 0 }"
    inputs = {"data": (2, 3, 4, 5), "s": (2, 3)}

    def f(i, b):
        y = i["data"] * i["s"][:, :, None, None]
        return [y + b[0][:, :, None, None] if bias else y]

    check_numpy(tmp_path, inputs, one("Scale", param, bottoms=("data", "s")), f)


@pytest.mark.formula("Bias")
def test_bias(tmp_path):
    check_numpy(
        tmp_path, X4, one("Bias"), lambda i, b: [i["data"] + b[0].reshape(1, -1, 1, 1)]
    )
    check_numpy(
        tmp_path / "b", {"data": (2, 3, 4), "b": (2, 3, 4)},
        one("Bias", "bias_param { axis: 0 }", bottoms=("data", "b")),
        lambda i, b: [i["data"] + i["b"]],
    )
