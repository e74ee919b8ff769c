"""The MMdnn engine: Microsoft MMdnn's own flow (``mmtoir`` -> ``mmtocode`` -> ``mmtomodel``),
automated, fixed and checked, for those who want exactly its artifacts.

MMdnn 0.3.1 needs protobuf 3.20.3 and runs in an environment of its own (``make mmdnn-env``
makes ``.venv-mmdnn``; ``--mmdnn-python`` or ``CAFFE2TORCH_MMDNN_PYTHON`` names its Python).
:mod:`._driver` runs the three steps there and squeezes the 1-D parameters MMdnn pads to 4-D
without PyCaffe (the fix users otherwise hand-edit in). Here, the generated ``kit.py`` is made
loadable without ``imp`` or pickle: ``KitModel()`` builds the layers, and the weights come
from a plain state_dict (``model.pth``, ``torch.load(..., weights_only=True)``), the ones
MMdnn's ``forward`` reads from its weights file itself (PReLU's slopes) included, as parameters.
The driver also gives TanH/AbsVal/Sigmoid the IR shape MMdnn's Caffe reader leaves off, and
writes the AbsVal statement its PyTorch emitter skips.

Before anything runs, layers MMdnn lacks or is known to get wrong stop the conversion with
one line naming them, and suggest ``--engine native``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..emit.codegen import Generated
from ..emit.conversion import Conversion, ConvertOptions, check_conversion, options_of, prepare
from ..errors import CaffeError, UnsupportedLayerError
from ..folder import INTERMEDIATE_DIR
from ..graph import Graph, Node, needed_nodes
from ..synth import weights_file
from ..verify.opencv import needs_rewrite, reference_prototxt

ENV_VAR = "CAFFE2TORCH_MMDNN_PYTHON"
DRIVER = Path(__file__).with_name("_driver.py")
CLASS_NAME = "KitModel"

# Caffe types MMdnn 0.3.1's Caffe reader maps to its IR (mmdnn/conversion/caffe/mapper.py).
MMDNN_TYPES = frozenset(
    """Input Data ImageData MemoryData DummyData WindowData HDF5Data Convolution Deconvolution
    InnerProduct Pooling ReLU PReLU ELU Sigmoid TanH AbsVal Softmax LRN BatchNorm Scale Eltwise
    Concat Dropout Flatten Reshape Split Crop""".split()
)

PYCAFFE_NOTE = (
    "MMdnn warns that PyCaffe is missing and its protobuf reader is 'UNTESTED': in this MMdnn "
    "environment it reads the caffemodel without pycaffe, and the result is checked against "
    "the reference instead"
)


class MMdnnError(CaffeError):
    """MMdnn is not available, or one of its steps failed."""


# Names MMdnn's forward uses for itself: a layer's variable must not shadow them.
_RESERVED = frozenset({"x", "self", "F", "torch"})


def mmdnn_gap(node: Node) -> str:
    """Why MMdnn cannot convert this layer right ("" when it can)."""
    p = node.op.proto
    t = node.type
    if node.is_source:
        return ""
    if t not in MMDNN_TYPES:
        return f"MMdnn has no {t} layer"
    for var in _variables(node):
        if not var.isidentifier() or keyword.iskeyword(var) or var in _RESERVED:
            return (
                f"MMdnn writes the layer name into its code as the variable '{var}', not a "
                "usable Python name"
            )
    if t == "ELU":
        return "MMdnn's PyTorch emitter has no ELU (mmtocode writes no code for it)"
    if t == "Deconvolution":
        return "MMdnn's PyTorch emitter has no ConvTranspose (Deconvolution; mmtocode writes no code for it)"
    if t == "Crop":
        return "MMdnn's Caffe reader cannot infer Crop's output shape (mmtoir fails)"
    if t in ("Convolution", "Deconvolution") and any(d != 1 for d in p.convolution_param.dilation):
        return "MMdnn's PyTorch code ignores dilation"
    if t == "Pooling":
        if p.pooling_param.pool == 2:
            return "MMdnn has no STOCHASTIC pooling"
        if node.op.method == 1 and any(node.op.pad):
            return "MMdnn's padded AVE pooling divides by the wrong count"
    if t == "Eltwise" and p.eltwise_param.operation == 2:
        return "MMdnn's PyTorch emitter has no Max (Eltwise MAX; mmtocode writes no code for it)"
    if t == "Eltwise" and any(c != 1 for c in p.eltwise_param.coeff):
        return "MMdnn drops Eltwise's coeff"
    if t == "LRN" and p.lrn_param.norm_region == 1:
        return "MMdnn computes LRN across channels only (this one is WITHIN_CHANNEL)"
    if t == "Concat" and p.concat_param.axis not in (0, 1, 2, 3):
        return "MMdnn reads only Concat axes 0 to 3"
    if t == "Softmax" and node.inputs:
        shape = node.inputs[0].shape
        ndim = len(shape) if shape else 0
        axis = p.softmax_param.axis
        implicit = 0 if ndim in (1, 3) else 1  # torch.nn.functional._get_softmax_dim
        if ndim and (axis + ndim if axis < 0 else axis) != implicit:
            return (
                f"MMdnn writes F.softmax(x) without dim: PyTorch takes axis {implicit} of this "
                f"{ndim}-D input, Caffe axis {axis}"
            )
    if t == "BatchNorm" and any(p.batch_norm_param.HasField(f) for f in node.op.FORK_FIELDS):
        return "MMdnn reads BVLC's BatchNorm (3 blobs), not NVCaffe's or Intel Caffe's fields"
    if t == "Scale" and len(node.inputs) > 1:
        return "MMdnn has no Scale with a second bottom"
    if t == "Scale" and not _folded_scale(node):
        return (
            "MMdnn's PyTorch emitter has no Affine, which a Scale becomes unless it follows a "
            "BatchNorm alone (axis 1, bias_term true) and is folded into it"
        )
    if len(node.inputs) > 1 and t not in ("Eltwise", "Concat", "Crop"):
        return "MMdnn reads one bottom for this layer"
    return ""


def _folded_scale(node: Node) -> bool:
    """MMdnn's BatchNormScaleBiasFuser folds this Scale into the BatchNorm before it."""
    p = node.op.proto.scale_param
    bottom = node.inputs[0]
    return (
        bottom.producer is not None
        and bottom.producer.type == "BatchNorm"
        and len(bottom.consumers) == 1
        and p.axis == 1
        and p.bias_term
    )


def mmdnn_variable(name: str) -> str:
    """The variable MMdnn's code gives a layer (its ``variable_name``: ``/ - [ ]`` -> ``_``)."""
    for c in "/-[]":
        name = name.replace(c, "_")
    return name


def _variables(node: Node) -> list[str]:
    var = mmdnn_variable(node.name)
    return [var + "_0", var + "_1"] if node.type == "InnerProduct" else [var]


def check_supported(graph: Graph, nodes: Iterable[Node]) -> None:
    nodes = list(nodes)
    gaps: dict[str, list[str]] = {}
    for node in nodes:
        why = mmdnn_gap(node)
        if why:
            gaps.setdefault(why, []).append(f"'{node.id}'")
    owner: dict[str, Node] = {}
    for node in nodes:  # layers that repeat a name share MMdnn's variable on purpose
        if node.is_source:
            continue
        for var in _variables(node):
            other = owner.setdefault(var, node)
            if other.name != node.name:
                why = f"MMdnn names a variable of '{other.id}' and of this layer both '{var}'"
                gaps.setdefault(why, []).append(f"'{node.id}'")
    if gaps:
        text = "; ".join(f"{', '.join(ids)}: {why}" for why, ids in gaps.items())
        raise UnsupportedLayerError(
            f"the MMdnn engine cannot convert {sum(map(len, gaps.values()))} layer(s): {text} "
            "(--engine native converts them)",
            file=graph.path,
        )


def find_python(given: str | Path | None = None) -> str:
    """The Python of an environment with MMdnn: ``given``, ``$CAFFE2TORCH_MMDNN_PYTHON``, this
    one if it has mmdnn and protobuf 3.20, or ``.venv-mmdnn`` in the working folder."""
    candidates = [given, os.environ.get(ENV_VAR)]
    for c in candidates:
        if c:
            if not Path(c).exists():
                raise MMdnnError(f"no such Python for the MMdnn engine: {c}")
            return str(c)
    import importlib.util

    if importlib.util.find_spec("mmdnn") is not None:
        import google.protobuf

        if google.protobuf.__version__.startswith("3.20."):
            return sys.executable
    local = Path(".venv-mmdnn") / "bin" / "python"
    if local.exists():
        return str(local)
    raise MMdnnError(
        "the MMdnn engine needs an environment with mmdnn 0.3.1 and protobuf 3.20.3 (they do not "
        "fit caffe2torch's own): run `make mmdnn-env` (creates .venv-mmdnn), or pip install "
        "-r requirements/mmdnn.txt in a venv and pass --mmdnn-python VENV/bin/python"
    )


def run_driver(python: str, prototxt: Path, caffemodel: Path, work: Path) -> dict:
    argv = [python, str(DRIVER), str(prototxt.absolute()), str(caffemodel.absolute()), str(work)]
    # MMdnn orders its helper methods by set iteration: a fixed hash seed makes its output
    # (and ours) the same for the same inputs.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named 'mmdnn'" in proc.stderr:
            raise MMdnnError(f"{python} has no mmdnn: pip install -r requirements/mmdnn.txt there")
        raise MMdnnError(f"the MMdnn engine failed to run: {last}")
    report = json.loads(lines[-1])
    if not report["ok"]:
        step = report.get("step", "?")
        entry = report["log"][-1] if report.get("log") else {}
        detail = report.get("error") or _last_error(
            entry.get("stderr", "") + entry.get("stdout", "")
        )
        raise MMdnnError(
            f"MMdnn's {step} failed: {detail} (--engine native may convert it)", file=prototxt
        )
    return report


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "WARNING" not in line]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line
    return lines[-1] if lines else "no message"


# ------------------------------------------------------------------------ kit.py -> model.py
class _GuardWeights(ast.NodeTransformer):
    """Statements that only copy from ``_weights_dict`` into a layer (``layer.state_dict()[
    'weight'].copy_(...)``) run only when MMdnn's weights file was given. A statement that
    binds a name from it cannot be skipped (what reads the name would fail): it is refused."""

    def generic_visit(self, node):
        super().generic_visit(node)
        if isinstance(node, ast.If) and _mentions_weights(node.test):
            return node  # already guarded by its test
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and not isinstance(node, ast.Module):
                setattr(node, field, [self._guard(s) for s in stmts])
        return node

    @staticmethod
    def _guard(stmt: ast.stmt) -> ast.stmt:
        if not _mentions_weights(stmt) or isinstance(
            stmt, (ast.Global, ast.If, ast.FunctionDef, ast.ClassDef, ast.Try)
        ):
            return stmt
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_weights_dict" for t in stmt.targets
        ):
            return stmt
        if not isinstance(stmt, ast.Expr):
            raise MMdnnError(
                f"MMdnn's kit.py line {stmt.lineno} needs its weights file to build the model "
                f"({ast.unparse(stmt).strip()[:80]}): caffe2torch cannot make it load a state_dict"
            )
        guard = ast.parse("if _weights_dict:\n    pass").body[0]
        guard.body = [stmt]
        return guard


def forward_weights(kit: str) -> list[tuple[str, str, str]]:
    """``(layer, key, attribute)`` for each ``torch.from_numpy(_weights_dict[layer][key])`` in
    ``KitModel.forward``: weights MMdnn reads from its weights file on every call (PReLU's
    slopes) instead of keeping them in a module; ``loadable_code`` makes each a parameter
    ``self.<attribute>``, e.g. ``self.PReLU1_weights``."""
    tree = ast.parse(kit)
    taken = {
        t.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }
    found: list[tuple[str, str, str]] = []
    fwd = _forward(tree)
    for node in ast.walk(fwd) if fwd is not None else ():
        ref = _from_numpy_ref(node)
        if ref is None or any(ref == (layer, key) for layer, key, _ in found):
            continue
        base = re.sub(r"\W", "_", f"{ref[0]}_{ref[1]}")
        attr, i = base, 1
        while attr in taken:
            i += 1
            attr = f"{base}_{i}"
        taken.add(attr)
        found.append((*ref, attr))
    return found


def _forward(tree: ast.AST) -> ast.FunctionDef | None:
    return next((fn for fn in _methods(tree) if fn.name == "forward"), None)


def _from_numpy_ref(node: ast.AST) -> tuple[str, str] | None:
    """``(layer, key)`` when ``node`` is ``torch.from_numpy(_weights_dict[layer][key])``."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "from_numpy"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "torch"
        and len(node.args) == 1
        and not node.keywords
    ):
        return None
    outer = node.args[0]
    inner = outer.value if isinstance(outer, ast.Subscript) else None
    if (
        isinstance(inner, ast.Subscript)
        and isinstance(inner.value, ast.Name)
        and inner.value.id == "_weights_dict"
        and isinstance(inner.slice, ast.Constant)
        and isinstance(outer.slice, ast.Constant)
    ):
        return str(inner.slice.value), str(outer.slice.value)
    return None


class _ForwardWeights(ast.NodeTransformer):
    def __init__(self, attrs: Mapping[tuple[str, str], str]):
        self.attrs = attrs

    def visit_Call(self, node):
        ref = _from_numpy_ref(node)
        if ref is not None and ref in self.attrs:
            return ast.Attribute(ast.Name("self", ast.Load()), self.attrs[ref], ast.Load())
        return self.generic_visit(node)


def loadable_code(kit: str, shapes: Mapping[tuple[str, str], Sequence[int]] | None = None) -> str:
    """MMdnn's ``kit.py`` with ``KitModel()`` needing no weights file: the weights come from a
    state_dict. Its layers, names and forward are untouched, but for the weights ``forward``
    read from the file: each is a parameter (see :func:`forward_weights`), of the shape
    ``shapes[(layer, key)]`` gives."""
    tree = ast.parse(kit)
    reads = forward_weights(kit)
    if reads:
        missing = [
            f"{layer}.{key}" for layer, key, _ in reads if (layer, key) not in (shapes or {})
        ]
        if missing:
            raise MMdnnError(f"MMdnn's forward reads {', '.join(missing)} with no shape given")
        fwd = _forward(tree)
        _ForwardWeights({(layer, key): attr for layer, key, attr in reads}).visit(fwd)
        init = next((n for n in _methods(tree) if n.name == "__init__"), None)
        if init is None:
            raise MMdnnError("MMdnn's KitModel has no __init__")
        for layer, key, attr in reads:
            dims = tuple(int(d) for d in shapes[(layer, key)])
            init.body.append(
                ast.parse(f"self.{attr} = nn.Parameter(torch.zeros({dims!r}))").body[0]
            )
    fwd = _forward(tree)
    left = [n for n in ast.walk(fwd or tree) if isinstance(n, ast.Name) and n.id == "_weights_dict"]
    if fwd is not None and left:
        raise MMdnnError(
            f"MMdnn's forward reads _weights_dict on line {left[0].lineno} in a way caffe2torch "
            "cannot turn into a parameter"
        )
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _mentions_weights(node.test):
            node.test = ast.BoolOp(
                op=ast.And(), values=[ast.Name("_weights_dict", ast.Load()), node.test]
            )
    tree = _GuardWeights().visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            if [a.arg for a in args.args] == ["self", "weight_file"] and not args.defaults:
                args.defaults = [ast.Constant(None)]
        if isinstance(node, ast.FunctionDef) and node.name == "load_weights":
            node.body = ast.parse(
                "if weight_file is not None:\n"
                '    raise ValueError(\'load the weights with load_state_dict(torch.load("model.pth", '
                "weights_only=True))')\n"
                "return None"
            ).body
    ast.fix_missing_locations(tree)
    header = (
        '"""MMdnn 0.3.1\'s KitModel (mmtocode -f pytorch), made loadable by caffe2torch: no\n'
        "weights file, no pickle. The weights are a plain state_dict:\n\n"
        "    model = KitModel()\n"
        '    model.load_state_dict(torch.load("model.pth", weights_only=True))\n'
        "    model.eval()\n"
        '"""\n'
    )
    return header + ast.unparse(tree) + "\n"


def _methods(tree: ast.AST) -> list[ast.FunctionDef]:
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and cls.name == CLASS_NAME:
            return [fn for fn in cls.body if isinstance(fn, ast.FunctionDef)]
    return []


def _mmdnn_name(node: Node) -> str:
    """The name MMdnn gives a layer's submodule and output variable."""
    name = mmdnn_variable(node.name)
    return name + "_1" if node.type == "InnerProduct" else name


def _mmdnn_attr(node: Node, code: str) -> str:
    name = _mmdnn_name(node)
    return name if f"self.{name} = " in code else "functional"


def _mentions_weights(expr: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "_weights_dict" for n in ast.walk(expr))


def mmdnn_trace(code: str, graph: Graph, outputs: Sequence) -> list[dict]:
    """A trace of MMdnn's ``forward``: MMdnn names each variable after the Caffe layer that
    makes it (``conv1/7x7_s2`` -> ``conv1_7x7_s2``; an InnerProduct's is ``<name>_1``, after
    its flatten ``<name>_0``) and never writes in place, so each such variable is that
    layer's value at the end of the statement assigning it. The net's outputs are always in."""
    tree = ast.parse(code)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == CLASS_NAME)
    fwd = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    ret = next(i for i, s in enumerate(fwd.body) if isinstance(s, ast.Return))
    value = fwd.body[ret].value
    returned = [e.id for e in value.elts] if isinstance(value, ast.Tuple) else [value.id]
    if len(returned) != len(outputs):
        raise MMdnnError(
            f"MMdnn's model returns {len(returned)} value(s), the net has {len(outputs)} output(s)",
            file=graph.path,
        )
    assigned = {
        t.id
        for s in fwd.body
        for t in ast.walk(s)
        if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)
    }
    by_var: dict[str, list[Node]] = {}
    for node in needed_nodes(graph, outputs):
        if len(node.outputs) != 1:
            continue
        layers = [node]
        readers = node.outputs[0].consumers
        if node.type == "BatchNorm" and len(readers) == 1 and readers[0].type == "Scale":
            if mmdnn_variable(readers[0].name) not in assigned:  # MMdnn folded the Scale in
                layers.append(readers[0])
        by_var.setdefault(_mmdnn_name(node), layers)
    for var, v in zip(returned, outputs):
        by_var[var] = [v.producer]
    trace: list[dict] = []
    start = 0
    seen: set[str] = set()
    # What each step reads of the values before it (the input, earlier layers'): verify feeds
    # OpenCV's values in there to tell a wrong layer from one that only inherits an error.
    known: dict[str, list] = {}
    args = [a.arg for a in fwd.args.args[1:]]
    for var, v in zip(args, graph.inputs):
        known[var] = [var, v.producer.id, v.producer.outputs.index(v)]
    for i, stmt in enumerate(fwd.body[:ret]):
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            continue
        target = stmt.targets[0]
        var = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
        layers = by_var.get(var.id) if isinstance(var, ast.Name) else None
        if layers is None or layers[-1].id in seen:
            continue
        seen.add(layers[-1].id)
        reads: list[list] = []
        for s in fwd.body[start : i + 1]:
            for n in ast.walk(s):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in known:
                    if known[n.id] not in reads:
                        reads.append(known[n.id])
        trace.append(
            {
                "layers": [n.id for n in layers],
                "statements": [start, i + 1],
                "reads": reads,
                "writes": [[var.id, layers[-1].id, 0]],
            }
        )
        known[var.id] = [var.id, layers[-1].id, 0]
        start = i + 1
    return trace


# ------------------------------------------------------------------------------ convert
def convert_mmdnn(
    prototxt: str | Path,
    weights: str | Path | None = None,
    options: ConvertOptions | None = None,
    *,
    keep_intermediate: bool = False,
    python: str | Path | None = None,
    **overrides,
) -> Conversion:
    """Convert with MMdnn; returns a :class:`~caffe2torch.emit.Conversion` (engine "mmdnn"),
    checked when ``options.check`` is given. Keyword arguments override fields of
    ``options``, as for :func:`~caffe2torch.emit.convert`."""
    prototxt = Path(prototxt)
    options = options_of(options, **overrides)
    if options.outputs or options.class_name:
        raise MMdnnError("MMdnn's code has its own outputs and class (KitModel)", file=prototxt)
    opts = options.preprocess
    if opts.input_order or opts.fold_normalization:
        raise MMdnnError(
            "--input-order and --fold-normalization change the first layers' weights: the "
            "native engine does that (MMdnn's code is kept as MMdnn wrote it)",
            file=prototxt,
        )
    p = prepare(prototxt, weights, options, load_blobs=False)
    graph, outs, sources, notes, pre = p.graph, p.outputs, p.sources, p.notes, p.preprocess
    check_supported(graph, needed_nodes(graph, outs))
    exe = find_python(python)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="c2t-mmdnn-")))
        net = prototxt
        if needs_rewrite(graph) or options.input_shapes:  # a deploy net as MMdnn reads it
            net = tmp / f"{prototxt.stem}.deploy.prototxt"
            net.write_text(reference_prototxt(graph))
        cm = stack.enter_context(weights_file(graph, weights, options.seed))
        work = tmp / "work"
        work.mkdir()
        report = run_driver(exe, net, cm, work)
        import torch

        state = torch.load(work / "state.pth", weights_only=True)
        consts = torch.load(work / "forward.pth", weights_only=True)
        kit = (work / "kit.py").read_text(encoding="utf-8")
        extra, scratch = {}, None
        if keep_intermediate:  # moved out of the work folder, copied into OUT/mmdnn/ by write()
            scratch = tempfile.TemporaryDirectory(prefix="c2t-mmdnn-keep-")
            for name in ("ir.pb", "ir.json", "ir.npy", "kit.py", "kit.npy", "kit.pth"):
                if (work / name).exists():
                    kept = Path(scratch.name) / name
                    shutil.move(str(work / name), kept)
                    extra[f"{INTERMEDIATE_DIR}/{name}"] = kept
    reads = forward_weights(kit)
    missing = [f"{layer}.{key}" for layer, key, _ in reads if key not in consts.get(layer, {})]
    if missing:
        raise MMdnnError(f"MMdnn's forward reads weights its file lacks: {', '.join(missing)}")
    code = loadable_code(kit, {(layer, key): consts[layer][key].shape for layer, key, _ in reads})
    state = {**state, **{attr: consts[layer][key] for layer, key, attr in reads}}
    trace = mmdnn_trace(code, graph, outs)
    squeezed = report.get("squeezed", [])
    notes = notes + ([] if report.get("pycaffe") else [PYCAFFE_NOTE])
    if report.get("shaped"):
        notes.append(
            f"gave {len(report['shaped'])} TanH/AbsVal/Sigmoid layer(s) the output shape MMdnn's "
            "Caffe reader leaves off (its PyTorch emitter fails on an InnerProduct after one)"
        )
    if report.get("emitted"):
        notes.append(
            "wrote the torch.abs statement MMdnn's PyTorch emitter skips for AbsVal: "
            + ", ".join(report["emitted"])
        )
    if reads:
        notes.append(
            "made the weights MMdnn's forward reads from its weights file parameters: "
            + ", ".join(f"self.{attr}" for _, _, attr in reads)
        )
    if squeezed:
        notes.append(
            f"squeezed {len(squeezed)} parameter(s) MMdnn padded to 4-D back to 1-D (MMdnn issues "
            "#942/#611/#711): "
            + ", ".join(f"{layer}.{key}" for layer, key, _, _ in squeezed[:8])
            + (", ..." if len(squeezed) > 8 else "")
        )
    arrays = {k: v.numpy() for k, v in state.items()}
    layer_map = {n.id: "input" if n.is_source else _mmdnn_attr(n, code) for n in graph.nodes}
    generated = Generated(CLASS_NAME, code, arrays, layer_map, [], trace)
    conversion = Conversion(
        graph,
        outs,
        generated,
        sources,
        pre,
        notes=notes,
        paths={"prototxt": prototxt, "weights": Path(weights) if weights is not None else None},
        options=options.record(),
        extra_files=extra,
        scratch=scratch,  # the kept files' folder lives as long as the conversion
        engine={
            "name": "mmdnn",
            "versions": report.get("versions", {}),
            "squeezed": [f"{layer}.{key}" for layer, key, _, _ in squeezed],
            "shaped": report.get("shaped", []),
            "emitted": report.get("emitted", []),
            "forward_weights": {attr: f"{layer}.{key}" for layer, key, attr in reads},
        },
    )
    return check_conversion(conversion, options)


__all__ = [
    "convert_mmdnn",
    "find_python",
    "forward_weights",
    "mmdnn_gap",
    "MMdnnError",
    "loadable_code",
]
