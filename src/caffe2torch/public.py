"""``caffe2torch.convert``: what ``caffe2torch convert`` does, with the same arguments as its
flags. Imported when first used (``import caffe2torch`` stays light; this imports torch).
Raises :class:`~caffe2torch.errors.CaffeError` (one line naming the file, the layer or the
field) on bad input and never prints; a failed check does not raise, the result says so.
(``caffe2torch.verify`` is :func:`caffe2torch.verify.run.verify`.)"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .api import InputShapes, PathLike, check_options, input_shapes_of
from .caffe.schema import extended
from .caffe.user_proto import read_proto
from .emit import Conversion, ConvertOptions, convert as convert_net
from .emit.names import check_class_name
from .errors import CaffeError
from .folder import Destination
from .hub import CardOptions
from .mmdnn.engine import convert_mmdnn
from .plugins import plugins_loaded
from .preprocess import Options as PreprocessOptions
from .progress import stage
from .verify.run import with_reference

__all__ = ["convert"]


def convert(
    prototxt: PathLike,
    weights: PathLike | None = None,
    output: PathLike | None = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
    input_shapes: InputShapes | None = None,
    outputs: Sequence[str] | None = None,
    class_name: str | None = None,
    phase: str = "test",
    stages: Sequence[str] = (),
    mean: Sequence[float] | float | None = None,
    mean_file: PathLike | None = None,
    scale: float | None = None,
    input_order: str | None = None,
    caffe_order: str | None = None,
    fold_normalization: bool = False,
    verify: bool = True,
    reference: str = "auto",
    check_batch: int = 1,
    max_memory: int | None = None,
    engine: str = "native",
    keep_intermediate: bool = False,
    mmdnn_python: PathLike | None = None,
    plugins: Sequence[PathLike] = (),
    proto: PathLike | None = None,
    ignore_unknown_fields: bool = False,
    weights_format: str = "pth",
    overwrite: bool = False,
    record_paths: bool = False,
    labels: PathLike | None = None,
    license: str | None = None,
) -> Conversion:
    """Convert a Caffe net to PyTorch, check it, and write the folder (``caffe2torch convert``).

    ``prototxt``/``weights``: the deploy net and its ``.caffemodel`` (or ``.caffemodel.h5``);
    ``random_weights=True`` (with ``seed``) instead of weights converts the architecture.
    ``input_shapes``: ``{"data": (1, 3, 224, 224)}`` (or one shape) where the prototxt has none
    or to change them; ``outputs``: blobs to return (the layers they do not need are left out);
    ``phase``/``stages``: Caffe's include/exclude rules. ``mean``, ``mean_file``, ``scale``,
    ``input_order`` ("bgr"/"rgb"), ``caffe_order``, ``fold_normalization``: how images become
    the input, where the prototxt does not say (``preprocess.json`` records each value and
    where it came from).

    ``verify``: compare every Caffe value with the reference (``reference``: "auto", "caffe" or
    "opencv"; at batch ``check_batch``; ``max_memory`` bytes at most, 0: no limit). A failed
    check does not raise: the result says so (``result.verified_failed``,
    ``result.verification``). ``engine="mmdnn"``: MMdnn's flow, fixed (``keep_intermediate``,
    ``mmdnn_python``). ``plugins``, ``proto``, ``ignore_unknown_fields``: as the CLI's flags.

    ``output``: the folder to write (nothing is written when None); it must be new or empty, or
    a folder caffe2torch wrote with ``overwrite=True``. ``weights_format``: "pth" or
    "safetensors"; ``record_paths``: record where the sources are (relative to the folder);
    ``labels`` (one per line, ``synset_words.txt``) and ``license`` go into ``config.json`` and
    the model card ``README.md``.

    Returns the :class:`~caffe2torch.emit.Conversion` (``.folder``: where it was written).
    Raises :class:`~caffe2torch.errors.CaffeError` on bad input, before writing anything."""
    prototxt = Path(prototxt)
    weights = Path(weights) if weights is not None else None
    mean_file = Path(mean_file) if mean_file is not None else None
    proto = Path(proto) if proto is not None else None
    plugin_files = [Path(p) for p in plugins]
    card = CardOptions(labels=Path(labels) if labels is not None else None, license=license)
    card.check()
    if engine not in ("native", "mmdnn"):
        raise CaffeError(f"unknown engine '{engine}': native or mmdnn")
    mmdnn = engine == "mmdnn"
    if not mmdnn and (keep_intermediate or mmdnn_python):
        raise CaffeError("keep_intermediate and mmdnn_python need engine='mmdnn'")
    if mmdnn and (outputs or class_name):
        raise CaffeError("MMdnn's code has its own outputs and class (KitModel)")
    if mmdnn and (plugin_files or proto or ignore_unknown_fields):
        raise CaffeError(
            "MMdnn reads the net with its own caffe.proto and converters; use engine='native' "
            "for plugins, proto and ignore_unknown_fields"
        )
    if class_name is not None:
        check_class_name(class_name)
    if isinstance(mean, (int, float)):
        mean = [float(mean)]
    options = ConvertOptions(
        random_weights=random_weights,
        seed=seed,
        input_shapes=input_shapes_of(input_shapes),
        outputs=list(outputs) if outputs else None,
        class_name=class_name,
        phase=phase,
        stages=tuple(stages),
        preprocess=PreprocessOptions(
            mean=list(mean) if mean is not None else None,
            mean_file=mean_file,
            scale=scale,
            input_order=input_order,
            caffe_order=caffe_order,
            fold_normalization=fold_normalization,
        ),
        check=check_options(verify, reference, check_batch, max_memory),
        unchecked="--no-verify",
    )
    if options.check is not None and options.check.reference != "auto":
        with_reference(options.check)  # the engine asked for is not there: raise now
    dest = None
    if output is not None:  # where the folder goes is checked first: nothing is read otherwise
        dest = Destination.folder(
            Path(output),
            inputs=[prototxt, weights, mean_file, proto, card.labels, *plugin_files],
            overwrite=overwrite,
        )
    user = read_proto(proto) if proto is not None else None
    with plugins_loaded(plugin_files), extended(
        user, ignore_unknown_fields=ignore_unknown_fields
    ):
        stage("reading")
        if mmdnn:
            conversion = convert_mmdnn(
                prototxt, weights, options, keep_intermediate=keep_intermediate, python=mmdnn_python
            )
        else:
            conversion = convert_net(prototxt, weights, options)
        if dest is not None:
            stage("writing")
            conversion.folder = conversion.write(
                dest, weights_format=weights_format, record_paths=record_paths, card=card
            )
    return conversion
