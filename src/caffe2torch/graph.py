"""The net as a graph: layers with typed parameters, blobs as values, and shape inference.

``build_graph`` takes a net read by :func:`caffe2torch.caffe.read_prototxt`, keeps the layers
of the requested phase, drops training-only layers, resolves in-place chains into versions of
a blob (``conv1`` written by a convolution, then by a BatchNorm, a Scale and a ReLU in place
gives four :class:`Value` objects), turns data layers into the net's inputs and infers every
shape with Caffe's arithmetic. ``check_weights`` matches a weights file against it by layer
name, with Caffe's rules for legacy blob shapes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .caffe.caffemodel import Blob, Weights
from .caffe.prototxt import NetText
from .errors import CaffeError, InputShapeError, PrototxtError, UnsupportedLayerError, WeightsError
from .layers import DYNAMIC, Layer, LayerError, Shape, fmt_shape, layer_class
from .layers.base import MAX_BLOB, MAX_COUNT, MAX_DIM, count

PHASES = {"train": 0, "test": 1}


@dataclass(eq=False)
class Value:
    """One version of a Caffe blob: written by ``producer``, read by ``consumers``."""

    name: str
    version: int
    producer: "Node"
    shape: Shape | None = None
    consumers: list["Node"] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.version == 0 else f"{self.name}@{self.producer.name}"

    def __repr__(self) -> str:
        return f"Value({self.label}, {fmt_shape(self.shape)})"


@dataclass(eq=False)
class Node:
    """A layer. ``name`` is its Caffe name, which weights are matched by; ``id`` is unique in
    the graph (layers that repeat a name share its weights, as OpenCV reads such nets)."""

    name: str
    type: str
    op: Layer
    inputs: list[Value]
    outputs: list[Value]
    line: int | None = None
    inplace: bool = False
    weight_shapes: list[Shape] = field(default_factory=list)
    param_names: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or self.name

    def param_name(self, index: int) -> str:
        """The shared-parameter name of blob ``index`` (``param { name: ... }``), or ""."""
        return self.param_names[index] if index < len(self.param_names) else ""

    @property
    def is_source(self) -> bool:
        return self.op is not None and self.op.SOURCE

    @property
    def param_count(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes)

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.type})"


@dataclass
class Graph:
    name: str
    path: Path
    format: str
    phase: str
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]
    notes: list[str] = field(default_factory=list)
    pruned: list[tuple[str, str]] = field(default_factory=list)  # (id, type) of layers left out
    named_outputs: bool = False  # the outputs were named (--outputs), not the default
    order: list[str] = field(default_factory=list)  # every layer id kept by the phase, in order
    text: NetText | None = None  # what it was built from (to build it again at another batch)
    build_args: dict = field(default_factory=dict)

    def rebuilt(self, input_shapes: Mapping[str, Shape]) -> "Graph":
        """The same net (phase, stages, outputs) with other input shapes."""
        if self.text is None:
            raise ValueError("this graph was not built from a net text")
        args = dict(self.build_args)
        if not args.get("outputs"):
            args["outputs"] = [v.name for v in self.outputs] if self.named_outputs else None
        return build_graph(self.text, input_shapes=input_shapes, **args)

    def node(self, id: str) -> Node:
        for n in self.nodes:
            if n.id == id:
                return n
        raise KeyError(id)

    @property
    def layers(self) -> list[Node]:
        """The computing layers (data sources excluded)."""
        return [n for n in self.nodes if not n.is_source]

    @property
    def param_count(self) -> int:
        return sum(n.param_count for n in self.nodes)


# --------------------------------------------------------------------------------- phases
def _rule_met(rule, phase: int, level: int, stages: set[str]) -> bool:
    """Caffe's StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(layer, phase: int, level: int, stages: set[str]) -> bool:
    """Caffe's FilterNet rule: any include rule met, or (no include rules and) no exclude met."""
    if len(layer.include):
        return any(_rule_met(r, phase, level, stages) for r in layer.include)
    return not any(_rule_met(r, phase, level, stages) for r in layer.exclude)


# ---------------------------------------------------------------------------------- build
def parse_shape(text: str) -> Shape:
    """``"1,3,224,224"`` (or ``"1x3x224x224"``) -> (1, 3, 224, 224)."""
    parts = re.split(r"\s*[,x]\s*", text.strip())
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"'{text}' is not a shape: use integers like 1,3,224,224")
    if len(parts) > 32 or any(len(p.lstrip("0")) > 10 for p in parts):
        raise ValueError(f"'{text}': a dimension is at most 2^31 - 1, and a blob has 32 axes at most")
    shape = tuple(int(p) for p in parts)
    if any(d <= 0 for d in shape):
        raise ValueError(f"'{text}': dimensions must be positive")
    return shape


def parse_input_shapes(specs: Iterable[str]) -> dict[str | None, Shape]:
    """``--input-shape`` values: ``N,C,H,W`` or ``NAME=N,C,H,W``."""
    out: dict[str | None, Shape] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        key = name.strip() if sep else None
        if key in out:
            raise InputShapeError(f"--input-shape given twice for {key or 'the input'}")
        try:
            out[key] = parse_shape(dims)
        except ValueError as e:
            raise InputShapeError(f"--input-shape {e}") from None
    return out


def _check_dims(shape: Shape, what: str, dynamic: bool = True) -> None:
    """Positive int32 dimensions (or, ``dynamic``, the -1 of a size known only at run time)."""
    for d in shape:
        if not (dynamic and d == DYNAMIC) and d <= 0:
            raise LayerError(f"{what} {fmt_shape(shape)} has a dimension that is not positive")
        if d > MAX_DIM:
            raise LayerError(f"{what} {fmt_shape(shape)} has an absurd dimension {d}")
    if count(shape) > MAX_COUNT:
        raise LayerError(f"{what} {fmt_shape(shape)} is absurdly large ({count(shape)} values)")


def needed_nodes(graph: "Graph", outputs: list[Value]) -> list[Node]:
    """The computing layers the outputs depend on, in graph order."""
    return [n for n in _ancestors(graph.nodes, outputs) if not n.is_source]


def _ancestors(nodes: list[Node], outputs: list[Value]) -> list[Node]:
    need: set[int] = set()
    stack = [v.producer for v in outputs]
    while stack:
        node = stack.pop()
        if id(node) in need:
            continue
        need.add(id(node))
        stack.extend(v.producer for v in node.inputs)
    return [n for n in nodes if id(n) in need]


def _is_source(cls, node: Node | None = None) -> bool:
    """A data layer (no bottoms: a Python layer with bottoms computes)."""
    return cls is not None and cls.SOURCE and (node is None or not node.inputs)


def _is_silence(cls) -> bool:
    return cls is not None and cls.DISCARDS


def default_outputs(nodes: list[Node], current: dict[str, Value], classes: dict[int, type]) -> list[Value]:
    """The blobs a net returns when none are named: the final value of each blob that no layer
    reads (a blob only a ``Silence`` layer reads counts as unread: silencing is how Caffe nets
    mark what they leave for the caller), except the unread tops of a layer whose other tops
    are read (a Slice's or Split's leftovers, a MAX pooling's mask)."""

    def read(v: Value) -> bool:
        return any(not _is_silence(classes.get(id(c))) for c in v.consumers)

    out = []
    for n in nodes:
        cls = classes.get(id(n))
        if _is_source(cls, n) or _is_silence(cls):
            continue
        if len(n.outputs) > 1 and any(read(v) for v in n.outputs):
            continue
        out.extend(v for v in n.outputs if not read(v) and current.get(v.name) is v)
    return out


def build_graph(
    text: NetText,
    *,
    phase: str = "test",
    stages: Iterable[str] = (),
    input_shapes: Mapping[str | None, Shape] | None = None,
    outputs: Sequence[str] | None = None,
) -> Graph:
    """Build the graph of ``text`` for ``phase`` and infer all shapes.

    ``input_shapes`` maps input blob names (or None for "the only input") to shapes; it fills
    in shapes the net does not declare and overrides those it does. ``outputs`` names the blobs
    to return (their final value, as Caffe's ``net.blobs`` holds them); by default the net's
    unread blobs (see :func:`default_outputs`). Only the layers the outputs need are kept, and
    only they are checked and have their shapes inferred: a layer after the cut may be of a
    type caffe2torch does not know, or a Python layer.
    """
    path = text.path
    if phase not in PHASES:
        raise ValueError(f"phase must be 'train' or 'test', not {phase!r}")
    stages = list(stages)
    notes = list(text.notes)
    all_names = {layer.name for layer in text.net.layer}  # before unnamed layers get a name
    kept, excluded = _select_layers(text, phase, stages, notes)
    nodes, protos, current = _connect(text, kept, excluded, all_names)
    classes = {k: cls for k, (_, cls) in protos.items()}
    outs = _select_outputs(path, nodes, current, classes, outputs)
    order = [n.id for n in nodes]
    nodes, pruned = _prune(nodes, outs)
    _make_ops(path, nodes, protos)
    inputs = _find_inputs(path, nodes, notes)
    _set_input_shapes(path, nodes, _input_overrides(path, inputs, input_shapes))
    _infer_shapes(path, nodes)
    _note_shared_names(nodes, notes)
    graph = Graph(
        name=text.net.name or path.stem,
        path=path,
        format=text.format,
        phase=phase,
        nodes=nodes,
        inputs=inputs,
        outputs=outs,
        notes=notes,
    )
    graph.pruned = [(n.id, n.type) for n in pruned]
    graph.order = order
    graph.text = text
    graph.build_args = {"phase": phase, "stages": list(stages), "outputs": list(outputs or [])}
    graph.named_outputs = bool(outputs)
    _note_pruned(pruned, classes, outs, bool(outputs), notes)
    return graph


def _located(err: CaffeError, path: Path, name=None, type_=None, line=None) -> CaffeError:
    """``err`` with the file, line and layer filled in where still unknown."""
    return err.located(file=path, line=line, layer=name, layer_type=type_)


def _select_layers(text: NetText, phase: str, stages: list[str], notes: list[str]):
    """Phase 1: the layers of the phase, named and typed, without the training-only ones."""
    net = text.net
    phase_id = PHASES[phase]
    level = net.state.level
    stage_set = set(net.state.stage) | set(stages)
    kept: list[tuple[int, object, type[Layer] | None]] = []
    excluded: dict[str, str] = {}  # blob -> why it is not available
    excluded_layers, dropped = [], []
    for i, layer in enumerate(net.layer):
        line = text.line_of(i)
        if not layer.name:
            layer.name = f"{(layer.type or 'layer').lower()}_{i}"
            notes.append(f"layer #{i + 1} has no name; called it '{layer.name}'")
        if not layer_included(layer, phase_id, level, stage_set):
            excluded_layers.append(layer.name)
            stages_needed = sorted({s for r in layer.include for s in r.stage} - stage_set)
            hint = (
                f" (it runs with stage {', '.join(stages_needed)}: pass --stage)"
                if stages_needed
                else ""
            )
            for t in layer.top:
                excluded.setdefault(
                    t, f"layer '{layer.name}', which phase {phase.upper()} excludes{hint}"
                )
            continue
        if not layer.type:
            raise _located(PrototxtError("has no type"), text.path, layer.name, None, line)
        cls = layer_class(layer.type, layer)
        if cls is not None and cls.TRAINING_ONLY:
            dropped.append(f"{layer.name} ({layer.type})")
            for t in layer.top:
                excluded[t] = f"training-only layer '{layer.name}' ({layer.type}), which is dropped"
            continue
        kept.append((i, layer, cls))
    if excluded_layers:
        notes.append(
            f"phase {phase.upper()} excludes {len(excluded_layers)} layer(s): "
            + ", ".join(excluded_layers)
        )
    if dropped:
        notes.append(f"dropped {len(dropped)} training-only layer(s): " + ", ".join(dropped))
    return kept, excluded


def _connect(text: NetText, kept, excluded: dict[str, str], all_names: set[str]):
    """Phase 2: nodes, values and in-place chains (the connections only, no parameter read)."""
    # Which kept layer produces each blob name first, to explain references to later layers.
    later_producer: dict[str, tuple[str, int | None]] = {}
    for i, layer, _ in kept:
        for t in layer.top:
            later_producer.setdefault(t, (layer.name, text.line_of(i)))
    nodes: list[Node] = []
    protos: dict[int, tuple[object, type[Layer] | None]] = {}
    current: dict[str, Value] = {}
    name_uses: dict[str, int] = {}
    for i, layer, cls in kept:
        line = text.line_of(i)
        uses = name_uses.get(layer.name, 0) + 1
        name_uses[layer.name] = uses
        node_id = layer.name
        if uses > 1:
            node_id = f"{layer.name}_{uses}"
            while node_id in all_names:
                node_id += "_"
            all_names.add(node_id)
        node = Node(layer.name, layer.type, None, [], [], line=line, id=node_id)  # type: ignore[arg-type]
        node.param_names = [p.name for p in layer.param]
        protos[id(node)] = (layer, cls)
        _link_bottoms(text.path, node, layer, current, excluded, later_producer)
        _add_tops(text.path, node, layer, current)
        for v in node.outputs:
            current[v.name] = v
        nodes.append(node)
    return nodes, protos, current


def _link_bottoms(path: Path, node: Node, layer, current, excluded, later_producer) -> None:
    """The node reads the current value of each bottom."""
    for b in layer.bottom:
        v = current.get(b)
        if v is None:
            if b in excluded:
                msg = f"bottom '{b}' comes from {excluded[b]}"
            elif b in later_producer and later_producer[b][0] != layer.name:
                who, at = later_producer[b]
                where = f" (line {at})" if at else ""
                msg = (
                    f"bottom '{b}' is produced only later, by layer '{who}'{where}: "
                    "layers must come after the layers they read (is there a cycle?)"
                )
            else:
                msg = f"bottom '{b}' is not produced by any layer"
            raise _located(PrototxtError(msg), path, layer.name, layer.type, node.line)
        node.inputs.append(v)
        v.consumers.append(node)


def _add_tops(path: Path, node: Node, layer, current: dict[str, Value]) -> None:
    """A new value for each top: the next version of its blob when written in place."""
    for j, t in enumerate(layer.top):
        if j < len(layer.bottom) and layer.bottom[j] == t:
            node.inplace = True
            version = current[t].version + 1
        elif t in current:
            raise _located(
                PrototxtError(
                    f"top '{t}' is already produced by layer '{current[t].producer.name}'; "
                    "a blob name can be "
                    "reused only in place (top i = bottom i)"
                ),
                path, layer.name, layer.type, node.line,
            )
        else:
            version = 0
        if t in (o.name for o in node.outputs):
            raise _located(
                PrototxtError(f"top '{t}' is listed twice"), path, layer.name, layer.type, node.line
            )
        v = Value(t, version, node)
        node.outputs.append(v)


def _prune(nodes: list[Node], outs: list[Value]) -> tuple[list[Node], list[Node]]:
    """Phase 3: the layers the outputs need, and those left out."""
    needed = _ancestors(nodes, outs)
    needed_ids = {id(n) for n in needed}
    pruned = [n for n in nodes if id(n) not in needed_ids]
    for n in needed:
        for v in n.inputs:
            v.consumers = [c for c in v.consumers if id(c) in needed_ids]
    return needed, pruned


def _make_ops(path: Path, nodes: list[Node], protos) -> None:
    """Phase 4: each needed layer's type, parameters and arity, every problem at once."""
    problems: list[tuple[Node, CaffeError]] = []
    for node in nodes:
        layer, cls = protos[id(node)]
        try:
            if cls is None:
                raise UnsupportedLayerError(f"unknown layer type '{layer.type}'")
            op = cls(layer)
            op.check_arity()
            node.op = op
        except UnsupportedLayerError as e:
            problems.append((node, e))
        except CaffeError as e:
            raise _located(
                e, path, node.name, node.type if cls is not None else None, node.line
            ) from None
    if problems:
        _raise_problems(path, nodes, protos, problems)


def _raise_problems(path: Path, nodes: list[Node], protos, problems) -> None:
    """Raise the layers that cannot be converted: one as itself, several in one message."""
    if len(problems) == 1:
        node, e = problems[0]
        cls = protos[id(node)][1]
        e.message += cut_hint(nodes, [node])
        raise _located(
            e, path, node.name, node.type if cls is not None else None, node.line
        ) from None
    bad = "; ".join(
        f"'{n.name}' ({_problem_kind(n, protos[id(n)][0])}{f', line {n.line}' if n.line else ''}): "
        + ("unknown layer type" if protos[id(n)][1] is None else _short_problem(n, e))
        for n, e in problems
    )
    raise UnsupportedLayerError(
        f"{len(problems)} layers cannot be converted: {bad}"
        + cut_hint(nodes, [n for n, _ in problems]),
        file=path,
    )


def _find_inputs(path: Path, nodes: list[Node], notes: list[str]) -> list[Value]:
    """Phase 5: the inputs, the tops of data layers that something reads."""
    inputs: list[Value] = []
    unused: list[Value] = []
    for node in nodes:
        if node.is_source:
            for v in node.outputs:
                (inputs if v.consumers else unused).append(v)
    if not inputs:
        raise PrototxtError("the net has no inputs (no Input or data layer, no 'input:')", file=path)
    if unused:
        notes.append("unused input(s) dropped: " + ", ".join(v.name for v in unused))
    return inputs


def _input_overrides(path: Path, inputs: list[Value], input_shapes) -> dict[str, Shape]:
    """``input_shapes`` by input name, checked against the net's inputs."""
    overrides = dict(input_shapes or {})
    input_names = [v.name for v in inputs]
    for key in overrides:
        if key is not None and key not in input_names:
            raise InputShapeError(
                f"--input-shape names '{key}', but the net's inputs are: {', '.join(input_names)}",
                file=path,
            )
    if None in overrides:
        if len(inputs) > 1:
            raise InputShapeError(
                f"the net has {len(inputs)} inputs ({', '.join(input_names)}): give each "
                "--input-shape as NAME=N,C,H,W",
                file=path,
            )
        overrides[inputs[0].name] = overrides.pop(None)
    return overrides


def _set_input_shapes(path: Path, nodes: list[Node], overrides: dict[str, Shape]) -> None:
    """The shape of each input read: given, else declared by its data layer."""
    for node in nodes:
        if not node.is_source:
            continue
        try:
            declared = node.op.source_shapes()
        except CaffeError as e:
            raise _located(e, path, node.name, node.type, node.line) from None
        for v, (shape, known) in zip(node.outputs, declared):
            if v.name in overrides:
                shape = overrides[v.name]
            if shape is None:
                if not v.consumers:
                    continue
                hint = f" ({known})" if known else ""
                raise _located(
                    InputShapeError(
                        f"input '{v.name}' has no declared shape{hint}: pass --input-shape "
                        f"{v.name}=N,C,H,W"
                    ),
                    path, node.name, node.type, node.line,
                )
            try:
                _check_dims(tuple(shape), f"input '{v.name}' shape", dynamic=False)
            except LayerError as e:
                raise _located(e, path, node.name, node.type, node.line) from None
            v.shape = tuple(shape)


def _infer_shapes(path: Path, nodes: list[Node]) -> None:
    """Phase 6: every output and weight shape, in order."""
    for node in nodes:
        if node.is_source:
            continue
        in_shapes = [v.shape for v in node.inputs]
        try:
            out_shapes = node.op.infer(in_shapes)
            if len(out_shapes) != len(node.outputs):  # pragma: no cover - layer bug guard
                raise LayerError(f"computed {len(out_shapes)} outputs for {len(node.outputs)} tops")
            for v, s in zip(node.outputs, out_shapes):
                _check_dims(tuple(s), f"output '{v.name}'")
                v.shape = tuple(s)
            node.weight_shapes = [tuple(s) for s in node.op.weight_shapes(in_shapes)]
            for s in node.weight_shapes:
                _check_dims(s, "weight blob")
                if count(s) > MAX_BLOB:
                    raise LayerError(
                        f"weight blob {fmt_shape(s)} holds {count(s):,} values: Caffe's blobs hold "
                        "at most 2^31 - 1 (INT_MAX)"
                    )
        except CaffeError as e:
            raise _located(e, path, node.name, node.type, node.line) from None


def _note_shared_names(nodes: list[Node], notes: list[str]) -> None:
    """A note for each name that several layers with weights share."""
    uses_by_name: dict[str, list[Node]] = {}
    for n in nodes:
        uses_by_name.setdefault(n.name, []).append(n)
    for name, same in uses_by_name.items():
        if len(same) > 1 and any(n.weight_shapes for n in same):
            notes.append(
                f"{len(same)} layers are named '{name}': they share one set of weights (as OpenCV "
                "reads such nets; Caffe would load weights into the first only)"
            )


def _note_pruned(pruned: list[Node], classes, outs: list[Value], named: bool, notes: list[str]) -> None:
    """Notes on the layers left out, and on the outputs only a Silence layer reads."""
    silenced = [n for n in pruned if _is_silence(classes.get(id(n)))]
    left_out = [n for n in pruned if not _is_silence(classes.get(id(n)))]
    if named and left_out:
        notes.append(
            f"{len(left_out)} layer(s) not needed for the outputs are left out: "
            + ", ".join(n.id for n in left_out)
        )
    if silenced and not named:
        blobs = sorted({v.name for n in silenced for v in n.inputs if any(v is o for o in outs)})
        if blobs:
            notes.append(
                f"{', '.join(blobs)}: read only by a Silence layer, so returned as output(s)"
            )


def _select_outputs(path, nodes, current, classes, names) -> list[Value]:
    if not names:
        outs = default_outputs(nodes, current, classes)
        if not outs:
            produced = [v for n in nodes if not _is_source(classes.get(id(n)), n) for v in n.outputs
                        if current.get(v.name) is v]
            last = ", ".join(dict.fromkeys(v.name for v in produced[-8:]))
            raise PrototxtError(
                "the net has no outputs (every blob is read by a layer)"
                + (f": name the blobs to return with --outputs, e.g. one of {last}" if last else ""),
                file=path,
            )
        return outs
    out: list[Value] = []
    for name in names:
        v = current.get(name)
        if v is None or _is_source(classes.get(id(v.producer)), v.producer):
            blobs = [b for b, x in current.items() if not _is_source(classes.get(id(x.producer)), x.producer)]
            raise PrototxtError(
                f"--outputs names '{name}', which is not a blob of the net "
                f"(its last blobs: {', '.join(blobs[-12:])})",
                file=path,
            )
        if v in out:
            raise PrototxtError(f"--outputs names '{name}' twice", file=path)
        out.append(v)
    return out


def _problem_kind(node: Node, layer) -> str:
    """``Python module.layer`` for a Python layer, else the type (the message escapes text)."""
    if node.type == "Python":
        p = layer.python_param
        return f"Python {p.module or '?'}.{p.layer or '?'}"
    return node.type


def _short_problem(node: Node, e: CaffeError) -> str:
    return "a Python layer's code is never imported or run" if node.type == "Python" else e.message


def cut_hint(nodes: list[Node], failed: list[Node]) -> str:
    """The blobs the failed layers read that do not depend on any of them: what ``--outputs``
    can stop at, leaving out the blobs those are computed from."""
    bad = {id(n) for n in failed}
    ancestry: dict[int, set[int]] = {}
    candidates: list[Value] = []
    for node in failed:
        for v in node.inputs:
            if v.producer.is_source or id(v) in ancestry:
                continue
            needs = {id(n) for n in _ancestors(nodes, [v])}
            if not needs & bad:
                ancestry[id(v)] = needs
                candidates.append(v)
    names = [
        v.name
        for v in candidates
        if not any(id(v.producer) in ancestry[id(o)] for o in candidates if o is not v)
    ]
    if not names:
        return ""
    them = "them" if len(failed) > 1 else "it"
    return f" (to convert the layers before {them}, pass --outputs {','.join(dict.fromkeys(names))})"


# -------------------------------------------------------------------------------- weights
@dataclass
class WeightCheck:
    matched: dict[str, list[Blob]]
    notes: list[str]


def check_weights(graph: Graph, weights: Weights) -> WeightCheck:
    """Match blobs to layers by name; raise :class:`WeightsError` naming the layer on a missing,
    extra or mis-shaped blob."""
    wfile = weights.path
    matched: dict[str, list[Blob]] = {}
    owners: dict[str, tuple[str, int, Shape]] = {}  # shared param name -> (layer, index, shape)
    by_name: dict[str, Node] = {}
    for node in graph.nodes:
        expected = node.weight_shapes
        if not expected:
            continue
        first = by_name.setdefault(node.name, node)
        if first is not node:
            if first.weight_shapes != expected:
                raise WeightsError(
                    f"shares its name, and so its weights, with layer '{first.id}' but needs "
                    + ", ".join(fmt_shape(s) for s in expected)
                    + " where that layer needs "
                    + ", ".join(fmt_shape(s) for s in first.weight_shapes),
                    file=wfile, layer=node.id, layer_type=node.type,
                )
            matched[node.id] = matched[first.id]
            continue
        entry = weights.layers.get(node.name)
        blobs = list(entry.blobs) if entry is not None else []
        where = dict(file=wfile, layer=node.name, layer_type=node.type)
        want = ", ".join(fmt_shape(s) for s in expected)
        if not blobs:
            shared = [owners.get(node.param_name(k)) for k in range(len(expected))]
            if all(shared):
                matched[node.id] = [matched[o][k] for o, k, _ in shared]  # type: ignore[misc]
                continue
            raise WeightsError(
                f"no weights for this layer (the net needs {len(expected)} blob(s): {want})", **where
            )
        if len(blobs) != len(expected):
            what = "extra" if len(blobs) > len(expected) else "missing"
            raise WeightsError(
                f"{what} blob(s): the file has {len(blobs)} ("
                + ", ".join(fmt_shape(b.shape) for b in blobs)
                + f"), the net needs {len(expected)} ({want})",
                **where,
            )
        for k, (shape, blob) in enumerate(zip(expected, blobs)):
            if not node.op.accepts_blob(k, shape, blob):
                legacy = " (legacy 4-D dims)" if blob.legacy else ""
                raise WeightsError(
                    f"blob {k} is {fmt_shape(blob.shape)}{legacy} in the file, the net needs "
                    f"{fmt_shape(shape)}",
                    **where,
                )
        for k, shape in enumerate(expected):
            pname = node.param_name(k)
            if not pname:
                continue
            if pname in owners:
                owner, _, oshape = owners[pname]
                if oshape != shape:
                    raise WeightsError(
                        f"shares parameter '{pname}' with layer '{owner}', but needs "
                        f"{fmt_shape(shape)} where '{owner}' has {fmt_shape(oshape)}",
                        **where,
                    )
            else:
                owners[pname] = (node.id, k, shape)
        matched[node.id] = blobs
    notes = list(weights.notes)
    names = {n.name for n in graph.nodes}
    unused = [
        name for name, lw in weights.layers.items() if lw.blobs and name not in names
    ]
    if unused:
        notes.append(
            f"{len(unused)} layer(s) in {wfile.name} have weights the net does not use: "
            + ", ".join(unused)
        )
    return WeightCheck(matched=matched, notes=notes)
