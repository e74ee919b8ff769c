"""The ``preprocess.py`` written into every converted folder: torch only, reading the folder's
``preprocess.json``. Kept as one file of text so that the folder stands alone."""

PREPROCESS_PY = '''"""Turn an image into this model's input, as preprocess.json says (written by caffe2torch).

    import numpy as np
    from PIL import Image
    from preprocess import preprocess

    x = preprocess(np.asarray(Image.open("cat.jpg").convert("RGB")))  # H x W x 3, RGB, 0..255
    y = model(x)

The steps are Caffe's: the channels in the model's order (grey: OpenCV's weights), resized,
centre-cropped, then (pixel - mean) * scale. Needs only torch.
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SPEC = json.loads((HERE / "preprocess.json").read_text(encoding="utf-8"))


def _input_spec(name):
    images = [s for s in SPEC["inputs"] if s["kind"] == "image"]
    if name is not None:
        for s in images:
            if s["name"] == name:
                return s
        raise KeyError(f"no image input {name!r}; image inputs: {[s['name'] for s in images]}")
    if len(images) != 1:
        raise ValueError(f"the model has {len(images)} image inputs: name one with input=")
    return images[0]


def _grey(x, order, exact):
    """OpenCV's colour to grey (0.299 R + 0.587 G + 0.114 B); on 8-bit pixels with the
    fixed-point rounding of OpenCV 4's cv::cvtColor (OpenCV 2 and 3 round a few pixels to the
    next level instead)."""
    r, g, b = (x[0], x[1], x[2]) if order == "RGB" else (x[2], x[1], x[0])
    if exact:
        r, g, b = (c.to(torch.int64) for c in (r, g, b))
        return ((r * 9798 + g * 19235 + b * 3735 + 16384) >> 15).to(torch.float32)[None]
    return (0.299 * r + 0.587 * g + 0.114 * b)[None]


def _mean(spec):
    m = spec["mean"]
    if m is None:
        return None
    if isinstance(m, str):  # a mean image, C x H x W, in the model's channel order
        return torch.load(HERE / m, weights_only=True)["mean"].to(torch.float32)
    return torch.tensor(m, dtype=torch.float32).view(-1, 1, 1)


def _resize(x, size, exact):
    if list(x.shape[1:]) == list(size):
        return x
    x = F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return x.round().clamp(0, 255) if exact else x  # cv::resize keeps 8-bit pixels 8-bit


def _centre(x, size):
    h, w = x.shape[-2:]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from an image of {h}x{w}")
    top, left = (h - ch) // 2, (w - cw) // 2  # Caffe's TEST-phase crop
    return x[..., top : top + ch, left : left + cw]


def preprocess(image, input=None, *, layout="HWC", order="RGB"):
    """``image``: pixels 0..255, H x W x C (``layout="CHW"``: C x H x W) or H x W, as a numpy
    array or a tensor, uint8 or float; channels in ``order``: "RGB" (Pillow, torchvision) or
    "BGR" (cv2.imread). Returns the float32 1 x C x H x W input of ``input`` (default: the
    model's only image input)."""
    spec = _input_spec(input)
    if getattr(getattr(image, "flags", None), "writeable", True) is False:
        image = image.copy()  # a read-only numpy array (np.asarray of a Pillow image)
    x = torch.as_tensor(image)
    exact = x.dtype == torch.uint8
    if x.ndim == 2:
        x = x[None]
    elif layout == "HWC":
        x = x.permute(2, 0, 1)
    elif layout != "CHW":
        raise ValueError(f"layout must be HWC or CHW, not {layout!r}")
    if x.shape[0] in (2, 4):  # drop alpha
        x = x[: x.shape[0] - 1]
    if x.shape[0] not in (1, 3):
        raise ValueError(f"an image has 1 or 3 channels, not {x.shape[0]}")
    x = x.to(torch.float32)
    want = spec["channel_order"]
    if want == "gray":
        if x.shape[0] == 3:
            x = _grey(x, order.upper(), exact)
    else:
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        elif order.upper() != want:
            x = x.flip(0)
    size = spec["shape"][2:]
    x = _resize(x, spec["resize"] or size, exact)
    before_crop = list(x.shape[1:])
    if spec["crop"]:
        x = _centre(x, spec["crop"])
    mean = _mean(spec)
    if mean is not None:
        if mean.shape[1:] == (1, 1) or list(mean.shape[1:]) == list(x.shape[1:]):
            pass
        elif list(mean.shape[1:]) == before_crop:
            mean = _centre(mean, x.shape[1:])
        else:
            mean = F.interpolate(mean[None], size=tuple(x.shape[1:]), mode="bilinear", align_corners=False)[0]
        x = x - mean
    if spec["scale"] != 1:
        x = x * spec["scale"]
    return x[None].contiguous()
'''
