"""The files that make a converted folder shareable the way PyTorch models are shared.

- ``hubconf.py``: ``torch.hub.load(folder, "model", source="local")`` builds the model from
  the folder's ``model.py`` (imported by its path under a module name of its own, so several
  folders load into one process) and loads its weights with ``weights_only=True``;
- ``README.md``: a model card; YAML front matter (the source files and their sha256, the
  licence exactly as given with ``--license``, the check's result) and a body saying what the
  inputs are, how an image becomes one (what the prototxt states and what is assumed), and how
  to load the model;
- ``config.json``: the keys of timm's ``pretrained_cfg`` (input size, mean and std on the 0..1
  scale, interpolation, crop, number of classes, the first convolution's and the classifier's
  attribute names), the labels given with ``--labels``, and, under ``"caffe2torch"``, what timm
  has no key for (the channel order, what was assumed).

Everything here is computed from the conversion's manifest and graph; the same conversion
gives the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import TEXT_LIMIT, CaffeError, check_file, reading
from .folder import MANIFEST, MODEL_FILE, PREPROCESS_FILE, PREPROCESS_JSON, dump_json, sha256_file

HUBCONF = "hubconf.py"
CARD = "README.md"
CONFIG = "config.json"
LICENSE_LIMIT = 200

# Layers a classifier's output may pass through after the layer that makes the classes.
_PASS_THROUGH = {"Softmax", "Sigmoid", "Flatten", "Reshape", "Dropout", "Split", "Silence"}
_CLASSIFIERS = {"InnerProduct", "Convolution"}


class HubError(CaffeError):
    """``--labels`` or ``--license`` cannot describe this net."""


@dataclass(frozen=True)
class CardOptions:
    """What the user tells the model card: the labels file and the licence (as given)."""

    labels: Path | None = None
    license: str | None = None

    def check(self) -> None:
        """Raise on a licence that is not one short line (it goes in YAML front matter)."""
        if self.license is not None:
            text = self.license
            if not text.strip() or "\n" in text or "\r" in text or len(text) > LICENSE_LIMIT:
                raise HubError(
                    f"--license must be one line of at most {LICENSE_LIMIT} characters "
                    "(an SPDX identifier such as 'MIT' or 'BSD-2-Clause', or the licence's name)"
                )


def read_label_file(path: Path) -> tuple[list[str], dict[str, str]]:
    """Labels, one per line: ``(names, descriptions)``. A line with a leading WordNet id
    (``n01440764 tench, Tinca tinca``) gives the name ``n01440764`` and that description, as
    timm's ``label_names``/``label_descriptions``; any other line is the name."""
    check_file(path, HubError, "a labels file", limit=TEXT_LIMIT)
    with reading(path, HubError, "a labels file"):
        raw = path.read_bytes()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise HubError(f"is not UTF-8 text (byte {e.start})", file=path) from None
    names: list[str] = []
    descriptions: dict[str, str] = {}
    for line in (x.strip() for x in lines):
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if rest.strip() and head[:1] == "n" and head[1:].isdigit():
            names.append(head)
            descriptions[head] = rest.strip()
        else:
            names.append(line)
    if not names:
        raise HubError("holds no labels (one per line)", file=path)
    return names, descriptions


def folder_labels(folder: Path) -> list[str] | None:
    """The class names a folder's ``config.json`` holds (the descriptions where the labels
    had WordNet ids), for ``predict`` without ``--labels``; None when it holds none."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HubError(f"cannot be read: {e}", file=path) from None
    names = config.get("label_names") if isinstance(config, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    described = config.get("label_descriptions")
    if isinstance(described, dict):
        return [str(described.get(n, n)) for n in names]
    return names


# ----------------------------------------------------------------------------- the net's roles
def _walk_back(value):
    """The layer that makes ``value``'s classes: back through Softmax, Flatten and the like."""
    node = value.producer
    while node is not None and node.type in _PASS_THROUGH and node.inputs:
        node = node.inputs[0].producer
    return node if node is not None and node.type in _CLASSIFIERS else None


def classifier_info(conversion) -> dict:
    """``num_classes``, ``num_features``, ``classifier``, ``first_conv`` (None where the net
    has no such thing): the classes are the channels of the first output when it is N x C (or
    N x C x 1 x 1), made by an InnerProduct or a 1x1-output Convolution."""
    layer_map = conversion.generated.layer_map
    out: dict = {"num_classes": None, "num_features": None, "classifier": None, "first_conv": None}
    first = next((n for n in conversion.graph.nodes if n.type == "Convolution"), None)
    if first is not None and layer_map.get(first.name) not in (None, "functional", "dropped", "input"):
        out["first_conv"] = layer_map[first.name]
    if not conversion.outputs:
        return out
    value = conversion.outputs[0]
    shape = list(value.shape or [])
    if not (len(shape) == 2 or (len(shape) == 4 and shape[2:] == [1, 1])):
        return out
    node = _walk_back(value)
    if node is None:
        return out
    out["num_classes"] = int(shape[1])
    attr = layer_map.get(node.name)
    if attr not in (None, "functional", "dropped", "input"):
        out["classifier"] = attr
    if node.weight_shapes:
        w = list(node.weight_shapes[0])
        out["num_features"] = int(w[1]) if len(w) >= 2 else None
    return out


# ------------------------------------------------------------------------------- config.json
def _timm_norm(spec: dict) -> tuple[list[float] | None, list[float] | None]:
    """Caffe's ``(pixel - mean) * scale`` on 0..R pixels as timm's ``(p/R - mean) / std``."""
    top = float((spec.get("pixel_range") or [0, 255])[1])
    channels = int(spec["shape"][1]) if len(spec.get("shape") or []) > 1 else 1
    scale = float(spec.get("scale") or 1.0)
    mean = spec.get("mean")
    if isinstance(mean, list):
        means = [float(m) / top for m in mean]
        if len(means) == 1:
            means *= channels
    elif mean is None:
        means = [0.0] * channels
    else:
        means = None  # a mean image (mean.pth): no per-channel mean says it
    std = [1.0 / (top * scale)] * channels
    return ([round(m, 8) for m in means] if means is not None else None), [round(s, 8) for s in std]


def config_json(conversion, manifest: dict, card: CardOptions) -> dict:
    """The folder's ``config.json`` (timm's layout: see the module)."""
    info = classifier_info(conversion)
    pre = manifest.get("preprocess") or {}
    images = [s for s in pre.get("inputs", []) if s.get("kind") == "image"]
    first = images[0] if images else None
    cfg: dict = {"tag": "caffe", "custom_load": False}
    extra: dict = {"format": "caffe2torch-config/1", "preprocess": PREPROCESS_JSON}
    inputs = manifest["inputs"]
    cfg["input_size"] = list(inputs[0]["shape"][1:]) if inputs else None
    # A net that ends in an InnerProduct takes one input size; a fully convolutional one any.
    fixed = any(n.type == "InnerProduct" for n in conversion.graph.nodes)
    cfg["fixed_input_size"] = fixed
    if first is not None:
        mean, std = _timm_norm(first)
        crop, resize = first.get("crop"), first.get("resize")
        cfg["interpolation"] = "bilinear"
        cfg["crop_pct"] = (
            round(min(c / r for c, r in zip(crop, resize)), 6) if crop and resize else 1.0
        )
        cfg["crop_mode"] = "center"
        cfg["mean"] = mean
        cfg["std"] = std
        extra["channel_order"] = first.get("channel_order")
        extra["assumed"] = list(first.get("assumed") or [])
        if mean is None:
            extra["mean_image"] = first.get("mean")
    cfg["num_classes"] = info["num_classes"]
    cfg["first_conv"] = info["first_conv"]
    cfg["classifier"] = info["classifier"]
    out: dict = {
        "architecture": conversion.class_name,
        "num_classes": info["num_classes"],
        "num_features": info["num_features"],
        "pretrained_cfg": cfg,
    }
    if card.labels is not None:
        names, descriptions = read_label_file(card.labels)
        if info["num_classes"] is not None and len(names) != info["num_classes"]:
            raise HubError(
                f"has {len(names)} labels, but the net's output '{manifest['outputs'][0]['name']}' "
                f"has {info['num_classes']} classes",
                file=card.labels,
            )
        out["label_names"] = names
        if descriptions:
            out["label_descriptions"] = descriptions
        extra["labels"] = {"file": card.labels.name, "sha256": sha256_file(card.labels)}
    out["caffe2torch"] = extra
    return out


# ---------------------------------------------------------------------------------- hubconf
_HUBCONF = '''\
"""torch.hub entry point of this folder, written by caffe2torch.

    model = torch.hub.load("path/to/this/folder", "model", source="local")
"""
import hashlib as _hashlib
import importlib.util as _util
import os as _os

dependencies = {dependencies}

_HERE = _os.path.dirname(_os.path.abspath(__file__))


def model(pretrained: bool = True):
    """{class_name}, converted from Caffe ({prototxt}); in eval mode.

    pretrained: load the converted weights ({weights_file}, weights_only); False: PyTorch's
    default initialisation.
    """
    import torch

    path = _os.path.join(_HERE, "{model_file}")
    # A module name of its own per folder: several folders load into one process.
    name = "caffe2torch_hub_" + _hashlib.sha256(_os.path.realpath(path).encode()).hexdigest()[:16]
    spec = _util.spec_from_file_location(name, path)
    module = _util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.{class_name}()
    if pretrained:
{load}
        net.load_state_dict(state)
    return net.eval()
'''

_LOAD = {
    "model.pth": (
        '        state = torch.load(_os.path.join(_HERE, "model.pth"), map_location="cpu", '
        "weights_only=True)"
    ),
    "model.safetensors": (
        "        from safetensors.torch import load_file\n\n"
        '        state = load_file(_os.path.join(_HERE, "model.safetensors"))'
    ),
}


def hubconf(manifest: dict) -> str:
    """The folder's ``hubconf.py``: one entry point, ``model``."""
    weights_file = manifest["weights_file"]
    deps = ["torch"] + (["safetensors"] if weights_file.endswith(".safetensors") else [])
    prototxt = (manifest.get("sources", {}).get("prototxt") or {}).get("file", "a prototxt")
    return _HUBCONF.format(
        dependencies=json.dumps(deps),
        class_name=manifest["class_name"],
        prototxt=str(prototxt).replace('"', "'"),
        weights_file=weights_file,
        model_file=MODEL_FILE,
        load=_LOAD[weights_file],
    )


# ------------------------------------------------------------------------------- model card
def _yaml(value) -> str:
    """A scalar for YAML front matter: JSON strings and numbers are YAML."""
    return json.dumps(value, ensure_ascii=False)


def _check_line(manifest: dict) -> str:
    v = manifest.get("verification") or {}
    if v.get("passed") is None:
        return f"not verified: {v.get('skipped') or v.get('status') or 'not run'}"
    word = "passed" if v["passed"] else "FAILED"
    engines = v.get("compared_by") or {}
    by = ", ".join(f"{n} by {k}" for k, n in sorted(engines.items())) if len(engines) > 1 else ""
    worst = v.get("worst_rel")
    text = f"{word}: {v.get('compared', 0)} values compared with {v.get('reference')}"
    text += f" ({by})" if by else ""
    text += f", worst relative error {worst:.1e}" if isinstance(worst, float) else ""
    if not v["passed"] and v.get("first_divergence"):
        text += f", first divergence at layer '{v['first_divergence']}'"
    return text


def _shape(shape) -> str:
    return "x".join("N" if d is None else str(d) for d in shape)


def model_card(conversion, manifest: dict, card: CardOptions, config: dict) -> str:
    """The folder's ``README.md``."""
    sources = manifest.get("sources") or {}
    cls = manifest["class_name"]
    front = ["---", "library_name: pytorch", "tags:", "- caffe2torch", "- caffe"]
    if config.get("num_classes"):
        front.append("- image-classification")
    front.append(f"license: {_yaml(card.license)}" if card.license else "license: null")
    front.append("source:")
    for key in ("prototxt", "weights"):
        src = sources.get(key)
        if not src:
            continue
        if src.get("random"):
            front.append(f"  {key}: {_yaml('random (seed %s)' % src.get('seed'))}")
        else:
            front.append(f"  {key}: {_yaml(src.get('file'))}")
            front.append(f"  {key}_sha256: {_yaml(src.get('sha256'))}")
    v = manifest.get("verification") or {}
    front += [
        "caffe2torch:",
        f"  version: {_yaml(manifest.get('versions', {}).get('caffe2torch'))}",
        f"  check: {_yaml('passed' if v.get('passed') else 'failed' if v.get('passed') is False else 'not verified')}",
        f"  check_detail: {_yaml(_check_line(manifest))}",
        "---",
        "",
    ]
    proto = (sources.get("prototxt") or {}).get("file", "the prototxt")
    weights = sources.get("weights") or {}
    made = (
        f"seeded random weights (seed {weights.get('seed')}): an architecture, not a trained model"
        if weights.get("random") else f"the weights in `{weights.get('file')}`"
    )
    body = [
        f"# {cls}",
        "",
        f"Converted from the Caffe net `{proto}` with {made}, by caffe2torch "
        f"{manifest.get('versions', {}).get('caffe2torch')}. `model.py` is one `nn.Module` class "
        f"that imports only torch; `{manifest['weights_file']}` is its `state_dict`.",
        "",
        f"**License:** {card.license}" if card.license else
        "**License:** not stated (the converter was not told: `convert --license`). The "
        "weights keep the licence of the Caffe release they came from.",
        "",
        f"**Check:** {_check_line(manifest)}. Layer by layer: `report.md`, `report.html`.",
        "",
        "## Inputs and outputs",
        "",
        "| | name | shape |",
        "|---|---|---|",
    ]
    body += [f"| input | `{i['name']}` | {_shape(i['shape'])} |" for i in manifest["inputs"]]
    body += [f"| output | `{o['name']}` | {_shape(o['shape'])} |" for o in manifest["outputs"]]
    body += ["", "## Preprocessing", ""]
    pre = manifest.get("preprocess") or {}
    for spec in pre.get("inputs", []):
        if spec.get("kind") != "image":
            body.append(f"- `{spec['name']}`: a tensor, given as it is.")
            continue
        mean = spec.get("mean")
        mean_text = (
            "no mean subtracted" if mean is None
            else f"minus the mean image `{mean}`" if isinstance(mean, str) else f"minus the mean {mean}"
        )
        low, high = spec.get("pixel_range", [0, 255])
        body.append(
            f"- `{spec['name']}`: {spec.get('channel_order')} image, pixels {low}..{high}, "
            f"{mean_text}, times {spec.get('scale')}"
            + (f", resized to {spec['resize']}" if spec.get("resize") else "")
            + (f", centre crop {spec['crop']}" if spec.get("crop") else "")
            + "."
        )
        assumed = spec.get("assumed") or []
        if assumed:
            body.append(
                f"  The prototxt does not state {', '.join(assumed)}: Caffe's defaults are "
                "assumed. Check them against the model's release before trusting the numbers."
            )
        stated = [k for k in ("channel_order", "mean", "scale", "resize", "crop") if k not in assumed]
        for k in stated:
            why = (spec.get("sources") or {}).get(k)
            if why:
                body.append(f"  {k}: {why}.")
    body += [
        "",
        f"`{PREPROCESS_FILE}` (torch only) does this; `{PREPROCESS_JSON}` records each value and "
        "where it came from.",
        "",
    ]
    if "label_names" in config:
        body += [
            f"**Labels:** {len(config['label_names'])} in `config.json` (`label_names`), from "
            f"`{config['caffe2torch']['labels']['file']}`.",
            "",
        ]
    body += [
        "## Load",
        "",
        "```python",
        "import torch",
        'model = torch.hub.load("path/to/this/folder", "model", source="local")',
        "```",
        "",
        "or, with caffe2torch installed:",
        "",
        "```python",
        "import caffe2torch",
        'model = caffe2torch.load("path/to/this/folder")',
        "```",
        "",
        f"`{MANIFEST}` records the layer map (Caffe layer to attribute), the sources' sha256 and "
        "the check's numbers.",
        "",
    ]
    return "\n".join(front + body)


def hub_files(conversion, manifest: dict, card: CardOptions) -> dict[str, str]:
    """The three files, by name, as text."""
    config = config_json(conversion, manifest, card)
    return {
        HUBCONF: hubconf(manifest),
        CARD: model_card(conversion, manifest, card, config),
        CONFIG: dump_json(config),
    }
