"""Convert a Caffe net to a PyTorch model folder: ``model.py``, weights, ``conversion.json``.

:func:`convert` reads the net and its weights (or makes seeded random ones), keeps the layers
the chosen outputs need, and generates the code and state_dict. Nothing is written until
:meth:`Conversion.write`, which writes into a temporary folder beside the destination and
renames it at the end, so a failed run leaves no half-written output. The same inputs give
byte-identical files: no timestamps, no absolute paths, fixed ordering.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import types
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..api import build_checked
from ..caffe.caffemodel import read_caffemodel
from ..caffe.prototxt import read_prototxt
from ..caffe.schema import active
from ..errors import CaffeError, OutputError, WeightsError, safe_text
from ..folder import (
    MANIFEST,
    Manifest,
    MODEL_FILE,
    PREPROCESS_FILE,
    PREPROCESS_JSON,
    REPORT_FILE,
    REPORT_HTML,
    WEIGHT_FILES,
    Destination,
    Digest,
    dump_json,
    load_converted,
    load_state,
    save_weights,
    sha256_file,
)
from ..graph import Graph, Shape, Value, check_weights
from ..hub import CardOptions, hub_files
from ..layers import fmt_shape
from ..memory import CheckOptions
from ..plugins import Plugin, check_model_imports, loaded
from ..preprocess import MEAN_FILE, PREPROCESS_PY, Preprocess, derive, fold, input_lines, save_mean
from ..preprocess.spec import Options as PreprocessOptions
from ..synth import synth_blobs
from ..verify.layerwise import Verification
from ..verify.opencv import ReferenceError
from ..verify.report import render_report
from ..verify.report_html import render_report_html
from ..verify.run import verify_conversion
from .codegen import Generated, generate
from .names import check_class_name
from .names import class_name as make_class_name

__all__ = [
    "Conversion", "ConvertOptions", "Prepared", "OutputError", "convert", "prepare",
    "check_conversion", "options_of",
    "load_converted", "load_state",
    "dump_json", "MANIFEST", "MODEL_FILE", "REPORT_FILE", "PREPROCESS_JSON", "PREPROCESS_FILE",
    "WEIGHT_FILES",
]


@dataclass
class Prepared:
    """What every engine does first (:func:`prepare`): the graph, its outputs, the weights."""

    graph: Graph
    outputs: list[Value]
    sources: dict  # "prototxt", "weights": file names and sha256, or the seed
    notes: list[str]
    blobs: dict[str, list[np.ndarray]]  # Caffe blobs by node id (empty: not loaded)
    preprocess: Preprocess


@dataclass
class Conversion:
    """A converted net, in memory, complete: made by :func:`convert` (or the MMdnn engine),
    checked there unless the caller said not to (``verification_skipped`` says why)."""

    graph: Graph
    outputs: list[Value]
    generated: Generated
    sources: dict
    preprocess: Preprocess  # written as preprocess.json and preprocess.py
    notes: list[str] = field(default_factory=list)
    paths: dict[str, Path | None] = field(default_factory=dict)  # "prototxt", "weights": the files read
    options: dict = field(default_factory=dict)  # phase and stages the graph was built with
    verification: Verification | None = None  # the check's result, when it ran
    verification_skipped: str = "not run"  # why it did not
    extra_files: dict[str, Path] = field(default_factory=dict)  # relative path -> file (MMdnn's)
    scratch: tempfile.TemporaryDirectory | None = None  # the folder holding extra_files
    engine: dict = field(default_factory=lambda: {"name": "native"})
    # Seeded random Caffe blobs by node id, before input folding: the reference runs these
    # (written once as a caffemodel) instead of making them again.
    random_blobs: dict[str, list[np.ndarray]] | None = None
    plugins: list[Plugin] = field(default_factory=list)  # the --plugin files it was made with
    folder: Path | None = None  # where caffe2torch.convert wrote it (None: not written)

    @property
    def class_name(self) -> str:
        return self.generated.class_name

    @property
    def code(self) -> str:
        return self.generated.code

    def state_dict(self) -> dict:
        """The weights as torch tensors (sharing memory with the arrays where possible)."""
        import torch

        out = {}
        seen: set[int] = set()
        with warnings.catch_warnings():
            # Blobs read from a caffemodel are read-only views of the file; nothing writes them.
            warnings.simplefilter("ignore", UserWarning)
            for key, arr in self.generated.state.items():
                # Every entry gets memory of its own (safetensors refuses shared tensors).
                arr = arr.copy() if id(arr) in seen else np.ascontiguousarray(arr)
                seen.add(id(arr))
                out[key] = torch.from_numpy(arr)
        return out

    def manifest(
        self, weights_format: str = "pth", outdir: Path | None = None, *, record_paths: bool = False
    ) -> Manifest:
        """``conversion.json``. Where the sources are (relative to ``outdir``) is recorded only
        when asked (``record_paths``, ``convert --record-paths``): a shared folder should not
        say where its maker keeps files; ``verify`` then takes ``--net`` and ``--weights``."""
        import torch

        sources = json.loads(json.dumps(self.sources, default=str))
        if outdir is not None and record_paths:  # where the sources are, from the folder
            for key, path in self.paths.items():
                if path is not None and isinstance(sources.get(key), dict):
                    try:
                        rel = os.path.relpath(Path(path).absolute(), Path(outdir).absolute())
                    except ValueError:  # another drive
                        continue
                    sources[key]["path"] = Path(rel).as_posix()
        return Manifest(
            engine=self.engine,
            class_name=self.class_name,
            weights_file=WEIGHT_FILES[weights_format],
            inputs=[{"name": v.name, "shape": list(v.shape)} for v in self.graph.inputs],
            outputs=[{"name": v.name, "shape": list(v.shape)} for v in self.outputs],
            layer_map=self.generated.layer_map,
            sources=sources,
            plugins=[p.record(outdir if record_paths else None) for p in self.plugins],
            options=self.options,
            notes=self.notes + self.generated.notes,
            preprocess=self.preprocess.to_dict(),
            verification=self.verification_summary(),
            versions={
                "caffe2torch": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            trace=self.generated.trace,
        )

    def verification_summary(self) -> dict:
        if self.verification is None:
            return {"passed": None, "skipped": self.verification_skipped}
        return self.verification.to_dict(rows=False)

    @property
    def verified_failed(self) -> bool:
        return self.verification is not None and self.verification.status == "failed"

    def module(self):
        """The model as a live ``nn.Module`` in eval mode, weights loaded (for tests and
        verification; users load the written folder with :func:`load_converted`)."""
        mod = types.ModuleType(f"caffe2torch_model_{self.class_name}")
        exec(compile(self.code, f"<{MODEL_FILE} of {self.class_name}>", "exec"), mod.__dict__)
        model = getattr(mod, self.class_name)()
        model.load_state_dict(self.state_dict())
        return model.eval()

    def input_paths(self) -> list[Path]:
        """The files this conversion read (an output must never replace them)."""
        return [Path(p) for p in self.paths.values() if p is not None] + self.preprocess.mean_files()

    def write(
        self,
        outdir: str | Path | Destination,
        *,
        weights_format: str = "pth",
        overwrite: bool = False,
        record_paths: bool = False,
        card: CardOptions | None = None,
    ) -> Path:
        """Write the folder: into a temporary folder beside ``outdir``, put in place at the end
        (see :class:`~caffe2torch.folder.Destination`). ``outdir`` may be a Destination
        checked before the conversion started. ``record_paths``: say in conversion.json where
        the sources are; ``card``: the labels and licence of the hub files
        (:mod:`caffe2torch.hub`)."""
        if weights_format not in WEIGHT_FILES:
            raise OutputError(f"unknown weights format '{weights_format}': pth or safetensors")
        card = card or CardOptions()
        card.check()
        dest = outdir if isinstance(outdir, Destination) else Destination.folder(
            outdir, inputs=[*self.input_paths(), *([card.labels] if card.labels else [])],
            overwrite=overwrite,
        )
        manifest = self.manifest(weights_format, dest.path, record_paths=record_paths).to_dict()
        hub = hub_files(self, manifest, card)  # before any file: a bad --labels writes nothing

        def fill(tmp: Path) -> None:
            (tmp / MODEL_FILE).write_text(self.code, encoding="utf-8")
            save_weights(self.state_dict(), tmp / WEIGHT_FILES[weights_format], weights_format)
            (tmp / MANIFEST).write_text(dump_json(manifest), encoding="utf-8")
            for name, text in hub.items():
                (tmp / name).write_text(text, encoding="utf-8")
            (tmp / REPORT_FILE).write_text(render_report(self, weights_format), encoding="utf-8")
            (tmp / REPORT_HTML).write_text(render_report_html(self), encoding="utf-8")
            self._write_preprocess(tmp)
            for rel, src in sorted(self.extra_files.items()):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)

        return dest.write_folder(fill)

    def _write_preprocess(self, folder: Path) -> None:
        (folder / PREPROCESS_JSON).write_text(dump_json(self.preprocess.to_dict()), encoding="utf-8")
        (folder / PREPROCESS_FILE).write_text(PREPROCESS_PY, encoding="utf-8")
        for spec in self.preprocess.image_inputs():  # derive() allows one mean image at most
            if spec.mean_image is not None:
                save_mean(spec.mean_image, folder / MEAN_FILE)


# ------------------------------------------------------------------------------- convert
@dataclass(frozen=True)
class ConvertOptions:
    """How to convert: one value from the CLI (or a caller) through either engine.

    ``check``: run the layer-by-layer check with these settings (its memory estimate comes
    first, before any weights are read); None: do not, and ``unchecked`` says why."""

    random_weights: bool = False
    seed: int = 0
    input_shapes: Mapping[str | None, Shape] | None = None
    outputs: Sequence[str] | None = None
    class_name: str | None = None
    phase: str = "test"
    stages: tuple[str, ...] = ()
    preprocess: PreprocessOptions = field(default_factory=PreprocessOptions)
    check: CheckOptions | None = None
    unchecked: str = "not run"

    def record(self) -> dict:
        """The options conversion.json keeps (what verify rebuilds the graph with)."""
        return {"phase": self.phase, "stages": list(self.stages), **self.preprocess.to_dict()}


def options_of(options: ConvertOptions | None, **overrides) -> ConvertOptions:
    """``options`` with keyword overrides (the keyword form of :func:`convert`)."""
    if "stages" in overrides:
        overrides["stages"] = tuple(overrides["stages"])
    if overrides.get("preprocess", True) is None:
        overrides["preprocess"] = PreprocessOptions()
    return replace(options or ConvertOptions(), **overrides)


def prepare(
    prototxt: Path,
    weights: str | Path | None,
    options: ConvertOptions,
    *,
    load_blobs: bool = True,
    before_weights: Callable[[Graph], None] | None = None,
) -> Prepared:
    """What every engine does first: read the net, build the graph, choose the outputs, read
    (or make) the weights, describe the inputs (preprocess.json). ``before_weights`` sees the
    graph before any weights are read (the check's memory estimate)."""
    graph = build_checked(
        read_prototxt(prototxt),
        phase=options.phase,
        stages=list(options.stages),
        input_shapes=options.input_shapes,
        outputs=options.outputs,
    )
    notes = list(graph.notes)
    if before_weights is not None:
        before_weights(graph)
    sources: dict = {"prototxt": {"file": prototxt.name, "sha256": sha256_file(prototxt)}}
    if active().user is not None:  # --proto: the user's caffe.proto, read as data
        sources["proto"] = active().user.record()
    if weights is not None and options.random_weights:
        raise CaffeError("give either a weights file or --random-weights, not both", file=weights)
    blobs: dict = {}
    if weights is not None:
        sources["weights"], blobs = _read_weights(graph, Path(weights), notes, load_blobs)
    elif options.random_weights:
        if load_blobs:
            blobs = synth_blobs(graph, options.seed)
        sources["weights"] = {"random": True, "seed": options.seed}
    elif any(n.weight_shapes for n in graph.layers):
        raise WeightsError(
            "no weights given: pass the .caffemodel, or --random-weights to convert the "
            "architecture with seeded random weights",
            file=prototxt,
        )
    else:
        sources["weights"] = None
    pre = derive(graph, graph.outputs, options.preprocess)
    notes.extend(pre.notes)
    return Prepared(graph, graph.outputs, sources, notes, blobs, pre)


def _read_weights(graph: Graph, weights: Path, notes: list[str], load_blobs: bool):
    """The weights file's source record and its blobs by node id, matched to the graph."""
    w = read_caffemodel(weights)
    check = check_weights(graph, w)
    notes.extend(check.notes)
    blobs: dict = {}
    if load_blobs:
        # double_data beyond float32 becomes infinity, as Caffe's Blob::FromProto makes it
        with np.errstate(over="ignore"):
            for node in graph.nodes:
                if node.id in check.matched:
                    blobs[node.id] = [
                        np.asarray(b.data, np.float32).reshape(s)
                        for b, s in zip(check.matched[node.id], node.weight_shapes)
                    ]
    return {"file": weights.name, "sha256": Digest(weights, w.raw), "format": w.format}, blobs


def convert(
    prototxt: str | Path,
    weights: str | Path | None = None,
    options: ConvertOptions | None = None,
    **overrides,
) -> Conversion:
    """Convert ``prototxt`` (+ ``weights``, or seeded random weights) in memory, checked when
    ``options.check`` is given. Keyword arguments override fields of ``options``
    (``convert(net, random_weights=True, outputs=["fc7"])``)."""
    prototxt = Path(prototxt)
    opts = options_of(options, **overrides)
    if opts.class_name is not None:
        check_class_name(opts.class_name)
    check = opts.check
    p = prepare(prototxt, weights, opts, before_weights=check.guard if check is not None else None)
    pre = p.preprocess
    cls = opts.class_name or make_class_name(p.graph.name)
    notes_before = len(pre.notes)
    needed = {n.id for n in p.graph.layers}
    random_blobs = dict(p.blobs) if opts.random_weights else None  # (fold replaces entries)
    prologue = fold(p.graph, needed, p.blobs, pre, normalize=opts.preprocess.fold_normalization)
    generated = generate(
        p.graph,
        p.outputs,
        p.blobs,
        class_name=cls,
        header=_header(p.graph, p.outputs, p.sources, cls, pre),
        prologue=prologue,
    )
    if loaded():
        check_model_imports(generated.code)
    user = active().user
    conversion = Conversion(
        p.graph,
        p.outputs,
        generated,
        p.sources,
        pre,
        notes=p.notes + pre.notes[notes_before:],
        paths={
            "prototxt": prototxt,
            "weights": Path(weights) if weights is not None else None,
            **({"proto": user.path} if user is not None else {}),
        },
        options=opts.record() | ({"ignore_unknown_fields": True} if active().ignore_unknown_fields else {}),
        random_blobs=random_blobs,
        plugins=loaded(),
    )
    return check_conversion(conversion, opts)


def check_conversion(conversion: Conversion, options: ConvertOptions) -> Conversion:
    """Run the check ``options`` asks for (either engine); a reference that is missing or
    cannot run the net is recorded as the reason it was skipped."""
    if options.check is None:
        conversion.verification_skipped = options.unchecked
        return conversion
    try:
        conversion.verification = verify_conversion(conversion, check=options.check)
    except ReferenceError as e:
        conversion.verification_skipped = str(e)
    return conversion


def _header(graph: Graph, outputs: list[Value], sources: dict, cls: str, pre: Preprocess) -> list[str]:
    src = sources["prototxt"]
    lines = [
        f"{safe_text(graph.name)}, converted from Caffe by caffe2torch {__version__}.",
        f"Net: {safe_text(src['file'])} (sha256 {src['sha256'][:16]})",
    ]
    w = sources.get("weights")
    if w and w.get("random"):
        lines.append(f"Weights: seeded random (seed {w['seed']}), for testing the architecture")
    elif w:
        lines.append(
            f"Weights: {safe_text(w['file'])} ({w['format']}; its sha256 is in conversion.json)"
        )
    for plugin in loaded():
        lines.append(
            f"Plugin: {safe_text(plugin.path.name)} (sha256 {plugin.sha256[:16]}) converts "
            + ", ".join(safe_text(t) for t in plugin.types + plugin.python)
        )
    ins = ", ".join(f"{safe_text(v.name)} {fmt_shape(v.shape)}" for v in graph.inputs)
    outs = ", ".join(f"{safe_text(v.name)} {fmt_shape(v.shape)}" for v in outputs)
    lines += [
        f"Inputs: {ins} (the blobs the Caffe net reads, after its data layer)",
        *input_lines(pre),
        f"Outputs: {outs}",
        "",
        f"    model = {cls}()",
        '    model.load_state_dict(torch.load("model.pth", weights_only=True))'
        "  # or safetensors.torch.load_file",
        "    model.eval()",
    ]
    return lines
