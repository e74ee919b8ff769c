"""docs/opencv-deviations.md, where OpenCV computes something other than real Caffe, is what
tools/opencv_deviations.py measures now; and two of its facts, measured again here. Every
test skips with one line when real Caffe is not built (``make caffe-ref``)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from caffe2torch.verify.caffe_ref import caffe_prefix
from caffe2torch.verify.opencv import ReferenceError

TOOL = Path(__file__).resolve().parents[1] / "tools" / "opencv_deviations.py"


@pytest.fixture(scope="module")
def tool():
    try:
        caffe_prefix()
        caffe_prefix("ssd")  # the table of the forks' layers says what it checks
    except ReferenceError as e:
        pytest.skip(str(e))
    spec = importlib.util.spec_from_file_location("opencv_deviations", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _measure(tool, name):
    with tool.single_threaded():
        return tool.measure([tool.case(name)])[0]


@pytest.mark.slow
def test_the_deviation_table_is_up_to_date(tool, capsys):
    code = tool.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_opencv_adds_mvn_eps_to_the_variance(tool):
    # Caffe divides by (std + eps), OpenCV by sqrt(var + eps): with eps 0.1 they differ.
    m = _measure(tool, "mvn-eps-0.1")
    assert m.verdict == "deviates"
    assert m.tops[0].diff > 1e-2


def test_opencv_agrees_where_it_runs_caffe_s_formula(tool):
    # Eltwise SUM with coefficients: one of the cases OpenCV computes as Caffe does.
    m = _measure(tool, "eltwise-sum-coeff")
    assert m.verdict == "agrees"
    assert m.tops[0].diff <= 1e-5
