"""The library's entry points, used by the CLI and by Python callers."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .caffe.caffemodel import Weights, read_caffemodel
from .caffe.prototxt import read_prototxt
from .graph import Graph, Shape, WeightCheck, build_graph, check_weights


def load_graph(
    prototxt: str | Path,
    *,
    phase: str = "test",
    stages: Iterable[str] = (),
    input_shapes: Mapping[str | None, Shape] | None = None,
    outputs: Sequence[str] | None = None,
) -> Graph:
    """Read a net prototxt (V0, V1 or V2) and build its graph with every shape inferred
    (of the layers ``outputs`` need, when it names blobs to return)."""
    return build_graph(
        read_prototxt(prototxt), phase=phase, stages=stages, input_shapes=input_shapes,
        outputs=outputs,
    )


def load_weights(graph: Graph, weights: str | Path) -> tuple[Weights, WeightCheck]:
    """Read a weights file and match it against ``graph`` (raises on any mismatch)."""
    w = read_caffemodel(weights)
    return w, check_weights(graph, w)
