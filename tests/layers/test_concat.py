"""Concat, Slice, Split and Silence (layers/concat.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, compare_opencv, one  # noqa: E402


@pytest.mark.formula("Concat")
@pytest.mark.opencv("Concat")
@pytest.mark.parametrize(
    "param,shapes",
    [
        ("", [(2, 3, 4, 5), (2, 2, 4, 5), (2, 1, 4, 5)]),
        ("concat_param { axis: 2 }", [(2, 3, 4, 5), (2, 3, 2, 5)]),
        ("concat_param { concat_dim: 0 }", [(2, 3, 4, 5), (1, 3, 4, 5)]),
        ("concat_param { axis: 0 }", [(2, 3, 4, 5), (1, 3, 4, 5)]),
        ("concat_param { axis: -1 }", [(2, 3), (2, 4)]),
    ],
    ids=["channels3", "axis2", "concat_dim0", "axis0", "2d_last"],
)
def test_concat(tmp_path, param, shapes):
    names = [f"in{i}" for i in range(len(shapes))]
    layers = one("Concat", param, bottoms=names)
    axis = 2 if "axis: 2" in param else 0 if ": 0" in param else -1 if "-1" in param else 1
    inputs = dict(zip(names, shapes))
    check_numpy(tmp_path, inputs, layers, lambda i, b: [np.concatenate([i[n] for n in names], axis)])
    if "concat_dim" not in param:  # OpenCV ignores concat_dim (axis: 0 it reads)
        check_opencv(tmp_path / "b", inputs, layers)


@pytest.mark.formula("Slice")
@pytest.mark.opencv("Slice")
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


@pytest.mark.formula("Split")
@pytest.mark.opencv("Split")
def test_split(tmp_path):
    layers = one("Split", tops=("a", "b"))
    r = check_numpy(tmp_path, X4, layers, lambda i, b: [i["data"], i["data"]])
    compare_opencv(r)


# Silence has no output to compare: the branch it ends is checked through the TanH after the
# Split, by the formula and by OpenCV running the net with the Silence layer in it.
@pytest.mark.formula("TanH")
@pytest.mark.opencv("TanH", "Silence")
def test_silence_branch_is_dropped(tmp_path):
    layers = (
        one("Split", tops=("a", "b"), name="split")
        + one("Silence", bottoms=("b",), tops=(), name="silence")
        + one("TanH", bottoms=("a",), name="out")
    )
    r = check_numpy(tmp_path, X4, layers, lambda i, b: [np.tanh(i["data"])])
    assert r.conversion.generated.layer_map["silence"] == "dropped"
    compare_opencv(r)
