"""Rich rendering of library results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..folder import MANIFEST, MODEL_FILE, WEIGHT_FILES
from ..preprocess.spec import input_lines


def _shape(shape) -> str:
    if shape is None:
        return "?"
    if not shape:
        return "scalar"
    return "x".join("?" if d is None or d == -1 else str(d) for d in shape)  # -1: DYNAMIC


def _count(n: int) -> str:
    return f"{n:,}" if n else ""


def render_summary(console: Console, s: dict[str, Any]) -> None:
    title = f"{s['net']}  ({s['file']}, {s['format']}, phase {s['phase']})"
    table = Table(title=escape(title), title_justify="left", show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("type", style="cyan")
    table.add_column("bottoms → tops")
    table.add_column("output shape", style="green")
    table.add_column("params", justify="right")
    table.add_column("details", style="dim")
    for i, layer in enumerate(s["layers"], 1):
        flow = ", ".join(layer["bottoms"]) + " → " + ", ".join(layer["tops"])
        if layer["in_place"]:
            flow += " (in place)"
        shapes = ", ".join(_shape(sh) for sh in layer["output_shapes"])
        table.add_row(
            str(i),
            escape(layer["id"]),
            escape(layer["type"]),
            escape(flow),
            shapes,
            _count(layer["params"]),
            escape(layer["details"]),
        )
    console.print(table)
    t = s["totals"]
    console.print(
        f"[bold]{t['layers']}[/bold] layers, [bold]{t['learnable_layers']}[/bold] with weights, "
        f"[bold]{t['params']:,}[/bold] parameters"
    )
    console.print(
        "inputs:  " + ", ".join(f"{escape(i['name'])} {_shape(i['shape'])}" for i in s["inputs"])
    )
    console.print(
        "outputs: " + ", ".join(f"{escape(o['name'])} {_shape(o['shape'])}" for o in s["outputs"])
    )
    w = s["weights"]
    if w is not None:
        console.print(
            f"weights: {escape(w['file'])} ({w['format']}, {w['layers_with_blobs']} layers, "
            f"{w['values']:,} values): [green]every blob matches the net[/green]"
        )
    for note in s["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")


def render_conversion(console: Console, conversion, folder, weights_format: str) -> None:
    state = conversion.generated.state
    params = sum(a.size for a in state.values())
    layer_map = conversion.generated.layer_map
    modules = len({v for v in layer_map.values() if v not in ("functional", "input", "dropped")})
    weights = folder / WEIGHT_FILES[weights_format]
    lines = conversion.code.count("\n")
    console.print(
        f"[green]converted[/green] {escape(conversion.graph.path.name)} "
        f"({escape(conversion.graph.name)}) → {escape(str(folder))}/"
    )
    what = f"{modules} submodules" if conversion.engine["name"] == "native" else "MMdnn's code"
    console.print(
        f"  {MODEL_FILE}: class [bold]{escape(conversion.class_name)}[/bold], {what}, {lines} lines"
    )
    console.print(
        f"  {weights.name}: {len(state)} tensors, {params:,} values, "
        f"{weights.stat().st_size / 2**20:.1f} MiB"
    )
    console.print(f"  {MANIFEST}: layer map, inputs, outputs, sources (sha256), the check's result")
    console.print("  report.md, report.html: what was converted and the layer-by-layer check (drawn)")
    console.print(
        "  README.md, config.json, hubconf.py: model card, timm-style config, "
        "torch.hub.load(folder, \"model\", source=\"local\")"
    )
    if conversion.preprocess is not None:
        console.print("  preprocess.json, preprocess.py: how an image becomes the input")
        for line in input_lines(conversion.preprocess):
            console.print(f"  {escape(line)}")
    console.print(
        "inputs:  "
        + ", ".join(f"{escape(v.name)} {_shape(v.shape)}" for v in conversion.graph.inputs)
    )
    console.print(
        "outputs: " + ", ".join(f"{escape(v.name)} {_shape(v.shape)}" for v in conversion.outputs)
    )
    for note in conversion.notes + conversion.generated.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if conversion.extra_files:
        kept = ", ".join(sorted(Path(p).name for p in conversion.extra_files))
        console.print(f"  mmdnn/: MMdnn's own files ({kept})")
    v = conversion.verification
    if v is None:
        console.print(
            f"[yellow]not verified:[/yellow] {escape(conversion.verification_skipped or 'not run')}"
        )
        return
    console.print("verified: " + verification_line(v))
    for line in v.explanation:
        console.print(f"  {escape(line)}")


_STATUS_STYLE = {
    "pass": "green", "FAIL": "bold red", "drift": "yellow", "skipped": "dim",
    "reference-error": "magenta",
}


def _sci(x) -> str:
    return "" if x is None else (f"{x:.1e}" if x else "0")


def verification_line(v) -> str:
    worst = v.worst
    head = {
        "passed": "[green]passed[/green]",
        "failed": "[bold red]FAILED[/bold red]",
        "unchecked": "[yellow]unchecked[/yellow]",
    }[v.status]
    text = (
        f"{head}: {len(v.compared)} values compared with {escape(v.reference)}"
        + v.engines_note
        + f", {len(v.failed)} failed"
    )
    if v.drifted:
        text += f", {len(v.drifted)} drift" + (" (failing: --strict)" if v.strict else "")
    if v.reference_errors:
        text += f", {len(v.reference_errors)} reference-error"
    text += f", {len(v.skipped)} skipped"
    if worst is not None:
        text += f"; worst relative error {_sci(worst.rel)} ({escape(worst.blob)})"
    return text


def render_verification(console: Console, v) -> None:
    table = Table(title=f"Parity with Caffe ({escape(v.reference)})", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("layer")
    table.add_column("type", style="cyan")
    table.add_column("blob")
    table.add_column("shape")
    table.add_column("max abs err", justify="right")
    table.add_column("max rel err", justify="right")
    table.add_column("result")
    table.add_column("by", style="dim")
    first = v.first_divergence
    for i, r in enumerate(v.rows, 1):
        style = _STATUS_STYLE.get(r.status, "")
        result = f"[{style}]{r.status}[/{style}]"
        if r.note:
            result += f" [dim]{escape(r.note)}[/dim]"
        if r.local is not None:
            result += f" [dim](alone: {_sci(r.local)})[/dim]"
        shown = r.status != "skipped"
        table.add_row(
            str(i),
            escape(r.layer),
            escape(r.type),
            escape(r.blob),
            _shape(r.shape),
            _sci(r.max_abs) if shown else "",
            _sci(r.rel) if shown else "",
            result,
            r.engine,
            style="on grey23" if r is first else None,
        )
    console.print(table)
    console.print(
        f"input: {escape(v.inputs)}; a value passes when max|y - ref| <= {v.atol:g} + "
        f"{v.rtol:g} * max|ref|"
    )
    for line in v.explanation:
        console.print(f"[bold]{escape(line)}[/bold]" if line is v.explanation[0] else escape(line))
    console.print(verification_line(v))


def _prob(p: float | None) -> str:
    return "nan" if p is None else f"{p:.4f}"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def render_predictions(console: Console, results) -> None:
    for p in results:
        console.print(f"[bold]{escape(p.image)}[/bold]")
        if p.top:
            kind = "softmax of the logits" if p.softmax_applied else "the net's softmax"
            table = Table(title=f"top {len(p.top)} ({kind})", title_justify="left")
            table.add_column("#", justify="right")
            table.add_column("class", justify="right")
            table.add_column("label")
            table.add_column("probability", justify="right")
            for rank, t in enumerate(p.top, 1):
                table.add_row(str(rank), str(t["index"]), escape(t["label"]), _prob(t["probability"]))
            console.print(table)
            continue
        table = Table(title_justify="left")
        for col in ("output", "shape", "min", "max", "mean", "std", "values"):
            table.add_column(col, justify="left" if col in ("output", "values") else "right")
        for o in p.outputs:
            values = "[" + ", ".join(_num(v) for v in o["values"]) + "]" if "values" in o else ""
            table.add_row(
                escape(o["name"]), _shape(o["shape"]), _num(o["min"]), _num(o["max"]),
                _num(o["mean"]), _num(o["std"]), values,
            )
        console.print(table)
