"""Seeded random weights for nets whose trained weights are not at hand (``synth-weights``).

Weights are He-scaled (``std = sqrt(2 / fan_in)``), so activations keep their magnitude through
deep ReLU nets; biases are small; BatchNorm statistics are positive variances with Caffe's
moving-average factor; each layer family can refine its own blobs (``Layer.init_weights``).
The same seed gives the same bytes.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .caffe.caffemodel import LayerRecord, binary_caffemodel, write_caffemodel
from .graph import Graph, Node


def iter_synth_blobs(graph: Graph, seed: int = 0) -> Iterator[tuple[Node, list[np.ndarray]]]:
    """Random blobs for every layer, in graph order, one layer at a time (an empty list for
    layers without weights).

    Each layer has its own generator, derived from the seed and the layer's name, so its
    weights do not change when an unrelated layer is added or removed. Layers that share a
    parameter by name (``param { name: ... }``) get the same array, and layers that repeat a
    name share that name's blobs.
    """
    shared: dict[str, np.ndarray] = {}
    by_name: dict[str, list[np.ndarray]] = {}
    for node in graph.nodes:
        if not node.weight_shapes:
            yield node, []
        elif node.name in by_name:
            yield node, by_name[node.name]
        else:
            rng = np.random.default_rng(np.random.SeedSequence([seed, *node.name.encode("utf-8")]))
            arrays = node.op.init_weights([v.shape for v in node.inputs], rng)
            for k, arr in enumerate(arrays):
                if node.param_name(k):
                    arrays[k] = shared.setdefault(node.param_name(k), arr)
            by_name[node.name] = arrays
            yield node, arrays


def synth_blobs(graph: Graph, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """The blobs of the learnable layers, by node id."""
    return {node.id: arrays for node, arrays in iter_synth_blobs(graph, seed) if arrays}


def write_synth_weights(
    graph: Graph, out: str | Path, seed: int = 0, blobs: dict[str, list[np.ndarray]] | None = None
) -> int:
    """Write a V2 caffemodel with seeded random weights, streaming one layer at a time
    (``blobs``: the ones already made for this graph and seed, by node id).

    Like Caffe's own snapshots it lists every layer, with blobs for the learnable ones.
    Returns the number of values written."""
    total = 0
    made = iter_synth_blobs(graph, seed) if blobs is None else ((n, blobs.get(n.id, [])) for n in graph.nodes)

    def records():
        nonlocal total
        for node, arrays in made:
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


@contextlib.contextmanager
def weights_file(
    graph: Graph, weights: str | Path | None, seed: int = 0, blobs: dict | None = None
) -> Iterator[Path]:
    """A binary caffemodel for an engine that reads one (OpenCV, MMdnn): ``weights`` (an HDF5
    snapshot written as binary), or, without it, the seeded random weights a conversion with
    ``--random-weights --seed`` used (``blobs``: as that conversion made them), written to a
    temporary file."""
    if weights is not None:
        with binary_caffemodel(weights) as path:
            yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.caffemodel"
        write_synth_weights(graph, path, seed=seed, blobs=blobs)
        yield path
