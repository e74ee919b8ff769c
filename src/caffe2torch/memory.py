"""Memory the check needs, estimated before it starts, and the graph it runs on.

The check runs the converted model and the reference engine on the same input. It runs at
batch 1 by default (``--check-batch``), whatever batch the prototxt declares: a U-Net that
declares 10x3x480x480 would otherwise need ten times the memory for the same proof.

Before anything is read or run, :meth:`CheckOptions.guard` estimates the peak (see
:func:`estimate`) and refuses, in one line that says how to proceed, a check that would need
more than the limit: ``--max-memory``, by default half the memory available now (the
machine's, or its container's cgroup limit when that is smaller).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import CaffeError, MemoryLimitError, MiB, size_text
from .graph import Graph
from .layers.base import count

BASE = 300 * MiB  # Python, torch, OpenCV and numpy loaded, before any net
FLOAT = 4
# The reference runs in segments whose outputs stay within this (see SegmentedReference).
SEGMENT = 256 * MiB

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int | None:
    """``8G``, ``8GiB``, ``512M``, ``1.5g``, a number of bytes, or ``none`` (no limit)."""
    t = text.strip().lower()
    if t in ("none", "off", "unlimited"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?", t)
    if not m:
        raise ValueError(f"'{text}' is not a size: give e.g. 8G, 512M or none")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value < 1:
        raise ValueError(f"'{text}' is not a positive size")
    return int(value)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int:
    """Memory available to this process now: the kernel's MemAvailable, or what is left under
    a container's cgroup limit when that is less."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 8 << 30
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            avail = min(avail, max(limit - usage, 0))
    return avail


@dataclass
class Estimate:
    """The check's peak memory, in parts (bytes)."""

    reference: int  # the reference engine's activations, and the arrays it hands back
    model: int  # the converted model's live activations, and the comparison's temporaries
    weights: int  # both engines' copies of the weights
    base: int = BASE

    @property
    def total(self) -> int:
        return self.reference + self.model + self.weights + self.base

    def text(self) -> str:
        return (
            f"about {size_text(self.total)} ({size_text(self.reference)} for the reference's "
            f"activations, {size_text(self.model)} for the model's, {size_text(self.weights)} "
            "for the weights)"
        )


def _bytes(shape) -> int:
    return count(shape or ()) * FLOAT


def live_peak(graph: Graph) -> int:
    """The most bytes of activations alive at once while the converted model runs (each value
    freed after its last reader, as the generated forward does)."""
    nodes = graph.layers
    last: dict[int, int] = {}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            last[id(v)] = i
    outputs = {id(v) for v in graph.outputs}
    alive: dict[int, int] = {id(v): _bytes(v.shape) for v in graph.inputs}
    peak = sum(alive.values())
    for i, n in enumerate(nodes):
        made = {id(v): _bytes(v.shape) for v in n.outputs}
        peak = max(peak, sum(alive.values()) + sum(made.values()))
        alive.update(made)
        for key in [k for k in alive if last.get(k, -1) <= i and k not in outputs]:
            del alive[key]
    return peak


def segmenter(budget: int | None = None):
    """Splits layers (in order) into segments whose outputs sum to at most ``budget`` bytes
    (a single layer over it is a segment of its own)."""
    budget = budget or SEGMENT

    def split(nodes) -> list[list]:
        out: list[list] = []
        size = 0
        for n in nodes:
            b = sum(_bytes(v.shape) for v in n.outputs)
            if not out or (size + b > budget and out[-1]):
                out.append([])
                size = 0
            out[-1].append(n)
            size += b
        return out

    return split


def reference_peak(graph: Graph, budget: int | None = None, cut=None) -> int:
    """The reference's peak: one segment's outputs twice (the engine's own, and the arrays it
    hands back), plus the values later segments read, plus the net's inputs, plus the outputs
    of the layers it cannot run (``cut(node)`` true), which the model gives it: all kept, and
    copied into the engine by the segment that reads them."""
    cut = cut or (lambda node: False)
    run = [n for n in graph.layers if not cut(n)]
    held = sum(_bytes(v.shape) for n in graph.layers if cut(n) for v in n.outputs)
    segments = segmenter(budget)(run)
    where = {id(n): k for k, seg in enumerate(segments) for n in seg}
    carried = {
        id(v): _bytes(v.shape)
        for n in run for v in n.inputs
        if id(v.producer) in where and where[id(v.producer)] < where[id(n)]
    }
    biggest = max((sum(_bytes(v.shape) for n in seg for v in n.outputs) for seg in segments), default=0)
    # What the model gives it is kept, and copied again into the segment that reads it.
    return 2 * biggest + sum(carried.values()) + 2 * held + sum(_bytes(v.shape) for v in graph.inputs)


def estimate(graph: Graph, weight_bytes: int | None = None, cut=None) -> Estimate:
    """The check's peak memory for ``graph`` (at the batch it runs at).

    The reference engine keeps every layer's output of a segment (it is asked for all of them,
    in-place chains as separate values) and hands each back as a copy (:func:`reference_peak`).
    The model keeps only live activations, plus the comparison's temporaries (twice the
    largest value). The weights are held by both engines, and the reference repacks its
    convolutions' weights."""
    values = [v for n in graph.layers for v in n.outputs] + list(graph.inputs)
    largest = max((_bytes(v.shape) for v in values), default=0)
    if weight_bytes is None:
        weight_bytes = graph.param_count * FLOAT
    return Estimate(
        reference=reference_peak(graph, cut=cut),
        model=live_peak(graph) + 2 * largest,
        weights=3 * weight_bytes,
    )


@dataclass
class CheckOptions:
    """How the check runs: its batch, and the most memory it may take (None: half of what is
    available when it starts)."""

    batch: int = 1
    max_memory: int | None = None
    unlimited: bool = False
    # The reference: auto, caffe or opencv (verify/engines.py), and once chosen, its engines.
    reference: str = "auto"
    engines: tuple | None = None
    # Which layers the reference cannot run (their outputs come from the model and are kept):
    # the reference engine's own rule, given by whoever runs the check.
    cut: Callable | None = None
    _made: tuple | None = field(default=None, repr=False, compare=False)

    def limit(self) -> int | None:
        if self.unlimited:
            return None
        return self.max_memory if self.max_memory is not None else available_memory() // 2

    def graph(self, graph: Graph) -> tuple[Graph, str]:
        """The graph the check runs on: ``graph`` with its batch at most ``batch``, and a note
        on the batch ("" when it is the declared one). Built once per graph (the estimate
        before the weights are read and the check itself share it)."""
        if self._made is None or self._made[0] is not graph:
            self._made = (graph, check_graph(graph, self.batch))
        return self._made[1]

    def guard(self, graph: Graph, weight_bytes: int | None = None) -> Estimate:
        """Estimate the check on ``graph`` (as declared; it runs at ``batch``) and refuse it
        when over the limit."""
        g, _ = self.graph(graph)
        return self.enforce(g, weight_bytes)

    def enforce(self, graph: Graph, weight_bytes: int | None = None) -> Estimate:
        est = estimate(graph, weight_bytes, cut=self.cut)
        limit = self.limit()
        if limit is not None and est.total > limit:
            shapes = ", ".join(
                f"{v.name} {'x'.join(map(str, v.shape))}" for v in graph.inputs
            )
            how = "--max-memory" + (
                " (the default is half the memory available now)" if self.max_memory is None else ""
            )
            raise MemoryLimitError(
                f"the check would need {est.text()}, over the limit of {size_text(limit)} set by "
                f"{how}; nothing was started. The check runs on {shapes}: give a smaller "
                "--input-shape, or convert with --no-verify, or raise --max-memory",
                file=graph.path,
            )
        return est


def check_graph(graph: Graph, batch: int) -> tuple[Graph, str]:
    """``graph`` rebuilt with each input's batch (its first axis) at most ``batch``; the graph
    itself when it is already, or when the net does not build at that batch (a Reshape that
    hard-codes the batch, say), with a note saying why."""
    declared = {v.name: tuple(v.shape) for v in graph.inputs}
    if all(s[0] <= batch for s in declared.values() if s):
        return graph, ""
    shapes = {k: ((batch, *s[1:]) if s and s[0] > batch else s) for k, s in declared.items()}
    batches = sorted({s[0] for s in declared.values() if s and s[0] > batch})
    said = "/".join(map(str, batches))
    try:
        small = graph.rebuilt(shapes)
    except CaffeError as e:
        return graph, (
            f"at the declared batch {said}: at batch {batch} the net does not build "
            f"({e.message})"
        )
    if [n.id for n in small.nodes] != [n.id for n in graph.nodes]:  # pragma: no cover
        return graph, f"at the declared batch {said}"
    return small, f"at batch {batch} (the prototxt declares {said}; --check-batch changes it)"


__all__ = [
    "CheckOptions", "Estimate", "available_memory", "check_graph", "estimate", "live_peak",
    "parse_size", "reference_peak", "segmenter",
]
