"""A plain-data summary of a graph (and its weights), for ``inspect`` tables and ``--json``."""
from __future__ import annotations

from typing import Any

from .caffe.caffemodel import Weights
from .graph import Graph, WeightCheck
from .layers import DYNAMIC, Shape


def _shape(shape: Shape | None) -> list[int | None] | None:
    if shape is None:
        return None
    return [None if d == DYNAMIC else d for d in shape]


def summarize(
    graph: Graph, weights: Weights | None = None, check: WeightCheck | None = None
) -> dict[str, Any]:
    layers = []
    for node in graph.nodes:
        layers.append(
            {
                "name": node.name,
                "id": node.id,
                "type": node.type,
                "line": node.line,
                "bottoms": [v.name for v in node.inputs],
                "tops": [v.name for v in node.outputs],
                "in_place": node.inplace,
                "input": node.is_source,
                "output_shapes": [_shape(v.shape) for v in node.outputs],
                "weight_shapes": [_shape(s) for s in node.weight_shapes],
                "params": node.param_count,
                "details": node.op.describe(),
            }
        )
    notes = list(graph.notes)
    if check is not None:
        notes.extend(check.notes)
    return {
        "net": graph.name,
        "file": str(graph.path),
        "format": graph.format,
        "phase": graph.phase,
        "weights": None
        if weights is None
        else {
            "file": str(weights.path),
            "format": weights.format,
            "layers_with_blobs": sum(1 for lw in weights.layers.values() if lw.blobs),
            "values": weights.total_values,
            "matched": check is not None,
        },
        "inputs": [{"name": v.name, "shape": _shape(v.shape)} for v in graph.inputs],
        "outputs": [{"name": v.name, "shape": _shape(v.shape)} for v in graph.outputs],
        "layers": layers,
        "totals": {
            "layers": len(graph.layers),
            "learnable_layers": sum(1 for n in graph.nodes if n.weight_shapes),
            "params": graph.param_count,
        },
        "notes": notes,
    }
