"""``caffe2torch convert-all``: every net of a model zoo, converted and checked in parallel
(the library side is :mod:`caffe2torch.zoo`; this file only parses, shows and reports)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .. import zoo
from ..errors import printable
from ..folder import WRITTEN, dump_json
from ..memory import parse_size


def register(app: typer.Typer) -> None:
    """Add ``convert-all`` to ``app``."""
    app.command("convert-all")(convert_all)


def convert_all(
    zoo_dir: Annotated[
        Optional[Path],
        typer.Argument(metavar="DIR", help="The folder of nets (searched recursively)."),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output", "-o", metavar="OUTDIR",
            help="The folder to write: OUTDIR/<model>/ per net, summary.json, index.html.",
        ),
    ] = None,
    jobs: Annotated[
        Optional[int],
        typer.Option("--jobs", "-j", metavar="N", help="Worker processes (default: one per CPU)."),
    ] = None,
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights",
            help="Convert the nets that have no .caffemodel with seeded random weights (else "
            "they are listed as no-weights).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --random-weights.")] = 0,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard", metavar="K/N",
            help="Convert only share K of N (a fixed share by model name); writes "
            "summary-K-of-N.json, and summary.json once all N are there.",
        ),
    ] = None,
    merge: Annotated[
        Optional[Path],
        typer.Option(
            "--merge", metavar="OUTDIR",
            help="Only merge the shard summaries of OUTDIR into summary.json and index.html.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Convert again the models whose inputs did not change.")
    ] = False,
    timeout: Annotated[
        Optional[float],
        typer.Option(
            "--timeout", metavar="SECONDS",
            help="Stop a model that takes longer (recorded as crashed).",
        ),
    ] = None,
    max_memory: Annotated[
        Optional[str],
        typer.Option(
            "--max-memory", metavar="SIZE",
            help="Refuse a model's check estimated to need more (e.g. 8G). Default: half the "
            "memory available when it starts.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print nothing but errors (and --json's output)."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, show_default=False,
            help="Say more: how nets were paired with weights, the reason of every model.",
        ),
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Convert every net under DIR, each as `convert` does, in parallel processes.

    Each .prototxt is paired with the .caffemodel (or .caffemodel.h5) of its folder whose name
    fits it best; solver files, and train/val nets beside the deploy net of their model, are
    listed as skipped. Each net is written to OUTDIR/<name>/ (its folder and stem, e.g.
    bvlc_alexnet__deploy) and checked layer by layer against real Caffe where it is built,
    else OpenCV. OUTDIR/summary.json and OUTDIR/index.html list every model: its status
    (converted-passed, converted-failed, converted-unchecked, refused, crashed, no-weights,
    skipped-solver, skipped-trainval), worst relative error, values compared, time and reason.

    Run again, it converts only what changed (the sha256 of a net or its weights, the options,
    the caffe2torch version). Exit codes: 0 done, 1 a model failed its check or crashed, 2 bad
    input.

    [bold]Examples[/bold]

      caffe2torch convert-all zoo/ -o converted/ --jobs 8

      caffe2torch convert-all zoo/ -o converted/ --random-weights --shard 2/4

      caffe2torch convert-all --merge converted/
    """
    import importlib

    cli = importlib.import_module("caffe2torch.cli.app")  # (the package's `app` is the Typer)

    if jobs is not None and jobs < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--jobs")
    cli._check_seed(seed)
    cli._finite(timeout, "--timeout", positive=True)
    try:
        limit = parse_size(max_memory) if max_memory is not None else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--max-memory") from None
    if merge is not None:
        if zoo_dir is not None or output is not None or shard is not None:
            raise typer.BadParameter("give only the folder to merge", param_hint="--merge")
        with cli._reported():
            outcome = zoo.merge(merge)
        _finish(outcome, as_json, cli, quiet)
        return
    if zoo_dir is None or output is None:
        raise typer.BadParameter("give the zoo folder DIR and -o OUTDIR (or --merge OUTDIR)",
                                 param_hint="DIR/--output")
    with cli._reported():
        share = zoo.parse_shard(shard) if shard is not None else None
    display = _Display(cli.err, quiet=quiet, verbose=verbose)
    try:
        with cli._reported(), display:
            outcome = zoo.run(
                zoo_dir, output, jobs=jobs, random_weights=random_weights, seed=seed, shard=share,
                force=force, timeout=timeout, max_memory=limit, progress=display.event,
            )
    except zoo.Interrupted as e:
        pending = e.outcome.summary["counts"].get(zoo.PENDING, 0)
        cli.err.print(f"{e.outcome.ran} models done this run; {pending} left pending in the summary")
        WRITTEN.extend(e.outcome.written)  # the CLI's Ctrl-C line names them
        raise KeyboardInterrupt from None
    if outcome.merge_note and not quiet:
        from rich.markup import escape

        cli.err.print(f"[dim]not merged yet: {escape(printable(outcome.merge_note))}[/dim]")
    _finish(outcome, as_json, cli, quiet)


def _finish(outcome, as_json: bool, cli, quiet: bool) -> None:
    if as_json:  # this run's summary (a shard's, with --shard)
        sys.stdout.write(dump_json(outcome.summary))
    elif not quiet:
        _render(cli.out, outcome)
    if outcome.failed:
        raise typer.Exit(cli.EXIT_FAILED)


def _render(console, outcome) -> None:
    s = outcome.summary
    counts = ", ".join(f"{n} {status}" for status, n in s["counts"].items() if n) or "no nets"
    console.print(f"{len(s['rows'])} models: {counts}")
    fresh = len(s["rows"]) - s.get("unchanged", 0)
    console.print(
        f"converted or tried this run: {outcome.ran}; unchanged since the last run: "
        f"{s.get('unchanged', 0)}; {fresh - outcome.ran} need no conversion; {s['seconds']:.1f} s"
    )
    for path in outcome.written:
        console.print(f"wrote {escape(printable(str(path)))}")
    if outcome.merged is not None:
        m = outcome.merged
        counts = ", ".join(f"{n} {status}" for status, n in m["counts"].items() if n)
        console.print(f"all {len(m['merged_from'])} shards merged: {len(m['rows'])} models: {counts}")


class _Display:
    """Where the run stands, on stderr: on a terminal, a bar for the zoo (done/total, elapsed,
    time left) and a line per running model (its name, stage, time), with a line printed above
    them as each model finishes; elsewhere one plain line per finished model (none with -q)."""

    def __init__(self, console, quiet: bool, verbose: int = 0) -> None:
        self.console = console
        self.quiet = quiet
        self.verbose = verbose
        self.live_ok = console.is_terminal and not quiet
        self.live = None
        self.running: dict[str, tuple[str, float]] = {}
        self.total = 0
        self.done = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _start_live(self) -> None:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]zoo[/bold]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console,
        )
        self.task = self.bar.add_task("zoo", total=self.total)
        self.live = Live(self, console=self.console, transient=True, refresh_per_second=4,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def __rich__(self):
        from rich.console import Group
        from rich.markup import escape
        from rich.text import Text

        now = time.monotonic()
        lines = []
        for name, (stage, since) in sorted(dict(self.running).items()):  # (a copy: another thread)
            line = Text.from_markup(
                f"  [cyan]{escape(name)}[/cyan] {escape(stage)} [dim]{now - since:.0f} s[/dim]",
                overflow="ellipsis",
            )
            line.no_wrap = True
            lines.append(line)
        return Group(self.bar, *lines)

    def event(self, e) -> None:
        if e.kind == "plan":
            self.total = e.total
            if self.verbose and not self.quiet:
                self._notes(e)
            if self.live_ok and e.total:
                self._start_live()
        elif e.kind in ("start", "stage"):
            since = self.running.get(e.name, ("", time.monotonic()))[1]
            self.running[e.name] = (e.text, since)
        elif e.kind == "done":
            self.running.pop(e.name, None)
            self.done = e.done
            if self.live is not None:
                self.bar.update(self.task, completed=e.done)
            if not self.quiet:
                self._line(e)

    def _notes(self, e) -> None:
        """-v: the pairing notes, and the models that need no work this run."""
        for note in e.notes:
            self.console.print(f"[dim]note: {escape(printable(note))}[/dim]", highlight=False)
        for r in e.rows:
            why = f": {r['reason']}" if r.get("reason") else ""
            kept = " (unchanged)" if r.get("unchanged") else ""
            self.console.print(escape(printable(f"{r['name']}: {r['status']}{kept}{why}")), highlight=False)

    def _line(self, e) -> None:
        r = e.row
        worst = f", worst {r['worst_rel']:.1e}" if r.get("worst_rel") is not None else ""
        secs = f", {r['seconds']:.1f} s" if r.get("seconds") is not None else ""
        why = f": {r['reason']}" if r.get("reason") else ""
        style = {"converted-passed": "green", "converted-failed": "red", "crashed": "red",
                 "converted-unchecked": "yellow"}.get(r["status"], "dim")
        text = printable(f"{r['name']}: {r['status']}{worst}{secs}{why}", limit=400)
        count = escape(f"[{e.done}/{e.total}]")
        if self.live is not None:  # above the bar, cut to the terminal's width
            self.console.print(f"{count} [{style}]{escape(text)}[/{style}]", overflow="ellipsis",
                               no_wrap=True, soft_wrap=False, highlight=False)
        else:
            self.console.print(f"{count} {escape(text)}", highlight=False, soft_wrap=True)
