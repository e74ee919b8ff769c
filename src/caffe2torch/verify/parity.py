"""Run a converted model and the reference engine on the same input; compare outputs.

The tolerance is the project's: ``max|y - ref| <= atol + rtol * max|ref|`` (1e-5 and 1e-4 by
default), a bound relative to the output's scale, so it means the same for a softmax and for
unnormalised features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..graph import Value
from .opencv import run_opencv

ATOL = 1e-5
RTOL = 1e-4


@dataclass
class Comparison:
    blob: str
    layer: str  # the Caffe layer whose output this is
    shape: tuple[int, ...]
    max_abs: float
    ref_max: float  # max |ref|
    atol: float = ATOL
    rtol: float = RTOL

    @property
    def bound(self) -> float:
        return self.atol + self.rtol * self.ref_max

    @property
    def ok(self) -> bool:
        return bool(self.max_abs <= self.bound)

    @property
    def rel(self) -> float:
        """The error relative to the output's scale."""
        return self.max_abs / self.ref_max if self.ref_max else self.max_abs


def compare(y: np.ndarray, ref: np.ndarray, blob: str, layer: str, **tol) -> Comparison:
    y = np.atleast_1d(np.asarray(y, np.float64))
    ref = np.atleast_1d(np.asarray(ref, np.float64))
    if y.shape != ref.shape:
        if y.size == ref.size:  # OpenCV drops trailing 1s of some shapes
            ref = ref.reshape(y.shape)
        else:
            return Comparison(blob, layer, tuple(y.shape), float("inf"), 0.0, **tol)
    if y.size == 0:
        return Comparison(blob, layer, tuple(y.shape), 0.0, 0.0, **tol)
    diff = np.abs(y - ref)
    diff[np.isnan(y) & np.isnan(ref)] = 0  # both NaN agree
    err = float(np.nan_to_num(diff, nan=np.inf).max())
    return Comparison(blob, layer, tuple(y.shape), err, float(np.abs(ref).max()), **tol)


def random_inputs(inputs: list[Value], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard normal values; an input a layer needs meaningful (a proposal layer's
    im_info: image height, width and scale) gets the value that layer gives
    (``Layer.sample_input``)."""
    rng = np.random.default_rng(seed)
    out = {v.name: rng.standard_normal(v.shape, dtype=np.float32) for v in inputs}
    for v in inputs:
        for node in v.consumers:
            given = node.op.sample_input(node, node.inputs.index(v)) if node.op else None
            if given is not None:
                out[v.name] = np.asarray(given, np.float32).reshape(v.shape)
                break
    return out


def run_model(model, inputs: list[Value], arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*[torch.from_numpy(np.ascontiguousarray(arrays[v.name])) for v in inputs])
    if isinstance(out, torch.Tensor):
        out = (out,)
    return [o.numpy() for o in out]


def compare_outputs(
    conversion,
    prototxt: str | Path,
    caffemodel: str | Path,
    arrays: Mapping[str, np.ndarray],
    **tol,
) -> list[Comparison]:
    """The converted model's outputs against OpenCV's for the same blobs."""
    graph = conversion.graph
    ours = run_model(conversion.module(), graph.inputs, arrays)
    ref = run_opencv(prototxt, caffemodel, arrays, graph=graph)
    out = []
    for v, y in zip(conversion.outputs, ours):
        layer = v.producer.name
        k = v.producer.outputs.index(v)
        # OpenCV names some output layers after their top blob.
        theirs = ref[layer][k] if layer in ref else ref[v.name][0]
        out.append(compare(y, theirs, v.name, layer, **tol))
    return out
