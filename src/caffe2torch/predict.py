"""Run a converted folder on image files: its ``preprocess.py``, then its model.

A classifier (the net ends in Softmax, or labels are given) gives its top classes; any other
net gives each output's shape, statistics and, when small, its values."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GiB, TEXT_LIMIT, CaffeError, check_file, read_text, reading
from .extras import require
from .folder import (
    PREPROCESS_FILE, PREPROCESS_JSON, check_preprocess, import_file, load_converted, parse_json,
    read_manifest,
)

SMALL = 16  # outputs with at most this many values per image are printed in full
# Images: at most 2^28 pixels (16384 x 16384) and 2 GiB on disk; more is a decompression bomb
# or not a photograph a Caffe net was made for.
MAX_PIXELS = 1 << 28
MAX_IMAGE_FILE = 2 * GiB


class PredictError(CaffeError):
    """The folder or an image cannot be used."""


@dataclass
class Prediction:
    image: str
    outputs: list[dict] = field(default_factory=list)  # name, shape, min/max/mean/std, values
    top: list[dict] = field(default_factory=list)  # index, label, probability (classifiers)
    softmax_applied: bool = False

    def to_dict(self) -> dict:
        out = {"image": self.image, "outputs": self.outputs}
        if self.top:
            out["top"] = self.top
            out["softmax_applied"] = self.softmax_applied
        return out


def read_labels(path: Path) -> list[str]:
    """One label per line; a leading WordNet id (``n01440764 tench, Tinca tinca``) is dropped."""
    check_file(path, PredictError, "a labels file", limit=TEXT_LIMIT)
    with reading(path, PredictError, "a labels file"):
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        out.append(rest.strip() if rest and head[:1] == "n" and head[1:].isdigit() else line)
    return out


def _load_preprocess(outdir: Path):
    path = outdir / PREPROCESS_FILE
    if not os.path.isfile(path) or not os.path.isfile(outdir / PREPROCESS_JSON):
        raise PredictError(
            f"has no {PREPROCESS_FILE} and {PREPROCESS_JSON} (converted by an older caffe2torch? "
            "convert again)",
            file=outdir,
        )
    spec_path = outdir / PREPROCESS_JSON
    text = read_text(spec_path, PredictError, "a preprocess.json")
    check_preprocess(parse_json(text, spec_path, PredictError), path=spec_path)
    module = import_file(path, PredictError, "the folder's preprocess.py", "caffe2torch_preprocess")
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, dict) or not callable(getattr(module, "preprocess", None)):
        raise PredictError("defines no SPEC (a dict) and preprocess() (edited by hand? convert again)", file=path)
    check_preprocess(spec, path=path)
    return module


def _line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def load_image(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8, RGB (Pillow). Its size is checked from the header
    before it is decoded (a decompression bomb is refused, not decoded)."""
    Image = require("PIL.Image", "images", "reading images", error=PredictError)
    UnidentifiedImageError = Image.UnidentifiedImageError
    check_file(path, PredictError, "an image", limit=MAX_IMAGE_FILE)
    with reading(path, PredictError, "an image"):
        limit = Image.MAX_IMAGE_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                Image.MAX_IMAGE_PIXELS = None  # its size is checked here, from the header
                with Image.open(path) as im:
                    Image.MAX_IMAGE_PIXELS = limit
                    w, h = im.size
                    if w * h > MAX_PIXELS:
                        raise PredictError(
                            f"is {w}x{h} pixels, over the limit of {MAX_PIXELS:,} "
                            "(a decompression bomb, or far larger than any net's input)",
                            file=path,
                        )
                    return np.array(im.convert("RGB"))  # its own, writable memory
        except UnidentifiedImageError:
            raise PredictError("is not an image Pillow can read", file=path) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PredictError(f"is over the limit of {MAX_PIXELS:,} pixels", file=path) from None
        except (ValueError, SyntaxError, EOFError) as e:  # a damaged file Pillow gives up on
            raise PredictError(f"cannot be decoded: {_line(e)[:120]}", file=path) from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _preprocess(pre, image: np.ndarray, path: Path):
    import torch

    try:
        x = pre.preprocess(image)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the folder's own code fails
        raise PredictError(
            f"cannot be made into the model's input by {PREPROCESS_FILE}: {_line(e)[:200]}",
            file=path,
        ) from None
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != 1 or not x.is_floating_point():
        raise PredictError(
            f"{PREPROCESS_FILE} made something other than a 1 x C x H x W float tensor of it", file=path
        )
    return x


def image_batch(outdir: Path, images: list[Path]) -> tuple[str, np.ndarray, dict]:
    """The images through the folder's preprocess.py, stacked: (input name, N x C x H x W,
    its ``model_input`` record). For a net with one input, an image."""
    pre = _load_preprocess(outdir)
    spec = _single_image_input(pre.SPEC, outdir)
    batch = np.concatenate([_preprocess(pre, load_image(Path(p)), Path(p)).detach().numpy() for p in images])
    return spec["name"], batch, spec.get("model_input") or {}


def _single_image_input(spec: dict, outdir: Path) -> dict:
    image_inputs = [i for i in spec["inputs"] if i["kind"] == "image"]
    if len(spec["inputs"]) != 1 or len(image_inputs) != 1:
        names = ", ".join(f"{i['name']} ({i['kind']})" for i in spec["inputs"])
        raise PredictError(f"images feed a net with one image input; this one has {names}", file=outdir)
    return image_inputs[0]


def predict(
    outdir: str | Path,
    images: list[str | Path],
    *,
    labels: list[str] | None = None,
    top: int = 5,
    warn=None,
) -> list[Prediction]:
    """Run the folder's model on ``images``; ``warn(text)`` hears about what the folder lacks
    (a mean file the prototxt names that was not found at conversion)."""
    import torch

    outdir = Path(outdir)
    manifest = read_manifest(outdir)
    pre = _load_preprocess(outdir)
    spec = pre.SPEC
    image_spec = _single_image_input(spec, outdir)
    model = load_converted(outdir)
    if image_spec.get("mean_missing") and warn is not None:  # (said once the folder loads)
        warn(
            f"the prototxt names the mean file {image_spec['mean_missing']}, which was not found "
            "when this folder was converted: the images are not mean-subtracted, so the "
            "outputs may be wrong (convert again with --mean-file)"
        )
    outputs = spec.get("outputs") or [{"name": o["name"], "softmax": False} for o in manifest.outputs]
    results = []
    for image in images:
        image = Path(image)
        x = _preprocess(pre, load_image(image), image)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the folder's own code's warnings
            try:
                ys = model(x)
            except (Exception, SystemExit) as e:  # noqa: BLE001 - the model fails on this input
                raise PredictError(
                    f"the model fails on this image: {type(e).__name__}: {_line(e)[:200]}", file=image
                ) from None
        ys = ys if isinstance(ys, tuple) else (ys,)
        if len(ys) != len(outputs) or not all(
            isinstance(y, torch.Tensor) and (y.is_floating_point() or not (y.is_complex() or y.dtype == torch.bool))
            for y in ys
        ):
            got = ", ".join(str(y.dtype) if isinstance(y, torch.Tensor) else type(y).__name__ for y in ys)
            raise PredictError(
                f"the model returned {len(ys)} value(s) ({got}), not the {len(outputs)} real "
                "tensor(s) its outputs say (model.py edited by hand? convert again)",
                file=outdir / "model.py",
            )
        p = Prediction(str(image))
        for out, y in zip(outputs, ys):
            a = y.detach().to(torch.float64).numpy()
            empty = a.size == 0
            finite = a[np.isfinite(a)]
            rec = {
                "name": out["name"],
                "shape": list(a.shape),
                # Statistics of the finite values; NaN and infinities are counted apart (JSON
                # has no such numbers).
                "min": float(finite.min()) if finite.size else None,
                "max": float(finite.max()) if finite.size else None,
                "mean": float(finite.mean()) if finite.size else None,
                "std": float(finite.std()) if finite.size else None,
            }
            if finite.size != a.size:
                rec["nonfinite"] = int(a.size - finite.size)
            if a.size <= SMALL and not empty:
                rec["values"] = [float(v) if np.isfinite(v) else None for v in a.reshape(-1)]
            p.outputs.append(rec)
        first, y0 = outputs[0], ys[0]
        classes = int(np.prod(y0.shape[1:])) if y0.ndim >= 2 else 0
        if y0.ndim == 0:
            classes = 0
        if (first.get("softmax") or labels) and classes > 1 and y0.shape[0] == 1:
            if labels is not None and len(labels) != classes:
                raise PredictError(
                    f"{len(labels)} labels for {classes} classes of output '{first['name']}'"
                )
            scores = y0.reshape(-1).to(torch.float64)
            if not first.get("softmax"):
                scores = torch.softmax(scores, 0)
                p.softmax_applied = True
            probs, idx = torch.sort(scores, descending=True, stable=True)
            for prob, i in zip(probs[:top].tolist(), idx[:top].tolist()):
                p.top.append(
                    {"index": i, "label": labels[i] if labels else str(i),
                     "probability": prob if math.isfinite(prob) else None}
                )
        results.append(p)
    return results
