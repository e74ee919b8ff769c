"""Graph to ``model.py``: one ``nn.Module`` class, straight-line ``forward``, no dead tensors.

Each computing layer asks its layer family for an :class:`~caffe2torch.layers.base.Emission`
(its submodule, state_dict entries and forward expressions); this module only arranges them:

- names: attributes from Caffe layer names, local variables from blob names (``x`` for the
  running chain, as hand-written models do), all sanitised and unique;
- memory: a variable is reused when its tensor dies at the layer that overwrites it, and
  ``del`` drops the others right after their last reader, so ``forward`` holds only live
  activations;
- in place: a layer Caffe ran in place gets ``inplace=True`` when nothing else can see the
  tensor it overwrites (not an input or output of the net, not read elsewhere, not needed by
  the backward pass of the layer that produced it);
- weight sharing: layers that share all their blobs (a repeated name or ``param { name }``)
  and settings share one submodule;
- folding: a layer family may absorb the next layer (BatchNorm takes the Scale after it).

Same graph and blobs give the same text, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedLayerError
from ..graph import Graph, Node, Value, cut_hint, needed_nodes
from ..layers import LayerError
from ..layers.base import HELPER_NAMES, Emission, EmitContext, Helper
from .names import CODE_NAMES, MODULE_ATTRS, Namer, safe_text, sanitize


@dataclass
class Step:
    node: Node
    absorbed: list[Node] = field(default_factory=list)
    emission: Emission | None = None
    attr: str | None = None

    @property
    def inputs(self) -> list[Value]:
        return self.node.inputs

    @property
    def outputs(self) -> list[Value]:
        return (self.absorbed[-1] if self.absorbed else self.node).outputs

    @property
    def names(self) -> list[str]:
        return [self.node.id] + [n.id for n in self.absorbed]


@dataclass
class Generated:
    class_name: str
    code: str
    state: dict[str, np.ndarray]
    layer_map: dict[str, str]
    notes: list[str]
    # Per step of ``forward``, in order: the Caffe layers it runs, the range of ``forward``'s
    # statements it takes (``[start, end)``, counting ``del``s, not comments), and which
    # variable holds which Caffe value before and after it (``[variable, layer id, top index]``,
    # a value being one layer's output). ``verify`` instruments a copy of ``forward`` with it.
    trace: list[dict]


def plan(nodes: list[Node], outputs: list[Value]) -> list[Step]:
    """Steps in order, with the layers a family folds into the one before it."""
    consumers: dict[int, list[Node]] = {}
    chosen = {id(n) for n in nodes}
    for n in nodes:
        for v in n.inputs:
            consumers.setdefault(id(v), []).append(n)
    out_ids = {id(v) for v in outputs}
    steps: list[Step] = []
    taken: set[int] = set()
    for node in nodes:
        if id(node) in taken:
            continue
        step = Step(node)
        if len(node.outputs) == 1 and id(node.outputs[0]) not in out_ids:
            readers = consumers.get(id(node.outputs[0]), [])
            if len(readers) == 1 and id(readers[0]) in chosen and node.op.absorbs(node, readers[0]):
                step.absorbed.append(readers[0])
                taken.add(id(readers[0]))
        steps.append(step)
    return steps


def _share_key(node: Node) -> tuple:
    n = len(node.weight_shapes)
    names = tuple(node.param_name(k) for k in range(n))
    if n and all(names):
        return ("params", names)
    return ("name", node.name)


class _Forward:
    """Local variables of ``forward``: which tensor each holds, when it dies."""

    def __init__(self, steps: list[Step], inputs: list[Value], outputs: list[Value]) -> None:
        self.steps = steps
        self.uses: dict[int, list[int]] = {}
        for i, step in enumerate(steps):
            for v in step.inputs:
                self.uses.setdefault(id(v), []).append(i)
        self.pinned = {id(v) for v in outputs} | {id(v) for v in inputs}
        self.names = Namer(reserved=CODE_NAMES | HELPER_NAMES | {"x"})
        self.var: dict[int, str] = {}  # value -> variable
        self.held: dict[str, list[Value]] = {}  # variable -> the values it holds
        self.storage: dict[int, int] = {}  # value -> storage group
        self.group: dict[int, list[Value]] = {}
        self.root: dict[int, Node | None] = {}  # storage group -> the layer that made it
        for v in inputs:
            name = self.names.take(v.name)
            self._bind(v, name)
            self._store(v, None, None)

    def _bind(self, v: Value, name: str) -> None:
        self.var[id(v)] = name
        self.held.setdefault(name, []).append(v)

    def _store(self, v: Value, like: Value | None, producer: Node | None) -> None:
        sid = self.storage[id(like)] if like is not None else len(self.root)
        if like is None:
            self.root[sid] = producer
        self.storage[id(v)] = sid
        self.group.setdefault(sid, []).append(v)

    def last_use(self, v: Value) -> int:
        return max(self.uses.get(id(v), [-1]))

    def dead_after(self, name: str, i: int) -> bool:
        return all(self.last_use(v) <= i and id(v) not in self.pinned for v in self.held[name])

    def may_overwrite(self, i: int) -> bool:
        """Whether step ``i`` may overwrite its (only) input in place."""
        v = self.steps[i].inputs[0]
        sid = self.storage[id(v)]
        root = self.root[sid]
        if root is None or root.op.SAVES_OUTPUT or self.uses.get(id(v)) != [i]:
            return False
        for g in self.group[sid]:
            if id(g) in self.pinned:
                return False
            for j in self.uses.get(id(g), []):
                s = self.steps[j]
                if j != i and not (j < i and s.emission.alias and s.inputs[0] is g):
                    return False
        return True

    def assign(self, i: int, step: Step, emission: Emission) -> tuple[list[str], list[str]]:
        """Variables for the step's outputs, and the variables to delete after it."""
        ins = [self.var[id(v)] for v in step.inputs]
        dying: list[str] = []
        for name in ins:
            if name not in dying and self.dead_after(name, i):
                dying.append(name)
        if not emission.forward:  # the outputs are input 0 itself (Split, identities)
            for v in step.outputs:
                self._bind(v, ins[0])
                self._store(v, step.inputs[0], step.node)
            return [], [n for n in dying if self.dead_after(n, i)]
        targets: list[str] = []
        single = len(step.outputs) == 1
        for v in step.outputs:
            name = None
            blob = sanitize(v.name, reserved=self.names.reserved)
            if single and ins and ins[0] in dying and ins[0] in ("x", blob):
                name = ins[0]  # the chain goes on in the same variable
            elif single and ("x" not in self.held or "x" in dying):
                name = "x"
            else:
                name = self.names.take(v.name)
            if name in dying:
                self.held[name] = []
            self._bind(v, name)
            self._store(v, step.inputs[0] if emission.alias else None, step.node)
            targets.append(name)
        dead = [n for n in dying if n not in targets]
        dead += [n for n in targets if n not in dead and self.dead_after(n, i)]
        return targets, dead

    def release(self, names: list[str]) -> None:
        for name in names:
            self.held.pop(name, None)


def generate(
    graph: Graph,
    outputs: list[Value],
    blobs: dict[str, list[np.ndarray]],
    *,
    class_name: str,
    header: list[str],
    prologue: Mapping[str, str] | None = None,
) -> Generated:
    """The text of ``model.py`` and its state_dict for ``outputs`` of ``graph``.

    ``blobs`` maps node ids to their Caffe blobs in the shapes the graph expects. Raises
    :class:`UnsupportedLayerError` naming every layer that has no PyTorch form. ``prologue``
    maps an input's name to a statement on it (``"{x} = {x}.flip(1)"``) run first."""
    steps = plan(needed_nodes(graph, outputs), outputs)
    out = _Writer(steps, graph.inputs, outputs, class_name)
    out.add_prologue(graph.inputs, prologue)
    for i, step in enumerate(steps):
        emission = out.emit(i, step, blobs)
        if emission is not None:
            module_ref = out.add_module(step, emission)
            out.add_forward(i, step, emission, module_ref)
    if out.problems:
        _raise_problems(graph, out.problems)
    layer_map = _full_layer_map(graph, out.layer_map)
    results = [out.fwd.var[id(v)] for v in outputs]
    out.body.append("return " + ", ".join(results))
    code = _assemble(
        class_name, header, out.helpers, out.init_lines, out.body, graph.inputs, out.fwd, len(results)
    )
    return Generated(class_name, code, out.state, layer_map, out.notes, out.trace)


class _Writer:
    """The parts of ``model.py`` as :func:`generate` writes them, step by step."""

    def __init__(self, steps: list[Step], inputs: list[Value], outputs: list[Value], class_name: str):
        self.fwd = _Forward(steps, inputs, outputs)
        self.attrs = Namer(reserved=MODULE_ATTRS | HELPER_NAMES | {class_name})
        self.shared: dict[tuple, tuple[str, str]] = {}
        self.init_lines: list[str] = []
        self.body: list[str] = []
        self.helpers: dict[str, Helper] = {}
        self.state: dict[str, np.ndarray] = {}
        self.layer_map: dict[str, str] = {}
        self.notes: list[str] = []
        self.problems: list[tuple[Node, str]] = []
        self.trace: list[dict] = []
        self.statements = 0

    def add_prologue(self, inputs: list[Value], prologue: Mapping[str, str] | None) -> None:
        """The statements run on the inputs first (the channel flip)."""
        for v in inputs:
            if prologue and v.name in prologue:
                self.body.append("# the model reads the channels in the reverse order of the Caffe net")
                self.body.append(prologue[v.name].format(x=self.fwd.var[id(v)]))
                self.statements += 1

    def emit(self, i: int, step: Step, blobs: dict[str, list[np.ndarray]]) -> Emission | None:
        """The step's emission; None once a layer has failed (the others are only checked)."""
        node = step.node
        ctx = EmitContext(
            node=node,
            in_shapes=[v.shape for v in node.inputs],
            out_shapes=[v.shape for v in step.outputs],
            blobs=[np.asarray(b) for b in blobs.get(node.id, [])],
            absorbed=[(n, [np.asarray(b) for b in blobs.get(n.id, [])]) for n in step.absorbed],
        )
        ctx.inplace = (
            not self.problems
            and node.inplace
            and node.op.INPLACE
            and len(node.inputs) == 1
            and self.fwd.may_overwrite(i)
        )
        try:
            emission = node.op.emit(ctx)
        except LayerError as e:
            self.problems.append((node, e.message))
            step.emission = Emission([])
            return None
        step.emission = emission
        if self.problems:
            return None
        for h in emission.helpers:
            self.helpers.setdefault(h.name, h)
        return emission

    def add_module(self, step: Step, emission: Emission) -> str | None:
        """The step's submodule in ``__init__`` (shared when the weights are); its reference."""
        node = step.node
        module_ref = None
        if emission.module is not None:
            key = ("fused", tuple(step.names)) if step.absorbed else _share_key(node)
            shared = self.shared
            if key in shared and shared[key][1] == emission.module:
                step.attr = shared[key][0]
            else:
                if key in shared:
                    self.notes.append(
                        f"layer '{node.id}' shares weights with '{shared[key][0]}' in Caffe but "
                        "differs in settings: it has its own copy"
                    )
                step.attr = self.attrs.take(node.name)
                shared.setdefault(key, (step.attr, emission.module))
                if emission.comment:
                    self.init_lines.append(f"# {safe_text(emission.comment)}")
                self.init_lines.append(f"self.{step.attr} = {emission.module}")
                for k, arr in emission.state.items():
                    self.state[f"{step.attr}.{k}"] = arr
            module_ref = f"self.{step.attr}"
        for name in step.names:
            self.layer_map[name] = step.attr or "functional"
        return module_ref

    def add_forward(self, i: int, step: Step, emission: Emission, module_ref: str | None) -> None:
        """The step's statements in ``forward``, its trace entry, and the ``del`` after it."""
        fwd = self.fwd
        args = [fwd.var[id(v)] for v in step.inputs]
        targets, dead = fwd.assign(i, step, emission)
        if emission.module is None and emission.comment:
            self.body.append(f"# {safe_text(emission.comment)}")
        lhs = ", ".join(targets)
        start = self.statements
        for k, expr in enumerate(emission.forward):
            inputs = args if k == 0 else [targets[0]] + args[1:]
            self.body.append(f"{lhs} = {expr.format(*inputs, m=module_ref)}")
            self.statements += 1
        last = step.absorbed[-1] if step.absorbed else step.node
        self.trace.append(
            {
                "layers": step.names,
                "statements": [start, self.statements],
                "reads": [_value_ref(var, v) for var, v in zip(args, step.inputs)],
                "writes": [[fwd.var[id(v)], last.id, k] for k, v in enumerate(step.outputs)],
            }
        )
        if dead:
            self.body.append("del " + ", ".join(dead))
            self.statements += 1
        fwd.release(dead)


def _raise_problems(graph: Graph, problems: list[tuple[Node, str]]) -> None:
    """Raise every layer that has no PyTorch form, grouped by type and message."""
    groups: dict[tuple[str, str], list[str]] = {}
    for node, message in problems:
        groups.setdefault((node.type, message), []).append(f"'{node.id}'")
    text = "; ".join(f"{', '.join(ids)} ({t}): {m}" for (t, m), ids in groups.items())
    raise UnsupportedLayerError(
        f"{len(problems)} layer(s) cannot be converted: {text}"
        + cut_hint(graph.nodes, [n for n, _ in problems]),
        file=graph.path,
    )


def _full_layer_map(graph: Graph, layer_map: dict[str, str]) -> dict[str, str]:
    """Every layer of the phase, in order: its attribute, or functional, input or dropped."""
    kinds = {n.id: "input" if n.is_source else layer_map.get(n.id, "dropped") for n in graph.nodes}
    return {i: kinds.get(i, "dropped") for i in graph.order or list(kinds)}


def _value_ref(var: str, v: Value) -> list:
    return [var, v.producer.id, v.producer.outputs.index(v)]


def _assemble(class_name, header, helpers, init_lines, body, inputs, fwd, n_out) -> str:
    text_body = "\n".join(init_lines + body + [h.source for h in helpers.values()])
    uses_f = "F." in text_body
    lines = ['"""' + header[0]] + ([""] + header[1:] if len(header) > 1 else []) + ['"""']
    lines.append("import torch")
    if uses_f:
        lines.append("import torch.nn.functional as F")
    lines.append("from torch import Tensor, nn")
    lines.append("")
    for h in helpers.values():
        lines.append("")
        lines.extend(h.source.strip("\n").splitlines())
        lines.append("")
    lines.append("")
    lines.append(f"class {class_name}(nn.Module):")
    lines.append("    def __init__(self) -> None:")
    lines.append("        super().__init__()")
    lines.extend(f"        {line}" for line in init_lines)
    lines.append("")
    params = ", ".join(f"{fwd.var[id(v)]}: Tensor" for v in inputs)
    ret = "Tensor" if n_out == 1 else "tuple[" + ", ".join(["Tensor"] * n_out) + "]"
    lines.append(f"    def forward(self, {params}) -> {ret}:")
    lines.extend(f"        {line}" for line in body)
    return "\n".join(lines) + "\n"
