"""Element-wise activations: ReLU, PReLU and the Unary family (layers/activation.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one  # noqa: E402

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
    "mish": ("Mish", ""),
    "swish": ("Swish", ""),
}


@pytest.mark.opencv(*sorted({t for t, _ in ACT.values()}))
@pytest.mark.parametrize("type_,param", ACT.values(), ids=ACT.keys())
def test_activation(tmp_path, type_, param):
    check_opencv(tmp_path, X4, one(type_, param))


POSITIVE = {
    "power_sqrt": ("Power", "power_param { power: 0.5 scale: 2 }"),
    "log": ("Log", ""),
}


@pytest.mark.opencv(*sorted({t for t, _ in POSITIVE.values()}))
@pytest.mark.parametrize("type_,param", POSITIVE.values(), ids=POSITIVE.keys())
def test_activation_positive_input(tmp_path, type_, param):
    check_opencv(tmp_path, X4, one(type_, param), positive=True)


def _f64(x):
    return x.astype(np.float64)


NUMPY_ACT = {
    "threshold": ("threshold_param { threshold: 0.3 }", "Threshold", lambda x: (x > 0.3).astype(np.float32)),
    "clip": ("clip_param { min: -0.5 max: 0.7 }", "Clip", lambda x: np.clip(x, -0.5, 0.7)),
    "log_e": ("", "Log", lambda x: np.log(x)),
    # OpenCV ignores Log's parameters.
    "log_base10": ("log_param { base: 10 scale: 2 shift: 0.5 }", "Log", lambda x: np.log10(2 * _f64(x) + 0.5)),
    "exp_shift": ("exp_param { base: -1 scale: 2 shift: 0.5 }", "Exp", lambda x: np.exp(0.5 + 2 * _f64(x))),
    "bnll": ("", "BNLL", lambda x: np.log1p(np.exp(_f64(x)))),
    "swish": ("swish_param { beta: 1.5 }", "Swish", lambda x: x / (1 + np.exp(-1.5 * _f64(x)))),
    "selu": ("", "SeLu", lambda x: 1.050700987 * np.where(x > 0, x, 1.67326324 * (np.exp(_f64(x)) - 1))),
    # MishLayer::Forward_cpu: x * tanh(log(1 + exp(x))).
    "mish": ("", "Mish", lambda x: _f64(x) * np.tanh(np.log1p(np.exp(_f64(x))))),
}


@pytest.mark.formula(*sorted({t for _, t, _ in NUMPY_ACT.values()}))
@pytest.mark.parametrize("param,type_,f", NUMPY_ACT.values(), ids=NUMPY_ACT.keys())
def test_activation_numpy(tmp_path, param, type_, f):
    data = None
    if type_ == "Log":
        data = {"data": np.abs(np.random.default_rng(3).standard_normal(X4["data"])) + 0.1}
    check_numpy(tmp_path, X4, one(type_, param), lambda i, b: [f(i["data"])], data=data)


@pytest.mark.opencv("PReLU")
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (3, 5)])
def test_prelu(tmp_path, shared, shape):
    param = "prelu_param { channel_shared: true }" if shared else ""
    check_opencv(tmp_path, {"data": shape}, one("PReLU", param))


@pytest.mark.opencv("ReLU")
def test_relu_in_place_chain(tmp_path):
    layers = (
        one("Convolution", "convolution_param { num_output: 4 kernel_size: 1 }", tops=("c",), name="conv")
        + one("ReLU", bottoms=("c",), tops=("c",), name="relu")
    )
    r = check_opencv(tmp_path, X4, layers)
    assert "nn.ReLU(inplace=True)" in r.conversion.code
