"""Per-layer parity: every Caffe value of the converted model against the reference's, in
graph order.

One run of each engine on the same input. The converted model runs as an instrumented copy of
its own ``model.py`` (:mod:`.instrument`) and each value is compared the moment it is made,
against the reference's output of the same layer: real Caffe's, or OpenCV's (with fusion off),
each layer by the first engine of ``--reference`` that can run it (:mod:`.engines`), so
nothing is held but the reference's outputs. Each row says which engine checked it.

Layers no engine can check (it lacks the type, or computes something else for these
parameters) are listed as skipped; the reference then reads the converted model's value of
their outputs, so every layer after them is still compared.

When a value fails, a second run feeds every layer the reference's inputs instead of the
model's own ("local" error): a layer that is wrong fails alone, while rounding accumulated
through a deep net passes. The first failing value in graph order is the first divergence,
explained with its layer's type, parameters and ``model.py`` line.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..caffe.caffemodel import read_caffemodel
from ..errors import CaffeError
from ..graph import Graph, Node, Value, check_weights, needed_nodes
from ..memory import segmenter
from ..progress import stage
from .instrument import TraceError, TraceStep, instrument
from .engines import describe, gap as engines_gap, select
from .caffe_ref import CaffeRunError
from .reference import MixedReference, ReferenceError
from .parity import ATOL, RTOL  # the project's tolerance, one definition

PASS, FAIL, DRIFT, SKIP = "pass", "FAIL", "drift", "skipped"
REFERR = "reference-error"
# drift: the value differs, but the same layer given the reference's inputs agrees: its input
# differed (rounding the net amplifies); the layer itself is right.
# reference-error: the reference's value is wrong (not finite, implausibly large, or unlike an
# exact float64 computation of the layer that the model matches); not the model's failure.
IMPLAUSIBLE = 1e6  # a reference value this many times larger than the model's (and than 1)


@dataclass
class Row:
    """One Caffe value: the output ``top`` of layer ``layer`` (in place: blob ``blob`` after it)."""

    layer: str
    type: str
    blob: str
    shape: tuple[int, ...]
    status: str = SKIP
    max_abs: float | None = None
    ref_max: float | None = None
    bound: float | None = None
    note: str = ""  # why skipped, or what failed beyond the numbers
    local: float | None = None  # relative error with the reference's inputs (after a failure)
    local_ok: bool | None = None
    fused: list[str] = field(default_factory=list)  # the other layers of its step (BN+Scale)
    y_max: float | None = None  # max |y| of the model's value
    engine: str = ""  # the engine that checked it (caffe, opencv)

    @property
    def rel(self) -> float | None:
        """Max abs error relative to the value's scale (max |ref|)."""
        if self.max_abs is None:
            return None
        return self.max_abs / self.ref_max if self.ref_max else self.max_abs

    def to_dict(self) -> dict:
        out = {
            "layer": self.layer,
            "type": self.type,
            "blob": self.blob,
            "shape": list(self.shape),
            "status": self.status,
            "max_abs": _sig(self.max_abs),
            "max_rel": _sig(self.rel),
        }
        if self.engine:
            out["engine"] = self.engine
        if self.note:
            out["note"] = self.note
        if self.fused:
            out["fused_with"] = self.fused
        if self.local is not None:
            out["local_rel"] = _sig(self.local)
        return out


def _sig(x: float | None, digits: int = 2) -> float | None:
    """Rounded to ``digits`` significant digits: stable across runs, enough to read."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{digits - 1}e}")


@dataclass
class Verification:
    reference: str
    inputs: str
    rtol: float
    atol: float
    rows: list[Row] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)
    strict: bool = False  # drift fails too
    seconds: dict = field(default_factory=dict)  # where the time went (not in any output)
    state: object = None  # the model's weights while the check runs again (not in any output)

    @property
    def compared(self) -> list[Row]:
        return [r for r in self.rows if r.status in (PASS, FAIL, DRIFT)]

    @property
    def failed(self) -> list[Row]:
        """Values that are wrong (drift is counted apart, see :attr:`failing`)."""
        return [r for r in self.rows if r.status == FAIL]

    @property
    def failing(self) -> list[Row]:
        """The values that fail the check: the failed ones, and drift under ``strict``."""
        bad = (FAIL, DRIFT) if self.strict else (FAIL,)
        return [r for r in self.rows if r.status in bad]

    @property
    def drifted(self) -> list[Row]:
        return [r for r in self.rows if r.status == DRIFT]

    @property
    def skipped(self) -> list[Row]:
        return [r for r in self.rows if r.status == SKIP]

    @property
    def reference_errors(self) -> list[Row]:
        return [r for r in self.rows if r.status == REFERR]

    @property
    def passed(self) -> bool:
        return not self.failing and bool(self.compared)

    @property
    def status(self) -> str:
        """passed, failed, or unchecked (the reference can check none of the values)."""
        if self.failing:
            return "failed"
        return "passed" if self.compared else "unchecked"

    @property
    def first_divergence(self) -> Row | None:
        return self.failing[0] if self.failing else None

    @property
    def engines(self) -> dict[str, int]:
        """How many values each engine checked."""
        counts: dict[str, int] = {}
        for r in self.compared:
            counts[r.engine] = counts.get(r.engine, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def engines_note(self) -> str:
        """" (6 by caffe, 2 by opencv)" where more than one engine checked values, else ""."""
        counts = self.engines
        return " (" + ", ".join(f"{n} by {k}" for k, n in counts.items()) + ")" if len(counts) > 1 else ""

    @property
    def worst(self) -> Row | None:
        rows = [r for r in self.compared if r.rel is not None]
        return max(rows, key=lambda r: r.rel) if rows else None

    def to_dict(self, rows: bool = True) -> dict:
        first, worst = self.first_divergence, self.worst
        out = {
            "passed": None if self.status == "unchecked" else self.passed,
            "status": self.status,
            "reference": self.reference,
            "inputs": self.inputs,
            "tolerance": f"max|y - ref| <= {self.atol:g} + {self.rtol:g} * max|ref|",
            "compared": len(self.compared),
            "compared_by": self.engines,
            "failed": len(self.failed),
            "drifted": len(self.drifted),
            "strict": self.strict,
            "reference_errors": len(self.reference_errors),
            "skipped": len(self.skipped),
            "worst_rel": _sig(worst.rel) if worst else None,
            "first_divergence": first.layer if first else None,
        }
        if self.explanation:
            out["explanation"] = self.explanation
        if rows:
            out["blobs"] = [r.to_dict() for r in self.rows]
        else:  # which engine checked which layer's values (the rows are in report.md)
            by: dict[str, list[str]] = {}
            for r in self.compared:
                names = by.setdefault(r.engine, [])
                if r.layer not in names:
                    names.append(r.layer)
            out["checked_by"] = dict(sorted(by.items()))
        return out


# ------------------------------------------------------------------------------ engine
def _errors(y, ref: np.ndarray) -> tuple[float, float] | None:
    """(max |y - ref|, max |ref|), or None when the shapes differ."""
    import torch

    r = torch.from_numpy(ref)
    y = y.detach()
    if tuple(r.shape) != tuple(y.shape):
        if r.numel() != y.numel():
            return None
        r = r.reshape(y.shape)  # OpenCV drops trailing 1s of some shapes
    if y.numel() == 0:
        return 0.0, 0.0
    y = y.to(torch.float32)
    r = r.to(torch.float32)
    err = float((y - r).abs_().max())
    ref_max = float(r.abs().max())
    if math.isnan(err):  # both NaN at the same places agree; anything else fails
        d = (y - r).abs_()
        both = torch.isnan(y) & torch.isnan(r)
        d[both] = 0
        err = float(torch.nan_to_num(d, nan=math.inf).max())
        ref_max = float(torch.nan_to_num(r.abs(), nan=0.0).max())
    return err, ref_max


def _node_errors(node: Node, top: int, y, ref: np.ndarray) -> tuple[float, float] | None:
    """:func:`_errors` of output ``top`` of ``node`` in the form its family compares."""
    import torch

    y, ref = node.op.compare_form(top, y), node.op.compare_form(top, ref)
    return _errors(torch.from_numpy(y) if isinstance(y, np.ndarray) else y, ref)


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


class _Run:
    """One verification: the graph, the trace, the reference's outputs."""

    def __init__(self, graph: Graph, trace: list[TraceStep], engines: Sequence) -> None:
        self.graph = graph
        nodes = {n.id: n for n in graph.nodes}
        for step in trace:
            unknown = [i for i in step.layers if i not in nodes]
            if unknown or not step.layers:
                raise TraceError(
                    f"conversion.json's trace names layer '{unknown[0] if unknown else ''}', which "
                    "the net does not have: was the net changed since the conversion?",
                    file=graph.path,
                )
            for ref in [r for _, r in step.reads + step.writes]:
                node = nodes.get(ref.layer)
                if node is None or ref.top >= len(node.outputs):
                    raise TraceError(
                        f"conversion.json refers to layer '{ref.layer}', which the net does not "
                        "have: was the net changed since the conversion?",
                        file=graph.path,
                    )
        self.nodes = nodes
        self.trace = trace
        self.steps_nodes = [[nodes[i] for i in step.layers] for step in trace]
        # Every layer the traced values need (a trace may name only the outputs).
        written = [self.value(r.layer, r.top) for step in trace for _, r in step.writes]
        self.order = needed_nodes(graph, written)
        self.cuts = {n.id: gap for n in self.order if (gap := engines_gap(engines, n))}
        # A reference finds a layer's weights by its name (Caffe copies every record of a name
        # into the first layer of that name): a name two layers share is not checked.
        names = Counter(n.name for n in graph.nodes if not n.is_source)
        for n in self.order:
            if names[n.name] > 1 and n.id not in self.cuts:
                self.cuts[n.id] = (
                    f"the layer name '{n.name}' repeats: the reference finds weights by name"
                )

    def value(self, layer: str, top: int) -> Value:
        return self.nodes[layer].outputs[top]


def verify_model(
    code: str,
    class_name: str,
    state: Mapping | Callable[[], Mapping],
    trace: list[TraceStep],
    graph: Graph,
    caffemodel: str | Path,
    arrays: Mapping[str, np.ndarray],
    *,
    inputs_text: str,
    rtol: float = RTOL,
    atol: float = ATOL,
    model_file: str = "model.py",
    layer_map: Mapping[str, str] | None = None,
    model_arrays: Mapping[str, np.ndarray] | None = None,
    strict: bool = False,
    segment_bytes: int | None = None,
    engines: Sequence | None = None,
) -> Verification:
    """Run ``code`` (a converted ``model.py``) with ``state`` and the reference on ``arrays``
    (blob name -> array for each input of ``graph``) and compare every value in ``trace``.
    ``caffemodel`` is a binary file (:func:`caffe2torch.synth.weights_file` makes one).
    ``model_arrays``: the model's own inputs when they differ from the reference's (a model
    that takes RGB, or raw pixels with the normalization folded in). ``engines``: the
    reference engines (:func:`.engines.select`; by default ``auto``).

    A value the reference gets wrong (see :data:`REFERR`) is reported as such; the check then
    runs again with that layer's outputs given to the reference from the model, so that the
    layers after it are still compared against the reference."""
    faults: dict[str, str] = {}
    blobs = _CaffeBlobs(graph, caffemodel)
    opened: list = []  # the reference's segments: closed however the check ends (Ctrl-C too)
    try:
        options = _Options(
            inputs_text, rtol, atol, model_file, layer_map, model_arrays, strict, segment_bytes,
            tuple(engines) if engines is not None else tuple(select("auto")),
        )
        fallback = ""
        for _ in range(5):
            try:
                result, found = _verify_once(
                    code, class_name, state, trace, graph, caffemodel, arrays, options,
                    faults=faults, blobs=blobs, opened=opened,
                )
            except CaffeRunError as e:
                # auto: where real Caffe cannot set the net up, OpenCV checks every layer.
                others = tuple(x for x in options.engines if x.key == "opencv")
                if not others or fallback:
                    raise
                options = replace(options, engines=others)
                fallback = f"{e.message.rstrip('.')}: every layer was checked against OpenCV instead."
                continue
            if callable(state):
                state = result.state
            if not found:
                break
            faults.update(found)
    finally:
        for seg in opened:
            seg.close()
    result.state = None
    if fallback:
        result.explanation.insert(0, fallback)
    return result


class _CaffeBlobs:
    """A layer's Caffe blobs from the caffemodel the reference reads (read once, when an exact
    computation of a layer is needed)."""

    def __init__(self, graph: Graph, caffemodel: str | Path) -> None:
        self.graph, self.caffemodel, self._matched = graph, caffemodel, None

    def __call__(self, node: Node) -> list[np.ndarray] | None:
        if not node.weight_shapes:
            return []
        if self._matched is None:
            try:
                self._matched = check_weights(self.graph, read_caffemodel(self.caffemodel)).matched
            except CaffeError:
                self._matched = {}
        blobs = self._matched.get(node.id)
        if blobs is None:
            return None
        return [np.asarray(b.data, np.float64).reshape(s) for b, s in zip(blobs, node.weight_shapes)]


@dataclass(frozen=True)
class _Options:
    """verify_model's settings, as each of its runs takes them."""

    inputs_text: str
    rtol: float
    atol: float
    model_file: str
    layer_map: Mapping[str, str] | None
    model_arrays: Mapping[str, np.ndarray] | None
    strict: bool
    segment_bytes: int | None
    engines: tuple


def _verify_once(
    code: str,
    class_name: str,
    state: Mapping | Callable[[], Mapping],
    trace: list[TraceStep],
    graph: Graph,
    caffemodel: str | Path,
    arrays: Mapping[str, np.ndarray],
    options: _Options,
    *,
    faults: Mapping[str, str],
    blobs: _CaffeBlobs,
    opened: list,
) -> tuple[Verification, dict[str, str]]:
    """One run of both engines (see :func:`verify_model`); returns the result and the layers
    found to be the reference's fault in it (id -> why)."""
    check = _Check(code, class_name, trace, graph, arrays, options, faults, blobs)
    check.open_reference(caffemodel, state, opened)
    check.feed_reference()
    check.start_reference()
    check.compare()
    if any(r.status == FAIL for r in check.result.rows):
        check.compare_locally()
    if check.faults and not check.found:
        check.result.explanation += _explain_faults(check.result, check.faults)
    used = [e for e in options.engines if e.key in check.result.engines]
    check.result.reference = describe(used or options.engines)  # the engines that checked values
    return check.result, check.found


class _Check:
    """The state of one run of both engines: the model, the reference, the rows."""

    def __init__(
        self,
        code: str,
        class_name: str,
        trace: list[TraceStep],
        graph: Graph,
        arrays: Mapping[str, np.ndarray],
        options: _Options,
        faults: Mapping[str, str],
        blobs: _CaffeBlobs,
    ) -> None:
        import torch

        self.code, self.class_name, self.trace, self.graph = code, class_name, trace, graph
        self.arrays, self.options, self.blobs = arrays, options, blobs
        self.faults = dict(faults or {})
        self.run = _Run(graph, trace, options.engines)
        self.run.cuts.update(self.faults)
        self.makers = {False: instrument(code, class_name, trace, filename=options.model_file)}
        self.result = Verification(
            describe(options.engines), options.inputs_text, options.rtol, options.atol
        )
        self.result.strict = options.strict
        self.found: dict[str, str] = {}
        own = options.model_arrays if options.model_arrays is not None else arrays
        self.xs = [torch.from_numpy(np.ascontiguousarray(own[v.name], np.float32)) for v in graph.inputs]
        self.state: Mapping | None = None
        self.seg: MixedReference | None = None
        self.feeds: dict[int, np.ndarray] = {}  # value -> what the reference is given for it
        self.wanted: set[int] = set()  # the values the reference needs from the model
        self.rows: dict[tuple[int, int], Row] = {}  # (step, output) -> its row
        self.reached = -1  # the last step tapped
        self.local_inputs: dict[int, dict[int, np.ndarray | None]] = {}

    def open_reference(self, caffemodel: str | Path, state, opened: list) -> None:
        """The reference's segments, and the model's weights."""
        graph, run = self.graph, self.run
        seg = MixedReference(
            self.options.engines, graph, run.order, run.cuts, caffemodel, graph.path,
            segmenter(self.options.segment_bytes),
        )
        opened.append(seg)
        self.seg = seg
        if callable(state):  # loaded while the reference reads its weights
            try:
                state = state()
            except BaseException:
                seg.close()
                raise
        self.state = state
        self.result.state = state

    def build(self, tap, feed=None):
        """The instrumented model with ``state``. Built on the meta device and given the
        loaded tensors themselves: no random init, no copy."""
        import torch

        code, class_name, model_file = self.code, self.class_name, self.options.model_file
        if feed is not None and True not in self.makers:
            self.makers[True] = instrument(code, class_name, self.trace, feed=True, filename=model_file)
        cls = self.makers[feed is not None](tap, feed)
        try:
            with torch.device("meta"):
                model = cls()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the file's own failure, as one line
            raise TraceError(
                f"{class_name}() fails: {type(e).__name__}: {_first_error_line(e, 0)}",
                file=model_file,
            ) from None
        if not isinstance(model, torch.nn.Module):
            raise TraceError(f"{class_name} is not a torch nn.Module", file=model_file)
        try:
            model.load_state_dict(self.state, strict=True, assign=True)
        except RuntimeError as e:
            raise TraceError(
                f"the weights do not fit model.py: {_first_error_line(e)}", file=model_file
            ) from None
        if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
            model = cls()  # a tensor outside the state_dict: build it the plain way
            model.load_state_dict(self.state)
        return model.eval()

    def forward(self, model, raising: bool = True) -> str:
        """Run; a model that raises stops here (``raising``) or returns the error's line."""
        import torch

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the model's own deprecation notes (MMdnn's code)
            try:
                model(*self.xs)
            except CaffeError:  # the reference's own failure (raised in a tap), not the model's
                raise
            except (Exception, SystemExit) as e:  # noqa: BLE001 - the model's failure is the finding
                line = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if raising:
                    raise ReferenceError(
                        f"the converted model fails on the input: {line}", file=self.options.model_file
                    ) from None
                return line
        return ""

    def feed_reference(self) -> None:
        """Phase 1: the values the reference cannot make itself, from the converted model."""
        seg = self.seg
        self.feeds = {id(v): self.arrays[v.name] for v in self.graph.inputs}
        self.wanted = {id(v) for v in seg.inputs} - set(self.feeds)
        if self.wanted and seg.nets:
            self.forward(self.build(self.keep))
            missing = [v for v in seg.inputs if id(v) not in self.feeds]
            if missing:
                seg.close()
                raise ReferenceError(
                    f"the reference cannot compute '{missing[0].label}' and the model does not "
                    "expose it, so the layers after it cannot be checked",
                    file=self.options.model_file,
                )

    def keep(self, i, k, t) -> None:
        """Tap of phase 1: keep the values the reference wants."""
        import torch

        v = self.run.value(*_ref(self.trace[i].writes[k]))
        if id(v) in self.wanted:
            self.feeds[id(v)] = t.detach().to(torch.float32).numpy().copy()

    def start_reference(self) -> None:
        """Phase 2: the reference, every layer (segment by segment, as the comparison reaches them)."""
        self.seg.start(self.feeds)

    def reference(self, layer: str, top: int, read: bool = False) -> tuple[np.ndarray | None, str]:
        """The reference's value of output ``top`` of ``layer`` (``read``: as a later layer
        reads it, which may be carried from an earlier segment)."""
        run, seg = self.run, self.seg
        node = run.nodes[layer]
        if node.id in run.cuts:
            return None, run.cuts[node.id]
        engine = seg.engine_of(node)
        if engine is None:  # pragma: no cover - every layer not cut has an engine
            return None, "no reference engine runs this layer"
        if read and top < len(node.outputs):
            got = seg.value(node.outputs[top])
            if got is not None and not engine.top_gap(node, top):
                return got, ""
        outs = seg.outputs(node)
        if gap := engine.top_gap(node, top):
            return None, gap
        if outs is None or top >= len(outs):
            return None, f"{engine.name} gives no value for this output"
        return outs[top], ""

    def compare(self) -> None:
        """Phase 3: the converted model, compared value by value."""
        result, atol = self.result, self.options.atol
        self.add_rows()
        start = time.perf_counter()
        crash = self.forward(self.build(self.tap), raising=False)
        result.seconds["model_run"] = time.perf_counter() - start
        if crash:  # the step after the last one tapped raised: it fails, later ones never ran
            stop = self.reached + 1
            for (i, _k), row in self.rows.items():
                if i == stop:
                    row.status, row.note = FAIL, f"raised {crash}"
                    row.max_abs, row.ref_max, row.bound = math.inf, 0.0, atol
                elif i > stop:
                    row.status, row.note = SKIP, f"not reached: '{self.trace[stop].layers[-1]}' raised"
        if not result.compared:
            reasons = sorted({r.note for r in result.rows if r.note})
            result.explanation = ["The reference can check none of these values: " + "; ".join(reasons)]

    def add_rows(self) -> None:
        """A row for each value of the trace, in order (skipped for the layers fused away)."""
        run, layer_map = self.run, self.options.layer_map
        for i, (step, nodes) in enumerate(zip(self.trace, run.steps_nodes)):
            for node in nodes[:-1]:  # fused into the step's submodule: no value of its own
                for v in node.outputs:
                    what = (layer_map or {}).get(step.layers[0], "one submodule")
                    self.result.rows.append(
                        Row(
                            node.id,
                            node.type,
                            v.name,
                            tuple(v.shape or ()),
                            SKIP,
                            note=f"fused with {nodes[-1].id} into {_attr(what)}; compared after it",
                        )
                    )
            for k, (_, vref) in enumerate(step.writes):
                v = run.value(vref.layer, vref.top)
                row = Row(vref.layer, run.nodes[vref.layer].type, v.name, tuple(v.shape or ()))
                row.fused = [n.id for n in nodes[:-1]]
                self.rows[(i, k)] = row
                self.result.rows.append(row)

    def tap(self, i, k, t) -> None:
        """Tap of phase 3: compare output ``k`` of step ``i`` with the reference's."""
        rtol, atol = self.options.rtol, self.options.atol
        self.reached = i
        if k == 0:
            stage("checking", i + 1, len(self.trace))
        row = self.rows[(i, k)]
        row.shape = tuple(t.shape)
        theirs, why = self.reference(*_ref(self.trace[i].writes[k]))
        if theirs is None:
            row.status, row.note = (REFERR if row.layer in self.faults else SKIP), why
            return
        node = self.run.nodes[row.layer]
        engine = self.seg.engine_of(node)
        row.engine = engine.key
        if t.numel():
            row.y_max = float(t.detach().abs().max())
        errs = _node_errors(node, _ref(self.trace[i].writes[k])[1], t, theirs)
        if errs is None:
            row.status = FAIL
            row.max_abs, row.ref_max, row.bound = math.inf, 0.0, atol
            row.note = f"shape {_fmt(t.shape)}, {engine.name}'s {_fmt(theirs.shape)}"
            return
        row.max_abs, row.ref_max = errs
        row.bound = atol + rtol * row.ref_max
        row.status = PASS if row.max_abs <= row.bound else FAIL

    def compare_locally(self) -> None:
        """Phase 4, after a failure: each layer on the reference's inputs."""
        start = time.perf_counter()
        self.seg.rewind()
        self.forward(self.build(self.local_tap, self.feed), raising=False)
        self.result.seconds["model_local_run"] = time.perf_counter() - start
        if not self.found:
            self.result.explanation = _explain(
                self.result, self.run, self.code, self.options.layer_map or {}
            )

    def feed(self, i, k, x):
        """Feed of phase 4: input ``k`` of step ``i`` as the reference has it."""
        import torch

        run = self.run
        vref = self.trace[i].reads[k][1]
        node = run.nodes[vref.layer]
        given = self.local_inputs.setdefault(i, {})
        if node.is_source:
            v = run.value(vref.layer, vref.top)
            given[k] = np.asarray(self.arrays[v.name]) if v.name in self.arrays else None
            return x
        theirs, _ = self.reference(vref.layer, vref.top, read=True)
        given[k] = None
        if theirs is None:
            return x
        # In Caffe's shape (the model's own may be wrong; OpenCV's may lack trailing 1s).
        shape = run.value(vref.layer, vref.top).shape
        if shape is None or (-1 not in shape and theirs.size != math.prod(shape)):
            return x
        try:  # a size known only at run time (-1: rois) is the reference's
            theirs = theirs.reshape(shape)
        except ValueError:
            return x
        given[k] = theirs
        return torch.from_numpy(theirs.copy()).to(x.dtype)

    def local_tap(self, i, k, t) -> None:
        """Tap of phase 4: a failed value's error on the reference's inputs (drift, or whose fault)."""
        rtol, atol = self.options.rtol, self.options.atol
        row = self.rows[(i, k)]
        if row.status != FAIL:
            return
        layer, top = _ref(self.trace[i].writes[k])
        theirs, _ = self.reference(layer, top)
        errs = _node_errors(self.run.nodes[layer], top, t, theirs)
        if errs is None:  # of another size (rois, detections): whose fault, as below
            row.local, row.local_ok = math.inf, False
        else:
            err, ref_max = errs
            row.local = err / ref_max if ref_max else err
            row.local_ok = err <= atol + rtol * ref_max
            if row.local_ok:
                row.status = DRIFT
                return
        node = self.run.nodes[row.layer]
        engine = self.seg.engine_of(node)
        if not engine.may_fault:  # real Caffe's value is the truth
            return
        why = _reference_fault(
            node, k, t, theirs, self.local_inputs.get(i), self.blobs, rtol, atol, engine.name
        )
        if why:
            self.found[row.layer] = why


def _first_error_line(e: Exception, index: int = 1) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[index] if len(lines) > index else (lines[0] if lines else type(e).__name__)


def _reference_fault(
    node: Node, top: int, t, theirs, inputs, blobs, rtol: float, atol: float, name: str = "OpenCV"
) -> str:
    """Why the reference's value of a failing layer is the reference's fault ("" when it may
    be the model's). With an exact float64 computation of the layer (its family's ``exact``),
    that decides: the model matches it and the reference does not. Without one, a reference
    value that is not finite, or implausibly large, where the model's is neither."""
    ours = t.detach().to(dtype=t.dtype).cpu().double().numpy()
    ref = np.asarray(theirs, np.float64).reshape(-1)
    exact = getattr(node.op, "exact", None)
    if exact is not None and inputs is not None and all(a is not None for a in inputs.values()):
        weights = blobs(node) if blobs is not None else None
        if weights is not None:
            try:
                want = exact([np.asarray(inputs[k], np.float64) for k in sorted(inputs)], weights)
            except (NotImplementedError, ValueError):
                want = None
            if want is not None and top < len(want) and want[top].size in (ref.size, ours.size):
                w = node.op.compare_form(top, np.asarray(want[top], np.float64)).reshape(-1)
                mine = node.op.compare_form(top, ours).reshape(-1)
                r = node.op.compare_form(top, np.asarray(theirs, np.float64)).reshape(-1)
                scale = float(np.abs(w).max()) if w.size else 0.0
                bound = atol + rtol * scale

                def off(x) -> float:  # a value of another size (rois, detections) is off
                    if x.size != w.size:
                        return math.inf
                    return float(np.nan_to_num(np.abs(x - w), nan=np.inf).max()) if w.size else 0.0

                ours_err, ref_err = off(mine), off(r)
                if ours_err <= bound < ref_err:
                    differs = (
                        f"has {r.size} values where an exact float64 computation of the layer "
                        f"has {w.size}" if r.size != w.size else
                        f"differs from an exact float64 computation of the layer by {ref_err:.3g} "
                        f"(max |exact| {scale:.3g})"
                    )
                    return f"{name}'s value {differs}; the model's is within {ours_err:.2g} of it"
                return ""
    if not np.isfinite(ours).all():
        return ""
    if ref.size and not np.isfinite(ref).all():
        return f"{name}'s value is not finite (NaN or infinity) where the model's is"
    ref_max = float(np.abs(ref).max()) if ref.size else 0.0
    y_max = float(np.abs(ours).max()) if ours.size else 0.0
    if ref_max > IMPLAUSIBLE * max(1.0, y_max):
        return (
            f"{name}'s value reaches {ref_max:.3g} where the model's stays within {y_max:.3g}: "
            "implausible for this layer"
        )
    return ""


def _explain_faults(result: Verification, faults: Mapping[str, str]) -> list[str]:
    names = ", ".join(f"'{i}'" for i in faults)
    lines = [
        f"The reference is wrong at {names}, not the model: "
        + "; ".join(f"'{i}': {why}" for i, why in faults.items())
        + ". Those values are marked reference-error, and the layers after them were checked "
        "with the model's values given to the reference in their place."
    ]
    return lines


def _ref(write) -> tuple[str, int]:
    _, vref = write
    return vref.layer, vref.top


def _attr(name: str) -> str:
    return f"self.{name}" if name not in ("functional", "dropped", "input") else name


def _explain(result: Verification, run: _Run, code: str, layer_map: Mapping[str, str]) -> list[str]:
    """Plain sentences on the first divergence: the layer, its parameters, its line, and how
    far it is off on its own; or, when every layer is right alone, on the drift."""
    wrong = [r for r in result.rows if r.status == FAIL]
    if not wrong:
        first = result.drifted[0]
        worst = max(result.drifted, key=lambda r: r.rel)
        return [
            "No layer is wrong on its own: given the reference's inputs, every layer agrees with it. "
            f"From '{first.layer}' ({first.type}) on, {len(result.drifted)} values drift from "
            f"the reference's, up to {worst.rel:.2g} relative at '{worst.blob}': the net amplifies "
            "float32 rounding (both engines' rounding), which is not a conversion error."
        ]
    row = wrong[0]
    node = run.nodes[row.layer]
    what = f"layer '{node.id}' ({node.type})"
    for other in row.fused:
        what += f" and the layer '{other}' ({run.nodes[other].type}) fused with it"
    lines = [f"First divergence: {what}, blob '{row.blob}'."]
    for n in [run.nodes[i] for i in row.fused] + [node]:
        params = describe_params(n)
        if params:
            lines.append(f"Parameters of '{n.id}': {params}")
    attr = layer_map.get(node.id)
    if attr and attr not in ("functional", "dropped", "input"):
        for no, text in enumerate(code.splitlines(), 1):
            if text.strip().startswith(f"self.{attr} ="):
                lines.append(f"model.py line {no}: {text.strip()}")
                break
    if row.note:
        lines.append(f"The outputs differ: {row.note}.")
    else:
        lines.append(
            f"Max abs error {row.max_abs:.3g} against max|ref| {row.ref_max:.3g} "
            f"(allowed {row.bound:.3g}); given the reference's own inputs, relative error "
            f"{row.local:.3g}: the layer itself differs from Caffe's."
        )
    later = [r for r in wrong[1:]]
    if later:
        names = ", ".join(f"'{r.layer}'" for r in later[:5]) + (", ..." if len(later) > 5 else "")
        lines.append(f"{len(later)} later layer(s) are also wrong on their own: {names}.")
    return lines


def describe_params(node: Node) -> str:
    """The layer's settings in prototxt syntax, on one line (names, bottoms, tops left out)."""
    from google.protobuf import text_format

    p = type(node.op.proto)()
    p.CopyFrom(node.op.proto)
    for f in (
        "name",
        "type",
        "bottom",
        "top",
        "blobs",
        "include",
        "exclude",
        "phase",
        "param",
        "loss_weight",
        "propagate_down",
    ):
        p.ClearField(f)
    _drop_training(p)
    return text_format.MessageToString(p, as_one_line=True)


def _drop_training(message) -> None:
    """Leave out what only training reads (weight fillers)."""
    from google.protobuf.message import Message

    for fd, value in message.ListFields():
        if fd.name.endswith("_filler"):
            message.ClearField(fd.name)
        elif isinstance(value, Message):
            _drop_training(value)


def check_inputs(graph: Graph, arrays: Mapping[str, np.ndarray], shown=None) -> None:
    """Every input has an array of its shape; ``shown`` names the file each came from."""
    shown = shown or {}
    for v in graph.inputs:
        a = arrays.get(v.name)
        where = shown.get(v.name) if isinstance(shown, Mapping) else (shown or None)
        if a is None:
            raise CaffeError(f"no array for input '{v.name}'", file=where)
        if tuple(a.shape) != tuple(v.shape):
            raise CaffeError(
                f"input '{v.name}' has shape {_fmt(a.shape)}, the model takes {_fmt(v.shape)}",
                file=where,
            )
