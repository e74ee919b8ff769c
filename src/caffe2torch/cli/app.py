"""Commands. Each one calls the library, renders its result, and turns a
:class:`~caffe2torch.errors.CaffeError` into one line on stderr and exit code 2."""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__, api
from ..api import load_graph
from ..caffe.schema import extended
from ..caffe.user_proto import read_proto
from ..errors import CaffeError, bug_line, printable
from ..folder import MANIFEST, WRITTEN, Destination, dump_json, read_manifest
from ..graph import parse_input_shapes
from ..hub import folder_labels
from ..memory import CheckOptions, parse_size
from ..plugins import plugins_loaded
from ..predict import predict, read_labels
from ..progress import reporting
from ..preprocess import PreprocessError
from ..synth import write_synth_weights
from ..verify import run as verify_run
from ..verify.run import with_reference
from .render import render_conversion, render_predictions, render_summary, render_verification

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3  # a bug in caffe2torch: one line saying so (a traceback with --debug)
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="caffe2torch",
    help=(
        "Convert Caffe models (deploy .prototxt + .caffemodel) to clean PyTorch.\n\n"
        "Reads all three prototxt generations (V0, V1, V2), binary and HDF5 weights, without "
        "PyCaffe or MMdnn.\n\n"
        "[bold]Examples[/bold]\n\n"
        "  caffe2torch convert deploy.prototxt weights.caffemodel -o out\n\n"
        "  caffe2torch verify out\n\n"
        "  caffe2torch inspect deploy.prototxt\n\n"
        "  caffe2torch inspect deploy.prototxt weights.caffemodel --json\n\n"
        "  caffe2torch inspect train_val.prototxt --input-shape data=1,3,227,227\n\n"
        "  caffe2torch synth-weights deploy.prototxt -o random.caffemodel --seed 1"
    ),
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Piped output gets room for the wide layer table instead of rich's 80-column default.
_width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
out = Console(highlight=False, soft_wrap=True, width=_width)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False, "quiet": False, "verbose": 0}


def versions() -> dict[str, str | None]:
    """caffe2torch's and its libraries' versions, read from the installed metadata (nothing is
    imported: --version is instant); None for what is not installed."""
    import platform
    from importlib import metadata

    def of(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    opencv = next(
        (v for v in (of(n) for n in ("opencv-python-headless", "opencv-python", "opencv-contrib-python")) if v),
        None,
    )
    return {
        "caffe2torch": __version__,
        "python": platform.python_version(),
        "torch": of("torch"),
        "opencv": opencv,
        "numpy": of("numpy"),
        "protobuf": of("protobuf"),
        "onnxruntime": of("onnxruntime"),
    }


def _version(value: bool) -> None:
    if value:
        v = versions()
        libs = ", ".join(f"{k} {v[k] or 'not installed'}" for k in v if k != "caffe2torch")
        print(f"caffe2torch {v['caffe2torch']} ({libs})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback when an input is rejected.")
    ] = False,
) -> None:
    _state["debug"] = debug


Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json's output).")
]
Verbose = Annotated[
    int, typer.Option("--verbose", "-v", count=True, show_default=False, help="Say more: notes, where the time went.")
]


def _verbosity(quiet: bool, verbose: int) -> None:
    if quiet and verbose:
        raise typer.BadParameter("give one of them", param_hint="--quiet/--verbose")
    _state["quiet"], _state["verbose"] = quiet, verbose


@contextlib.contextmanager
def _staged(what: str) -> Iterator[None]:
    """A progress display on stderr while the library works (reading, layer i of N of the
    check, writing): on a terminal only, gone when the work ends; nothing under -q or when
    stderr is piped."""
    if _state["quiet"] or not err.is_terminal:
        with reporting(None):
            yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=True,
    )
    task = bar.add_task(what, total=None)
    names = {"reading": "reading the net and its weights", "checking": "checking layer by layer",
             "writing": "writing the folder"}

    def show(stage: str, done: int | None, total: int | None) -> None:
        text = f"{what}: {names.get(stage, stage)}"
        if total is None:
            bar.reset(task, total=None, description=text)
        else:
            bar.update(task, description=text, completed=done or 0, total=total)

    with bar, reporting(show):
        yield


def _emit_json(data) -> None:
    sys.stdout.write(dump_json(data))


def _say(render, *args) -> None:
    """Human output on stdout, unless -q."""
    if not _state["quiet"]:
        render(out, *args)


def _error_line(text: str) -> None:
    err.print(f"[bold red]error:[/bold red] {escape(printable(text))}")


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Turn input errors into one line on stderr and exit code 2 (a traceback with --debug)."""
    try:
        yield
    except CaffeError as e:
        if _state["debug"]:
            err.print_exception()
        _error_line(str(e))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except MemoryError:
        if _state["debug"]:
            err.print_exception()
        _error_line(
            "ran out of memory: the net (its weights or its activations at this input shape) "
            "does not fit; give a smaller --input-shape, or see --max-memory"
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _bad(flag: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=flag)


def _finite(value: float | None, flag: str, *, positive: bool = False, nonneg: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise _bad(flag, f"{value} is not a finite number")
    if positive and value <= 0:
        raise _bad(flag, "must be positive")
    if nonneg and value < 0:
        raise _bad(flag, "must be >= 0")


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise _bad("--seed", f"{seed}: give a whole number from 0 to 2^63 - 1")


def _check_options(batch: int, max_memory: str | None, reference: "ReferenceName") -> CheckOptions:
    if batch < 1:
        raise _bad("--check-batch", "must be at least 1")
    try:
        limit = parse_size(max_memory) if max_memory is not None else None
    except ValueError as e:
        raise _bad("--max-memory", str(e)) from None
    check = CheckOptions(
        batch=batch, max_memory=limit, unlimited=max_memory is not None and limit is None,
        reference=reference.value,
    )
    if reference is ReferenceName.auto:  # chosen when the check runs (none there: not verified)
        return check
    with _reported():  # the engine asked for is not there: one line, exit 2
        return with_reference(check)


# Choices -----------------------------------------------------------------------------------
class PhaseName(str, Enum):
    test = "test"
    train = "train"


class WeightsFormat(str, Enum):
    pth = "pth"
    safetensors = "safetensors"


class ReferenceName(str, Enum):
    auto = "auto"
    caffe = "caffe"
    opencv = "opencv"


class EngineName(str, Enum):
    native = "native"
    mmdnn = "mmdnn"


class ChannelOrder(str, Enum):
    bgr = "bgr"
    rgb = "rgb"


# Shared options --------------------------------------------------------------------------
InputShape = Annotated[
    Optional[list[str]],
    typer.Option(
        "--input-shape",
        "-s",
        metavar="[NAME=]N,C,H,W",
        help="Shape of an input the net does not declare (or to override it); repeat per input.",
    ),
]
Phase = Annotated[
    PhaseName, typer.Option("--phase", help="Keep the layers of this phase.")
]
Stage = Annotated[
    Optional[list[str]], typer.Option("--stage", help="Add a net stage (include/exclude rules).")
]


CheckBatch = Annotated[
    int,
    typer.Option(
        "--check-batch",
        metavar="N",
        help="Batch size the check runs at (default 1, whatever batch the prototxt declares).",
        rich_help_panel="Check",
    ),
]
Reference = Annotated[
    ReferenceName,
    typer.Option(
        "--reference",
        help="The engine each layer is checked against: real Caffe (pycaffe, built by make "
        "caffe-ref or in the image), OpenCV's dnn module, or auto: Caffe where it is built, "
        "OpenCV for the layers it cannot run.",
        rich_help_panel="Check",
    ),
]
MaxMemory = Annotated[
    Optional[str],
    typer.Option(
        "--max-memory",
        metavar="SIZE",
        help="Refuse to start a check estimated to need more (e.g. 8G; 'none': no limit). "
        "Default: half the memory available now.",
        rich_help_panel="Check",
    ),
]


PluginFiles = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--plugin",
        metavar="FILE.py",
        help="Load the layer converters this Python file registers (repeat for several). Its "
        "code runs: give only files you trust. Recorded in conversion.json.",
        rich_help_panel="Extensions",
    ),
]
ProtoFile = Annotated[
    Optional[Path],
    typer.Option(
        "--proto",
        metavar="caffe.proto",
        help="Your fork's caffe.proto, read as data (nothing from it runs), for fields "
        "caffe2torch does not know. A converted layer may not set a field only it declares.",
        rich_help_panel="Extensions",
    ),
]
IgnoreUnknown = Annotated[
    bool,
    typer.Option(
        "--ignore-unknown-fields",
        help="Skip fields no schema declares on layers left out (--outputs, phase, "
        "training-only), listing them; a converted layer that sets one still stops.",
        rich_help_panel="Extensions",
    ),
]


@contextlib.contextmanager
def _extended(plugins, proto: Path | None, ignore_unknown_fields: bool) -> Iterator[None]:
    """The plugins loaded and the user's caffe.proto merged, for one command (inside
    ``_reported``): the proto is read first, as data, before any plugin code runs."""
    user = read_proto(proto) if proto is not None else None
    with plugins_loaded(plugins or ()), extended(user, ignore_unknown_fields=ignore_unknown_fields):
        yield


Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same file.")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace the output if it exists (never an input).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Folder = Annotated[Path, typer.Argument(help="A folder written by convert.")]


def _inputs(flag: str, help: str, **kw):
    """An option of the inputs' panel (what preprocess.json records)."""
    return typer.Option(flag, help=help, rich_help_panel="Inputs (preprocess.json)", **kw)


def _graph(prototxt: Path, input_shape, phase: PhaseName, stage, stop_unread: bool = True):
    return load_graph(
        prototxt,
        phase=phase.value,
        stages=stage or (),
        input_shapes=parse_input_shapes(input_shape or []),
        stop_unread=stop_unread,
    )


@app.command()
def inspect(
    prototxt: Annotated[Path, typer.Argument(help="The net (.prototxt), any format version.")],
    weights: Annotated[
        Optional[Path],
        typer.Argument(help="Weights (.caffemodel or .caffemodel.h5) to check against the net."),
    ] = None,
    input_shape: InputShape = None,
    phase: Phase = PhaseName.test,
    stage: Stage = None,
    as_json: AsJson = False,
    plugin: PluginFiles = None,
    proto: ProtoFile = None,
    ignore_unknown_fields: IgnoreUnknown = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Show every layer with its output shape and parameter count; check weights if given.

    [bold]Examples[/bold]

      caffe2torch inspect deploy.prototxt

      caffe2torch inspect deploy.prototxt bvlc_googlenet.caffemodel

      caffe2torch inspect train_val.prototxt --phase test --input-shape data=10,3,227,227 --json
    """
    _verbosity(quiet, verbose)
    with _reported():
        summary = api.inspect(
            prototxt, weights, input_shapes=parse_input_shapes(input_shape or []) or None,
            phase=phase.value, stages=stage or (), plugins=plugin or (), proto=proto,
            ignore_unknown_fields=ignore_unknown_fields,
        )
    if as_json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    _say(render_summary, summary)


@app.command("synth-weights")
def synth_weights(
    prototxt: Annotated[Path, typer.Argument(help="The net (.prototxt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .caffemodel to write.")],
    seed: Seed = 0,
    input_shape: InputShape = None,
    phase: Phase = PhaseName.test,
    stage: Stage = None,
    overwrite: Overwrite = False,
    plugin: PluginFiles = None,
    proto: ProtoFile = None,
    ignore_unknown_fields: IgnoreUnknown = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Write a V2 caffemodel with seeded random weights for every learnable layer.

    Weights are scaled so activations stay in range through deep nets; BatchNorm gets positive
    variances and a realistic moving-average factor. For testing conversions of architectures
    whose trained weights are not at hand, and for benchmarks.

    [bold]Example[/bold]

      caffe2torch synth-weights VGG_ILSVRC_16_layers_deploy.prototxt -o vgg16.caffemodel --seed 0
    """
    _check_seed(seed)
    _verbosity(quiet, verbose)
    with _reported():
        dest = Destination.file(output, inputs=[prototxt, proto, *(plugin or ())], overwrite=overwrite)
        with _extended(plugin, proto, ignore_unknown_fields):
            graph = _graph(prototxt, input_shape, phase, stage)
            values = write_synth_weights(graph, dest.path, seed=seed)
        WRITTEN.append(dest.path)
    layers = sum(1 for n in graph.nodes if n.weight_shapes)
    size = output.stat().st_size
    if as_json:
        _emit_json({"file": str(output), "learnable_layers": layers, "values": values, "bytes": size, "seed": seed})
        return
    if not _state["quiet"]:
        out.print(
            f"wrote {escape(printable(str(output)))}: {layers} learnable layers, {values:,} values, "
            f"{size / 2**20:.1f} MiB (seed {seed})"
        )


@app.command()
def convert(
    prototxt: Annotated[Path, typer.Argument(help="The net (.prototxt), any format version.")],
    weights: Annotated[
        Optional[Path],
        typer.Argument(help="Trained weights (.caffemodel or .caffemodel.h5)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The folder to write (created; must be empty).")
    ] = Path("converted"),
    input_shape: InputShape = None,
    outputs: Annotated[
        Optional[str],
        typer.Option(
            "--outputs",
            metavar="BLOB,BLOB",
            help="Blobs to return (e.g. fc7 for features); layers they do not need are left "
            "out. Default: the blobs no layer reads.",
        ),
    ] = None,
    class_name: Annotated[
        Optional[str], typer.Option("--class-name", help="Name of the model class (default: the net's name).")
    ] = None,
    weights_format: Annotated[
        WeightsFormat, typer.Option("--format", help="Weights file: pth (torch.save) or safetensors.")
    ] = WeightsFormat.pth,
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights",
            help="Seeded random weights instead of a .caffemodel (to test an architecture).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --random-weights.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output folder if it is not empty.")
    ] = False,
    phase: Phase = PhaseName.test,
    stage: Stage = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Check every layer against OpenCV (when it is installed) and write report.md.",
        ),
    ] = True,
    engine: Annotated[
        EngineName,
        typer.Option(
            "--engine",
            help="native (caffe2torch's own code) or mmdnn (Microsoft MMdnn's flow, fixed).",
        ),
    ] = EngineName.native,
    keep_intermediate: Annotated[
        bool,
        typer.Option(
            "--keep-intermediate",
            help="With --engine mmdnn: also keep MMdnn's IR, kit.py/kit.npy and its pickled "
            "kit.pth in OUT/mmdnn/.",
        ),
    ] = False,
    mmdnn_python: Annotated[
        Optional[Path],
        typer.Option(
            "--mmdnn-python",
            help="The Python of an environment with mmdnn 0.3.1 and protobuf 3.20.3 "
            "(default: $CAFFE2TORCH_MMDNN_PYTHON, or .venv-mmdnn).",
        ),
    ] = None,
    mean: Annotated[
        Optional[str],
        _inputs(
            "--mean",
            "Mean pixel, one value or one per channel in the Caffe net's order "
            "(\"104,117,123\" for BGR ImageNet nets), when the prototxt does not say."
        ),
    ] = None,
    mean_file: Annotated[
        Optional[Path],
        _inputs("--mean-file", "Mean image (.binaryproto or .npy), when the prototxt does not name one."),
    ] = None,
    scale: Annotated[
        Optional[float],
        _inputs("--scale", "Multiplies (pixel - mean), as Caffe's transform_param.scale (0.00390625 = 1/255)."),
    ] = None,
    input_order: Annotated[
        Optional[ChannelOrder],
        _inputs(
            "--input-order",
            "Channel order the converted model takes: bgr (as the Caffe net) or rgb (the "
            "swap folded into the first layer's weights where exact).",
            case_sensitive=False,
        ),
    ] = None,
    caffe_order: Annotated[
        Optional[ChannelOrder],
        _inputs(
            "--caffe-order",
            "Channel order the Caffe net was trained on, if not Caffe's usual bgr.",
            case_sensitive=False,
        ),
    ] = None,
    fold_normalization: Annotated[
        bool,
        _inputs(
            "--fold-normalization",
            "Fold mean and scale into the first convolution (only when exact): the model "
            "then takes pixels 0..255."
        ),
    ] = False,
    check_batch: CheckBatch = 1,
    max_memory: MaxMemory = None,
    reference: Reference = ReferenceName.auto,
    plugin: PluginFiles = None,
    proto: ProtoFile = None,
    ignore_unknown_fields: IgnoreUnknown = False,
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels", metavar="FILE",
            help="Class names, one per line (synset_words.txt): into config.json and the model card.",
            rich_help_panel="Sharing (README.md, config.json, hubconf.py)",
        ),
    ] = None,
    license_: Annotated[
        Optional[str],
        typer.Option(
            "--license", metavar="SPDX",
            help="The weights' licence, as you know it (MIT, BSD-2-Clause, ...): into the model card.",
            rich_help_panel="Sharing (README.md, config.json, hubconf.py)",
        ),
    ] = None,
    record_paths: Annotated[
        bool,
        typer.Option(
            "--record-paths",
            help="Record in conversion.json where the sources are (relative to the folder), so "
            "that verify finds them; by default a folder names no path outside itself.",
            rich_help_panel="Sharing (README.md, config.json, hubconf.py)",
        ),
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Convert a Caffe net to a PyTorch folder: model.py, model.pth, conversion.json, report.md.

    model.py is one readable nn.Module class that imports only torch; model.pth is a plain
    state_dict (torch.load(..., weights_only=True)); conversion.json records inputs, outputs,
    which Caffe layer became which attribute, the sources' sha256 and the check's result.
    Nothing is written unless the whole conversion succeeds.

    Unless --no-verify, every Caffe value of the converted model is compared with real
    Caffe's (or OpenCV's: --reference) on a seeded random input, as `caffe2torch verify`
    does; a failed check keeps the files, marks the conversion failed and exits 1.

    [bold]Examples[/bold]

      caffe2torch convert deploy.prototxt bvlc_googlenet.caffemodel -o googlenet

      caffe2torch convert VGG16_deploy.prototxt vgg16.caffemodel -o vgg16_fc7 --outputs fc7

      caffe2torch convert ResNet-50-deploy.prototxt --random-weights -o resnet50 --format safetensors
    """
    _check_seed(seed)
    _verbosity(quiet, verbose)
    check = _check_options(check_batch, max_memory, reference) if verify else None
    mmdnn = engine is EngineName.mmdnn
    if not mmdnn and (keep_intermediate or mmdnn_python):
        raise typer.BadParameter("needs --engine mmdnn", param_hint="--keep-intermediate/--mmdnn-python")
    if mmdnn and (outputs or class_name):
        raise typer.BadParameter(
            "MMdnn's code has its own outputs and class (KitModel)", param_hint="--outputs/--class-name"
        )
    if mmdnn and (plugin or proto or ignore_unknown_fields):
        raise typer.BadParameter(
            "MMdnn reads the net with its own caffe.proto and converters; use --engine native",
            param_hint="--plugin/--proto/--ignore-unknown-fields",
        )
    _finite(scale, "--scale")
    with _reported(), _staged("converting"):
        from .. import public  # imports torch (seconds), which the other commands do not need

        conversion = public.convert(
            prototxt, weights, output,
            random_weights=random_weights, seed=seed,
            input_shapes=parse_input_shapes(input_shape or []) or None,
            outputs=[o.strip() for o in outputs.split(",") if o.strip()] if outputs else None,
            class_name=class_name, phase=phase.value, stages=tuple(stage or ()),
            mean=_mean_values(mean), mean_file=mean_file, scale=scale,
            input_order=input_order.value if input_order else None,
            caffe_order=caffe_order.value if caffe_order else None,
            fold_normalization=fold_normalization,
            verify=verify, reference=reference.value,
            check_batch=check_batch, max_memory=_memory_arg(check),
            engine=engine.value, keep_intermediate=keep_intermediate, mmdnn_python=mmdnn_python,
            plugins=plugin or (), proto=proto, ignore_unknown_fields=ignore_unknown_fields,
            weights_format=weights_format.value, overwrite=overwrite,
            record_paths=record_paths, labels=labels, license=license_,
        )
    folder = conversion.folder
    if as_json:
        _emit_json(conversion_record(conversion, folder))
    else:
        _say(render_conversion, conversion, folder, weights_format.value)
        if _state["verbose"]:
            _notes(conversion.notes + conversion.generated.notes)
    if conversion.verified_failed:
        first = conversion.verification.first_divergence
        err.print(
            f"[bold red]conversion FAILED verification:[/bold red] the files are in "
            f"{escape(printable(str(folder)))}/ but the model does not compute what the Caffe net "
            f"does (first divergence: layer '{escape(printable(first.layer))}'; see "
            f"{escape(printable(str(folder)))}/report.md)"
        )
        raise typer.Exit(EXIT_FAILED)


def conversion_record(conversion, folder: Path) -> dict:
    """``convert --json``: where the folder is, what it holds, and the check's result."""
    manifest = read_manifest(folder)
    return {
        "folder": str(folder),
        "class_name": manifest.class_name,
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()),
        "inputs": manifest.inputs,
        "outputs": manifest.outputs,
        "verification": manifest.verification,
        "notes": manifest.notes,
        "manifest": str(folder / MANIFEST),
    }


def _notes(notes: list[str]) -> None:
    for note in notes:
        err.print(f"[dim]note:[/dim] {escape(printable(note))}")


def _memory_arg(check: CheckOptions | None) -> int | None:
    """--max-memory as the library takes it: bytes, 0 for no limit, None for the default."""
    if check is None:
        return None
    return 0 if check.unlimited else check.max_memory


def _timings(seconds: dict) -> None:
    if seconds:
        err.print("[dim]time:[/dim] " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))


def _mean_values(mean: str | None) -> list[float] | None:
    """``--mean 104,117,123`` (or space-separated) as numbers."""
    if mean is None:
        return None
    try:
        values = [float(x) for x in mean.replace(" ", ",").split(",") if x]
    except ValueError:
        raise PreprocessError(f"--mean '{mean}': give numbers, like 104,117,123") from None
    if not values:
        raise PreprocessError("--mean: give one value or one per channel")
    if not all(math.isfinite(v) for v in values):
        raise PreprocessError(f"--mean '{mean}': every value must be a finite number")
    return values


@app.command("verify")
def verify_cmd(
    outdir: Folder,
    input_files: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--input",
            "-i",
            metavar="[NAME=]FILE.npy",
            help="An input array (the blob after the data layer); one per input, in order or "
            "by name. Default: seeded random.",
        ),
    ] = None,
    images: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--image",
            help="An image file, made into the input by the folder's preprocess.py (repeat for "
            "a batch). Default: seeded random.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random input.")] = 0,
    rtol: Annotated[
        float, typer.Option("--rtol", help="Relative tolerance, times max|ref| of each value.")
    ] = 1e-4,
    atol: Annotated[float, typer.Option("--atol", help="Absolute tolerance.")] = 1e-5,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Fail on drift too (rounding the net amplifies)."),
    ] = False,
    net: Annotated[
        Optional[Path],
        typer.Option("--net", help="The prototxt, if not where conversion.json says."),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option("--weights", help="The caffemodel, if not where conversion.json says."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (for pipelines).")
    ] = False,
    check_batch: CheckBatch = 1,
    max_memory: MaxMemory = None,
    reference: Reference = ReferenceName.auto,
    plugin: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--plugin",
            metavar="FILE.py",
            help="A plugin the folder was converted with (conversion.json names each, with its "
            "sha256): verify runs none it is not given.",
            rich_help_panel="Extensions",
        ),
    ] = None,
    proto: Annotated[
        Optional[Path],
        typer.Option(
            "--proto",
            metavar="caffe.proto",
            help="The caffe.proto the folder was converted with, if not where conversion.json says.",
            rich_help_panel="Extensions",
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Compare every Caffe value of a converted model with the reference's, layer by layer.

    Runs the folder's own model.py and weights, and the reference (real Caffe, or OpenCV's
    dnn module where Caffe is not built or lacks a layer: --reference) on the Caffe files it
    was converted from, on the same input; each value (a layer's output, in place chains
    included) passes when max|y - ref| <= atol + rtol * max|ref|. The first diverging layer
    is named and explained. A value that differs only because its input did (the layer, given
    the reference's input, agrees) is "drift": rounding the net amplifies, reported but not
    failed unless --strict. Layers no engine can run are listed as skipped; the layers after
    them are still compared; each value says which engine checked it.

    Exit codes: 0 all pass, 1 a value fails, 2 bad input.

    [bold]Examples[/bold]

      caffe2torch verify googlenet

      caffe2torch verify googlenet --input data=cat.npy --json > parity.json

      caffe2torch verify googlenet --image cat.jpg
    """
    _finite(rtol, "--rtol", nonneg=True)
    _finite(atol, "--atol", nonneg=True)
    _check_seed(seed)
    _verbosity(quiet, verbose)
    check = _check_options(check_batch, max_memory, reference)
    with _reported(), _staged("verifying"):
        result = verify_run.verify(
            outdir, net=net, weights=weights, inputs=input_files or (), images=images or (),
            seed=seed, rtol=rtol, atol=atol, strict=strict, reference=check.reference,
            check_batch=check_batch, max_memory=_memory_arg(check), plugins=plugin or (), proto=proto,
        )
    if as_json:
        sys.stdout.write(dump_json(result.to_dict()))
    else:
        _say(render_verification, result)
        if _state["verbose"]:
            _timings(result.seconds)
    if not result.passed:
        first = result.first_divergence
        where = f"first divergence: layer '{escape(printable(first.layer))}'" if first else "nothing compared"
        err.print(
            f"[bold red]verification FAILED:[/bold red] {escape(printable(str(outdir)))} does not "
            f"compute what the Caffe net does ({where}; {len(result.failing)} value(s) failed)"
        )
        raise typer.Exit(EXIT_FAILED)


@app.command("predict")
def predict_cmd(
    outdir: Folder,
    images: Annotated[list[Path], typer.Argument(help="Image files (any format Pillow reads).")],
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels",
            help="Class names, one per line (synset_words.txt). Default: those convert --labels "
            "put in the folder's config.json.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many classes to show.")] = 5,
    as_json: AsJson = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Run a converted model on images, preprocessed as its preprocess.json says.

    Each image goes through the folder's preprocess.py (channel order, resize, crop, mean,
    scale) and its model. A classifier (the net ends in Softmax, or --labels is given: a
    softmax is then applied to the logits) shows its top classes; any other net shows each
    output's shape and statistics, and its values when there are few.

    [bold]Examples[/bold]

      caffe2torch predict googlenet cat.jpg --labels synset_words.txt

      caffe2torch predict triplet 4_78.png --json
    """
    _verbosity(quiet, verbose)
    if top < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--top")
    with _reported():
        names = read_labels(labels) if labels is not None else folder_labels(outdir)
        results = predict(outdir, images, labels=names, top=top, warn=_warn)
    if as_json:
        sys.stdout.write(dump_json([r.to_dict() for r in results]))
    else:
        _say(render_predictions, results)


def _warn(text: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(printable(text))}")


from .zoo_cmd import register as _register_zoo  # noqa: E402 - convert-all, on the app above

_register_zoo(app)

from .onnx_cmd import register as _register_onnx  # noqa: E402 - export-onnx (cli/onnx_cmd.py)

_register_onnx(app)


def run(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code. Every way it can end is one line on
    stderr at most: a usage error (2), bad input (2), a failed check (1), Ctrl-C (130), or a
    bug in caffe2torch (3, with a traceback only under --debug)."""
    from typer import exceptions as typer_exc
    from typer._click import exceptions as click_exc

    argv = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in argv
    try:
        command = typer.main.get_command(app)  # (builds the options: Ctrl-C may come here too)
        _polish(command)
        rv = command.main(args=argv, prog_name="caffe2torch", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as e:  # no command at all: the help, as --help does
        out.print(e.ctx.get_help(), markup=False, highlight=False)
        return 0
    except click_exc.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else "caffe2torch"
        _error_line(f"{e.format_message()} (see '{where} --help')")
        return EXIT_BAD_INPUT
    except typer_exc.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt) or e.__cause__ is None:
            return _interrupted()
        return _bug(e.__cause__)
    except KeyboardInterrupt:
        return _interrupted()
    except click_exc.ClickException as e:
        _error_line(e.format_message())
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - a bug: one line, not a traceback
        return _bug(e)
    if rv == EXIT_INTERRUPTED:  # typer turned Ctrl-C into Exit(130)
        return _interrupted()
    return rv if isinstance(rv, int) else 0


def _interrupted() -> int:
    if WRITTEN:  # Ctrl-C came after the output was in place
        where = ", ".join(escape(printable(str(p))) for p in WRITTEN)
        err.print(f"[bold red]interrupted[/bold red] after writing {where}, which is complete")
    else:
        err.print("[bold red]interrupted[/bold red]: nothing was written")
    return EXIT_INTERRUPTED


def _bug(e: BaseException) -> int:
    if _state["debug"]:
        import traceback

        traceback.print_exception(e)
    _error_line(bug_line(e) + ", please report it with the command you ran (--debug shows the traceback)")
    return EXIT_BUG


def main() -> None:
    try:
        code = run()
    except KeyboardInterrupt:  # in the instant before run() could catch it
        code = _interrupted()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == EXIT_INTERRUPTED:
        # Skip interpreter shutdown: a reference engine's C++ thread may still be running, and
        # destroying it would abort ("terminate called without an active exception").
        os._exit(code)
    sys.exit(code)


# ------------------------------------------------------------------------------ help text
def _rewrap(doc: str | None) -> str | None:
    """A docstring as help: each paragraph's lines joined, so that the help is wrapped to the
    terminal's width and not at the source's line breaks; indented lines (examples) kept."""
    if not doc:
        return doc
    import inspect as _pyinspect

    paragraphs = _pyinspect.cleandoc(doc).split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.splitlines()
        if any(line.startswith(" ") for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _finish_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = _rewrap(info.callback.__doc__)


def _polish(command) -> None:
    """Help that reads right: no type shown for a flag (``<bool>``), ``PATH...`` for a
    repeatable path option (``<list[Path]>``), upper-case argument names."""
    from pathlib import PurePath

    for sub in getattr(command, "commands", {}).values():
        _polish(sub)
    make_help = command.get_help_option

    def help_option(ctx):
        option = make_help(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for param in getattr(command, "params", []):
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
            continue
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        args = getattr(annotation, "__args__", ()) or ()
        if getattr(param, "multiple", False) and args and isinstance(args[0], type) and issubclass(args[0], PurePath):
            param.metavar = "PATH"
        elif param.param_type_name == "argument":
            param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")


_finish_help(app)
