"""Flatten, Reshape, Crop, Permute, Tile, BatchReindex, Reduction, ArgMax and ShuffleChannel
(layers/reshape.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, net_text, one  # noqa: E402

from caffe2torch.api import load_graph  # noqa: E402
from caffe2torch.errors import CaffeError  # noqa: E402


@pytest.mark.formula("Flatten")
@pytest.mark.opencv("Flatten")
@pytest.mark.parametrize(
    "param,expect",
    [
        ("", lambda x: x.reshape(x.shape[0], -1)),
        ("flatten_param { axis: 2 }", lambda x: x.reshape(*x.shape[:2], -1)),
        ("flatten_param { axis: 1 end_axis: 2 }", lambda x: x.reshape(x.shape[0], -1, x.shape[3])),
    ],
    ids=["default", "axis2", "end_axis2"],
)
def test_flatten(tmp_path, param, expect):
    check_numpy(tmp_path, X4, one("Flatten", param), lambda i, b: [expect(i["data"])])
    check_opencv(tmp_path / "b", X4, one("Flatten", param))


@pytest.mark.formula("Reshape")
@pytest.mark.opencv("Reshape")
@pytest.mark.parametrize(
    "param,shape",
    [
        ("reshape_param { shape { dim: 0 dim: -1 } }", (2, 54, 11)),
        ("reshape_param { shape { dim: 0 dim: 3 dim: 2 dim: -1 } }", (2, 3, 2, 99)),
        ("reshape_param { shape { dim: 2 dim: 3 } axis: 1 num_axes: 1 }", (2, 2, 3, 9, 11)),
        ("reshape_param { shape { dim: -1 } axis: 2 }", (2, 6, 99)),
    ],
    ids=["copy_infer", "split_channels", "axis_num_axes", "flatten_tail"],
)
def test_reshape(tmp_path, param, shape):
    check_numpy(tmp_path, X4, one("Reshape", param), lambda i, b: [i["data"].reshape(shape)])
    check_opencv(tmp_path / "b", X4, one("Reshape", param))


@pytest.mark.formula("Crop")
@pytest.mark.opencv("Crop")
@pytest.mark.parametrize(
    "param,offsets",
    [("crop_param { axis: 2 offset: 1 offset: 3 }", (1, 3)), ("crop_param { axis: 2 offset: 2 }", (2, 2)),
     ("crop_param { axis: 1 offset: 1 }", (1, 1, 1))],
    ids=["axis2_two", "axis2_one", "axis1"],
)
def test_crop(tmp_path, param, offsets):
    inputs = {"data": (2, 6, 9, 11), "ref": (2, 4, 5, 6)}
    axis = 1 if "axis: 1" in param else 2

    def f(i, b):
        x = i["data"]
        idx = [slice(None)] * axis + [slice(o, o + s) for o, s in zip(offsets, inputs["ref"][axis:])]
        return [x[tuple(idx)]]

    layers = one("Crop", param, bottoms=("data", "ref"))
    check_numpy(tmp_path, inputs, layers, f)
    check_opencv(tmp_path / "b", inputs, layers)


@pytest.mark.formula("Permute")
@pytest.mark.opencv("Permute")
@pytest.mark.parametrize("order", [(0, 2, 3, 1), (0, 3, 1, 2), (1, 0, 2, 3)])
def test_permute(tmp_path, order):
    param = "permute_param { " + " ".join(f"order: {o}" for o in order) + " }"
    check_numpy(tmp_path, X4, one("Permute", param), lambda i, b: [i["data"].transpose(order)])
    check_opencv(tmp_path / "b", X4, one("Permute", param))


@pytest.mark.formula("Tile")
@pytest.mark.parametrize("axis,tiles", [(1, 3), (2, 2), (-1, 2)])
def test_tile(tmp_path, axis, tiles):
    param = f"tile_param {{ axis: {axis} tiles: {tiles} }}"
    reps = [1] * 4
    reps[axis] = tiles
    check_numpy(tmp_path, X4, one("Tile", param), lambda i, b: [np.tile(i["data"], reps)])


@pytest.mark.formula("BatchReindex")
@pytest.mark.parametrize("index", [[2, 0, 0, 1, 2], [1.9, 0.2, 2.7]], ids=["repeat", "truncate"])
def test_batch_reindex(tmp_path, index):
    # BatchReindexLayer::Forward_cpu: top[n] = bottom[0][static_cast<int>(bottom[1][n])]
    layers = one("BatchReindex", bottoms=("data", "index"))
    check_numpy(
        tmp_path, {"data": (3, 2, 4, 5), "index": (len(index),)}, layers,
        lambda i, b: [i["data"][np.trunc(i["index"]).astype(np.int64)]],
        data={"index": np.array(index, np.float32)},
    )


def test_batch_reindex_needs_1d_indices(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(net_text({"data": (3, 2), "index": (2, 1)}, one("BatchReindex", bottoms=("data", "index"))))
    with pytest.raises(CaffeError, match="layer 'out' .*needs 1-D indices as its second bottom, got 2x1"):
        load_graph(path)


REDUCTION = {
    "sum": lambda x: x.sum(-1),
    "asum": lambda x: np.abs(x).sum(-1),
    "sumsq": lambda x: (x.astype(np.float64) ** 2).sum(-1),
    "mean": lambda x: x.mean(-1),
}


@pytest.mark.formula("Reduction")
@pytest.mark.parametrize("op", REDUCTION)
@pytest.mark.parametrize("axis,coeff", [(0, 1.0), (1, 2.0), (2, -0.5)])
def test_reduction(tmp_path, op, axis, coeff):
    param = f"reduction_param {{ operation: {op.upper()} axis: {axis} coeff: {coeff} }}"

    def f(i, b):
        x = i["data"]
        return [REDUCTION[op](x.reshape(*x.shape[:axis], -1)) * coeff]

    check_numpy(tmp_path, X4, one("Reduction", param), f)


def caffe_argmax(x, top_k, out_max_val, axis=None):
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        idx = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
        out = idx[:, None, :].astype(np.float32)
        if out_max_val:
            out = np.concatenate([out, np.take_along_axis(flat, idx, 1)[:, None, :]], 1)
        return out.reshape(*out.shape, *[1] * (x.ndim - 3))
    idx = np.argsort(-x, axis=axis, kind="stable").take(range(top_k), axis=axis)
    return np.take_along_axis(x, idx, axis) if out_max_val else idx.astype(np.float32)


@pytest.mark.formula("ArgMax")
@pytest.mark.parametrize(
    "param,top_k,out_max_val,axis",
    [
        ("", 1, False, None),
        ("argmax_param { top_k: 3 }", 3, False, None),
        ("argmax_param { top_k: 2 out_max_val: true }", 2, True, None),
        ("argmax_param { axis: 1 }", 1, False, 1),
        ("argmax_param { axis: 1 top_k: 2 out_max_val: true }", 2, True, 1),
    ],
    ids=["default", "top3", "top2_values", "axis1", "axis1_values"],
)
def test_argmax(tmp_path, param, top_k, out_max_val, axis):
    check_numpy(
        tmp_path, X4, one("ArgMax", param),
        lambda i, b: [caffe_argmax(i["data"], top_k, out_max_val, axis)],
    )


@pytest.mark.formula("ShuffleChannel")
@pytest.mark.opencv("ShuffleChannel")
@pytest.mark.parametrize("group", [2, 3])
def test_shuffle_channel(tmp_path, group):
    param = f"shuffle_channel_param {{ group: {group} }}"

    def f(i, b):
        x = i["data"]
        n, c, h, w = x.shape
        return [x.reshape(n, group, c // group, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)]

    check_numpy(tmp_path, X4, one("ShuffleChannel", param), f)
    check_opencv(tmp_path / "b", X4, one("ShuffleChannel", param))
