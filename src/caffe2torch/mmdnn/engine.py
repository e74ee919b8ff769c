"""The MMdnn engine: Microsoft MMdnn's own flow (``mmtoir`` -> ``mmtocode`` -> ``mmtomodel``),
automated, fixed and checked, for those who want exactly its artifacts.

MMdnn 0.3.1 needs protobuf 3.20.3 and runs in an environment of its own (``make mmdnn-env``
makes ``.venv-mmdnn``; ``--mmdnn-python`` or ``CAFFE2TORCH_MMDNN_PYTHON`` names its Python).
:mod:`._driver` runs the three steps there and squeezes the 1-D parameters MMdnn pads to 4-D
without PyCaffe (the fix users otherwise hand-edit in). Here, the generated ``kit.py`` is made
loadable without ``imp`` or pickle: ``KitModel()`` builds the layers, and the weights come
from a plain state_dict (``model.pth``, ``torch.load(..., weights_only=True)``).

Before anything runs, layers MMdnn lacks or is known to get wrong stop the conversion with
one line naming them, and suggest ``--engine native``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..errors import CaffeError, UnsupportedLayerError
from ..graph import Graph, Node, Shape

ENV_VAR = "CAFFE2TORCH_MMDNN_PYTHON"
DRIVER = Path(__file__).with_name("_driver.py")
INTERMEDIATE_DIR = "mmdnn"
CLASS_NAME = "KitModel"

# Caffe types MMdnn 0.3.1's Caffe reader maps to its IR (mmdnn/conversion/caffe/mapper.py).
MMDNN_TYPES = frozenset(
    """Input Data ImageData MemoryData DummyData WindowData HDF5Data Convolution Deconvolution
    InnerProduct Pooling ReLU PReLU ELU Sigmoid TanH AbsVal Softmax LRN BatchNorm Scale Eltwise
    Concat Dropout Flatten Reshape Split Crop""".split()
)

PYCAFFE_NOTE = (
    "MMdnn warns that PyCaffe is missing and its protobuf reader is 'UNTESTED': caffe2torch "
    "never uses PyCaffe, and the result is checked against OpenCV instead"
)


class MMdnnError(CaffeError):
    """MMdnn is not available, or one of its steps failed."""


def mmdnn_gap(node: Node) -> str:
    """Why MMdnn cannot convert this layer right ("" when it can)."""
    p = node.op.proto
    t = node.type
    if node.is_source:
        return ""
    if t not in MMDNN_TYPES:
        return f"MMdnn has no {t} layer"
    if t in ("Convolution", "Deconvolution") and any(d != 1 for d in p.convolution_param.dilation):
        return "MMdnn's PyTorch code ignores dilation"
    if t == "Pooling":
        if p.pooling_param.pool == 2:
            return "MMdnn has no STOCHASTIC pooling"
        if node.op.method == 1 and any(node.op.pad):
            return "MMdnn's padded AVE pooling divides by the wrong count"
    if t == "Eltwise" and any(c != 1 for c in p.eltwise_param.coeff):
        return "MMdnn drops Eltwise's coeff"
    if t == "LRN" and p.lrn_param.norm_region == 1:
        return "MMdnn computes LRN across channels only (this one is WITHIN_CHANNEL)"
    if t == "Concat" and p.concat_param.axis not in (0, 1, 2, 3):
        return "MMdnn reads only Concat axes 0 to 3"
    if t == "Scale" and len(node.inputs) > 1:
        return "MMdnn has no Scale with a second bottom"
    if len(node.inputs) > 1 and t not in ("Eltwise", "Concat", "Crop"):
        return "MMdnn reads one bottom for this layer"
    return ""


def check_supported(graph: Graph, nodes: Iterable[Node]) -> None:
    gaps: dict[str, list[str]] = {}
    for node in nodes:
        why = mmdnn_gap(node)
        if why:
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
    """Statements reading ``_weights_dict`` run only when MMdnn's weights file was given."""

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
        uses = any(isinstance(n, ast.Name) and n.id == "_weights_dict" for n in ast.walk(stmt))
        if not uses or isinstance(stmt, (ast.Global, ast.If, ast.FunctionDef)):
            return stmt
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_weights_dict" for t in stmt.targets
        ):
            return stmt
        guard = ast.parse("if _weights_dict:\n    pass").body[0]
        guard.body = [stmt]
        return guard


def loadable_code(kit: str) -> str:
    """MMdnn's ``kit.py`` with ``KitModel()`` needing no weights file: the weights come from a
    state_dict. Its layers, names and forward are untouched."""
    tree = ast.parse(kit)
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


def _mmdnn_name(node: Node) -> str:
    """The name MMdnn gives a layer's submodule and output variable."""
    name = re.sub(r"\W", "_", node.name)
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
    from ..emit.codegen import needed_nodes

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
            if re.sub(r"\W", "_", readers[0].name) not in assigned:  # MMdnn folded the Scale in
                layers.append(readers[0])
        by_var.setdefault(_mmdnn_name(node), layers)
    for var, v in zip(returned, outputs):
        by_var[var] = [v.producer]
    trace: list[dict] = []
    start = 0
    seen: set[str] = set()
    for i, stmt in enumerate(fwd.body[:ret]):
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            continue
        target = stmt.targets[0]
        var = target.elts[0] if isinstance(target, ast.Tuple) and target.elts else target
        layers = by_var.get(var.id) if isinstance(var, ast.Name) else None
        if layers is None or layers[-1].id in seen:
            continue
        seen.add(layers[-1].id)
        trace.append(
            {
                "layers": [n.id for n in layers],
                "statements": [start, i + 1],
                "reads": [],
                "writes": [[var.id, layers[-1].id, 0]],
            }
        )
        start = i + 1
    return trace


# ------------------------------------------------------------------------------ convert
def convert_mmdnn(
    prototxt: str | Path,
    weights: str | Path | None = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
    input_shapes: Mapping[str | None, Shape] | None = None,
    phase: str = "test",
    stages: Iterable[str] = (),
    keep_intermediate: bool = False,
    python: str | Path | None = None,
    preprocess=None,
):
    """Convert with MMdnn; returns a :class:`~caffe2torch.emit.Conversion` (engine "mmdnn")."""
    from ..emit.codegen import Generated, needed_nodes
    from ..emit.conversion import Conversion, prepare
    from ..preprocess.spec import Options as PreprocessOptions
    from ..synth import weights_file
    from ..verify.opencv import needs_rewrite, reference_prototxt

    prototxt = Path(prototxt)
    stages = list(stages)
    opts = preprocess or PreprocessOptions()
    if opts.input_order or opts.fold_normalization:
        raise MMdnnError(
            "--input-order and --fold-normalization change the first layers' weights: the "
            "native engine does that (MMdnn's code is kept as MMdnn wrote it)",
            file=prototxt,
        )
    graph, outs, sources, notes, _blobs, pre = prepare(
        prototxt,
        weights,
        random_weights=random_weights,
        seed=seed,
        input_shapes=input_shapes,
        outputs=None,
        phase=phase,
        stages=stages,
        load_blobs=False,
        preprocess=opts,
    )
    check_supported(graph, needed_nodes(graph, outs))
    exe = find_python(python)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="c2t-mmdnn-")))
        net = prototxt
        if needs_rewrite(graph) or input_shapes:  # a deploy net as MMdnn reads it
            net = tmp / f"{prototxt.stem}.deploy.prototxt"
            net.write_text(reference_prototxt(graph))
        cm = stack.enter_context(weights_file(graph, weights, seed))
        work = tmp / "work"
        work.mkdir()
        report = run_driver(exe, net, cm, work)
        import torch

        state = torch.load(work / "state.pth", weights_only=True)
        kit = (work / "kit.py").read_text(encoding="utf-8")
        extra, scratch = {}, None
        if keep_intermediate:  # moved out of the work folder, copied into OUT/mmdnn/ by write()
            scratch = tempfile.TemporaryDirectory(prefix="c2t-mmdnn-keep-")
            for name in ("ir.pb", "ir.json", "ir.npy", "kit.py", "kit.npy", "kit.pth"):
                if (work / name).exists():
                    kept = Path(scratch.name) / name
                    shutil.move(str(work / name), kept)
                    extra[f"{INTERMEDIATE_DIR}/{name}"] = kept
    code = loadable_code(kit)
    trace = mmdnn_trace(code, graph, outs)
    squeezed = report.get("squeezed", [])
    notes = notes + [PYCAFFE_NOTE]
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
    paths = {"prototxt": prototxt, "weights": Path(weights) if weights is not None else None}
    conversion = Conversion(
        graph, outs, generated, sources, notes, paths, {"phase": phase, "stages": stages}
    )
    conversion.preprocess = pre
    conversion.options.update(opts.to_dict())
    conversion.extra_files = extra
    conversion.scratch = scratch  # the kept files' folder lives as long as the conversion
    conversion.engine = {
        "name": "mmdnn",
        "versions": report.get("versions", {}),
        "squeezed": [f"{layer}.{key}" for layer, key, _, _ in squeezed],
    }
    return conversion


__all__ = ["convert_mmdnn", "find_python", "mmdnn_gap", "MMdnnError", "loadable_code"]
