"""The library's entry points, used by the CLI and by Python callers."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .caffe.caffemodel import Weights, read_caffemodel
from .caffe.prototxt import NetText, Unread, read_prototxt
from .caffe.schema import active, extended
from .caffe.user_proto import read_proto
from .errors import CaffeError, PrototxtError
from .folder import load_converted
from .graph import Graph, Shape, WeightCheck, build_graph, check_weights
from .memory import CheckOptions
from .plugins import plugins_loaded
from .summary import summarize


def load_graph(
    prototxt: str | Path,
    *,
    phase: str = "test",
    stages: Iterable[str] = (),
    input_shapes: Mapping[str | None, Shape] | None = None,
    outputs: Sequence[str] | None = None,
    stop_unread: bool = True,
) -> Graph:
    """Read a net prototxt (V0, V1 or V2) and build its graph with every shape inferred
    (of the layers ``outputs`` need, when it names blobs to return). A field caffe2torch
    does not read on a layer the graph keeps stops it (``stop_unread``) or is noted
    (``inspect``): see :func:`check_unread`."""
    return build_checked(
        read_prototxt(prototxt), phase=phase, stages=stages, input_shapes=input_shapes,
        outputs=outputs, stop_unread=stop_unread,
    )


def load_weights(graph: Graph, weights: str | Path) -> tuple[Weights, WeightCheck]:
    """Read a weights file and match it against ``graph`` (raises on any mismatch)."""
    w = read_caffemodel(weights)
    return w, check_weights(graph, w)


# ----------------------------------------------------------- fields caffe2torch does not read
def build_checked(text: NetText, *, stop_unread: bool = True, **kwargs) -> Graph:
    """:func:`~caffe2torch.graph.build_graph`, then :func:`check_unread`. A layer that fails
    to build and sets such a field is reported by that field (it may be the reason)."""
    try:
        graph = build_graph(text, **kwargs)
    except CaffeError as e:
        hit = next(
            (u for u in text.unread if e.line is not None and u.layer_line == e.line and not u.unknown_type),
            None,
        )
        if hit is None or not stop_unread:
            raise
        raise unread_error(text, hit) from None
    check_unread(graph, stop=stop_unread)
    return graph


def check_unread(graph: Graph, *, stop: bool = True) -> None:
    """The rule for the fields the net sets that caffe2torch does not read (declared only in
    ``--proto``'s caffe.proto, or nowhere and skipped by ``--ignore-unknown-fields``): on a
    layer the graph keeps (it is converted: its parameters make its shapes, weights and code)
    it is an error naming the field, unless ``not stop`` (``inspect``: a note); on a layer left
    out (not needed by the outputs, excluded by the phase or stage, training-only) or outside
    the layers, a note: nothing reads it."""
    text = graph.text
    if text is None:
        return
    kept = {n.line for n in graph.nodes if n.line is not None}
    used = [u for u in text.unread if u.layer_line in kept and not u.unknown_type]
    if used and stop:
        raise unread_error(text, used[0])
    for u in used:
        graph.notes.append(
            f"layer '{u.layer}' (line {u.line}:{u.column}) sets {u.what}, which caffe2torch does "
            "not read: the shapes shown ignore it, and convert refuses the layer"
        )
    left = [u for u in text.unread if u not in used]
    if left:
        graph.notes.append(
            f"ignored {len(left)} field(s) caffe2torch does not read, on layers left out: "
            + "; ".join(_where(u) for u in left[:10])
            + (f"; and {len(left) - 10} more" if len(left) > 10 else "")
        )
    conflicts = active().conflicts
    if conflicts and active().user is not None:
        graph.notes.append(
            f"{active().user.path.name} declares {len(conflicts)} thing(s) caffe2torch declares "
            "otherwise; caffe2torch's are read (prototxt text names fields; numbers do not "
            "matter to it): " + "; ".join(conflicts[:10])
            + (f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else "")
        )


def _where(u: Unread) -> str:
    who = f"layer '{u.layer}' " if u.layer is not None else ""
    origin = "declared only in --proto" if u.declared else "declared nowhere"
    return f"{who}{u.what} (line {u.line}:{u.column}, {origin})"


def unread_error(text: NetText, u: Unread) -> PrototxtError:
    """The error for a field caffe2torch does not read on a layer it converts."""
    if u.declared:
        name = active().user.path.name if active().user is not None else "--proto"
        why = (
            f"{u.what} is declared only in {name} (--proto): caffe2torch does not read it, so "
            "the converted layer would ignore it; leave the layer out (--outputs, --phase, "
            "--stage) or remove the field"
        )
    else:
        why = (
            f"unknown {u.what}: --ignore-unknown-fields skips unknown fields only on layers "
            "left out, and this layer is converted"
        )
    type_ = next(
        (layer.type for layer, line in zip(text.net.layer, text.layer_lines) if line == u.layer_line),
        None,
    )
    return PrototxtError(
        why, file=text.path, line=u.line, column=u.column, layer=u.layer, layer_type=type_
    )


# ------------------------------------------------------------------------- the public API
# caffe2torch.convert / verify / inspect / load: what the CLI's commands call, with the same
# arguments as their flags. Each raises CaffeError (one line naming the file, the layer or the
# field) on bad input and never prints; torch is imported only by those that need it.
PathLike = str | Path
InputShapes = Mapping[str, Sequence[int]] | Sequence[int]


def input_shapes_of(shapes: InputShapes | None) -> dict | None:
    """``{"data": (1, 3, 224, 224)}``, or one shape for a net with one input."""
    if shapes is None:
        return None
    if isinstance(shapes, Mapping):
        return {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    return {None: tuple(int(d) for d in shapes)}


def check_options(verify: bool, reference: str, check_batch: int, max_memory: int | None):
    """The check's settings from the public API's arguments (None: no check)."""
    if not verify:
        return None
    if check_batch < 1:
        raise CaffeError("check_batch must be at least 1")
    return CheckOptions(
        batch=check_batch, max_memory=None if max_memory == 0 else max_memory, unlimited=max_memory == 0,
        reference=str(getattr(reference, "value", reference)),
    )


def inspect(
    prototxt: PathLike,
    weights: PathLike | None = None,
    *,
    input_shapes: InputShapes | None = None,
    phase: str = "test",
    stages: Sequence[str] = (),
    plugins: Sequence[PathLike] = (),
    proto: PathLike | None = None,
    ignore_unknown_fields: bool = False,
) -> dict:
    """Every layer of a net with its output shapes and parameter count, and the weights checked
    against it when given (``caffe2torch inspect --json``): a dict with ``name``, ``format``,
    ``inputs``, ``outputs``, ``layers`` (name, type, bottoms, tops, output and weight shapes,
    params, details), ``params`` and ``notes``. Fields caffe2torch does not read are notes
    here, not errors."""
    user = read_proto(Path(proto)) if proto is not None else None
    plugin_files = [Path(p) for p in plugins]
    with plugins_loaded(plugin_files), extended(
        user, ignore_unknown_fields=ignore_unknown_fields
    ):
        graph = load_graph(
            prototxt, phase=phase, stages=stages, input_shapes=input_shapes_of(input_shapes),
            stop_unread=False,
        )
        w = check = None
        if weights is not None:
            w, check = load_weights(graph, weights)
        return summarize(graph, w, check)


def load(folder: PathLike):
    """The model of a folder ``convert`` wrote: its ``model.py`` imported under a module name of
    its own (several folders load into one process), its weights loaded with
    ``weights_only=True``, in eval mode. Any problem with the folder's files raises
    :class:`~caffe2torch.errors.CaffeError` with one line naming the file."""
    return load_converted(folder)
