"""What a reference engine is, for the per-layer check: the net it runs, in segments, and how
several engines share one check.

An engine (:mod:`.engines`: real Caffe, OpenCV's dnn module) says which layers it can run
(``gap``), how a layer must be written for it (``rewrite``) and how to run a net
(``loader``). The check asks :class:`MixedReference` for the reference's value of each layer:
every layer goes to the first engine that can run it, in the order asked for (``auto``: real
Caffe, then OpenCV for what Caffe lacks).

Every value gets a blob name of its own in the net an engine runs (in-place layers write new
blobs), so that a value the engine does not make (a layer given to another engine, or one no
engine can run) is given to it as an input. Layers keep their names: weights are found by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from google.protobuf import text_format

from ..caffe.schema import pb
from ..errors import CaffeError


class ReferenceError(CaffeError):
    """The reference engine cannot load or run the net."""


@dataclass
class ReferenceNet:
    """A part of the graph for an engine to run layer by layer (see the module's doc)."""

    text: str
    blob: dict[int, str]  # id(Value) -> blob name in ``text``
    inputs: list  # Values the engine reads: the net's inputs, then the values it does not make
    layers: list  # Nodes it runs, in order


def layer_copy(node, bottoms: list[str] | None = None):
    """The layer's parameters as a new message, phase rules left out (the net is one phase),
    reading ``bottoms`` instead of its own where given."""
    layer = type(node.op.proto)()
    layer.CopyFrom(node.op.proto)
    layer.ClearField("include")
    layer.ClearField("exclude")
    if bottoms is not None:
        layer.ClearField("bottom")
        layer.bottom.extend(bottoms)
    return layer


def input_layer(net, names: set[str], values: list[tuple[str, tuple]]) -> None:
    """One ``Input`` layer with these blobs and shapes, named apart from the net's layers. A
    dimension known only at run time (-1: rois, detections) is declared 1; the engine is given
    the value's own shape before it runs."""
    source = net.layer.add()
    source.name = next(n for n in ("input", "data_input", "reference_input") if n not in names)
    source.type = "Input"
    for name, shape in values:
        source.top.append(name)
        source.input_param.shape.add().dim.extend(1 if d == -1 else d for d in shape)


def reference_net(
    graph,
    nodes,
    cuts: Mapping[str, str],
    rewrite: Callable | None = None,
    hold: Callable | None = None,
) -> ReferenceNet:
    """``nodes`` (computing layers in graph order) without the ``cuts`` (layer id -> reason),
    whose outputs become inputs. ``rewrite(node, layer)``: the engine's own form of a layer
    (it may reorder the bottoms, named "0", "1", ... by input index). ``hold(node, k)``: whether
    output ``k`` > 0 must be read by a final Silence layer for the engine to keep it."""
    run = [n for n in nodes if n.id not in cuts]
    taken: set[str] = set()
    blob: dict[int, str] = {}

    def name_of(v) -> str:
        if id(v) not in blob:
            name = v.name if v.version == 0 else f"{v.name}@{v.producer.name}"
            while name in taken:
                name += "_"
            taken.add(name)
            blob[id(v)] = name
        return blob[id(v)]

    read = {id(v) for n in run for v in n.inputs}
    inputs = [v for v in graph.inputs if id(v) in read]
    made = {id(v) for n in run for v in n.outputs} | {id(v) for v in graph.inputs}
    for n in run:
        for v in n.inputs:
            if id(v) not in made and all(v is not u for u in inputs):
                inputs.append(v)
    if not inputs:
        inputs = list(graph.inputs)
    for v in inputs:
        name_of(v)
    net = pb.NetParameter()
    net.name = graph.name
    input_layer(net, {n.name for n in graph.nodes}, [(blob[id(v)], v.shape) for v in inputs])
    for node in run:
        layer = layer_copy(node, [str(i) for i in range(len(node.inputs))])
        if rewrite is not None:
            rewrite(node, layer)
        order = [node.inputs[int(i)] for i in layer.bottom]
        layer.ClearField("bottom")
        layer.bottom.extend(name_of(v) for v in order)
        layer.ClearField("top")
        layer.top.extend(name_of(v) for v in node.outputs)
        net.layer.add().CopyFrom(layer)
    extra = [v for n in run for k, v in enumerate(n.outputs[1:], 1) if hold is not None and hold(n, k)]
    if extra:
        names = {n.name for n in graph.nodes}
        keep = net.layer.add()
        keep.name = next(f"keep_{k}" for k in range(len(names) + 1) if f"keep_{k}" not in names)
        keep.type = "Silence"
        keep.bottom.extend(blob[id(v)] for v in extra)
    return ReferenceNet(text_format.MessageToString(net), blob, inputs, run)


class SegmentedReference:
    """One engine's part of the net, run in segments (consecutive layers whose outputs together
    stay within a memory budget), each when a value of it is first asked for, so that the
    engine never holds more than one segment's outputs, plus the values later segments read
    (a U-Net's skip connections). A part that fits the budget is one segment, whose loading
    starts at once (OpenCV reads it in the background while the converted model is built).

    :meth:`start` gives the values the engine cannot make (the net's inputs, the outputs of
    layers it does not run); :meth:`outputs` gives a layer's outputs, running segments as
    needed; :meth:`value` a value read across segments; :meth:`rewind` starts a second pass."""

    def __init__(self, engine, graph, nodes, cuts: Mapping[str, str], caffemodel, shown, segments) -> None:
        self.engine, self.graph, self.caffemodel, self.shown = engine, graph, caffemodel, shown
        run = [n for n in nodes if n.id not in cuts]
        self.nets: list[ReferenceNet] = []
        self.segment_of: dict[int, int] = {}
        for k, seg in enumerate(segments(run) if run else []):
            self.nets.append(engine.net(graph, seg, cuts))
            for n in seg:
                self.segment_of[id(n)] = k
        self.layers = run
        made_here = {id(v) for n in run for v in n.outputs}
        self.inputs = []  # what the engine reads but does not make
        seen: set[int] = set()
        for net in self.nets:
            for v in net.inputs:
                if id(v) not in made_here and id(v) not in seen:
                    seen.add(id(v))
                    self.inputs.append(v)
        self.seconds = {"load": 0.0, "run": 0.0}
        self._given: dict[int, np.ndarray] = {}
        self._carry: dict[int, np.ndarray] = {}
        self._current = -1
        self._outputs: dict[str, list[np.ndarray]] = {}
        self._pending = None
        self._loader = engine.loader(self.nets[0], caffemodel, shown, True) if self.nets else None

    def close(self) -> None:
        for loader in (self._loader, self._pending):
            if loader is not None:
                loader.close()
        self._loader = self._pending = None
        self._outputs, self._carry, self._given = {}, {}, {}

    def start(self, given: Mapping[int, np.ndarray]) -> None:
        self._given = dict(given)
        self._carry = {}
        self._current = -1
        self._outputs = {}

    def rewind(self) -> None:
        self.start(self._given)

    def _run(self, k: int) -> None:
        net = self.nets[k]
        loader = self._loader if (k == 0 and self._loader is not None) else self.engine.loader(
            net, self.caffemodel, self.shown, False
        )
        self._loader = None
        self._pending = loader  # closed if the check stops while it loads
        arrays = {}
        for v in net.inputs:
            a = self._given.get(id(v))
            if a is None:
                a = self._carry.get(id(v))
            if a is None:  # pragma: no cover - segments are run in order
                raise ReferenceError(f"no value for '{v.label}' before segment {k}", file=self.shown)
            arrays[id(v)] = a
        self._outputs = {}  # the previous segment's outputs go (what later ones read is kept)
        outs = loader.run(arrays)
        self._pending = None
        self.seconds["load"] += loader.seconds["load"]
        self.seconds["run"] += loader.seconds["run"]
        later = {id(v) for m in self.nets[k + 1 :] for v in m.inputs}
        for n in [x for x in self.layers if self.segment_of[id(x)] == k]:
            got = outs.get(n.name)
            if got is None:
                alias = net.blob[id(n.outputs[0])]
                got = outs.get(alias)
            if got is None:
                continue
            self._outputs[n.name] = got
            for v, a in zip(n.outputs, got):
                if id(v) in later:
                    self._carry[id(v)] = a
        self._current = k

    def _advance(self, k: int) -> None:
        while self._current < k:
            self._run(self._current + 1)

    def outputs(self, node) -> list[np.ndarray] | None:
        """The outputs of ``node`` (None when the engine does not run it, or they belong to a
        segment already dropped)."""
        k = self.segment_of.get(id(node))
        if k is None:
            return None
        self._advance(k)
        return self._outputs.get(node.name) if k == self._current else None

    def value(self, v) -> np.ndarray | None:
        """A value: given, carried across segments, or made by a segment not yet dropped."""
        for store in (self._given, self._carry):
            if id(v) in store:
                return store[id(v)]
        outs = self.outputs(v.producer)
        i = v.producer.outputs.index(v)
        return outs[i] if outs is not None and i < len(outs) else None


class MixedReference:
    """The reference of one check: each layer run by the first of ``engines`` that can
    (``assigned``: layer id -> engine), the others (``cuts``: layer id -> why) left to the
    model. Each engine's part is a :class:`SegmentedReference`; what one engine's layers read
    from another's (or from a layer no engine runs) is given from the converted model."""

    def __init__(self, engines, graph, nodes, cuts: Mapping[str, str], caffemodel, shown, segments) -> None:
        self.engines = list(engines)
        self.assigned: dict[str, object] = {}
        for n in nodes:
            if n.id in cuts:
                continue
            for e in self.engines:
                if e.can_run(n):
                    self.assigned[n.id] = e
                    break
        self.parts = []
        try:
            for e in self.engines:
                mine = [n for n in nodes if self.assigned.get(n.id) is e]
                if mine:
                    self.parts.append(SegmentedReference(e, graph, mine, {}, caffemodel, shown, segments))
        except BaseException:
            self.close()
            raise
        self.part_of = {id(n): p for p in self.parts for n in p.layers}
        self.layers = [n for n in nodes if id(n) in self.part_of]
        self.nets = [net for p in self.parts for net in p.nets]
        made = {id(v) for n in self.layers for v in n.outputs}
        seen: set[int] = set()
        self.inputs = []  # what the engines read but none of them makes
        for p in self.parts:
            for v in p.inputs:
                if id(v) not in seen and (id(v) not in made or self.part_of[id(v.producer)] is not p):
                    seen.add(id(v))
                    self.inputs.append(v)

    @property
    def seconds(self) -> dict:
        return {k: sum(p.seconds[k] for p in self.parts) for k in ("load", "run")}

    def engine_of(self, node):
        p = self.part_of.get(id(node))
        return p.engine if p is not None else None

    def close(self) -> None:
        for p in self.parts:
            p.close()

    def start(self, given: Mapping[int, np.ndarray]) -> None:
        # Each part gets only what it reads: a value one part makes is its own, not the
        # model's copy given to another part.
        for p in self.parts:
            p.start({id(v): given[id(v)] for v in p.inputs if id(v) in given})

    def rewind(self) -> None:
        for p in self.parts:
            p.rewind()

    def outputs(self, node) -> list[np.ndarray] | None:
        p = self.part_of.get(id(node))
        return p.outputs(node) if p is not None else None

    def value(self, v) -> np.ndarray | None:
        p = self.part_of.get(id(v.producer)) if v.producer is not None else None
        if p is not None:
            return p.value(v)
        for p in self.parts:
            got = p.value(v)
            if got is not None:
                return got
        return None
