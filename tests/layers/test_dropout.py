"""Dropout and SeLuDropout at test time (layers/dropout.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one  # noqa: E402


@pytest.mark.opencv("Dropout")
def test_dropout_is_identity_in_eval(tmp_path):
    check_opencv(tmp_path, X4, one("Dropout", "dropout_param { dropout_ratio: 0.3 }"))


@pytest.mark.formula("Dropout")
def test_dropout_without_train_scaling(tmp_path):
    # py-faster-rcnn's fork: scale_train: false scales by (1 - ratio) at test time.
    param = "dropout_param { dropout_ratio: 0.3 scale_train: false }"
    check_numpy(tmp_path, X4, one("Dropout", param), lambda i, b: [i["data"] * 0.7])


@pytest.mark.formula("SeLuDropout")
@pytest.mark.parametrize("param", ["", "selu_dropout_param { dropout_ratio: 0.3 alpha: -1.5 }"],
                         ids=["defaults", "ratio_alpha"])
def test_selu_dropout_is_identity_at_test_time(tmp_path, param):
    # The SELU fork's SeLuDropoutLayer: alpha dropout while training; at test time it copies
    # its input (no rescaling: the affine correction is applied only with the mask).
    r = check_numpy(tmp_path, X4, one("SeLuDropout", param), lambda i, b: [i["data"]])
    assert "nn.AlphaDropout(" in r.conversion.code
