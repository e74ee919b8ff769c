"""PSPNet's Interp, SegNet's Upsample and FlowNet2's Accum and Resample (layers/resize.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import X4, check_numpy, check_opencv, one  # noqa: E402


def _bilinear_align_corners(x, oh, ow):
    n, c, h, w = x.shape
    ys = np.linspace(0, h - 1, oh) if oh > 1 else np.zeros(1)
    xs = np.linspace(0, w - 1, ow) if ow > 1 else np.zeros(1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    g = lambda a, b: x[:, :, a][:, :, :, b]  # noqa: E731
    return (g(y0, x0) * (1 - wy) * (1 - wx) + g(y0, x1) * (1 - wy) * wx
            + g(y1, x0) * wy * (1 - wx) + g(y1, x1) * wy * wx)


@pytest.mark.formula("Interp")
@pytest.mark.opencv("Interp")
@pytest.mark.parametrize(
    "param,size",
    [("interp_param { height: 13 width: 17 }", (13, 17)), ("interp_param { zoom_factor: 3 }", (25, 31)),
     ("interp_param { shrink_factor: 2 }", (5, 6))],
    ids=["size", "zoom", "shrink"],
)
def test_interp(tmp_path, param, size):
    layers = one("Interp", param)
    check_numpy(tmp_path, X4, layers, lambda i, b: [_bilinear_align_corners(i["data"].astype(np.float64), *size)])
    if "shrink" not in param:  # OpenCV fails on shrink_factor
        check_opencv(tmp_path / "b", X4, layers)


@pytest.mark.formula("Upsample")
def test_upsample_with_pooling_mask(tmp_path):
    layers = (
        one("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", tops=("pool", "mask"), name="pool")
        + one("Upsample", "upsample_param { scale: 2 upsample_h: 9 upsample_w: 11 }", bottoms=("pool", "mask"))
    )

    def f(i, b):
        x = i["data"]
        n, c, h, w = x.shape
        out = np.zeros_like(x)
        for r in range((h + 1) // 2):
            for q in range((w + 1) // 2):
                win = x[:, :, 2 * r : 2 * r + 2, 2 * q : 2 * q + 2]
                k = win.reshape(n, c, -1).argmax(-1)
                dr, dq = np.divmod(k, win.shape[3])
                for a in range(n):
                    for ch in range(c):
                        out[a, ch, 2 * r + dr[a, ch], 2 * q + dq[a, ch]] = win[a, ch, dr[a, ch], dq[a, ch]]
        return [out]

    r = check_numpy(tmp_path, X4, layers, f)
    assert "return_indices=True" in r.conversion.code


# ------------------------------------------------------------------ FlowNet2's Accum, Resample
def flownet_accum(inputs, size, reference=False):
    """AccumLayer::Forward_gpu of lmb-freiburg/flownet2 (UpscaleFeatures): every bottom but a
    reference resized bilinearly, corners on corners, channels concatenated."""
    parts = inputs[:-1] if reference else inputs
    return np.concatenate([_bilinear_align_corners(x.astype(np.float64), *size) for x in parts], 1)


@pytest.mark.formula("Accum")
@pytest.mark.opencv("Accum")
@pytest.mark.parametrize(
    "param,size",
    [("", (8, 12)), ("accum_param { top_height: 10 top_width: 14 }", (10, 14)),
     ("accum_param { size_divisible_by: 5 }", (10, 15))],
    ids=["largest", "top_size", "divisible"],
)
def test_accum(tmp_path, param, size):
    inputs = {"a": (1, 2, 2, 3), "b": (1, 3, 8, 12)}
    net = one("Accum", param, bottoms=("a", "b"))
    r = check_numpy(tmp_path, inputs, net, lambda i, b: [flownet_accum([i["a"], i["b"]], size)])
    node = r.conversion.graph.layers[-1]
    if not node.op.opencv_gap(node):  # OpenCV ignores size_divisible_by
        check_opencv(tmp_path / "cv", inputs, net)


@pytest.mark.formula("Accum")
def test_accum_with_a_reference(tmp_path):
    inputs = {"a": (2, 2, 3, 4), "r": (2, 1, 6, 7)}
    net = one("Accum", "accum_param { have_reference: true }", bottoms=("a", "r"))
    check_numpy(tmp_path, inputs, net, lambda i, b: [flownet_accum([i["a"], i["r"]], (6, 7), True)])


@pytest.mark.formula("Resample")
@pytest.mark.opencv("Resample")
@pytest.mark.parametrize("param", ["factor: 2.0", "width: 5 height: 7"])
def test_resample_nearest(tmp_path, param):
    def nearest(x, oh, ow):  # OpenCV's Resize: source pixel floor(dst * in / out)
        ys = np.floor(np.arange(oh) * x.shape[2] / oh).astype(int)
        xs = np.floor(np.arange(ow) * x.shape[3] / ow).astype(int)
        return x[:, :, ys][:, :, :, xs]

    net = one("Resample", f"resample_param {{ type: NEAREST antialias: false {param} }}")
    size = (8, 10) if "factor" in param else (7, 5)
    inputs = {"data": (2, 3, 4, 5)}
    check_numpy(tmp_path, inputs, net, lambda i, b: [nearest(i["data"], *size)])
    check_opencv(tmp_path / "cv", inputs, net)


def test_resample_linear_is_refused(tmp_path):
    from caffe2torch.errors import CaffeError
    from layer_harness import run

    with pytest.raises(CaffeError, match="Resample type LINEAR"):
        run(tmp_path, {"data": (1, 1, 2, 3)}, one("Resample", "resample_param { type: LINEAR factor: 2 }"))


@pytest.mark.formula("Upsample")
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_one_bottom_upsample_repeats(tmp_path, scale):
    # The YOLOv3 ports' and brocolli's Upsample: out[h][w] = in[h / scale][w / scale].
    check_numpy(
        tmp_path, X4, one("Upsample", f"upsample_param {{ scale: {scale} }}"),
        lambda i, b: [i["data"].repeat(scale, axis=2).repeat(scale, axis=3)],
    )


@pytest.mark.parametrize(
    "param,message", [("", "needs scale"), ("upsample_param { scale: 2 scale_h: 2 }", "takes scale only")]
)
def test_one_bottom_upsample_refuses(tmp_path, param, message):
    from caffe2torch.errors import CaffeError
    from layer_harness import run

    with pytest.raises(CaffeError, match=message):
        run(tmp_path, X4, one("Upsample", param))
