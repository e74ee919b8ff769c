"""MMdnn's three steps, run inside an environment where MMdnn 0.3.1 works (protobuf 3.20.3).

This file is a standalone script: it imports only the standard library, numpy, torch and
mmdnn, never caffe2torch (whose environment may have another protobuf). The engine runs it
as ``MMDNN_PYTHON _driver.py PROTOTXT CAFFEMODEL WORKDIR`` and reads one JSON line
from its stdout. In WORKDIR it leaves:

- ``ir.pb``, ``ir.json``, ``ir.npy``: ``mmtoir -f caffe`` (MMdnn's IR), with the output shape
  its Caffe mapper leaves off TanH, AbsVal and Sigmoid (``map_tanh``, ``map_abs_val`` and
  ``map_sigmoid`` never call ``_convert_output_shape``) copied from their bottom: these layers
  keep their input's shape, and without it the PyTorch emitter's ``emit_FullyConnected`` /
  ``check_if_need_transpose`` fails with ``IndexError`` on an InnerProduct after one (the
  shape decides how it reorders the weights of an InnerProduct on 4-D data);
- ``kit.py``, ``kit.npy``: ``mmtocode -f pytorch``, with the statement of each AbsVal put
  back (``x = torch.abs(bottom)``): the PyTorch emitter has no ``emit_Abs``, so mmtocode
  prints "not supported operator [Abs]", writes no statement for it and leaves its readers on
  an undefined variable; any other IR op it cannot emit stops here, naming the layer. And
  ``kit.npy``'s 1-D parameters
  (bias, scale, mean, var...) squeezed to their true shape, the fix for MMdnn issues
  #942/#611/#711 (without PyCaffe its Caffe reader pads every blob to 4-D); weights are kept;
- ``kit.pth``: ``mmtomodel -f pytorch`` (its pickled module), which works once squeezed;
- ``state.pth``: the state_dict of ``KitModel(kit.npy)``, plain tensors;
- ``forward.pth``: ``{layer: {key: tensor}}``, the weights MMdnn's ``forward`` reads from
  ``_weights_dict`` itself instead of keeping them in a module (PReLU's slopes:
  ``F.prelu(x, torch.from_numpy(_weights_dict['prelu1']['weights']))``), which no state_dict
  holds; the engine makes them parameters of the model.
"""

import ast
import json
import os
import subprocess
import sys

import numpy as np

# The parameters MMdnn stores per layer that are 1-D in PyTorch; "weights" never is.
ONE_D = ("bias", "scale", "mean", "var", "gamma", "beta", "alpha")
# IR ops whose output has its input's shape, which MMdnn's Caffe mapper leaves without one.
SAME_SHAPE = ("Tanh", "Abs", "Sigmoid")


def run(tool, args, log):
    exe = os.path.join(os.path.dirname(sys.executable), tool)
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    log.append(
        {
            "tool": tool,
            "args": args,
            "code": proc.returncode,
            "stdout": proc.stdout[-4000:],
            "stderr": proc.stderr[-4000:],
        }
    )
    if proc.returncode != 0:
        print(json.dumps({"ok": False, "step": tool, "log": log}))
        sys.exit(0)


def squeeze(path):
    """Reshape every 1-D parameter that MMdnn padded to 4-D back to 1-D; returns what changed."""
    weights = np.load(path, allow_pickle=True).item()  # MMdnn's own file, just written
    changed = []
    for layer, params in weights.items():
        for key, value in params.items():
            value = np.asarray(value)
            if key in ONE_D and value.ndim > 1 and sum(d > 1 for d in value.shape) <= 1:
                params[key] = value.reshape(-1)
                changed.append([layer, key, list(value.shape), [int(value.size)]])
    np.save(path, weights, allow_pickle=True)
    return changed


def fill_shapes(pb_path, json_path):
    """Give each shape-less Tanh/Abs/Sigmoid node of MMdnn's IR its bottom's ``_output_shapes``
    (rewriting ``ir.pb`` and ``ir.json`` the way mmtoir writes them); returns the nodes."""
    from google.protobuf import json_format
    from mmdnn.conversion.common.IR import graph_pb2

    graph = graph_pb2.GraphDef()
    with open(pb_path, "rb") as f:
        graph.ParseFromString(f.read())
    nodes = {n.name: n for n in graph.node}
    filled = []
    changed = True
    while changed:  # a chain (TanH -> AbsVal) fills in any order
        changed = False
        for node in graph.node:
            if node.op not in SAME_SHAPE or "_output_shapes" in node.attr or not node.input:
                continue
            parent = nodes.get(node.input[0].split(":")[0])
            if parent is not None and "_output_shapes" in parent.attr:
                node.attr["_output_shapes"].CopyFrom(parent.attr["_output_shapes"])
                filled.append(node.name)
                changed = True
    if filled:
        with open(pb_path, "wb") as f:
            f.write(graph.SerializeToString())
        with open(json_path, "w") as f:
            f.write(json_format.MessageToJson(graph, preserving_proto_field_name=True))
    return filled


def emit_missing(pb_path, kit_path):
    """Write the statement MMdnn's PyTorch emitter skips for each Abs node into ``kit.py``,
    right after its bottom's; returns the nodes, or raises for an op it cannot stand in for."""
    import re

    from mmdnn.conversion.common.IR.IR_graph import IRGraph
    from mmdnn.conversion.pytorch.pytorch_emitter import PytorchEmitter

    graph = IRGraph(pb_path)
    graph.build()
    with open(kit_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    added = []
    for name in graph.topological_sort:
        node = graph.get_node(name)
        if hasattr(PytorchEmitter, "emit_" + node.type):
            continue
        if node.type != "Abs" or len(node.in_edges) != 1:
            raise ValueError(
                f"MMdnn's PyTorch emitter has no {node.type} (IR node '{name}'): mmtocode wrote "
                "no code for it"
            )
        parent = graph.get_parent(name, [0]).real_variable_name
        start = next(i for i, line in enumerate(lines) if line.strip() == "def forward(self, x):")
        at = start + 1
        if parent != "x":
            assigns = re.compile(
                r"^ {8}(\w+\s*,\s*)*" + re.escape(parent) + r"\s*(,\s*\w+\s*)*=[^=]"
            )
            at = next(i for i in range(start + 1, len(lines)) if assigns.match(lines[i])) + 1
        lines.insert(at, "        {:<15} = torch.abs({})".format(node.variable_name, parent))
        added.append(name)
    if added:
        with open(kit_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return added


def forward_reads(path):
    """``(layer, key)`` of each ``_weights_dict[layer][key]`` in ``KitModel.forward``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = []
    for cls in tree.body:
        if not (isinstance(cls, ast.ClassDef) and cls.name == "KitModel"):
            continue
        for fn in cls.body:
            if not (isinstance(fn, ast.FunctionDef) and fn.name == "forward"):
                continue
            for n in ast.walk(fn):
                inner = n.value if isinstance(n, ast.Subscript) else None
                if (
                    isinstance(inner, ast.Subscript)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id == "_weights_dict"
                    and isinstance(inner.slice, ast.Constant)
                    and isinstance(n.slice, ast.Constant)
                    and (inner.slice.value, n.slice.value) not in found
                ):
                    found.append((inner.slice.value, n.slice.value))
    return found


def main():
    prototxt, caffemodel, work = sys.argv[1:4]
    os.chdir(work)
    log = []
    run("mmtoir", ["-f", "caffe", "-n", prototxt, "-w", caffemodel, "-o", "ir"], log)
    filled = fill_shapes("ir.pb", "ir.json")
    run(
        "mmtocode",
        [
            "-f",
            "pytorch",
            "-n",
            "ir.pb",
            "--IRWeightPath",
            "ir.npy",
            "--dstModelPath",
            "kit.py",
            "-dw",
            "kit.npy",
        ],
        log,
    )
    try:
        emitted = emit_missing("ir.pb", "kit.py")
    except (ValueError, StopIteration) as e:
        why = str(e) or "cannot place the statement of a layer mmtocode skipped"
        print(json.dumps({"ok": False, "step": "mmtocode", "log": log, "error": why}))
        return
    changed = squeeze("kit.npy")
    run("mmtomodel", ["-f", "pytorch", "-in", "kit.py", "-iw", "kit.npy", "-o", "kit.pth"], log)
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("kit", os.path.join(work, "kit.py"))
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    try:
        net = kit.KitModel("kit.npy")
    except Exception as e:  # noqa: BLE001 - reported to the engine
        print(
            json.dumps(
                {
                    "ok": False,
                    "step": "KitModel(kit.npy)",
                    "log": log,
                    "error": f"{type(e).__name__}: {e}",
                }
            )
        )
        return
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, "state.pth")
    weights = kit._weights_dict  # what KitModel("kit.npy") loaded
    consts = {}
    for layer, key in forward_reads("kit.py"):
        value = np.ascontiguousarray(weights[layer][key])
        consts.setdefault(layer, {})[key] = torch.from_numpy(value).clone()
    torch.save(consts, "forward.pth")
    versions = {
        "mmdnn": _version("mmdnn"),
        "protobuf": _version("protobuf"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    report = {
        "ok": True,
        "pycaffe": _read_with_pycaffe(),
        "squeezed": changed,
        "shaped": filled,
        "emitted": emitted,
        "log": log,
        "versions": versions,
    }
    print(json.dumps(report))


def _read_with_pycaffe():
    """Whether MMdnn's Caffe reader used pycaffe (its authors' intended path, where this
    environment has a pycaffe that imports), as it decides itself."""
    try:
        from mmdnn.conversion.caffe.resolver import has_pycaffe

        return bool(has_pycaffe())
    except Exception:  # noqa: BLE001 - a pycaffe that fails to import is not used
        return False


def _version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
