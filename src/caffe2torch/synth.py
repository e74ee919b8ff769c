"""Seeded random weights for nets whose trained weights are not at hand (``synth-weights``).

Weights are He-scaled (``std = sqrt(2 / fan_in)``), so activations keep their magnitude through
deep ReLU nets; biases are small; BatchNorm statistics are positive variances with Caffe's
moving-average factor; each layer family can refine its own blobs (``Layer.init_weights``).
The same seed gives the same bytes.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from .caffe.caffemodel import LayerRecord, write_caffemodel
from .graph import Graph, Node
from .layers import Shape


def default_init(shapes: list[Shape], rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for s in shapes:
        if len(s) >= 2:
            fan_in = math.prod(s[1:])
            out.append(rng.standard_normal(s, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in)))
        else:
            out.append(rng.uniform(-0.1, 0.1, s).astype(np.float32))
    return out


def iter_synth_blobs(graph: Graph, seed: int = 0) -> Iterator[tuple[Node, list[np.ndarray]]]:
    """Random blobs for every learnable layer, in graph order, one layer at a time.

    Each layer has its own generator, derived from the seed and the layer's name, so its
    weights do not change when an unrelated layer is added or removed. Layers that share a
    parameter by name (``param { name: ... }``) get the same array.
    """
    shared: dict[str, np.ndarray] = {}
    by_name: dict[str, list[np.ndarray]] = {}
    for node in graph.nodes:
        if not node.weight_shapes:
            continue
        if node.name in by_name:
            # Layers repeating a name share its weights; Caffe writes them once per layer.
            yield node, by_name[node.name]
            continue
        rng = np.random.default_rng(np.random.SeedSequence([seed, *node.name.encode("utf-8")]))
        arrays = node.op.init_weights([v.shape for v in node.inputs], rng)
        for k, arr in enumerate(arrays):
            pname = node.param_names[k] if k < len(node.param_names) else ""
            if pname:
                arrays[k] = shared.setdefault(pname, arr)
        by_name[node.name] = arrays
        yield node, arrays


def synth_blobs(graph: Graph, seed: int = 0) -> dict[str, list[np.ndarray]]:
    return {node.id: arrays for node, arrays in iter_synth_blobs(graph, seed)}


def write_synth_weights(graph: Graph, out: str | Path, seed: int = 0) -> int:
    """Write a V2 caffemodel with seeded random weights, streaming one layer at a time.

    Like Caffe's own snapshots it lists every layer, with blobs for the learnable ones.
    Returns the number of values written."""
    total = 0

    def records():
        nonlocal total
        blobs = iter_synth_blobs(graph, seed)
        pending = next(blobs, None)
        for node in graph.nodes:
            arrays: list[np.ndarray] = []
            if pending is not None and pending[0] is node:
                arrays = pending[1]
                pending = next(blobs, None)
            total += sum(a.size for a in arrays)
            yield LayerRecord(
                name=node.name,
                type=node.type,
                bottom=[v.name for v in node.inputs],
                top=[v.name for v in node.outputs],
                blobs=arrays,
            )

    write_caffemodel(out, records(), net_name=graph.name)
    return total
