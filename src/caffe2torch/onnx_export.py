"""A converted folder as one ONNX file, checked with onnxruntime (``caffe2torch export-onnx``).

:func:`export_onnx` loads the folder's own ``model.py`` and weights, exports them with
torch.onnx's ``torch.export``-based exporter (``dynamo=True``: the one torch 2.13 develops,
whose graphs come out optimized by onnxscript: Conv, Relu, Gemm... with no TorchScript
leftovers), with the Caffe blob names of ``conversion.json`` as the graph's input and output
names, and checks the file with onnxruntime against the torch model on seeded random inputs:
``max|ort - torch| / max|torch| <= 1e-5`` per output, at the batch the model was converted at
(1 for a deploy net) and, when the batch is dynamic, at batch 3.

The batch axis (axis 0 of every input) is dynamic where the net allows it, and that is checked,
not assumed: the torch model at batch 3 must give what it gives for each sample alone, the
three results concatenated along axis 0 (an output that does not depend on the batch, such as
SSD's priors, must give each sample's). A net that fails at batch 3, or mixes its samples,
is exported with the static batch it was converted at, and the notes say why.

**Reshapes to a fixed batch.** A Caffe ``Reshape`` whose shape starts with a literal batch
(``dim: 1`` where ``dim: 0`` would copy it; a face detector's ``reshape(1, -1, 4)``) is the
one layer whose ``model.py`` code hard-codes the batch: the Reshape family
(:mod:`caffe2torch.layers.reshape`) writes the dimensions Caffe copies as ``x.shape[i]`` and
the others as the numbers the prototxt gives, so at batch 3 it silently folds the samples into
one. (Flatten, and every other family, write their axes from the input's shape: they never
fix the batch.) The export finds them in the folder itself, with no need for the prototxt:

1. in ``model.py``'s ``forward``, the statements of each step of the trace
   (``conversion.json`` says which statements compute which Caffe layer) that are
   ``y = x.reshape(K, ...)`` with ``x`` the step's input and ``K`` a number;
2. the model instrumented (:mod:`caffe2torch.verify.instrument`) with those reshapes made
   ``x.reshape(x.shape[0], ...)`` is run at the converted batch and at batch 3, recording
   each candidate's input: a candidate fixes the batch when its input's first axis is the
   converted batch and grows with the batch (a tensor that stays the same at batch 3 is not
   per sample: reshaping it is left alone and not reported).

They are always named in the notes. Without ``dynamic_batch`` the file then has a static
batch. With ``dynamic_batch=True`` the exported model is a copy of ``model.py`` compiled in
memory with those statements rewritten to the runtime batch (``x.shape[0]``: the same value
at the converted batch), loaded with the folder's weights; the per-sample check above then
verifies the rewrite (the rewritten model at batch 3 against the folder's model run on each
sample), and onnxruntime at batch 3 is compared with those per-sample results too. The
folder's files are never modified. (Rewriting at export, not re-emitting the code with a
generation option: it works on any folder as written, needs neither the prototxt nor the Caffe
weights, and changes nothing but those statements: the same weights, the same trace.)

What cannot be exported says why in one line: a layer whose output size depends on the data
(SSD's DetectionOutput: the number of detections) has no torch.export graph; export the net
converted with ``--outputs`` set to the blobs before it (an SSD's mbox_loc, mbox_conf_flatten
and mbox_priorbox). One file holds at most 2 GiB (no external-data weights).

Writing: the destination is checked before any work (never replaced without
``overwrite=True``), the file is written beside it, flushed to disk and renamed into place.
A failed check still writes the file (as ``convert`` writes a folder that fails its
verification): :attr:`OnnxExport.passed` says so, and the CLI exits 1.
"""
from __future__ import annotations

import ast
import contextlib
import io
import logging
import math
import os
import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import __version__
from .errors import CaffeError, printable, read_text
from .extras import require
from .folder import (
    MODEL_FILE,
    ONNX_FILE,
    WRITTEN,
    Destination,
    FolderError,
    Manifest,
    atomic_file,
    load_converted,
    read_manifest,
)
from .verify.instrument import TraceStep, instrument, parse_trace

TOLERANCE = 1e-5  # max|ort - torch| / max|torch|, per output
CHECK_BATCH = 3  # the second batch size of the check (and of the per-sample check)
SEED = 0
PROTO_LIMIT = (1 << 31) - 1  # one ONNX file (a protobuf message) holds at most 2 GiB


class OnnxExportError(CaffeError):
    """A converted folder cannot be exported to ONNX as asked."""


@dataclass
class FixedBatch:
    """A statement of ``forward`` that reshapes to a fixed batch (a Caffe Reshape's
    ``dim: 1``): the Caffe layer, the statement's code, and the variable whose runtime batch
    replaces the number."""

    layer: str
    code: str
    var: str
    batch: int
    statement: int

    def to_dict(self) -> dict:
        return {"layer": self.layer, "code": self.code, "batch": self.batch}


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and what its check measured.

    ``errors``: per batch size checked, per output, ``max|ort - torch| / max|torch|``
    (onnxruntime against the torch model that was exported); ``per_sample``: per output, the
    torch model at batch 3 against the folder's model run on each sample (concatenated),
    which is what makes a dynamic batch safe; ``per_sample_onnx``: onnxruntime at batch 3
    against those same per-sample results. None where not measured, ``inf`` where the shapes
    differ (``failures`` says how)."""

    path: Path
    inputs: list[str]
    outputs: list[str]
    dynamic_batch: bool
    batch: int  # the static batch, or the converted batch when dynamic
    opset: int
    # The ONNX graph's shapes per name: numbers, and names for the dynamic axes ("batch").
    shapes: dict[str, list[int | str]] = field(default_factory=dict)
    errors: dict[int, dict[str, float]] = field(default_factory=dict)
    per_sample: dict[str, float] | None = None
    per_sample_onnx: dict[str, float] | None = None
    fixed_batch: list[FixedBatch] = field(default_factory=list)
    rewritten: bool = False
    checked: bool = True
    tolerance: float = TOLERANCE
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool | None:
        """True when every number is within the tolerance; None when nothing was checked."""
        if not self.checked:
            return None
        return not self.failures

    def to_dict(self) -> dict:
        def nums(d: dict[str, float] | None):
            if d is None:
                return None
            return {k: (v if math.isfinite(v) else None) for k, v in d.items()}

        return {
            "path": str(self.path),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dynamic_batch": self.dynamic_batch,
            "batch": self.batch,
            "opset": self.opset,
            "shapes": self.shapes,
            "checked": self.checked,
            "passed": self.passed,
            "tolerance": self.tolerance,
            "errors": {str(b): nums(e) for b, e in self.errors.items()},
            "per_sample": nums(self.per_sample),
            "per_sample_onnx": nums(self.per_sample_onnx),
            "fixed_batch": [f.to_dict() for f in self.fixed_batch],
            "rewritten": self.rewritten,
            "failures": self.failures,
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------ export
def export_onnx(
    folder: str | Path,
    output: str | Path | None = None,
    *,
    dynamic_batch: bool = False,
    opset: int | None = None,
    check: bool = True,
    overwrite: bool = False,
) -> OnnxExport:
    """Export the converted ``folder`` to ONNX (default ``FOLDER/model.onnx``) and check it
    with onnxruntime (``check``); see the module docstring. ``dynamic_batch``: rewrite the
    Reshapes that fix the batch so that the batch can be dynamic (raises when the model still
    cannot run at batch 3). ``opset``: the ONNX opset (the exporter's default when None).

    Raises :class:`OnnxExportError` (or another :class:`CaffeError`) with one line naming the
    file on bad input; a failed check does not raise: ``result.passed`` is False."""
    folder = Path(folder)
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 1):
        raise OnnxExportError(f"opset {opset!r}: give a positive whole number (torch.onnx writes 18 and later)")
    manifest = read_manifest(folder)
    out = Path(output) if output is not None else folder / ONNX_FILE
    dest = Destination.file(
        out,
        inputs=[folder / MODEL_FILE, folder / manifest.weights_file, folder / "conversion.json"],
        overwrite=overwrite,
    )
    require("onnx", "onnx", "exporting to ONNX")
    require("onnxscript", "onnx", "exporting to ONNX")
    ort = require("onnxruntime", "onnx", "checking the ONNX file") if check else None
    import torch

    model = load_converted(folder)
    names = [i["name"] for i in manifest.inputs]
    out_names = [o["name"] for o in manifest.outputs]
    if len(set(out_names)) != len(out_names):
        raise OnnxExportError("names an output twice: ONNX needs one name per output", file=folder / "conversion.json")
    shapes = [tuple(i["shape"]) for i in manifest.inputs]
    base = shapes[0][0] if shapes[0] else 1
    result = OnnxExport(
        path=dest.path, inputs=names, outputs=out_names, dynamic_batch=False, batch=base,
        opset=opset or 0, checked=check,
    )
    notes = result.notes
    model_file = folder / MODEL_FILE

    # Can the batch be dynamic at all? (every input has the same first axis)
    firsts = {s[0] if s else None for s in shapes}
    batch_ok = len(firsts) == 1 and None not in firsts
    if not batch_ok:
        listed = ", ".join(f"{n} {'x'.join(map(str, s)) or 'scalar'}" for n, s in zip(names, shapes))
        notes.append(
            f"the inputs do not share a first axis ({listed}): the ONNX file has the static "
            "shapes the model was converted at"
        )
        if dynamic_batch:
            raise OnnxExportError(
                f"cannot export a dynamic batch: the inputs do not share a first axis ({listed})",
                file=folder / "conversion.json",
            )

    code = read_text(model_file, FolderError, "the model's code (model.py)")
    state = model.state_dict()
    fixed: list[FixedBatch] = []
    if batch_ok:
        fixed = _fixed_batch(code, manifest, state, shapes, base, model_file)
    result.fixed_batch = fixed
    exported = model
    if fixed:
        layers = ", ".join(f"'{f.layer}' ({f.code})" for f in fixed)
        what = (
            f"{'layer' if len(fixed) == 1 else 'layers'} {layers} "
            f"{'reshapes' if len(fixed) == 1 else 'reshape'} to a fixed batch of {base} (the "
            "prototxt's first dim is a number where 0 would copy the batch): a larger batch "
            "would be folded into one sample"
        )
        if dynamic_batch:
            rewritten = ", ".join(f"{f.var}.shape[0]" for f in fixed)
            notes.append(f"{what}; the export uses the runtime batch instead ({rewritten})")
            exported = _rewritten_model(code, manifest.class_name, fixed, state, model_file)
            result.rewritten = True
        else:
            notes.append(
                f"{what}; the ONNX file has a static batch of {base} (--dynamic-batch rewrites "
                f"{'it' if len(fixed) == 1 else 'them'} to use the runtime batch)"
            )

    rng = np.random.default_rng(SEED)
    at_base = _random_inputs(rng, shapes)
    at_check = _random_inputs(rng, shapes, CHECK_BATCH) if batch_ok else None
    try:
        ref_base = _run(exported, at_base, torch)
    except Exception as e:  # noqa: BLE001 - the model's own failure, one line
        raise OnnxExportError(
            f"the model fails on inputs of the shapes it was converted at: {type(e).__name__}: "
            f"{_first_line(e)}",
            file=model_file,
        ) from None

    # The per-sample check: decides (without dynamic_batch) or verifies (with it).
    dynamic = False
    ref_check = samples = None
    if batch_ok and (dynamic_batch or not fixed):
        dynamic, ref_check, samples = _per_sample_check(
            result, exported, model, at_check, torch, asked=dynamic_batch, path=model_file
        )
    result.dynamic_batch = dynamic

    # Export.
    example = at_check if dynamic else at_base
    proto, why = _export(torch, exported, example, names, out_names, dynamic, opset)
    if proto is None and dynamic and not dynamic_batch:
        # torch.export could not keep the batch symbolic: the static export may still work.
        dynamic = result.dynamic_batch = False
        proto, static_why = _export(torch, exported, at_base, names, out_names, False, opset)
        if proto is not None:
            notes.append(
                f"torch.onnx cannot keep the batch dynamic ({why}): the ONNX file has a static "
                f"batch of {base}"
            )
        why = static_why
    if proto is None:
        raise OnnxExportError(
            f"torch.onnx cannot export it{' with a dynamic batch' if dynamic else ''}: {why}",
            file=model_file,
        )
    result.opset = _opset(proto)
    if opset is not None and result.opset != opset:
        raise OnnxExportError(
            f"torch.onnx cannot write opset {opset} for this model (it makes opset "
            f"{result.opset}): give --opset 18 or later, or leave it out",
            file=model_file,
        )
    got_in = [i.name for i in proto.graph.input]
    got_out = [o.name for o in proto.graph.output]
    if got_in != names or got_out != out_names:
        raise OnnxExportError(
            f"torch.onnx named the graph's inputs {got_in} and outputs {got_out}, not Caffe's "
            f"{names} and {out_names}",
            file=model_file,
        )
    result.shapes = {v.name: _dims(v) for v in [*proto.graph.input, *proto.graph.output]}
    _metadata(proto, manifest, dynamic, base)
    if proto.ByteSize() > PROTO_LIMIT:
        raise OnnxExportError(
            "the model is over the 2 GiB one ONNX file can hold (weights as external data are "
            "not supported)",
            file=model_file,
        )
    data = proto.SerializeToString()
    del proto

    # Check with onnxruntime.
    if check:
        session = _session(ort, data, dest.path)
        result.errors[base] = _compare(
            _run_ort(session, at_base, names, dest.path), ref_base, out_names, result, base
        )
        if dynamic:
            got = _run_ort(session, at_check, names, dest.path)
            result.errors[CHECK_BATCH] = _compare(got, ref_check, out_names, result, CHECK_BATCH)
            if result.rewritten:
                per, whys = _compare_per_sample(got, samples, out_names)
                result.per_sample_onnx = per
                for k, v in per.items():
                    if not v <= TOLERANCE:
                        result.failures.append(
                            f"output '{k}' of onnxruntime at batch {CHECK_BATCH} is not each "
                            "sample's result: "
                            + (whys.get(k) or f"relative error {v:.2g} > {TOLERANCE:g}")
                        )
        del session
    else:
        notes.append("not checked with onnxruntime")

    _write(dest.path, data)
    return result


def _per_sample_check(result: OnnxExport, exported, model, arrays, torch, *, asked: bool, path: Path):
    """The exported torch model at batch 3 against the folder's model on each sample alone
    (recorded in ``result.per_sample``): whether the batch is dynamic, the batch-3 outputs and
    the per-sample ones. Where it is not, a note says so (or, ``asked`` for a dynamic batch,
    an error when the model cannot run, a failure when it mixes its samples)."""
    base, names = result.batch, result.outputs
    static = f"the ONNX file has a static batch of {base}"
    instead = f"export without --dynamic-batch for a static batch of {base}"
    try:
        ref = _run(exported, arrays, torch)
    except Exception as e:  # noqa: BLE001 - any failure of the model's code at batch 3
        why = f"the model fails at batch {CHECK_BATCH} ({type(e).__name__}: {_first_line(e)})"
        if asked:
            raise OnnxExportError(f"cannot export a dynamic batch: {why}; {instead}", file=path) from None
        result.notes.append(f"{why}: {static}")
        return False, None, None
    samples = _per_sample_refs(model, arrays, torch)
    if samples is None:
        if asked:
            raise OnnxExportError(
                f"cannot export a dynamic batch: the model does not run on one sample; {instead}",
                file=path,
            )
        result.notes.append(f"the model does not run on one sample: {static}")
        return False, None, None
    per, whys = _compare_per_sample(ref, samples, names)
    result.per_sample = per
    bad = [k for k, v in per.items() if not v <= TOLERANCE]
    if bad and not asked:
        shown = "; ".join(f"'{k}' " + (whys.get(k) or f"differs (relative error {per[k]:.2g})") for k in bad)
        result.notes.append(
            f"at batch {CHECK_BATCH} the model does not give each sample's result ({shown}): {static}"
        )
        return False, None, None
    for k in bad:
        result.failures.append(
            f"output '{k}' of the {'rewritten ' if result.rewritten else ''}model at batch "
            f"{CHECK_BATCH} is not each sample's result: "
            + (whys.get(k) or f"relative error {per[k]:.2g} > {TOLERANCE:g}")
        )
    return True, ref, samples


# ------------------------------------------------------------------- fixed batch reshapes
def _forward_body(tree: ast.Module, class_name: str, path: Path) -> list[ast.stmt]:
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    fwd = None
    if cls is not None:
        fwd = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
    if fwd is None:
        raise FolderError(f"has no {class_name}.forward (conversion.json names the class)", file=path)
    return fwd.body


def _reshape_call(stmt: ast.stmt, var: str) -> ast.Call | None:
    """``stmt`` as ``y = var.reshape(K, ...)`` with ``K`` a whole number: the call, else None."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
        return None
    call = stmt.value
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "reshape"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == var
        and call.args
        and not call.keywords
    ):
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and type(first.value) is int and first.value > 0:
        return call
    return None


def _candidates(code: str, manifest: Manifest, path: Path) -> tuple[list[tuple], list[TraceStep]]:
    """The statements of ``forward`` that reshape their step's input to a literal first
    dimension: (statement, layer, variable, code, number), and the parsed trace."""
    try:
        tree = ast.parse(code, filename=str(path))
    except SyntaxError as e:
        raise FolderError(f"cannot be parsed: {e.msg} (line {e.lineno})", file=path) from None
    body = _forward_body(tree, manifest.class_name, path)
    trace = parse_trace(manifest.trace)
    found = []
    for step in trace:
        if not step.reads:
            continue
        var = step.reads[0][0]
        for i in range(step.start, min(step.end, len(body))):
            call = _reshape_call(body[i], var)
            if call is not None:
                found.append((i, step.layers[-1], var, ast.unparse(call), call.args[0].value))
    return found, trace


def _rewrite(code: str, class_name: str, statements: dict[int, str], path: Path) -> ast.Module:
    """``code`` with the first argument of each statement's reshape (by index in ``forward``)
    replaced by ``var.shape[0]``."""
    tree = ast.parse(code, filename=str(path))
    body = _forward_body(tree, class_name, path)
    for i, var in statements.items():
        call = _reshape_call(body[i], var)
        call.args[0] = ast.Subscript(
            value=ast.Attribute(value=ast.Name(var, ast.Load()), attr="shape", ctx=ast.Load()),
            slice=ast.Constant(0),
            ctx=ast.Load(),
        )
    ast.fix_missing_locations(tree)
    return tree


def _fixed_batch(code: str, manifest: Manifest, state: dict, shapes, base: int, path: Path) -> list[FixedBatch]:
    """The reshapes of ``forward`` that fix the batch (see the module docstring)."""
    import torch

    found, trace = _candidates(code, manifest, path)
    found = [c for c in found if c[4] == base]
    if not found:
        return []
    by_step = {}
    for n, step in enumerate(trace):
        for c in found:
            if step.start <= c[0] < step.end:
                by_step[n] = c
    text = ast.unparse(_rewrite(code, manifest.class_name, {c[0]: c[2] for c in found}, path))
    seen: dict[int, dict[int, tuple]] = {base: {}, CHECK_BATCH: {}}
    current = {"batch": base}

    def feed(i: int, k: int, x):
        if k == 0 and i in by_step and hasattr(x, "shape"):
            seen[current["batch"]][i] = tuple(x.shape)
        return x

    cls = instrument(text, manifest.class_name, trace, feed=True, filename=str(path))(lambda *a: None, feed)
    probe = _build(cls, state, manifest.class_name, path)
    rng = np.random.default_rng(SEED + 1)
    for batch in (base, CHECK_BATCH):
        current["batch"] = batch
        try:
            _run(probe, _random_inputs(rng, shapes, batch), torch)
        except Exception:  # noqa: BLE001 - only the shapes seen before a failure are used
            pass
    fixed = []
    for n, (i, layer, var, call, k) in by_step.items():
        first = seen[base].get(n)
        if first is None or not first or first[0] != base:
            continue  # its input's first axis is not the batch
        later = seen[CHECK_BATCH].get(n)
        if later is not None and later and later[0] == first[0]:
            continue  # the same at batch 3: not per sample (priors and the like)
        fixed.append(FixedBatch(layer=layer, code=call, var=var, batch=k, statement=i))
    return fixed


def _rewritten_model(code: str, class_name: str, fixed: Sequence[FixedBatch], state: dict, path: Path):
    """A copy of ``model.py``'s class with the fixed-batch reshapes on the runtime batch,
    compiled in memory, with the folder's weights."""
    tree = _rewrite(code, class_name, {f.statement: f.var for f in fixed}, path)
    compiled = compile(tree, f"<{path} with the runtime batch>", "exec")
    mod = types.ModuleType(f"caffe2torch_dynamic_batch_{class_name}")
    try:
        exec(compiled, mod.__dict__)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the file's own failure, one line
        raise FolderError(f"cannot be imported: {type(e).__name__}: {_first_line(e)}", file=path) from None
    return _build(getattr(mod, class_name), state, class_name, path)


def _build(cls, state: dict, class_name: str, path: Path):
    try:
        model = cls()
        model.load_state_dict(state)
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raise FolderError(f"{class_name}() fails: {type(e).__name__}: {_first_line(e)}", file=path) from None
    return model.eval()


# --------------------------------------------------------------------------- running
def _random_inputs(rng: np.random.Generator, shapes, batch: int | None = None) -> list[np.ndarray]:
    """Seeded standard-normal inputs of ``shapes``, at ``batch`` when given (axis 0 of each
    input's shape replaced)."""
    out = []
    for s in shapes:
        s = (batch, *s[1:]) if s and batch is not None else tuple(s)
        out.append(rng.standard_normal(s).astype(np.float32))
    return out


def _as_tuple(y) -> tuple:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _run(model, arrays: list[np.ndarray], torch) -> list[np.ndarray]:
    with torch.no_grad():
        y = model(*[torch.from_numpy(a.copy()) for a in arrays])
    return [t.detach().cpu().numpy() for t in _as_tuple(y)]


def _per_sample_refs(model, arrays: list[np.ndarray], torch) -> list[list[np.ndarray]] | None:
    """The folder's model on each sample of ``arrays`` alone; None when it cannot run."""
    n = arrays[0].shape[0]
    try:
        return [_run(model, [a[i : i + 1] for a in arrays], torch) for i in range(n)]
    except Exception:  # noqa: BLE001
        return None


def _first_line(e: BaseException) -> str:
    for line in str(e).splitlines():
        if line.strip():
            return printable(line.strip(), 300)
    return type(e).__name__


# ------------------------------------------------------------------------------ errors
def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """``max|got - ref| / max|ref|`` (the absolute error where ref is all zeros); inf when
    the shapes differ or a value is NaN or infinite in one and not the other."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return math.inf
    if not ref.size:
        return 0.0
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(got - ref))
    if not np.isfinite(diff).all():
        return math.inf
    finite = np.abs(ref[np.isfinite(ref)])
    scale = float(finite.max()) if finite.size else 0.0
    d = float(diff.max())
    return d / scale if scale > 0 else d


def _shape(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape)) or "a scalar"


def _compare_per_sample(got: list[np.ndarray], samples: list[list[np.ndarray]], names: list[str]):
    """Each output at batch N against the N samples' results concatenated on axis 0 (or, for
    an output that does not grow with the batch, against each sample's)."""
    errors: dict[str, float] = {}
    whys: dict[str, str] = {}
    for k, name in enumerate(names):
        y = got[k]
        each = [s[k] for s in samples]
        if all(e.ndim for e in each):
            stacked = np.concatenate(each, axis=0)
            if stacked.shape == y.shape:
                errors[name] = relative_error(y, stacked)
                continue
        if all(e.shape == y.shape for e in each):
            errors[name] = max(relative_error(y, e) for e in each)
            continue
        errors[name] = math.inf
        whys[name] = (
            f"it is {_shape(y)} at batch {len(each)}, where the samples give "
            f"{_shape(each[0])} each"
        )
    return errors, whys


def _compare(got, ref, names, result: OnnxExport, batch: int) -> dict[str, float]:
    errors = {}
    for name, g, r in zip(names, got, ref):
        e = relative_error(g, r)
        errors[name] = e
        if not e <= TOLERANCE:
            shape = "" if g.shape == r.shape else f" (onnxruntime gives {_shape(g)}, torch {_shape(r)})"
            result.failures.append(
                f"output '{name}' at batch {batch}: onnxruntime differs from the torch model"
                + (shape or f" (relative error {e:.2g} > {TOLERANCE:g})")
            )
    return errors


# --------------------------------------------------------------------------- torch.onnx
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx's log lines, warnings and prints kept off the terminal (a library never
    prints)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(torch, model, example, names, out_names, dynamic: bool, opset):
    """The exported ModelProto and "", or None and the exporter's reason."""
    args = tuple(torch.from_numpy(a.copy()) for a in example)
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} for _ in args)
    try:
        with _quiet():
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                input_names=list(names),
                output_names=list(out_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every way the exporter fails is one line
        return None, _export_reason(e)
    return program.model_proto, ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WHERE = re.compile(r"model\.py:(\d+) in (\w+)")


def _export_reason(e: BaseException) -> str:
    """The exporter's own reason (the innermost cause: torch.onnx wraps torch.export's), where
    in model.py it happened, and what to do about output sizes computed from the data."""
    root = e
    for _ in range(20):
        nxt = root.__cause__
        if nxt is None:
            break
        root = nxt
    text = _ANSI.sub("", str(root))
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(root).__name__)
    reason = f"{type(root).__name__}: {printable(first, 300)}"
    where = _WHERE.search(text)
    if where:
        reason += f" (model.py line {where.group(1)}, in {where.group(2)})"
    if "DataDependent" in type(root).__name__ or "data-dependent" in text:
        reason += (
            "; the model computes a size from the data (as DetectionOutput does for its "
            "detections), which an ONNX graph of torch.export cannot hold: convert the net with "
            "--outputs set to the blobs before that layer, and export that"
        )
    return reason


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _dims(value) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in dims]


def _metadata(proto, manifest: Manifest, dynamic: bool, base: int) -> None:
    proto.producer_name = "caffe2torch"
    proto.producer_version = str(__version__)
    prototxt = manifest.source("prototxt")
    entries = {
        "caffe2torch.class_name": manifest.class_name,
        "caffe2torch.batch": "dynamic" if dynamic else str(base),
    }
    if prototxt.get("sha256"):
        entries["caffe2torch.prototxt_sha256"] = prototxt["sha256"]
    for k, v in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = k, v


# ------------------------------------------------------------------------- onnxruntime
def _session(ort, data: bytes, path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001
        raise OnnxExportError(
            f"onnxruntime cannot load the exported model: {type(e).__name__}: {_first_line(e)}",
            file=path,
        ) from None


def _run_ort(session, arrays, names, path: Path) -> list[np.ndarray]:
    try:
        return [np.asarray(y) for y in session.run(None, dict(zip(names, arrays)))]
    except Exception as e:  # noqa: BLE001
        raise OnnxExportError(
            f"onnxruntime cannot run the exported model at batch {arrays[0].shape[0] if arrays[0].ndim else 1}: "
            f"{type(e).__name__}: {_first_line(e)}",
            file=path,
        ) from None


# ----------------------------------------------------------------------------- writing
def _write(path: Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    WRITTEN.append(path)


__all__ = ["export_onnx", "OnnxExport", "OnnxExportError", "FixedBatch", "relative_error", "TOLERANCE"]
