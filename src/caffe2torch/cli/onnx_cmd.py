"""``caffe2torch export-onnx``: a converted folder as one ONNX file, checked with onnxruntime
(:mod:`caffe2torch.onnx_export`). ``register(app)`` adds the command to the CLI."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import printable, size_text
from ..folder import dump_json
from ..onnx_export import OnnxExport, export_onnx


def register(app: typer.Typer) -> None:
    """Add ``export-onnx`` to ``app`` (caffe2torch.cli.app)."""
    app.command("export-onnx")(export_onnx_cmd)


def export_onnx_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder written by convert.")],
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="FILE", help="The .onnx file to write (default FOLDER/model.onnx)."),
    ] = None,
    dynamic_batch: Annotated[
        bool,
        typer.Option(
            "--dynamic-batch",
            help="Rewrite the Reshapes that fix the batch (a prototxt's 'dim: 1' first) to use "
            "the runtime batch, so that the batch can be dynamic; checked sample by sample.",
        ),
    ] = False,
    opset: Annotated[
        Optional[int], typer.Option("--opset", metavar="N", help="The ONNX opset (default: torch.onnx's).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the output file if it exists.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object (for pipelines).")
    ] = False,
    # (as every command's: caffe2torch.cli.app's Quiet and Verbose)
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and --json's output).")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, show_default=False, help="Say more: notes, where the time went."
        ),
    ] = 0,
) -> None:
    """Export a converted model to ONNX, with Caffe's input and output names, and check it.

    The file is checked with onnxruntime against the folder's torch model on seeded random
    inputs: max|ort - torch| / max|torch| <= 1e-5 for every output, at batch 1 and 3. The
    batch is dynamic where the model gives each sample's result at batch 3; otherwise it is
    the static batch the model was converted at, and the notes say why. A Reshape that fixes
    the batch (dim: 1 where dim: 0 copies it) is named; --dynamic-batch rewrites it.

    Exit codes: 0 written and checked, 1 written but the check failed, 2 bad input.

    [bold]Examples[/bold]

      caffe2torch export-onnx googlenet

      caffe2torch export-onnx face_detector -o face.onnx --dynamic-batch --json
    """
    import importlib

    cli = importlib.import_module("caffe2torch.cli.app")  # (the package's `app` is the Typer)

    cli._verbosity(quiet, verbose)
    if opset is not None and opset < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--opset")
    with cli._reported():
        result = export_onnx(
            folder, output, dynamic_batch=dynamic_batch, opset=opset, check=True, overwrite=overwrite
        )
    if as_json:
        sys.stdout.write(dump_json(result.to_dict()))
    else:
        cli._say(render_export, result)
    if result.passed is False:
        cli.err.print(
            f"[bold red]export-onnx FAILED its check:[/bold red] "
            f"{escape(printable(str(result.path)))} is written but does not compute what the "
            f"model does ({escape(printable(result.failures[0]))}"
            + (f"; {len(result.failures) - 1} more" if len(result.failures) > 1 else "")
            + ")"
        )
        raise typer.Exit(cli.EXIT_FAILED)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if v != v or v == float("inf"):
        return "[red]shapes differ[/red]"
    return f"{v:.1e}"


def render_export(out, result: OnnxExport) -> None:
    """The human form of an :class:`~caffe2torch.onnx_export.OnnxExport`."""
    def safe(x) -> str:
        return escape(printable(str(x)))

    def named(name: str) -> str:
        shape = result.shapes.get(name)
        return safe(name) + (f" ({safe(', '.join(map(str, shape)))})" if shape is not None else "")

    size = ""
    try:
        size = f", {size_text(result.path.stat().st_size)}"
    except OSError:
        pass
    out.print(f"[bold]wrote[/bold] {safe(result.path)} (ONNX opset {result.opset}{size})")
    out.print(f"  inputs:  {', '.join(named(n) for n in result.inputs)}")
    out.print(f"  outputs: {', '.join(named(n) for n in result.outputs)}")
    if result.dynamic_batch:
        how = " (Reshapes rewritten to the runtime batch)" if result.rewritten else ""
        out.print(f"  batch:   dynamic{how}")
    else:
        out.print(f"  batch:   static, {result.batch}")
    if result.checked:
        batches = sorted(result.errors)
        table = Table(
            title=f"onnxruntime vs torch, max relative error (tolerance {result.tolerance:g})",
            title_justify="left",
        )
        table.add_column("output")
        for b in batches:
            table.add_column(f"batch {b}", justify="right")
        if result.per_sample is not None:
            table.add_column("torch batch 3 vs per sample", justify="right")
        if result.per_sample_onnx is not None:
            table.add_column("onnx batch 3 vs per sample", justify="right")
        for name in result.outputs:
            row = [safe(name)] + [_num(result.errors[b].get(name)) for b in batches]
            if result.per_sample is not None:
                row.append(_num(result.per_sample.get(name)))
            if result.per_sample_onnx is not None:
                row.append(_num(result.per_sample_onnx.get(name)))
            table.add_row(*row)
        out.print(table)
        verdict = "[green]passed[/green]" if result.passed else "[bold red]FAILED[/bold red]"
        out.print(f"  check:   {verdict}")
        for f in result.failures:
            out.print(f"    - {safe(f)}")
    for note in result.notes:
        out.print(f"  note: {safe(note)}")
