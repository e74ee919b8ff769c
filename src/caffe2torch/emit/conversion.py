"""Convert a Caffe net to a PyTorch model folder: ``model.py``, weights, ``conversion.json``.

:func:`convert` reads the net and its weights (or makes seeded random ones), keeps the layers
the chosen outputs need, and generates the code and state_dict. Nothing is written until
:meth:`Conversion.write`, which writes into a temporary folder beside the destination and
renames it at the end, so a failed run leaves no half-written output. The same inputs give
byte-identical files: no timestamps, no absolute paths, fixed ordering.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .. import __version__
from ..caffe.caffemodel import read_caffemodel
from ..caffe.prototxt import NetText, read_prototxt
from ..errors import CaffeError, PrototxtError, UnsupportedLayerError, WeightsError, reading
from ..graph import PHASES, Graph, Shape, Value, build_graph, check_weights, layer_included
from ..layers import fmt_shape, layer_class
from ..preprocess.spec import Options as PreprocessOptions
from ..synth import synth_blobs
from .codegen import Generated, generate, needed_nodes
from .names import class_name as make_class_name
from .names import is_identifier, safe_text

MANIFEST = "conversion.json"
MODEL_FILE = "model.py"
REPORT_FILE = "report.md"
PREPROCESS_JSON = "preprocess.json"
PREPROCESS_FILE = "preprocess.py"
WEIGHT_FILES = {"pth": "model.pth", "safetensors": "model.safetensors"}


class OutputError(CaffeError):
    """The output folder cannot be written as asked."""


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

    def write(
        self, outdir: str | Path, *, weights_format: str = "pth", overwrite: bool = False
    ) -> Path:
        """Write the folder atomically: a temporary folder beside ``outdir``, renamed at the end."""
        if weights_format not in WEIGHT_FILES:
            raise OutputError(f"unknown weights format '{weights_format}': pth or safetensors")
        outdir = Path(outdir)
        if outdir.exists() and not outdir.is_dir():
            raise OutputError("exists and is not a folder", file=outdir)
        if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
            raise OutputError(
                "the folder exists and is not empty: pass --overwrite to replace it", file=outdir
            )
        parent = outdir.absolute().parent
        if not parent.is_dir():
            raise OutputError("the folder to write into does not exist", file=parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            (tmp / MODEL_FILE).write_text(self.code, encoding="utf-8")
            _save_weights(self.state_dict(), tmp / WEIGHT_FILES[weights_format], weights_format)
            text = dump_json(self.manifest(weights_format, outdir))
            (tmp / MANIFEST).write_text(text, encoding="utf-8")
            from ..verify.report import render_report

            (tmp / REPORT_FILE).write_text(render_report(self, weights_format), encoding="utf-8")
            if self.preprocess is not None:
                self._write_preprocess(tmp)
            for rel, src in sorted(self.extra_files.items()):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)
            old = None
            if outdir.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".old", dir=parent))
                os.rename(outdir, old / "x")
            os.rename(tmp, outdir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return outdir

    def _write_preprocess(self, folder: Path) -> None:
        from ..preprocess import MEAN_FILE, PREPROCESS_PY, save_mean

        (folder / PREPROCESS_JSON).write_text(dump_json(self.preprocess.to_dict()), encoding="utf-8")
        (folder / PREPROCESS_FILE).write_text(PREPROCESS_PY, encoding="utf-8")
        for spec in self.preprocess.image_inputs():  # derive() allows one mean image at most
            if spec.mean_image is not None:
                save_mean(spec.mean_image, folder / MEAN_FILE)


def dump_json(data) -> str:
    """Indented JSON, with lists of plain values (shapes) and records in a list (an input, a
    step of the trace) each on one line."""

    def flat(x) -> bool:
        return isinstance(x, list) and all(
            not isinstance(e, (dict, list)) or (isinstance(e, list) and flat(e)) for e in x
        )

    def record(x) -> bool:
        return isinstance(x, dict) and all(
            not isinstance(v, (dict, list)) or flat(v) for v in x.values()
        )

    def enc(x, indent: str, in_list: bool = False) -> str:
        inner = indent + "  "
        if isinstance(x, dict) and x and not (in_list and record(x)):
            items = [f"{inner}{json.dumps(k)}: {enc(v, inner)}" for k, v in x.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        if isinstance(x, list) and x and not flat(x):
            items = [inner + enc(e, inner, in_list=True) for e in x]
            return "[\n" + ",\n".join(items) + "\n" + indent + "]"
        return json.dumps(x, separators=(", ", ": "))

    return enc(data, "") + "\n"


def _save_weights(state: dict, path: Path, weights_format: str) -> None:
    if weights_format == "safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise OutputError(
                "--format safetensors needs the safetensors package: pip install safetensors"
            ) from None
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return
    import torch

    torch.save(state, path)


def load_state(path: Path) -> dict:
    """A converted folder's weights (``model.pth`` with ``weights_only``, or safetensors)."""
    import torch

    with reading(path, WeightsError, "the model's weights"):
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, weights_only=True)
        except (RuntimeError, ValueError, EOFError, OSError) as e:
            raise WeightsError(f"cannot be loaded: {str(e).splitlines()[0]}", file=path) from None
    if not isinstance(state, dict):
        raise WeightsError("does not hold a state_dict", file=path)
    return state


def load_converted(outdir: str | Path):
    """Import ``model.py`` of a converted folder, build the model and load its weights
    (``weights_only``); returns it in eval mode."""
    import importlib.util


    outdir = Path(outdir)
    manifest_path = outdir / MANIFEST
    with reading(manifest_path, OutputError, "a converted model folder"):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    name = f"caffe2torch_model_{abs(hash(str(outdir.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, outdir / manifest["model_file"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    model = getattr(module, manifest["class_name"])()
    state = load_state(outdir / manifest["weights_file"])
    model.load_state_dict(state)
    return model.eval()


# ------------------------------------------------------------------------------- convert
def input_lines(pre) -> list[str]:
    """One line per image input: what the model expects (preprocess.json has the details)."""
    lines = []
    for spec in pre.image_inputs():
        parts = [spec.channel_order if spec.channel_order != "gray" else "grey"]
        parts.append("pixels 0..255")
        if spec.mean_image is not None:
            parts.append("minus the mean image (mean.pth)")
        elif spec.mean is not None:
            parts.append("minus mean [" + ", ".join(f"{m:g}" for m in spec.mean) + "]")
        if spec.scale != 1.0:
            parts.append(f"times {spec.scale:g}")
        if spec.folded.get("layers"):
            parts.append(f"mean and scale folded into {', '.join(spec.folded['layers'])}")
        if spec.swap:
            how = spec.folded.get("channel_order", "done by the model")
            parts.append(f"the Caffe net reads {spec.caffe_order}: the swap is {how}")
        lines.append(f"Input {safe_text(spec.name)}: {', '.join(parts)} (preprocess.py makes it)")
    return lines


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Digest(threading.Thread):
    """sha256 of a weights file in the background (hashlib releases the GIL), from the bytes
    already read when there are any; ``str()`` waits for it."""

    def __init__(self, path: Path, data: bytes | None) -> None:
        super().__init__(daemon=True)
        self.path, self.data, self.value, self.error = path, data, "", None
        self.start()

    def run(self) -> None:
        try:
            self.value = (
                hashlib.sha256(self.data).hexdigest()
                if self.data is not None
                else _sha256(self.path)
            )
        except OSError as e:  # pragma: no cover - the file was just read
            self.error = e
        self.data = None

    def __str__(self) -> str:
        self.join()
        if self.error is not None:  # pragma: no cover
            raise self.error
        return self.value


def check_types(text: NetText, phase: str, stages: Iterable[str]) -> None:
    """Before building anything: every layer of unknown type, or Python layer, at once."""
    net = text.net
    stage_set = set(net.state.stage) | set(stages)
    bad = []
    for i, layer in enumerate(net.layer):
        if not layer_included(layer, PHASES[phase], net.state.level, stage_set):
            continue
        if layer.type and layer_class(layer.type) is None:
            bad.append(f"'{layer.name}' ({layer.type}, line {text.line_of(i)}): unknown layer type")
        elif layer.type == "Python" and len(layer.bottom):
            p = layer.python_param
            bad.append(
                f"'{layer.name}' (Python {safe_text(p.module)}.{safe_text(p.layer)}): a Python "
                "layer's code is never imported or run"
            )
    if len(bad) > 1:
        raise UnsupportedLayerError(
            f"{len(bad)} layers cannot be converted: " + "; ".join(bad), file=text.path
        )


def select_outputs(graph: Graph, names: Sequence[str] | None) -> list[Value]:
    """The blobs to return: the named ones (their final value, as Caffe's ``net.blobs``
    holds them), or those no layer reads."""
    if not names:
        if not graph.outputs:
            raise PrototxtError(
                "the net has no outputs (every blob is read by a layer)", file=graph.path
            )
        return list(graph.outputs)
    final: dict[str, Value] = {}
    for node in graph.nodes:
        for v in node.outputs:
            final[v.name] = v
    out = []
    for name in names:
        if name not in final:
            blobs = ", ".join(list(final)[-12:])
            raise PrototxtError(
                f"--outputs names '{name}', which is not a blob of the net (its last blobs: {blobs})",
                file=graph.path,
            )
        if final[name] in out:
            raise PrototxtError(f"--outputs names '{name}' twice", file=graph.path)
        out.append(final[name])
    return out


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
):
    """What every engine does first: read the net, build the graph, choose the outputs, read
    (or make) the weights, describe the inputs (preprocess.json). Returns (graph, outputs,
    sources, notes, blobs by node id, the :class:`~caffe2torch.preprocess.Preprocess`)."""
    from ..preprocess import derive

    text = read_prototxt(prototxt)
    check_types(text, phase, stages)
    graph = build_graph(text, phase=phase, stages=stages, input_shapes=input_shapes)
    outs = select_outputs(graph, outputs)
    needed = needed_nodes(graph, outs)
    notes = list(graph.notes)
    dropped = [n.id for n in graph.layers if n not in needed]
    if outputs and dropped:
        notes.append(
            f"{len(dropped)} layer(s) not needed for the outputs are left out: "
            + ", ".join(dropped)
        )

    sources: dict = {"prototxt": {"file": prototxt.name, "sha256": _sha256(prototxt)}}
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
            for node in graph.nodes:
                if node.id in check.matched:
                    blobs[node.id] = [
                        np.asarray(b.data, np.float32).reshape(s)
                        for b, s in zip(check.matched[node.id], node.weight_shapes)
                    ]
        sources["weights"] = {
            "file": weights.name,
            "sha256": _Digest(weights, w.raw),
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
) -> Conversion:
    """Convert ``prototxt`` (+ ``weights``, or seeded random weights) in memory.
    ``preprocess``: the input flags (mean, scale, channel order, folding)."""
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
    )
    cls = class_name or make_class_name(graph.name)
    if not is_identifier(cls):
        raise CaffeError(f"--class-name '{safe_text(cls)}' is not a Python identifier")
    needed = {n.id for n in needed_nodes(graph, outs)}
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
