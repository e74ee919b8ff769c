"""Run one small Caffe net through the converter and through a reference, and compare.

A test gives the net's inputs and layers as prototxt text; the harness writes the file, gives
every learnable layer seeded random weights (``synth-weights``, or blobs the test chooses),
converts it, runs the model on seeded random input and compares the outputs of the last layer
with OpenCV's dnn module or with a numpy implementation of Caffe's formula written in the test.

Tolerance: ``max|y - ref| <= 1e-5 + 1e-4 * max|ref|``.

The checks keep the tests' declarations honest: a test that compares a layer type with
OpenCV carries ``@pytest.mark.opencv(type, ...)``, one that compares it with a numpy formula
``@pytest.mark.formula(type, ...)``; ``tests/layers/conftest.py`` hands the running test's
marked types to this module (``MARKED``), and :func:`check_opencv` / :func:`check_numpy`
refuse to check a type the test does not declare, or one its family says OpenCV cannot
check (``Layer.opencv_gap``). ``tests/test_registry.py`` reads the same markers to keep every
convertible type checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from caffe2torch.api import load_graph
from caffe2torch.caffe.caffemodel import LayerRecord, write_caffemodel
from caffe2torch.emit import convert
from caffe2torch.synth import synth_blobs
from caffe2torch.verify.parity import compare, run_model

ATOL, RTOL = 1e-5, 1e-4
X4 = {"data": (2, 6, 9, 11)}

# The running test's marked types ({"opencv": ..., "formula": ...}), set by the autouse
# fixture of tests/layers/conftest.py; None outside a test of tests/layers.
MARKED: dict[str, frozenset[str]] | None = None


def one(type_: str, param: str = "", *, bottoms=("data",), tops=("out",), name="out") -> str:
    """One layer's prototxt text."""
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {param} }}\n'


def net_text(inputs: Mapping[str, Sequence[int]], layers: str, name: str = "t") -> str:
    lines = [f'name: "{name}"']
    for blob, shape in inputs.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        lines.append(f'input: "{blob}"\ninput_shape {{ {dims} }}')
    return "\n".join(lines) + "\n" + layers


@dataclass
class Run:
    conversion: object
    inputs: dict[str, np.ndarray]
    blobs: dict[str, list[np.ndarray]]  # by layer name
    ours: list[np.ndarray]  # outputs of the last layer
    path: Path
    weights: Path


def run(
    tmp_path: Path,
    inputs: Mapping[str, Sequence[int]],
    layers: str,
    *,
    seed: int = 0,
    blobs: Mapping[str, list[np.ndarray]] | None = None,
    data: Mapping[str, np.ndarray] | None = None,
    positive: bool = False,
) -> Run:
    """Convert the net and run it; ``blobs`` replaces synthesized weights by layer name,
    ``data`` replaces random inputs, ``positive`` draws inputs from (0.1, 2)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "net.prototxt"
    path.write_text(net_text(inputs, layers))
    graph = load_graph(path)
    arrays = synth_blobs(graph, seed)
    for name, value in (blobs or {}).items():
        arrays[graph.node(name).id] = [np.asarray(b, np.float32) for b in value]
    weights = tmp_path / "net.caffemodel"
    write_caffemodel(
        weights,
        (
            LayerRecord(n.name, n.type, [], [], arrays.get(n.id, []))
            for n in graph.nodes
            if not n.is_source
        ),
        net_name="t",
    )
    rng = np.random.default_rng(seed + 100)
    feed = {}
    for v in graph.inputs:
        if data and v.name in data:
            feed[v.name] = np.asarray(data[v.name], np.float32)
        elif positive:
            feed[v.name] = rng.uniform(0.1, 2.0, v.shape).astype(np.float32)
        else:
            feed[v.name] = rng.standard_normal(v.shape, dtype=np.float32)
    last = graph.layers[-1].name
    tops = [v.name for v in graph.layers[-1].outputs]
    conv = convert(path, weights, outputs=tops)
    ours = run_model(conv.module(), graph.inputs, feed)
    by_name = {n.name: arrays.get(n.id, []) for n in graph.nodes}
    assert conv.outputs[0].producer.name == last
    return Run(conv, feed, by_name, ours, path, weights)


def opencv_outputs(r: Run) -> list[np.ndarray]:
    from caffe2torch.verify.opencv import run_opencv

    graph = r.conversion.graph
    ref = run_opencv(r.path, r.weights, r.inputs, graph=graph)
    node = graph.layers[-1]
    if node.name in ref:
        outs = ref[node.name][: len(node.outputs)]
        if node.type == "Split" and len(outs) == 1:  # OpenCV's Split: one blob its readers share
            outs = outs * len(node.outputs)
        return outs
    return [ref[v.name][0] for v in node.outputs]


def assert_close(ours: Sequence[np.ndarray], refs: Sequence[np.ndarray]) -> float:
    """Every output within the tolerance; returns the worst error relative to the bound."""
    assert len(ours) == len(refs), (len(ours), len(refs))
    worst = 0.0
    for k, (y, ref) in enumerate(zip(ours, refs)):
        ref = np.asarray(ref)
        assert y.size == ref.size, f"output {k}: shape {y.shape} vs reference {ref.shape}"
        c = compare(y, ref.reshape(y.shape), f"top{k}", "", atol=ATOL, rtol=RTOL)
        assert c.ok, f"output {k} {y.shape}: max|y - ref| = {c.max_abs:.3g} > bound {c.bound:.3g}"
        worst = max(worst, c.max_abs / c.bound)
    return worst


def _declared(kind: str, node) -> None:
    assert MARKED is not None, "layer checks run in tests/layers (its conftest gives the markers)"
    assert node.type in MARKED[kind], (
        f"this test checks {node.type} ('{node.name}') against {kind_text(kind)} but does not "
        f"declare it: add @pytest.mark.{kind}({node.type!r}) (it declares {sorted(MARKED[kind])})"
    )


def kind_text(kind: str) -> str:
    return "OpenCV" if kind == "opencv" else "a numpy formula"


def compare_opencv(r: Run) -> float:
    """The last layer's outputs against OpenCV's, once the test declares the type and the
    layer's family says OpenCV computes Caffe's value for these parameters."""
    node = r.conversion.graph.layers[-1]
    _declared("opencv", node)
    gap = node.op.opencv_gap(node)
    assert not gap, (
        f"{node.type} '{node.name}': its family says OpenCV cannot check it ({gap}): compare it "
        "with Caffe's formula (check_numpy) instead"
    )
    return assert_close(r.ours, opencv_outputs(r))


def check_opencv(tmp_path, inputs, layers, **kw) -> Run:
    r = run(tmp_path, inputs, layers, **kw)
    compare_opencv(r)
    return r


def check_numpy(tmp_path, inputs, layers, formula: Callable[..., list[np.ndarray]], **kw) -> Run:
    """``formula(inputs, blobs)`` gives the expected outputs from the input arrays (by name)
    and the last layer's blobs."""
    r = run(tmp_path, inputs, layers, **kw)
    node = r.conversion.graph.layers[-1]
    _declared("formula", node)
    assert_close(r.ours, formula(r.inputs, r.blobs[node.name]))
    return r
