"""Folding input conventions into the first layers' weights, where that is exact.

- Channel order (``--input-order rgb`` on a BGR net): a Convolution (one group) or an
  InnerProduct reading the input directly gets its input-channel axis reversed, so the model
  reads RGB with the same numbers. Any other reader gets an explicit ``x.flip(1)`` first.
- Normalization (``--fold-normalization``): ``conv(s * (x - m)) = conv'(x)`` with
  ``W' = s W`` and ``b' = b - sum(W' m)``, exact only when the layer does not pad (Caffe pads
  the normalized input with zeros, which are not ``m`` in pixels) and the mean is one value per
  channel. Anything else is refused with the reason.
"""
from __future__ import annotations

import numpy as np

from ..graph import Graph, Node, Value
from ..layers import known_types, layer_class
from .spec import InputSpec, Preprocess, PreprocessError


def _readers(v: Value, needed: set[str]) -> list[Node]:
    """The layers that read ``v``'s values (not only its shape, as PriorBox does)."""
    out: list[Node] = []
    for n in v.consumers:
        values = any(not n.op.reads_only_shape(i) for i, x in enumerate(n.inputs) if x is v)
        if n.id in needed and values and n not in out:
            out.append(n)
    return out


def _shares_weights(node: Node, graph: Graph) -> bool:
    if any(node.param_names):
        names = {p for p in node.param_names if p}
        if any(n is not node and names & {p for p in n.param_names if p} for n in graph.nodes):
            return True
    return sum(n.name == node.name for n in graph.nodes) > 1


def _folding_types() -> str:
    return " or ".join(t for t in known_types() if t in layer_class(t).FOLDS_INPUT)


def _why_not(node: Node, v: Value, graph: Graph, blobs: dict, padding_matters: bool) -> str:
    """Why the input convention cannot go into ``node``'s weights ("" when it can): what the
    graph says here, what the parameters say in the layer's family (``Layer.fold_gap``)."""
    if node.type not in node.op.FOLDS_INPUT:
        return f"'{node.id}' ({node.type}) is not a {_folding_types()}"
    if node.inputs != [v]:  # its weights also serve its other bottoms
        return f"'{node.id}' ({node.type}) reads other bottoms with the same weights"
    if node.id not in blobs or not blobs[node.id]:
        return f"'{node.id}' has no weights"
    if _shares_weights(node, graph):
        return f"'{node.id}' shares its weights with another layer"
    return node.op.fold_gap(node, padding_matters)


def _channel_view(node: Node, w: np.ndarray, channels: int) -> np.ndarray:
    """The weights as (out, channels, rest): what FOLDS_INPUT promises of a layer's weights."""
    return w.reshape(w.shape[0], channels, -1)


def fold(graph: Graph, needed: set[str], blobs: dict, pre: Preprocess, *, normalize: bool) -> dict:
    """Fold what can be folded into ``blobs`` (new arrays replace the entries it changes);
    returns {input name: statement template} for inputs that need an explicit step first."""
    prologue: dict[str, str] = {}
    for spec in pre.image_inputs():
        v = next(x for x in graph.inputs if x.name == spec.name)
        readers = _readers(v, needed)
        if normalize:
            _fold_normalization(graph, v, spec, readers, blobs, pre)
        if spec.swap:
            reasons = [r for r in (_why_not(n, v, graph, blobs, False) for n in readers) if r]
            if reasons or not readers:
                prologue[v.name] = "{x} = {x}.flip(1)"
                pre.notes.append(
                    f"--input-order {spec.channel_order.lower()}: the model reverses the channels "
                    f"of '{v.name}' first ({reasons[0] if reasons else 'no layer reads it'})"
                )
                spec.folded["channel_order"] = "an explicit x.flip(1) at the start of forward"
            else:
                for n in readers:
                    w = blobs[n.id][0]
                    c = v.shape[1]
                    blobs[n.id] = [
                        np.ascontiguousarray(_channel_view(n, w, c)[:, ::-1].reshape(w.shape)),
                        *blobs[n.id][1:],
                    ]
                names = ", ".join(n.id for n in readers)
                spec.folded["channel_order"] = f"folded into the weights of {names}"
                pre.notes.append(
                    f"--input-order {spec.channel_order.lower()}: the channel swap of '{v.name}' "
                    f"is folded into the weights of {names}"
                )
    return prologue


def _fold_normalization(graph, v: Value, spec: InputSpec, readers: list[Node], blobs: dict, pre) -> None:
    if spec.mean_image is not None:
        raise PreprocessError(
            f"--fold-normalization: the mean of '{v.name}' is an image, which varies over the "
            "picture and cannot become a bias; give --mean with one value per channel, or "
            "convert without folding",
            file=graph.path,
        )
    mean = spec.caffe_mean()
    scale = spec.scale
    if mean is None and scale == 1.0:
        missing = f" (the mean file {spec.mean_missing} is not here)" if spec.mean_missing else ""
        spec.sources["folded"] = f"--fold-normalization: nothing to fold (no mean{missing}, scale 1)"
        pre.notes.append(
            f"--fold-normalization: nothing folded into the layers reading '{v.name}': it has no "
            f"mean{missing} and scale 1"
        )
        return
    if not readers:
        raise PreprocessError(
            f"--fold-normalization: no layer reads '{v.name}'", file=graph.path
        )
    for n in readers:
        why = _why_not(n, v, graph, blobs, padding_matters=mean is not None)
        if not why and mean is not None and not n.op.bias_term:
            why = f"'{n.id}' has no bias term to take the mean"
        if why:
            raise PreprocessError(
                f"--fold-normalization: cannot fold the mean and scale of '{v.name}' exactly: {why}",
                file=graph.path,
                layer=n.name,
                layer_type=n.type,
                line=n.line,
            )
    c = v.shape[1]
    for n in readers:
        w = np.asarray(blobs[n.id][0], np.float64)
        w2 = w * scale
        rest = list(blobs[n.id][1:])
        if mean is not None:
            shift = (_channel_view(n, w2, c) * mean.astype(np.float64)[None, :, None]).sum(axis=(1, 2))
            rest[0] = (np.asarray(rest[0], np.float64) - shift.reshape(rest[0].shape)).astype(np.float32)
        blobs[n.id] = [w2.astype(np.float32), *rest]
    spec.folded["layers"] = [n.id for n in readers]
    spec.folded["scale"] = scale
    spec.folded["mean"] = spec.mean
    what = " and ".join(w for w, on in (("mean", spec.mean is not None), ("scale", scale != 1.0)) if on)
    spec.mean = None
    spec.scale = 1.0
    spec.sources["folded"] = (
        f"--fold-normalization: {what} folded into {', '.join(n.id for n in readers)}; "
        "the model takes pixels 0..255"
    )
