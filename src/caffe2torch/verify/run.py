"""Verification entry points: a conversion in memory (what ``convert`` runs before writing), or a
converted folder (``caffe2torch verify OUTDIR``), which is checked as it is on disk: its own
``model.py`` and weights file against the Caffe files it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..emit.conversion import _Digest
from ..errors import CaffeError, WeightsError, reading
from ..preprocess.spec import pixel_inputs
from ..synth import weights_file
from .instrument import TraceError, parse_trace
from .layerwise import Verification, check_inputs, verify_model
from .parity import ATOL, RTOL, random_inputs


class VerifyInputError(CaffeError):
    """What ``verify`` was given cannot be used (a missing source, a bad input array)."""


def _inputs_text(
    seed: int, files: Sequence[Path] | None, preprocess: dict | None = None, pixels=()
) -> str:
    if files:
        kinds = "images" if all(Path(f).suffix != ".npy" for f in files) else "arrays"
        text = f"{kinds} from " + ", ".join(Path(f).name for f in files)
        if kinds == "images":
            text += " through preprocess.py"
    else:
        text = f"seeded standard normal (seed {seed})"
        if pixels:
            text = (
                f"seeded uniform pixels 0..255 (seed {seed}) for {', '.join(pixels)} (normalized "
                f"for OpenCV), {text} for the rest"
                if len(pixels) < len((preprocess or {}).get("inputs", []))
                else f"seeded uniform pixels 0..255 (seed {seed}), normalized for OpenCV"
            )
    for rec in (preprocess or {}).get("inputs", []):
        how = rec.get("model_input") or {}
        done = []
        if how.get("divide_by") is not None or how.get("add_mean") is not None:
            done.append("un-normalized (its mean and scale are folded into the model)")
        if how.get("reverse_channels"):
            done.append(f"with its channels reversed ({rec['caffe_order']} to {rec['channel_order']})")
        if done:
            text += f"; the model's '{rec['name']}' is the same input, " + " and ".join(done)
    return text


def verify_conversion(
    conversion,
    *,
    seed: int = 0,
    arrays: Mapping[str, np.ndarray] | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
) -> Verification:
    """Check a :class:`~caffe2torch.emit.Conversion` in memory against OpenCV."""
    graph = conversion.graph
    pre = conversion.preprocess
    pixels: list[str] = []
    if arrays is None:
        arrays = random_inputs(graph.inputs, seed)
        if pre is not None:
            arrays, pixels = pixel_inputs(pre.to_dict(), arrays, seed)
    check_inputs(graph, arrays)
    w = conversion.sources.get("weights") or {}
    own = pre.adapt(dict(arrays)) if pre is not None else None
    with weights_file(graph, conversion.paths.get("weights"), w.get("seed") or 0) as caffemodel:
        return verify_model(
            conversion.code,
            conversion.class_name,
            conversion.state_dict(),
            parse_trace(conversion.generated.trace),
            graph,
            caffemodel,
            arrays,
            inputs_text=_inputs_text(seed, None, pre.to_dict() if pre is not None else None, pixels),
            rtol=rtol,
            atol=atol,
            layer_map=conversion.generated.layer_map,
            model_arrays=own,
        )


def load_arrays(files: Sequence[Path], names: Sequence[str]) -> dict[str, np.ndarray]:
    """``.npy`` files for the inputs: ``NAME=FILE`` or, in the inputs' order, ``FILE``."""
    out: dict[str, np.ndarray] = {}
    plain = [f for f in files if "=" not in str(f)]
    if plain and len(plain) != len(files):
        raise VerifyInputError("give every --input as NAME=FILE.npy, or none")
    if plain and len(plain) != len(names):
        raise VerifyInputError(
            f"{len(plain)} --input file(s) for {len(names)} input(s) ({', '.join(names)})"
        )
    for i, f in enumerate(files):
        name, path = str(f).split("=", 1) if "=" in str(f) else (names[i], str(f))
        if name not in names:
            raise VerifyInputError(f"--input names '{name}': the inputs are {', '.join(names)}")
        with reading(path, VerifyInputError, "an .npy array"):
            try:
                a = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise VerifyInputError(f"not an .npy array ({e})", file=path) from None
        if a.dtype.kind not in "fiub":
            raise VerifyInputError(f"holds {a.dtype} values, not numbers", file=path)
        out[name] = np.ascontiguousarray(a, np.float32)
    return out


def _source(outdir: Path, manifest: dict, key: str, given: Path | None, flag: str):
    """The source file, and a check of its sha256 against the manifest's (computed in the
    background: call it to wait and raise on a mismatch)."""
    src = (manifest.get("sources") or {}).get(key) or {}
    if given is None:
        rel = src.get("path")
        if not rel:
            raise VerifyInputError(
                f"{outdir / 'conversion.json'} does not say where the {key} is: pass {flag}"
            )
        given = outdir / rel
        if not given.is_file():
            raise VerifyInputError(
                f"the {key} this model was converted from is not at {given} any more: pass {flag}"
            )
    if not given.is_file():
        raise VerifyInputError("no such file", file=given)
    digest = src.get("sha256")
    actual = _Digest(given, None) if digest else None

    def check() -> None:
        if actual is not None and str(actual) != digest:
            raise VerifyInputError(
                f"is not the {key} this model was converted from (sha256 {str(actual)[:16]}, "
                f"conversion.json says {digest[:16]})",
                file=given,
            )

    return given, check


def verify_folder(
    outdir: str | Path,
    *,
    net: Path | None = None,
    weights: Path | None = None,
    inputs: Sequence[Path] = (),
    seed: int = 0,
    rtol: float = RTOL,
    atol: float = ATOL,
    images: Sequence[Path] = (),
) -> Verification:
    """Check a converted folder as written (``model.py``, its weights) against OpenCV running
    the Caffe files it was converted from. ``images``: image files made into the input by the
    folder's ``preprocess.py`` (a batch), instead of ``inputs`` or a random input."""

    from ..api import load_graph
    from ..emit.conversion import MANIFEST, load_state
    from ..preprocess.spec import adapt_with_manifest

    outdir = Path(outdir)
    if not outdir.is_dir():
        raise VerifyInputError("is not a folder (give the folder convert wrote)", file=outdir)
    with reading(outdir / MANIFEST, VerifyInputError, "a conversion.json"):
        try:
            manifest = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise VerifyInputError(f"is not JSON ({e})", file=outdir / MANIFEST) from None
    for key in ("class_name", "model_file", "weights_file", "inputs", "trace"):
        if key not in manifest:
            raise VerifyInputError(
                f"has no '{key}' (written by an older caffe2torch? convert again)",
                file=outdir / MANIFEST,
            )
    prototxt, check_prototxt = _source(outdir, manifest, "prototxt", net, "--net")
    check_prototxt()
    w = (manifest.get("sources") or {}).get("weights") or {}
    caffemodel, check_weights = None, lambda: None
    if w.get("random"):
        if weights is not None:
            raise VerifyInputError("the model has seeded random weights: --weights does not apply")
    elif w:
        caffemodel, check_weights = _source(outdir, manifest, "weights", weights, "--weights")
    names = [i["name"] for i in manifest["inputs"]]
    if images and inputs:
        raise VerifyInputError("give --image or --input, not both")
    if images:
        from ..predict import image_batch
        from ..preprocess.spec import caffe_input

        name, batch, how = image_batch(outdir, list(images))
        arrays = {name: caffe_input(how, batch)}
    else:
        arrays = load_arrays(list(inputs), names) if inputs else None
    shapes = {i["name"]: tuple(i["shape"]) for i in manifest["inputs"]}
    if arrays:
        shapes.update({k: tuple(a.shape) for k, a in arrays.items()})
    options = manifest.get("options") or {}
    graph = load_graph(
        prototxt,
        phase=options.get("phase", "test"),
        stages=options.get("stages", ()),
        input_shapes=shapes,
    )
    pixels: list[str] = []
    if arrays is None:
        arrays = random_inputs(graph.inputs, seed)
        arrays, pixels = pixel_inputs(manifest.get("preprocess"), arrays, seed)
    model_file = outdir / manifest["model_file"]
    with reading(model_file, VerifyInputError, "the model's code"):
        code = model_file.read_text(encoding="utf-8")
    state_file = outdir / manifest["weights_file"]
    if not state_file.is_file():
        raise WeightsError("is missing", file=state_file)

    def state() -> dict:  # read while OpenCV reads the caffemodel
        return load_state(state_file)

    check_inputs(graph, arrays)
    with weights_file(graph, caffemodel, w.get("seed") or 0) as cm:
        result = verify_model(
            code,
            manifest["class_name"],
            state,
            parse_trace(manifest["trace"]),
            graph,
            cm,
            arrays,
            inputs_text=_inputs_text(seed, [*inputs, *images], manifest.get("preprocess"), pixels),
            rtol=rtol,
            atol=atol,
            model_file=str(model_file),
            layer_map=manifest.get("layer_map") or {},
            model_arrays=adapt_with_manifest(manifest.get("preprocess"), arrays),
        )
    check_weights()
    return result


__all__ = ["verify_conversion", "verify_folder", "VerifyInputError", "TraceError"]
