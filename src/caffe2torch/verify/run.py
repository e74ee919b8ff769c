"""Verification entry points: a conversion in memory (what ``convert`` runs before writing), or a
converted folder (``caffe2torch verify OUTDIR``), which is checked as it is on disk: its own
``model.py`` and weights file against the Caffe files it names.

Both run the check at ``--check-batch`` (1 by default) and estimate its memory before starting
(:mod:`caffe2torch.memory`). Input arrays given with ``--input`` are checked against the
model's inputs from their ``.npy`` header, before anything is allocated.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import PROTO_BINARY_LIMIT, CaffeError, WeightsError, check_file, npy_header, read_text, reading
from ..api import PathLike, check_options, load_graph
from ..caffe.schema import extended
from ..caffe.user_proto import recorded_proto
from ..plugins import check_recorded, plugins_loaded
from ..folder import MANIFEST, Digest, FolderError, Manifest, load_state, read_manifest
from ..memory import CheckOptions
from ..predict import image_batch
from ..preprocess.spec import adapt_with_manifest, caffe_input, pixel_inputs
from ..synth import weights_file
from .instrument import TraceError, parse_trace
from .layerwise import Verification, check_inputs, verify_model
from .engines import gap as engines_gap, select
from .parity import ATOL, RTOL, random_inputs


class VerifyInputError(CaffeError):
    """What ``verify`` was given cannot be used (a missing source, a bad input array)."""


def _inputs_text(
    seed: int, files: Sequence[Path] | None, preprocess: dict | None = None, pixels=(), batch=""
) -> str:
    if files:
        kinds = "images" if all(Path(f).suffix != ".npy" for f in files) else "arrays"
        text = f"{kinds} from " + ", ".join(Path(str(f).split("=", 1)[-1]).name for f in files)
        if kinds == "images":
            text += " through preprocess.py"
    else:
        text = f"seeded standard normal (seed {seed})"
        if pixels:
            text = (
                f"seeded uniform pixels 0..255 (seed {seed}) for {', '.join(pixels)} (normalized "
                f"for the reference), {text} for the rest"
                if len(pixels) < len((preprocess or {}).get("inputs", []))
                else f"seeded uniform pixels 0..255 (seed {seed}), normalized for the reference"
            )
    if batch:
        text += f", {batch}"
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
    check: CheckOptions | None = None,
) -> Verification:
    """Check a :class:`~caffe2torch.emit.Conversion` in memory against the reference
    (``check.reference``), at the check's batch (given ``arrays``: at theirs)."""
    check = with_reference(check)
    graph, batch_note = (conversion.graph, "") if arrays is not None else check.graph(conversion.graph)
    pre = conversion.preprocess
    w = conversion.sources.get("weights") or {}
    weights = conversion.paths.get("weights")
    check.enforce(graph, _weight_bytes(weights, graph))
    pixels: list[str] = []
    if arrays is None:
        arrays = random_inputs(graph.inputs, seed)
        if pre is not None:
            arrays, pixels = pixel_inputs(pre.to_dict(), arrays, seed)
    check_inputs(graph, arrays)
    own = pre.adapt(dict(arrays)) if pre is not None else None
    with weights_file(graph, weights, w.get("seed") or 0, conversion.random_blobs) as caffemodel:
        result = verify_model(
            conversion.code,
            conversion.class_name,
            conversion.state_dict(),
            parse_trace(conversion.generated.trace),
            graph,
            caffemodel,
            arrays,
            inputs_text=_inputs_text(
                seed, None, pre.to_dict() if pre is not None else None, pixels, batch_note
            ),
            rtol=rtol,
            atol=atol,
            layer_map=conversion.generated.layer_map,
            model_arrays=own,
            engines=check.engines,
        )
    return result


def with_reference(check: CheckOptions | None) -> CheckOptions:
    """The check's options with its reference engines chosen (``check.reference``), knowing
    which layers they cannot run."""
    check = check or CheckOptions()
    if check.engines is None:
        check = replace(check, engines=tuple(select(check.reference)))
    if check.cut is None:
        engines = check.engines
        check = replace(check, cut=lambda n: bool(engines_gap(engines, n)))
    return check


def _weight_bytes(weights: Path | None, graph) -> int:
    """The weights both engines hold: the net's parameters (a binary caffemodel is also read
    whole once)."""
    params = graph.param_count * 4
    if weights is not None and not str(weights).endswith(".h5"):
        try:
            return max(params, os.stat(weights).st_size)
        except OSError:
            return params
    return params


# ----------------------------------------------------------------------------- --input
def read_input_arrays(
    files: Sequence[Path], inputs: Sequence[dict]
) -> dict[str, tuple[Path, tuple[int, ...], np.dtype, int]]:
    """The ``--input`` files by input name, with their headers checked against the model's
    inputs (``NAME=FILE`` or, in the inputs' order, ``FILE``): nothing is read yet."""
    names = [i["name"] for i in inputs]
    declared = {i["name"]: tuple(i["shape"]) for i in inputs}
    plain = [f for f in files if "=" not in str(f)]
    if plain and len(plain) != len(files):
        raise VerifyInputError("give every --input as NAME=FILE.npy, or none")
    if plain and len(plain) != len(names):
        raise VerifyInputError(
            f"{len(plain)} --input file(s) for {len(names)} input(s) ({', '.join(names)})"
        )
    out: dict = {}
    for i, f in enumerate(files):
        name, path = str(f).split("=", 1) if "=" in str(f) else (names[i], str(f))
        path = Path(path)
        if name not in names:
            raise VerifyInputError(f"--input names '{name}': the inputs are {', '.join(names)}")
        if name in out:
            raise VerifyInputError(f"--input gives '{name}' twice")
        shape, dtype, offset, size = npy_header(path, VerifyInputError, "an .npy array")
        if dtype.hasobject or dtype.kind not in "fiub" or dtype.fields is not None:
            raise VerifyInputError(f"holds {dtype} values, not numbers", file=path)
        want = declared[name]
        shown = "x".join(map(str, shape)) or "a scalar"
        if len(shape) != len(want) or tuple(shape[1:]) != tuple(want[1:]) or not shape or shape[0] < 1:
            raise VerifyInputError(
                f"holds an array of {shown}; the model's input '{name}' is "
                f"Nx{'x'.join(map(str, want[1:]))} (N at least 1)",
                file=path,
            )
        n = math.prod(shape)
        if n >= 1 << 31:
            raise VerifyInputError(
                f"holds {n:,} values; a Caffe blob holds at most 2^31 - 1 (INT_MAX)", file=path
            )
        if size < offset + n * dtype.itemsize:
            raise VerifyInputError(
                f"is truncated: its header says {shown} {dtype}, which needs "
                f"{offset + n * dtype.itemsize:,} bytes, the file has {size:,}",
                file=path,
            )
        out[name] = (path, shape, dtype, offset)
    return out


def load_input_arrays(headers: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """The arrays of :func:`read_input_arrays`, as float32 arrays of their own (a copy: a
    float32 file's map would be read-only, which torch warns about, and keep the file open)."""
    out = {}
    for name, (path, *_) in headers.items():
        with reading(path, VerifyInputError, "an .npy array"):
            try:
                a = np.load(path, allow_pickle=False, mmap_mode="r")
            except (ValueError, EOFError, OverflowError):
                raise VerifyInputError("not an .npy array (its data is damaged)", file=path) from None
            with np.errstate(over="ignore", invalid="ignore"):
                out[name] = np.array(a, np.float32, order="C")
        if not np.all(np.isfinite(out[name])):
            raise VerifyInputError("holds NaN or infinite values", file=path)
    return out


# ------------------------------------------------------------------------------ folder
def _source(outdir: Path, manifest: Manifest, key: str, given: Path | None, flag: str):
    """The source file, and a check of its sha256 against the manifest's (computed in the
    background: call it to wait and raise on a mismatch)."""
    src = manifest.source(key)
    if given is None:
        rel = src.get("path")
        if not rel:
            raise VerifyInputError(
                f"{outdir / MANIFEST} does not say where the {key} is: pass {flag}"
            )
        given = outdir / rel
        if not os.path.isfile(given):
            raise VerifyInputError(
                f"the {key} this model was converted from is not at {given} any more: pass {flag}"
            )
    limit = None if str(given).endswith(".h5") else PROTO_BINARY_LIMIT
    err = VerifyInputError
    check_file(given, err, f"the {key}", limit=limit if key == "weights" else 64 << 20)
    digest = src.get("sha256")
    actual = Digest(given, None) if digest else None

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
    check: CheckOptions | None = None,
    strict: bool = False,
) -> Verification:
    """Check a converted folder as written (``model.py``, its weights) against the reference
    (``check.reference``) running the Caffe files it was converted from. ``images``: image
    files made into the input by the folder's ``preprocess.py`` (a batch), instead of
    ``inputs`` or a random input."""
    check = with_reference(check)
    outdir = Path(outdir)
    manifest = read_manifest(outdir)
    prototxt, check_prototxt = _source(outdir, manifest, "prototxt", net, "--net")
    check_prototxt()
    w = manifest.source("weights")
    caffemodel, check_weights = None, lambda: None
    if w.get("random"):
        if weights is not None:
            raise VerifyInputError("the model has seeded random weights: --weights does not apply")
    elif w:
        caffemodel, check_weights = _source(outdir, manifest, "weights", weights, "--weights")
    if images and inputs:
        raise VerifyInputError("give --image or --input, not both")
    arrays = None
    shapes = {i["name"]: tuple(i["shape"]) for i in manifest.inputs}
    headers = read_input_arrays(list(inputs), manifest.inputs) if inputs else {}
    shapes.update({k: h[1] for k, h in headers.items()})
    if images:
        name, batch, how = image_batch(outdir, list(images))
        arrays = {name: caffe_input(how, batch)}
        shapes[name] = tuple(arrays[name].shape)
    options = manifest.options
    graph = load_graph(
        prototxt,
        phase=options.get("phase", "test"),
        stages=options.get("stages", ()),
        input_shapes=shapes,
        outputs=[o["name"] for o in manifest.outputs],
    )
    batch_note = ""
    if not headers and arrays is None:
        graph, batch_note = check.graph(graph)
    check.enforce(graph, _weight_bytes(caffemodel, graph))
    if headers:
        arrays = load_input_arrays(headers)
    pixels: list[str] = []
    if arrays is None:
        arrays = random_inputs(graph.inputs, seed)
        arrays, pixels = pixel_inputs(manifest.preprocess, arrays, seed)
    model_file = outdir / manifest.model_file
    code = read_text(model_file, FolderError, "the model's code (model.py)")
    state_file = outdir / manifest.weights_file
    if not os.path.isfile(state_file):
        raise WeightsError("is missing", file=state_file)

    def state() -> dict:  # read while OpenCV reads the caffemodel
        return load_state(state_file)

    shown = {k: h[0] for k, h in headers.items()}
    check_inputs(graph, arrays, shown=shown)
    with weights_file(graph, caffemodel, w.get("seed") or 0) as cm:
        result = verify_model(
            code,
            manifest.class_name,
            state,
            parse_trace(manifest.trace),
            graph,
            cm,
            arrays,
            inputs_text=_inputs_text(
                seed, [*inputs, *images], manifest.preprocess, pixels, batch_note
            ),
            rtol=rtol,
            atol=atol,
            model_file=str(model_file),
            layer_map=manifest.layer_map,
            model_arrays=adapt_with_manifest(manifest.preprocess, arrays),
            strict=strict,
            engines=check.engines,
        )
    check_weights()
    return result


# ---------------------------------------------------------------- caffe2torch.verify
def verify(
    folder: PathLike,
    *,
    net: PathLike | None = None,
    weights: PathLike | None = None,
    inputs: Sequence[PathLike] = (),
    images: Sequence[PathLike] = (),
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    strict: bool = False,
    reference: str = "auto",
    check_batch: int = 1,
    max_memory: int | None = None,
    plugins: Sequence[PathLike] = (),
    proto: PathLike | None = None,
) -> Verification:
    """Compare every Caffe value of a converted folder with the reference, layer by layer
    (``caffe2torch verify``).

    Runs the folder's own ``model.py`` and weights, and the reference ("auto": real Caffe where
    it is built, OpenCV's dnn module for the layers it lacks; or "caffe", "opencv") on the
    Caffe files it was converted from: ``net``/``weights`` where ``conversion.json`` does not
    record their paths (see ``convert(record_paths=True)``); their sha256 must match. Input:
    ``inputs`` (``.npy`` files, in order or ``NAME=FILE``), ``images`` (made into the input by
    the folder's ``preprocess.py``), or seeded random (``seed``). A value passes when
    ``max|y - ref| <= atol + rtol * max|ref|``; drift fails only when ``strict``.

    Returns the :class:`~caffe2torch.verify.layerwise.Verification` (``.passed``, ``.rows``,
    ``.first_divergence``, ``.to_dict()``). A failed check does not raise; bad input raises
    :class:`~caffe2torch.errors.CaffeError`."""
    folder = Path(folder)
    check = check_options(True, reference, check_batch, max_memory)
    if check.reference != "auto":
        with_reference(check)
    manifest = read_manifest(folder)
    plugin_files = [Path(p) for p in plugins]
    check_recorded(manifest.plugins, plugin_files, folder / MANIFEST)
    user = recorded_proto(folder, manifest.source("proto"), Path(proto) if proto else None, folder / MANIFEST)
    ignore = bool(manifest.options.get("ignore_unknown_fields", False))
    with plugins_loaded(plugin_files), extended(
        user, ignore_unknown_fields=ignore
    ):
        return verify_folder(
            folder,
            net=Path(net) if net is not None else None,
            weights=Path(weights) if weights is not None else None,
            inputs=[Path(p) for p in inputs],
            images=[Path(p) for p in images],
            seed=seed, rtol=rtol, atol=atol, check=check, strict=strict,
        )


__all__ = [
    "verify", "verify_conversion", "verify_folder", "VerifyInputError", "TraceError",
    "read_input_arrays", "load_input_arrays", "with_reference",
]
