"""Every intermediate Caffe value out of a converted model, without touching its ``model.py``.

``conversion.json`` records, for each step of ``forward``, which statements it takes and which
variable holds which Caffe value before and after it (the ``trace``). :func:`instrument`
parses a copy of the model's source, inserts after each step a call that hands its outputs to
a callback (``tap``), and optionally before each step a call that may replace its inputs
(``feed``: running every layer on the reference's inputs, to tell a layer that computes the
wrong thing from rounding accumulated upstream). The user's file is never modified; the copy
is compiled in memory.

The tap sees each value at the moment it is made, before a later in-place layer overwrites
it, so in-place chains (conv -> bn -> scale -> relu on one blob) give one value per layer.
"""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass
from typing import Callable

from ..errors import CaffeError

TAP = "_caffe2torch_tap"
FEED = "_caffe2torch_feed"


class TraceError(CaffeError):
    """``model.py`` and the trace in ``conversion.json`` do not fit together."""


@dataclass(frozen=True)
class ValueRef:
    """One Caffe value: output ``top`` of layer ``layer`` (a layer id of the graph)."""

    layer: str
    top: int


@dataclass
class TraceStep:
    layers: list[str]
    start: int
    end: int
    reads: list[tuple[str, ValueRef]]
    writes: list[tuple[str, ValueRef]]


def parse_trace(trace: list[dict]) -> list[TraceStep]:
    try:
        return [
            TraceStep(
                list(t["layers"]),
                int(t["statements"][0]),
                int(t["statements"][1]),
                [(var, ValueRef(layer, int(k))) for var, layer, k in t["reads"]],
                [(var, ValueRef(layer, int(k))) for var, layer, k in t["writes"]],
            )
            for t in trace
        ]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise TraceError(f"the trace in conversion.json is malformed ({e})") from None


def _stmt(text: str) -> ast.stmt:
    return ast.parse(text).body[0]


def instrument(
    code: str, class_name: str, trace: list[TraceStep], *, feed: bool = False, filename="model.py"
) -> Callable[[Callable, Callable | None], type]:
    """Compile an instrumented copy of ``code``; returns ``make(tap, feed)`` giving the class.

    ``tap(step_index, output_index, tensor)`` is called after each step for each output;
    ``feed(step_index, input_index, tensor) -> tensor`` before each step for each input (when
    ``feed`` is true)."""
    try:
        tree = ast.parse(code, filename=filename)
    except SyntaxError as e:
        raise TraceError(f"cannot parse: {e.msg} (line {e.lineno})", file=filename) from None
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        raise TraceError(f"has no class {class_name}", file=filename)
    fwd = next(
        (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None
    )
    if fwd is None:
        raise TraceError(f"class {class_name} has no forward()", file=filename)
    body = list(fwd.body)
    expected = max([t.end for t in trace], default=0)
    returns = [i for i, s in enumerate(body) if isinstance(s, ast.Return)]
    if not returns or returns[0] < expected:
        raise TraceError(
            f"{class_name}.forward has {returns[0] if returns else len(body)} statements before "
            f"its return where conversion.json expects {expected}: was forward edited?",
            file=filename,
        )
    new: list[ast.stmt] = []
    at = 0
    for i, step in enumerate(trace):
        new.extend(body[at : step.start])
        if feed:
            for k, (var, _) in enumerate(step.reads):
                new.append(_stmt(f"{var} = {FEED}({i}, {k}, {var})"))
        new.extend(body[step.start : step.end])
        for k, (var, _) in enumerate(step.writes):
            new.append(_stmt(f"{TAP}({i}, {k}, {var})"))
        at = step.end
    new.extend(body[at:])
    fwd.body = new
    ast.fix_missing_locations(tree)
    compiled = compile(tree, f"<instrumented {filename}>", "exec")

    def make(tap: Callable, feeder: Callable | None = None) -> type:
        mod = types.ModuleType(f"caffe2torch_instrumented_{class_name}")
        mod.__dict__[TAP] = tap
        mod.__dict__[FEED] = feeder or (lambda i, k, x: x)
        try:
            exec(compiled, mod.__dict__)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the file's own failure, one line
            first = str(e).splitlines()[0] if str(e) else ""
            raise TraceError(f"cannot be imported: {type(e).__name__}: {first}", file=filename) from None
        return getattr(mod, class_name)

    return make
