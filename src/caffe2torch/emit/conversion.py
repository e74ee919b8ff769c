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
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..caffe.caffemodel import read_caffemodel
from ..caffe.prototxt import read_prototxt
from ..errors import CaffeError, OutputError, WeightsError
from ..folder import (
    MANIFEST,
    MODEL_FILE,
    PREPROCESS_FILE,
    PREPROCESS_JSON,
    REPORT_FILE,
    WEIGHT_FILES,
    Destination,
    Digest,
    dump_json,
    load_converted,
    load_state,
    save_weights,
    sha256_file,
)
from ..graph import Graph, Shape, Value, build_graph, check_weights
from ..layers import fmt_shape
from ..preprocess.spec import Options as PreprocessOptions
from ..synth import synth_blobs
from .codegen import Generated, generate
from .names import check_class_name
from .names import class_name as make_class_name
from .names import safe_text

__all__ = [
    "Conversion", "OutputError", "convert", "prepare", "load_converted", "load_state",
    "dump_json", "MANIFEST", "MODEL_FILE", "REPORT_FILE", "PREPROCESS_JSON", "PREPROCESS_FILE",
    "WEIGHT_FILES",
]


@dataclass
class Conversion:
    """A converted net, in memory."""

    graph: Graph
    outputs: list[Value]
    generated: Generated
    sources: dict
    notes: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)  # "prototxt", "weights": the files read
    options: dict = field(default_factory=dict)  # phase and stages the graph was built with
    verification: object = None  # a verify.layerwise.Verification, once run
    verification_skipped: str = ""  # why it was not run
    extra_files: dict = field(default_factory=dict)  # relative path -> file (MMdnn's own files)
    scratch: object = None  # a TemporaryDirectory holding extra_files
    engine: dict = field(default_factory=lambda: {"name": "native"})
    preprocess: object = None  # a preprocess.Preprocess: written as preprocess.json/.py

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

    def manifest(self, weights_format: str = "pth", outdir: Path | None = None) -> dict:
        import torch

        sources = json.loads(json.dumps(self.sources, default=str))
        if outdir is not None:  # where the sources are, from the folder (for verify)
            for key, path in self.paths.items():
                if path is not None and isinstance(sources.get(key), dict):
                    try:
                        rel = os.path.relpath(Path(path).absolute(), Path(outdir).absolute())
                    except ValueError:  # another drive
                        continue
                    sources[key]["path"] = Path(rel).as_posix()
        return {
            "format": "caffe2torch-conversion/1",
            "engine": self.engine,
            "class_name": self.class_name,
            "model_file": MODEL_FILE,
            "weights_file": WEIGHT_FILES[weights_format],
            "inputs": [{"name": v.name, "shape": list(v.shape)} for v in self.graph.inputs],
            "outputs": [{"name": v.name, "shape": list(v.shape)} for v in self.outputs],
            "layer_map": self.generated.layer_map,
            "sources": sources,
            "options": self.options,
            "notes": self.notes + self.generated.notes,
            "preprocess": self.preprocess.to_dict() if self.preprocess is not None else None,
            "verification": self.verification_summary(),
            "versions": {
                "caffe2torch": __version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
            "trace": self.generated.trace,
        }

    def verification_summary(self) -> dict:
        if self.verification is None:
            return {"passed": None, "skipped": self.verification_skipped or "not run"}
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
        paths = [Path(p) for p in self.paths.values() if p is not None]
        if self.preprocess is not None:
            paths += self.preprocess.mean_files()
        return paths

    def write(
        self,
        outdir: str | Path | Destination,
        *,
        weights_format: str = "pth",
        overwrite: bool = False,
    ) -> Path:
        """Write the folder: into a temporary folder beside ``outdir``, put in place at the end
        (see :class:`~caffe2torch.folder.Destination`). ``outdir`` may be a Destination
        checked before the conversion started."""
        if weights_format not in WEIGHT_FILES:
            raise OutputError(f"unknown weights format '{weights_format}': pth or safetensors")
        dest = outdir if isinstance(outdir, Destination) else Destination.folder(
            outdir, inputs=self.input_paths(), overwrite=overwrite
        )

        def fill(tmp: Path) -> None:
            (tmp / MODEL_FILE).write_text(self.code, encoding="utf-8")
            save_weights(self.state_dict(), tmp / WEIGHT_FILES[weights_format], weights_format)
            text = dump_json(self.manifest(weights_format, dest.path))
            (tmp / MANIFEST).write_text(text, encoding="utf-8")
            from ..verify.report import render_report

            (tmp / REPORT_FILE).write_text(render_report(self, weights_format), encoding="utf-8")
            if self.preprocess is not None:
                self._write_preprocess(tmp)
            for rel, src in sorted(self.extra_files.items()):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)

        return dest.write_folder(fill)

    def _write_preprocess(self, folder: Path) -> None:
        from ..preprocess import MEAN_FILE, PREPROCESS_PY, save_mean

        (folder / PREPROCESS_JSON).write_text(dump_json(self.preprocess.to_dict()), encoding="utf-8")
        (folder / PREPROCESS_FILE).write_text(PREPROCESS_PY, encoding="utf-8")
        for spec in self.preprocess.image_inputs():  # derive() allows one mean image at most
            if spec.mean_image is not None:
                save_mean(spec.mean_image, folder / MEAN_FILE)


# ------------------------------------------------------------------------------- convert
def input_lines(pre) -> list[str]:
    """One line per image input: what the model expects (preprocess.json has the details),
    and what of it the prototxt does not say (assumed)."""
    lines = []
    for spec in pre.image_inputs():
        parts = [spec.channel_order if spec.channel_order != "gray" else "grey"]
        parts.append("pixels 0..255")
        if spec.mean_image is not None:
            parts.append("minus the mean image (mean.pth)")
        elif spec.mean is not None:
            parts.append("minus mean [" + ", ".join(f"{m:g}" for m in spec.mean) + "]")
        elif spec.mean_missing:
            parts.append(f"no mean (the prototxt's mean file {spec.mean_missing} is not here)")
        if spec.scale != 1.0:
            parts.append(f"times {spec.scale:g}")
        if spec.folded.get("layers"):
            what = []
            if spec.folded.get("mean") is not None:
                what.append("mean [" + ", ".join(f"{m:g}" for m in spec.folded["mean"]) + "]")
            if spec.folded.get("scale", 1.0) != 1.0:
                what.append(f"scale {spec.folded['scale']:g}")
            parts.append(f"{' and '.join(what)} folded into {', '.join(spec.folded['layers'])}")
        if spec.swap:
            how = spec.folded.get("channel_order", "done by the model")
            parts.append(f"the Caffe net reads {spec.caffe_order}: the swap is {how}")
        line = f"Input {safe_text(spec.name)}: {', '.join(parts)}"
        assumed = spec.assumption_text()
        line += f" ({assumed}; preprocess.py makes it)" if assumed else " (preprocess.py makes it)"
        lines.append(line)
    return lines


def prepare(
    prototxt: Path,
    weights: str | Path | None,
    *,
    random_weights: bool,
    seed: int,
    input_shapes: Mapping[str | None, Shape] | None,
    outputs: Sequence[str] | None,
    phase: str,
    stages: list[str],
    load_blobs: bool = True,
    preprocess: PreprocessOptions | None = None,
    before_weights: Callable[[Graph], None] | None = None,
):
    """What every engine does first: read the net, build the graph, choose the outputs, read
    (or make) the weights, describe the inputs (preprocess.json). Returns (graph, outputs,
    sources, notes, blobs by node id, the :class:`~caffe2torch.preprocess.Preprocess`)."""
    from ..preprocess import derive

    text = read_prototxt(prototxt)
    graph = build_graph(
        text, phase=phase, stages=stages, input_shapes=input_shapes, outputs=outputs
    )
    outs = graph.outputs
    needed = graph.layers
    notes = list(graph.notes)
    if before_weights is not None:  # e.g. the memory estimate of the check: before any reading
        before_weights(graph)

    sources: dict = {"prototxt": {"file": prototxt.name, "sha256": sha256_file(prototxt)}}
    learnable = any(n.weight_shapes for n in needed)
    if weights is not None and random_weights:
        raise CaffeError("give either a weights file or --random-weights, not both", file=weights)
    blobs: dict = {}
    if weights is not None:
        weights = Path(weights)
        w = read_caffemodel(weights)
        check = check_weights(graph, w)
        notes.extend(check.notes)
        if load_blobs:
            # double_data beyond float32 becomes infinity, as Caffe's Blob::FromProto makes it
            with np.errstate(over="ignore"):
                for node in graph.nodes:
                    if node.id in check.matched:
                        blobs[node.id] = [
                            np.asarray(b.data, np.float32).reshape(s)
                            for b, s in zip(check.matched[node.id], node.weight_shapes)
                        ]
        sources["weights"] = {
            "file": weights.name,
            "sha256": Digest(weights, w.raw),
            "format": w.format,
        }
    elif random_weights:
        if load_blobs:
            blobs = synth_blobs(graph, seed)
        sources["weights"] = {"random": True, "seed": seed}
    elif learnable:
        raise WeightsError(
            "no weights given: pass the .caffemodel, or --random-weights to convert the "
            "architecture with seeded random weights",
            file=prototxt,
        )
    else:
        sources["weights"] = None
    pre = derive(graph, outs, preprocess or PreprocessOptions())
    notes.extend(pre.notes)
    return graph, outs, sources, notes, blobs, pre


def convert(
    prototxt: str | Path,
    weights: str | Path | None = None,
    *,
    random_weights: bool = False,
    seed: int = 0,
    input_shapes: Mapping[str | None, Shape] | None = None,
    outputs: Sequence[str] | None = None,
    class_name: str | None = None,
    phase: str = "test",
    stages: Iterable[str] = (),
    preprocess: PreprocessOptions | None = None,
    before_weights: Callable[[Graph], None] | None = None,
) -> Conversion:
    """Convert ``prototxt`` (+ ``weights``, or seeded random weights) in memory.
    ``preprocess``: the input flags (mean, scale, channel order, folding). ``before_weights``
    is called with the graph before the weights are read (the memory estimate of the check)."""
    from ..preprocess import fold

    prototxt = Path(prototxt)
    stages = list(stages)
    opts = preprocess or PreprocessOptions()
    graph, outs, sources, notes, blobs, pre = prepare(
        prototxt,
        weights,
        random_weights=random_weights,
        seed=seed,
        input_shapes=input_shapes,
        outputs=outputs,
        phase=phase,
        stages=stages,
        preprocess=opts,
        before_weights=before_weights,
    )
    cls = class_name or make_class_name(graph.name)
    if class_name is not None:
        check_class_name(class_name)
    needed = {n.id for n in graph.layers}
    notes_before = len(pre.notes)
    prologue = fold(graph, needed, blobs, pre, normalize=opts.fold_normalization)
    notes.extend(pre.notes[notes_before:])
    generated = generate(
        graph,
        outs,
        blobs,
        class_name=cls,
        header=_header(graph, outs, sources, cls, pre),
        prologue=prologue,
    )
    paths = {"prototxt": prototxt, "weights": Path(weights) if weights is not None else None}
    options = {"phase": phase, "stages": stages, **opts.to_dict()}
    conversion = Conversion(graph, outs, generated, sources, notes, paths, options)
    conversion.preprocess = pre
    return conversion


def _header(graph: Graph, outputs: list[Value], sources: dict, cls: str, pre=None) -> list[str]:
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
    ins = ", ".join(f"{safe_text(v.name)} {fmt_shape(v.shape)}" for v in graph.inputs)
    outs = ", ".join(f"{safe_text(v.name)} {fmt_shape(v.shape)}" for v in outputs)
    lines += [
        f"Inputs: {ins} (the blobs the Caffe net reads, after its data layer)",
        *(input_lines(pre) if pre is not None else []),
        f"Outputs: {outs}",
        "",
        f"    model = {cls}()",
        '    model.load_state_dict(torch.load("model.pth", weights_only=True))'
        "  # or safetensors.torch.load_file",
        "    model.eval()",
    ]
    return lines
