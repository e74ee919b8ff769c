"""What an image must go through to become the blob the Caffe net reads after its data layer.

Caffe keeps this outside the deploy net, in data layers (``transform_param``,
``image_data_param``, V1 fields), mean files and READMEs. :func:`derive` reads what the prototxt
says, takes flags for what it does not say, and records for every value where it came from.
Caffe's DataTransformer computes ``(pixel - mean) * scale`` on a (resized, centre-cropped)
image whose pixels are 0..255, in the channel order OpenCV reads: BGR.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CaffeError, safe_text
from ..graph import Graph, Value
from .meanfile import read_mean

FORMAT = "caffe2torch-preprocess/1"
MEAN_FILE = "mean.pth"
COLOUR = ("BGR", "RGB")


class PreprocessError(CaffeError):
    """Preprocessing options that cannot apply to this net."""


@dataclass
class Options:
    """The flags of ``convert`` about inputs; None: not given."""

    mean: list[float] | None = None  # per channel, in the Caffe net's channel order
    mean_file: Path | None = None  # .binaryproto or .npy
    scale: float | None = None
    input_order: str | None = None  # the converted model's: "bgr" or "rgb"
    caffe_order: str | None = None  # the order the Caffe net was trained on: "bgr" or "rgb"
    fold_normalization: bool = False

    def to_dict(self) -> dict:
        out: dict = {}
        if self.mean is not None:
            out["mean"] = list(self.mean)
        if self.mean_file is not None:
            out["mean_file"] = self.mean_file.name
        if self.scale is not None:
            out["scale"] = self.scale
        if self.input_order:
            out["input_order"] = self.input_order
        if self.caffe_order:
            out["caffe_order"] = self.caffe_order
        if self.fold_normalization:
            out["fold_normalization"] = True
        return out


@dataclass
class InputSpec:
    name: str
    shape: list[int]
    kind: str  # "image" (1 or 3 channels) or "tensor" (anything else: given as it is)
    caffe_order: str | None = None  # "BGR", "RGB" or "gray": what the Caffe net reads
    channel_order: str | None = None  # what the converted model reads
    resize: list[int] | None = None  # [h, w] the image is resized to before cropping
    crop: list[int] | None = None  # [h, w], centred (Caffe's TEST phase)
    mean: list[float] | None = None  # per channel, in channel_order; see mean_image
    mean_image: np.ndarray | None = None  # (C, H, W) float32 in channel_order, stored as mean.pth
    scale: float = 1.0
    folded: dict = field(default_factory=dict)  # what the model's first layers took over
    sources: dict = field(default_factory=dict)  # field -> where its value came from
    # Fields the prototxt does not state, whose values are Caffe's defaults, assumed.
    assumed: list[str] = field(default_factory=list)
    mean_missing: str | None = None  # a mean file the prototxt names that is not here
    mean_path: Path | None = None  # the mean file read, if any

    @property
    def swap(self) -> bool:
        """The model reads the channels in the reverse order of the Caffe net."""
        return self.caffe_order in COLOUR and self.channel_order != self.caffe_order

    def caffe_mean(self) -> np.ndarray | None:
        """The mean in the Caffe net's channel order, per channel: (C,), or None."""
        m = self.folded.get("mean", self.mean)
        if m is None:
            return None
        m = np.asarray(m, np.float32)
        return m[::-1].copy() if self.swap else m

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "shape": list(self.shape), "kind": self.kind}
        if self.kind != "image":
            out["sources"] = self.sources
            return out
        mean = MEAN_FILE if self.mean_image is not None else self.mean
        out.update(
            {
                "channel_order": self.channel_order,
                "caffe_order": self.caffe_order,
                "pixel_range": [0, 255],
                "resize": self.resize,
                "crop": self.crop,
                "mean": mean,
                "scale": self.scale,
                "folded_into_model": self.folded or None,
                "model_input": self.model_input(),
                "assumed": list(self.assumed),
                "mean_missing": self.mean_missing,
                "sources": self.sources,
            }
        )
        return out

    def assumption_text(self) -> str:
        """What the prototxt does not say, as one clause ("" when it says everything)."""
        if not self.assumed:
            return ""
        words = {
            "channel_order": self.caffe_order or "",
            "pixel_range": "pixels 0..255",
            "mean": "no mean",
            "scale": "scale 1",
        }
        said = ", ".join(words[a] for a in words if a in self.assumed and words[a])
        return f"the prototxt does not say; Caffe's defaults assumed: {said}"

    def model_input(self) -> dict:
        """How the converted model's input is made from the Caffe net's input blob (what the
        check feeds each): reverse the channels, undo a folded scale and mean."""
        out: dict = {"reverse_channels": self.swap}
        if self.folded.get("layers"):
            out["divide_by"] = self.folded.get("scale", 1.0)
            m = self.caffe_mean()
            out["add_mean"] = None if m is None else [float(x) for x in m]
        return out


@dataclass
class Preprocess:
    inputs: list[InputSpec]
    outputs: list[dict]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "inputs": [i.to_dict() for i in self.inputs],
            "outputs": self.outputs,
        }

    def image_inputs(self) -> list[InputSpec]:
        return [i for i in self.inputs if i.kind == "image"]

    def mean_files(self) -> list[Path]:
        """The mean files read (inputs of the conversion, like the prototxt)."""
        return [i.mean_path for i in self.inputs if i.mean_path is not None]

    def adapt(self, arrays: dict) -> dict:
        """The converted model's inputs from the Caffe net's (blob name -> array)."""
        out = dict(arrays)
        for spec in self.image_inputs():
            if spec.name in out:
                out[spec.name] = model_input(spec.model_input(), out[spec.name])
        return out


def model_input(how: dict, x: np.ndarray) -> np.ndarray:
    """Apply a ``model_input`` record (see :meth:`InputSpec.model_input`) to a Caffe input."""
    x = np.asarray(x, np.float32)
    if how.get("divide_by") not in (None, 1.0):
        x = x / np.float32(how["divide_by"])
    if how.get("add_mean") is not None:
        x = x + np.asarray(how["add_mean"], np.float32).reshape(1, -1, 1, 1)
    if how.get("reverse_channels"):
        x = x[:, ::-1]
    return np.ascontiguousarray(x, np.float32)


def caffe_input(how: dict, x: np.ndarray) -> np.ndarray:
    """The inverse of :func:`model_input`: the Caffe net's input from the model's."""
    x = np.asarray(x, np.float32)
    if how.get("reverse_channels"):
        x = x[:, ::-1]
    if how.get("add_mean") is not None:
        x = x - np.asarray(how["add_mean"], np.float32).reshape(1, -1, 1, 1)
    if how.get("divide_by") not in (None, 1.0):
        x = x * np.float32(how["divide_by"])
    return np.ascontiguousarray(x, np.float32)


def pixel_inputs(preprocess: dict | None, arrays: dict, seed: int) -> tuple[dict, list[str]]:
    """For inputs whose normalization is folded into the model: a seeded random image (uniform
    pixels 0..255) instead of a standard normal blob, as the Caffe input it normalizes to. The
    folded model computes on pixels, so its rounding is judged on the values it will see."""
    out, names = dict(arrays), []
    for rec in (preprocess or {}).get("inputs", []):
        how = rec.get("model_input") or {}
        if rec.get("kind") == "image" and rec["name"] in out and how.get("divide_by") is not None:
            shape = np.asarray(out[rec["name"]]).shape
            rng = np.random.default_rng(seed)
            pixels = rng.uniform(0, 255, size=shape).astype(np.float32)
            out[rec["name"]] = caffe_input(how, pixels)
            names.append(rec["name"])
    return out, names


def adapt_with_manifest(preprocess: dict | None, arrays: dict) -> dict:
    """:meth:`Preprocess.adapt` from the ``preprocess`` record of a conversion.json."""
    out = dict(arrays)
    for rec in (preprocess or {}).get("inputs", []):
        if rec.get("kind") == "image" and rec["name"] in out and rec.get("model_input"):
            out[rec["name"]] = model_input(rec["model_input"], out[rec["name"]])
    return out


# --------------------------------------------------------------------------------- derive
def _has(msg, name: str) -> bool:
    try:
        return msg.HasField(name)
    except ValueError:  # a repeated field
        return len(getattr(msg, name)) > 0


def _where(node, fmt: str) -> str:
    upgraded = f" ({fmt} format, upgraded as Caffe does)" if fmt in ("V0", "V1") else ""
    return f"prototxt{upgraded}: layer '{node.name}' ({node.type})"


def _resolve(name: str, prototxt: Path) -> Path | None:
    p = Path(name)
    for cand in ([p] if p.is_absolute() else [prototxt.parent / p, Path.cwd() / p, prototxt.parent / p.name]):
        if os.path.isfile(cand):
            return cand
    return None


def derive(graph: Graph, outputs: list[Value], opts: Options) -> Preprocess:
    """The preprocessing of every input of ``graph`` (see the module's docstring)."""
    inputs, notes = [], []
    images = 0
    for v in graph.inputs:
        spec = _input(graph, v, opts, notes)
        images += spec.kind == "image"
        inputs.append(spec)
    if sum(i.mean_image is not None for i in inputs) > 1:
        raise PreprocessError(
            "mean images for more than one input (mean.pth holds one): give --mean per channel",
            file=graph.path,
        )
    flags = [f for f, given in (
        ("--mean", opts.mean is not None), ("--mean-file", opts.mean_file is not None),
        ("--scale", opts.scale is not None), ("--input-order", bool(opts.input_order)),
        ("--caffe-order", bool(opts.caffe_order)), ("--fold-normalization", opts.fold_normalization),
    ) if given]
    if flags and not images:
        raise PreprocessError(
            f"{', '.join(flags)}: the net has no image input (4-D with 1 or 3 channels) to apply "
            "it to", file=graph.path,
        )
    if opts.input_order == "rgb" and not any(i.caffe_order in COLOUR for i in inputs):
        raise PreprocessError(
            "--input-order rgb: the net has no 3-channel image input (its image inputs are grey)",
            file=graph.path,
        )
    outs = [
        {"name": o.name, "shape": list(o.shape or ()), "softmax": o.producer.op.PROBABILITIES}
        for o in outputs
    ]
    return Preprocess(inputs, outs, notes)


def _input(graph: Graph, v: Value, opts: Options, notes: list[str]) -> InputSpec:
    shape = list(v.shape or ())
    node = v.producer
    proto = node.op.proto
    if len(shape) != 4 or shape[1] not in (1, 3):
        return InputSpec(v.name, shape, "tensor", sources={"kind": f"shape {shape}: not an image"})
    spec = InputSpec(v.name, shape, "image")
    src = spec.sources
    channels = shape[1]
    tp = proto.transform_param if _has(proto, "transform_param") else None
    idp = proto.image_data_param if _has(proto, "image_data_param") else None
    where = _where(node, graph.format)
    # A data layer that reads images (with OpenCV) says their channel order and range; one with
    # a transform_param says its mean and scale (none given: none applied).
    reads_images = node.op.READS_IMAGES
    states_transform = tp is not None or reads_images

    # Channel order.
    if channels == 1:
        spec.caffe_order = spec.channel_order = "gray"
        src["channel_order"] = (
            "1 channel: grey pixels (OpenCV turns a colour image grey with "
            "0.299 R + 0.587 G + 0.114 B)"
        )
    else:
        if opts.caffe_order:
            spec.caffe_order = opts.caffe_order.upper()
            src["caffe_order"] = "--caffe-order"
        else:
            spec.caffe_order = "BGR"
            if reads_images:
                src["caffe_order"] = f"{where} reads images with OpenCV, which gives BGR"
            else:
                src["caffe_order"] = (
                    "default: Caffe's data layers and caffe.io read images with OpenCV, which "
                    "gives BGR, and nothing in the prototxt says otherwise"
                )
                spec.assumed.append("channel_order")
        if opts.input_order:
            spec.channel_order = opts.input_order.upper()
            src["channel_order"] = "--input-order"
        else:
            spec.channel_order = spec.caffe_order
            src["channel_order"] = "the Caffe net's order (no --input-order)"

    if not reads_images:
        spec.assumed.append("pixel_range")

    # Size: resize, then a centred crop.
    if idp is not None and idp.new_height and idp.new_width:
        spec.resize = [idp.new_height, idp.new_width]
        src["resize"] = f"{where} image_data_param new_height/new_width"
    else:
        src["resize"] = f"default: to the input's {shape[2]}x{shape[3]} when the image differs"
    if tp is not None and tp.crop_size:
        spec.crop = [tp.crop_size, tp.crop_size]
        src["crop"] = f"{where} transform_param.crop_size (centred, as in Caffe's TEST phase)"

    # Scale.
    if opts.scale is not None:
        spec.scale = float(opts.scale)
        said = f" (the prototxt says {tp.scale:g})" if tp is not None and _has(tp, "scale") else ""
        src["scale"] = "--scale" + said
    elif tp is not None and _has(tp, "scale"):
        spec.scale = float(np.float32(tp.scale))
        src["scale"] = f"{where} transform_param.scale"
    else:
        src["scale"] = "default: 1 (the prototxt sets no scale)"
        if not states_transform:
            spec.assumed.append("scale")

    # Mean: per channel or an image, in the Caffe net's order here; reordered below.
    mean = mean_image = None
    if opts.mean is not None and opts.mean_file is not None:
        raise PreprocessError("give --mean or --mean-file, not both", file=opts.mean_file)
    if opts.mean is not None:
        mean, src["mean"] = _per_channel(list(opts.mean), channels, "--mean", graph.path), "--mean"
    elif opts.mean_file is not None:
        mean_image = _mean_image(read_mean(opts.mean_file), channels, opts.mean_file)
        src["mean"] = f"--mean-file {opts.mean_file.name}"
        spec.mean_path = opts.mean_file
    elif tp is not None and len(tp.mean_value):
        mean = _per_channel(list(tp.mean_value), channels, f"layer '{node.name}' mean_value", graph.path)
        src["mean"] = f"{where} transform_param.mean_value"
    elif tp is not None and tp.mean_file:
        found = _resolve(tp.mean_file, graph.path)
        if found is None:
            src["mean"] = (
                f"{where} transform_param.mean_file '{tp.mean_file}', which is not here: "
                "give it with --mean-file"
            )
            notes.append(
                f"input '{v.name}': the prototxt names the mean file '{tp.mean_file}', which is "
                "not here; preprocess.json has no mean (give --mean-file)"
            )
            spec.mean_missing = tp.mean_file
        else:
            mean_image = _mean_image(read_mean(found), channels, found)
            src["mean"] = f"{where} transform_param.mean_file '{tp.mean_file}'"
            spec.mean_path = found
    else:
        src["mean"] = "none: the prototxt sets no mean (give --mean or --mean-file)"
        if not states_transform:
            spec.assumed.append("mean")
    if mean_image is not None:
        mean, mean_image = _fit_mean(spec, mean_image, src)
    if spec.swap:
        mean = None if mean is None else mean[::-1]
        mean_image = None if mean_image is None else np.ascontiguousarray(mean_image[::-1])
    spec.mean = None if mean is None else [float(x) for x in mean]
    spec.mean_image = mean_image
    return spec


def _fit_mean(spec: InputSpec, image: np.ndarray, src: dict):
    """A mean image where it fits; its per-channel average where it does not."""
    hw = list(image.shape[1:])
    crop = spec.crop or spec.shape[2:]
    if spec.resize is None and spec.crop and hw != crop and hw[0] >= crop[0] and hw[1] >= crop[1]:
        spec.resize = hw  # Caffe's data were the mean's size, then cropped
        src["resize"] = f"the mean image's size {hw[0]}x{hw[1]} (then the crop, as Caffe's data layer)"
    before = spec.resize or spec.shape[2:]
    if hw == [1, 1] or hw == list(before) or hw == list(crop):
        return None, image
    src["mean"] += (
        f"; its {hw[0]}x{hw[1]} fits neither the image nor the crop, so its per-channel average "
        "is used, as Caffe's classification example does"
    )
    return [float(x) for x in image.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)], None


def _per_channel(values: list[float], channels: int, what: str, path) -> list[float]:
    if len(values) == 1:
        return [float(np.float32(values[0]))] * channels
    if len(values) != channels:
        raise PreprocessError(
            f"{what} has {len(values)} values for an input with {channels} channels", file=path
        )
    return [float(np.float32(x)) for x in values]


def _mean_image(arr: np.ndarray, channels: int, path) -> np.ndarray:
    if arr.shape[0] != channels:
        raise PreprocessError(
            f"the mean has {arr.shape[0]} channels, the input {channels}", file=path
        )
    return arr


def input_lines(pre) -> list[str]:
    """One line per image input: what the model expects (preprocess.json has the details),
    and what of it the prototxt does not say (assumed)."""
    lines = []
    for spec in pre.image_inputs():
        parts = [spec.channel_order if spec.channel_order != "gray" else "grey"]
        parts.append("pixels 0..255")
        if spec.mean_image is not None:
            parts.append("minus the mean image (mean.pth)")
        elif spec.mean is not None:
            parts.append("minus mean [" + ", ".join(f"{m:g}" for m in spec.mean) + "]")
        elif spec.mean_missing:
            parts.append(f"no mean (the prototxt's mean file {spec.mean_missing} is not here)")
        if spec.scale != 1.0:
            parts.append(f"times {spec.scale:g}")
        if spec.folded.get("layers"):
            what = []
            if spec.folded.get("mean") is not None:
                what.append("mean [" + ", ".join(f"{m:g}" for m in spec.folded["mean"]) + "]")
            if spec.folded.get("scale", 1.0) != 1.0:
                what.append(f"scale {spec.folded['scale']:g}")
            parts.append(f"{' and '.join(what)} folded into {', '.join(spec.folded['layers'])}")
        if spec.swap:
            how = spec.folded.get("channel_order", "done by the model")
            parts.append(f"the Caffe net reads {spec.caffe_order}: the swap is {how}")
        line = f"Input {safe_text(spec.name)}: {', '.join(parts)}"
        assumed = spec.assumption_text()
        line += f" ({assumed}; preprocess.py makes it)" if assumed else " (preprocess.py makes it)"
        lines.append(line)
    return lines
