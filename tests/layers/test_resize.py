"""PSPNet's Interp and SegNet's Upsample (layers/resize.py)."""
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
