"""``report.html``: the check at a glance, in one self-contained file (no scripts, no external
assets), written beside ``report.md``.

- A header: the check's result (passed, failed, not verified and why), the first divergence
  and its explanation, the summary numbers.
- The relative error of every compared value against its layer's depth (its index in the
  graph's topological order), log scale, with the tolerance: matplotlib's SVG backend.
- The net drawn by Graphviz's ``dot`` (run as a program): one box per layer (name and type),
  edges along the blobs, each box filled by its result (greens by the size of the relative
  error, red for a failure, grey dashed for a layer nothing checked, orange with corner marks
  for a reference fault), a legend, and a tooltip (the SVG ``<title>``) with the numbers.

Either part is replaced by one line saying what it needs when matplotlib or ``dot`` is missing
(or ``dot`` fails or takes too long). The same conversion gives the same bytes: no
timestamps, a fixed hash salt for matplotlib's ids, ``dot``'s output for the same input, and
coordinates rounded to one decimal (which also keeps the file small: an 800-layer net's page
opens in about a second).
"""

from __future__ import annotations

import html
import io
import math
import re
import shutil
import subprocess
from dataclasses import dataclass

from .layerwise import DRIFT, FAIL, PASS, REFERR, SKIP, Row, Verification

__all__ = [
    "render_report_html", "node_marks", "NodeMark", "dot_source", "draw_net", "error_plot",
    "FAIL_COLOR", "DRIFT_COLOR", "REFERR_COLOR", "SKIP_COLOR", "GREENS", "green_for",
]

# The colours of the drawing (the tests look for them, exactly, in a screenshot).
FAIL_COLOR = "#d7191c"
DRIFT_COLOR = "#fee08b"
REFERR_COLOR = "#fdae61"
SKIP_COLOR = "#eeeeee"
PLAIN_COLOR = "#ffffff"  # inputs, and layers of a conversion that was not checked
# Passed values: darker for a smaller relative error, by decade (upper bounds, exclusive).
GREENS = (
    (1e-7, "#00441b"),
    (1e-6, "#006d2c"),
    (1e-5, "#238b45"),
    (1e-4, "#41ab5d"),
    (1e-3, "#74c476"),
    (math.inf, "#a1d99b"),
)
_WHITE_TEXT = {"#00441b", "#006d2c", "#238b45", FAIL_COLOR}
HASH_SALT = "caffe2torch"
DOT_TIMEOUT = 120.0  # seconds: past this the drawing is left out
MAX_DRAWN = 5000  # layers: beyond this the drawing is left out (dot would take minutes)
NEEDS_DOT = "The drawing of the net needs Graphviz's dot program (apt install graphviz)."
NEEDS_MPL = "The plot needs matplotlib (pip install matplotlib)."


def green_for(rel: float | None) -> str:
    """The fill of a passed layer whose worst relative error is ``rel``."""
    rel = 0.0 if rel is None or not math.isfinite(rel) else rel
    for bound, colour in GREENS:
        if rel < bound:
            return colour
    return GREENS[-1][1]


def _decade(bound: float) -> str:
    return f"1e{round(math.log10(bound))}"


def _green_labels() -> list[tuple[str, str]]:
    out, low = [], None
    for bound, colour in GREENS:
        if low is None:
            out.append((colour, f"< {_decade(bound)}"))
        elif math.isinf(bound):
            out.append((colour, f">= {_decade(low)}"))
        else:
            out.append((colour, f"{_decade(low)} .. {_decade(bound)}"))
        low = bound
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.2e}" if x else "0"


def _shape(shape) -> str:
    return "x".join("?" if d == -1 else str(d) for d in shape) if shape else "scalar"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))


# ------------------------------------------------------------------------- node marks
@dataclass
class NodeMark:
    """How one layer is drawn: its result, worst relative error, fill and style."""

    status: str  # pass, FAIL, drift, reference-error, skipped, input, unverified
    rel: float | None
    fill: str
    style: str  # dot's style attribute
    fontcolor: str
    what: str  # the legend's word for it
    rows: list[Row]


_STYLE = {
    FAIL: (FAIL_COLOR, "filled", "failed"),
    DRIFT: (DRIFT_COLOR, "filled", "drift (the layer alone agrees)"),
    REFERR: (REFERR_COLOR, "filled,diagonals", "reference fault (not the model's)"),
    SKIP: (SKIP_COLOR, "filled,dashed", "skipped (nothing checks it)"),
    "input": (PLAIN_COLOR, "filled", "input"),
    "unverified": (PLAIN_COLOR, "filled", "not verified"),
}


def _mark(status: str, rel: float | None, rows: list[Row]) -> NodeMark:
    if status == PASS:
        fill, style, what = green_for(rel), "filled", "passed"
    else:
        fill, style, what = _STYLE[status]
    font = "#ffffff" if fill in _WHITE_TEXT else ("#666666" if status == SKIP else "#000000")
    return NodeMark(status, rel, fill, style, font, what, rows)


def node_marks(graph, verification: Verification | None) -> dict[str, NodeMark]:
    """Each node's mark (by node id) from the check's rows. A layer fused into another's
    submodule (BatchNorm into Scale) has no value of its own: it takes the result of the value
    it was compared after. A layer with several values shows its worst."""
    own: dict[str, list[Row]] = {}
    covered: dict[str, list[Row]] = {}
    if verification is not None:
        for r in verification.rows:
            own.setdefault(r.layer, []).append(r)
            for other in r.fused:
                covered.setdefault(other, []).append(r)
    failing = (FAIL, DRIFT) if verification is not None and verification.strict else (FAIL,)
    marks: dict[str, NodeMark] = {}
    for n in graph.nodes:
        rows = covered.get(n.id) or own.get(n.id, [])
        statuses = {r.status for r in rows}
        rels = [r.rel for r in rows if r.status in (PASS, FAIL, DRIFT) and r.rel is not None]
        rel = max(rels) if rels else None
        if statuses & set(failing):
            status = FAIL
        elif REFERR in statuses:
            status = REFERR
        elif DRIFT in statuses:
            status = DRIFT
        elif PASS in statuses:
            status = PASS
        elif rows:
            status = SKIP
        elif n.is_source:
            status = "input"
        elif verification is None:
            status = "unverified"
        else:
            status = SKIP
        marks[n.id] = _mark(status, rel, rows)
    return marks


# ------------------------------------------------------------------------------ drawing
def _dot_str(text: str) -> str:
    """A DOT quoted string showing ``text`` as it is (no escString substitutions)."""
    text = _printable(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _tooltip(node, mark: NodeMark, outputs: set[int]) -> str:
    lines = [f"{node.id} ({node.type}): {mark.what}"]
    if mark.rel is not None:
        lines[0] += f", worst relative error {_num(mark.rel)}"
    for r in mark.rows[:6]:
        line = f"{r.blob} {_shape(r.shape)}: {r.status}"
        if r.layer != node.id:
            line += f" (compared after {r.layer}, fused)"
        if r.status != SKIP and r.max_abs is not None:
            line += f", rel {_num(r.rel)}, abs {_num(r.max_abs)}, tolerance {_num(r.bound)}"
        if r.engine:
            line += f", by {r.engine}"
        if r.local is not None:
            line += f", alone {_num(r.local)}"
        if r.note:
            line += f"; {r.note}"
        lines.append(line)
    if len(mark.rows) > 6:
        lines.append(f"... and {len(mark.rows) - 6} more values")
    if node.is_source or not mark.rows:
        lines += [f"{v.name} {_shape(v.shape)}" for v in node.outputs]
    if outputs & {id(v) for v in node.outputs}:
        lines.append("an output of the model")
    return "\n".join(_printable(s) for s in lines)


def dot_source(graph, marks: dict[str, NodeMark], outputs=()) -> tuple[str, dict[str, str]]:
    """The net in DOT (nodes n0, n1, ... in graph order), and the tooltip of each node and
    edge by the title ``dot`` gives it."""
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    out_ids = {id(v) for v in outputs}
    titles: dict[str, str] = {}
    lines = [
        "digraph net {",
        '  graph [rankdir=TB, nodesep=0.2, ranksep=0.3, bgcolor="transparent", pad=0.1];',
        '  node [shape=box, fontname="Helvetica", fontsize=10, height=0.32, margin="0.08,0.03", '
        'penwidth=0.8, color="#333333"];',
        '  edge [arrowsize=0.5, penwidth=0.7, color="#666666"];',
    ]
    for i, n in enumerate(graph.nodes):
        m = marks[n.id]
        label = _dot_str(n.id)[:-1] + "\\n" + _dot_str(n.type)[1:]
        attrs = [
            f"label={label}",
            f'fillcolor="{m.fill}"',
            f'style="{m.style}"',
            f'class="status-{m.status}"',
        ]
        if m.fontcolor != "#000000":
            attrs.append(f'fontcolor="{m.fontcolor}"')
        if m.status == SKIP:
            attrs.append('color="#888888"')
        if out_ids & {id(v) for v in n.outputs}:
            attrs.append("penwidth=2")
        lines.append(f"  n{i} [{', '.join(attrs)}];")
        titles[f"n{i}"] = _tooltip(n, m, out_ids)
    for j, n in enumerate(graph.nodes):
        seen: set[tuple[int, int]] = set()
        for v in n.inputs:
            i = index.get(id(v.producer))
            if i is None or (i, id(v)) in seen:
                continue
            seen.add((i, id(v)))
            key = f"n{i}->n{j}"
            if key not in titles:  # the same two layers along another blob: one edge
                lines.append(f"  n{i} -> n{j};")
            blob = _printable(f"{v.name} {_shape(v.shape)}")
            titles[key] = f"{titles[key]}\n{blob}" if key in titles else blob
    lines.append("}")
    return "\n".join(lines) + "\n", titles


_NUMBER = re.compile(r"-?\d+\.\d+")
_GEOMETRY = re.compile(r'\b(points|d|x|y|cx|cy|rx|ry|transform|viewBox|width|height)="([^"]*)"')


def _round(text: str) -> str:
    """Numbers in ``text`` to one decimal, without a trailing .0."""

    def one(m: re.Match) -> str:
        s = f"{float(m.group()):.1f}"
        s = s[:-2] if s.endswith(".0") else s
        return "0" if s == "-0" else s

    return _NUMBER.sub(one, text)


def lean_svg(svg: str) -> str:
    """An SVG to inline: no XML prolog, doctype or comments; geometry rounded to 0.1 pt."""
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", "", svg, flags=re.S)
    svg = _GEOMETRY.sub(lambda m: f'{m.group(1)}="{_round(m.group(2))}"', svg)
    return re.sub(r"\n\s*\n+", "\n", svg).strip() + "\n"


def _graphviz_svg(svg: str, titles: dict[str, str]) -> str:
    """dot's SVG, lean: tooltips for the titles, the repeated font attributes left to CSS."""

    def title(m: re.Match) -> str:
        key = html.unescape(m.group(1))
        text = titles.get(key)
        return m.group() if text is None else f"<title>{html.escape(text, quote=False)}</title>"

    svg = re.sub(r"<title>([^<]*)</title>", title, svg)
    # What every node and edge repeats is inherited from svg.net's CSS instead (an element's
    # own attribute still wins: the fills, a skipped layer's grey dashes, an output's border).
    for repeated in (
        ' font-family="Helvetica,sans-Serif"', ' font-size="10.00"', ' text-anchor="middle"',
        ' stroke="#333333"', ' stroke-width="0.8"',
    ):
        svg = svg.replace(repeated, "")
    svg = svg.replace('<path fill="none" stroke="#666666" stroke-width="0.7"', '<path fill="none"')
    svg = svg.replace('<polygon fill="#666666" stroke="#666666" stroke-width="0.7"', "<polygon")
    svg = re.sub(r' id="(?:node|edge)\d+"', "", svg).replace('class="node status&#45;', 'class="node status-')
    svg = svg.replace("<svg ", '<svg class="net" ', 1)
    return lean_svg(svg)


@dataclass
class Drawing:
    svg: str | None  # the inline SVG, or None
    note: str  # why there is none (or "")


def draw_net(graph, marks: dict[str, NodeMark], outputs=(), dot: str | None = None) -> Drawing:
    """The net drawn by ``dot`` as inline SVG (or why not)."""
    if len(graph.nodes) > MAX_DRAWN:
        return Drawing(None, f"The net has {len(graph.nodes)} layers: not drawn (at most {MAX_DRAWN}).")
    dot = dot or shutil.which("dot")
    if dot is None:
        return Drawing(None, NEEDS_DOT)
    source, titles = dot_source(graph, marks, outputs)
    try:
        done = subprocess.run(
            [dot, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, timeout=DOT_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return Drawing(None, f"dot did not lay out the net within {DOT_TIMEOUT:g} s: not drawn.")
    except OSError as e:
        return Drawing(None, f"{NEEDS_DOT} ({e.strerror or e})")
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = _printable(lines[-1]) if lines else ""
        return Drawing(None, f"dot failed (exit {done.returncode}){': ' + why if why else ''}: not drawn.")
    return Drawing(_graphviz_svg(done.stdout.decode("utf-8", "replace"), titles), "")


# --------------------------------------------------------------------------------- plot
_PLOT_STYLE = {  # status: colour, marker, size, legend word
    PASS: ("#238b45", "o", 3.0, "passed"),
    DRIFT: ("#d4a20a", "D", 4.0, "drift"),
    FAIL: (FAIL_COLOR, "o", 5.0, "failed"),
    REFERR: ("#e66101", "x", 5.0, "reference fault"),
}


def error_plot(graph, v: Verification) -> Drawing:
    """Relative error against depth, log scale, with the tolerance: SVG from matplotlib."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        return Drawing(None, NEEDS_MPL)
    depth = {n.id: i for i, n in enumerate(graph.nodes)}
    points: dict[str, list[tuple[int, float]]] = {}
    tol: list[tuple[int, float]] = []
    rels = [r.rel for r in v.rows if r.status in _PLOT_STYLE and r.rel is not None and r.layer in depth]
    finite = [x for x in rels if math.isfinite(x) and x > 0]
    floor = 10 ** math.floor(math.log10(min(finite + [v.rtol]))) / 10
    ceiling = 10 ** math.ceil(math.log10(max(finite + [v.rtol * 10, 1.0]))) * 10
    zeros = infs = 0
    for r in v.rows:
        if r.status not in _PLOT_STYLE or r.rel is None or r.layer not in depth:
            continue
        x, y = depth[r.layer], r.rel
        if y == 0:
            y, zeros = floor, zeros + 1
        elif not math.isfinite(y):
            y, infs = ceiling, infs + 1
        points.setdefault(r.status, []).append((x, y))
        if r.bound is not None and r.ref_max:
            tol.append((x, r.bound / r.ref_max))
    skipped = len(v.skipped)
    with matplotlib.rc_context(
        {
            "svg.hashsalt": HASH_SALT,
            "svg.fonttype": "none",
            "font.size": 9,
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],  # shorter text styles
            "axes.unicode_minus": False,
        }
    ):
        fig = Figure(figsize=(10, 3.4))
        ax = fig.add_subplot()
        ax.set_yscale("log")
        ax.set_ylim(floor / 2, ceiling * 2)
        last = max(depth.values(), default=0)
        ax.set_xlim(-0.5, last + 0.5)
        if tol:
            tol.sort()
            ax.plot([t[0] for t in tol], [t[1] for t in tol], color="#9e9e9e", lw=0.8,
                    drawstyle="steps-mid", label="tolerance: (atol + rtol max|ref|) / max|ref|")
        ax.axhline(v.rtol, color="#555555", lw=0.8, ls="--", label=f"rtol {v.rtol:g}")
        for status in (PASS, DRIFT, REFERR, FAIL):
            pts = points.get(status)
            if not pts:
                continue
            colour, marker, size, word = _PLOT_STYLE[status]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="none", marker=marker,
                    ms=size, color=colour, mew=1.0 if marker == "x" else 0.0,
                    label=f"{word} ({len(pts)})")
        first = v.first_divergence
        if first is not None and first.layer in depth and first.rel is not None:
            y = first.rel if math.isfinite(first.rel) and first.rel > 0 else (
                ceiling if first.rel else floor)
            ax.annotate(
                f"first divergence: {_printable(first.layer)}", (depth[first.layer], y),
                xytext=(8, 8), textcoords="offset points", fontsize=8, color="#7f0000",
                arrowprops={"arrowstyle": "-", "color": "#7f0000", "lw": 0.6},
            )
        notes = []
        if zeros:
            notes.append(f"{zeros} exact (0) at the bottom")
        if infs:
            notes.append(f"{infs} of another shape at the top")
        if skipped:
            notes.append(f"{skipped} skipped, not plotted")
        ax.set_xlabel("depth: the layer's index in topological order"
                      + (f"  ({'; '.join(notes)})" if notes else ""))
        ax.set_ylabel("max relative error")
        ax.grid(True, which="major", axis="y", color="#e6e6e6", lw=0.5)
        ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=3)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "caffe2torch"})
    svg = buf.getvalue()
    # matplotlib's page-wide style (it would apply to the whole document once inlined)
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = svg.replace("<svg ", '<svg class="plot" ', 1)
    return Drawing(lean_svg(svg), "")


# --------------------------------------------------------------------------------- page
_CSS = """
body{font:14px/1.4 Helvetica,Arial,sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:20px 0 6px}
.verdict{padding:6px 10px;border-left:6px solid;font-size:15px;margin:8px 0}
.verdict.passed{background:#eef7ee;border-color:#2e7d32}
.verdict.failed{background:#fcebea;border-color:#8b0000}
.verdict.unchecked{background:#f3f3f3;border-color:#777}
.verdict b{font-size:16px}.failed b{color:#8b0000}.passed b{color:#1b5e20}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #e4e4e4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:12px}.muted{color:#666}.missing{color:#8a4b00;font-style:italic}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:6px 0}
.legend span{display:inline-flex;align-items:center;gap:4px}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #333;box-sizing:border-box}
.sw.skipped{border-style:dashed;border-color:#888}
.sw.referr{background-image:linear-gradient(135deg,#333 1px,transparent 1px)}
.drawing{overflow:auto;border:1px solid #ddd;max-height:none}
svg.net{font-family:Helvetica,Arial,sans-serif;font-size:10px;text-anchor:middle}
svg.net .node{stroke:#333;stroke-width:.8}svg.net .edge{fill:#666;stroke:#666;stroke-width:.7}
svg.net text{stroke:none}
svg.plot{max-width:100%;height:auto}
""".strip()


def _e(text) -> str:
    return html.escape(_printable(text), quote=True)


def _verdict(conversion) -> list[str]:
    v = conversion.verification
    if v is None:
        why = conversion.verification_skipped or "not run"
        return [f'<p class="verdict unchecked"><b>not verified</b>: {_e(why)}</p>']
    counts = (
        f"{len(v.compared)} values compared{_e(v.engines_note)}, {len(v.failed)} failed, "
        + (f"{len(v.drifted)} drift{' (failing: --strict)' if v.strict else ''}, " if v.drifted else "")
        + (f"{len(v.reference_errors)} reference-error, " if v.reference_errors else "")
        + f"{len(v.skipped)} skipped"
    )
    word = {"passed": "passed", "failed": "FAILED", "unchecked": "not verified"}[v.status]
    out = [f'<p class="verdict {v.status}"><b>{word}</b>: {counts}']
    first = v.first_divergence
    if first is not None:
        out.append(
            f"<br>first divergence: layer <code>{_e(first.layer)}</code> ({_e(first.type)}), "
            f"blob <code>{_e(first.blob)}</code>: relative error {_num(first.rel)}"
            + (f" (alone: {_num(first.local)})" if first.local is not None else "")
        )
    elif v.status == "unchecked":
        out.append("<br>the reference can check none of the values")
    out.append("</p>")
    if v.explanation:
        out.append("<blockquote>" + "<br>".join(_e(s) for s in v.explanation) + "</blockquote>")
    return out


def _summary(conversion) -> list[str]:
    g = conversion.graph
    rows = [
        ("net", f"{_e(g.name)} ({len(g.layers)} layers)"),
        ("class", f"<code>{_e(conversion.class_name)}</code>"),
        ("inputs", ", ".join(f"<code>{_e(v.name)}</code> {_shape(v.shape)}" for v in g.inputs)),
        ("outputs", ", ".join(f"<code>{_e(v.name)}</code> {_shape(v.shape)}" for v in conversion.outputs)),
    ]
    v = conversion.verification
    if v is not None:
        worst = v.worst
        rows += [
            ("reference", _e(v.reference)),
            ("input", _e(v.inputs)),
            ("tolerance", f"max|y - ref| &lt;= {v.atol:g} + {v.rtol:g} * max|ref| "
                          "(relative error: max|y - ref| / max|ref|)"),
            ("worst", f"{_num(worst.rel)} (<code>{_e(worst.blob)}</code> after "
                      f"<code>{_e(worst.layer)}</code>)" if worst else "-"),
        ]
    body = "".join(f"<tr><th>{k}</th><td>{val}</td></tr>" for k, val in rows)
    return [f"<table>{body}</table>"]


def _not_passing(v: Verification) -> list[str]:
    """The values that did not pass (failed, drift, reference fault), at most 50."""
    bad = [r for r in v.rows if r.status in (FAIL, DRIFT, REFERR)]
    if not bad:
        return []
    out = ["<h2>Values that did not pass</h2>",
           "<table><tr><th>layer</th><th>type</th><th>blob</th><th>shape</th><th>max rel err</th>"
           "<th>alone</th><th>result</th></tr>"]
    for r in bad[:50]:
        out.append(
            f"<tr><td>{_e(r.layer)}</td><td>{_e(r.type)}</td><td>{_e(r.blob)}</td>"
            f"<td>{_shape(r.shape)}</td><td class=n>{_num(r.rel)}</td>"
            f"<td class=n>{_num(r.local) if r.local is not None else ''}</td>"
            f"<td>{_e(r.status + (': ' + r.note if r.note else ''))}</td></tr>"
        )
    out.append("</table>")
    if len(bad) > 50:
        out.append(f'<p class="muted">... and {len(bad) - 50} more: report.md has them all.</p>')
    return out


def _legend(marks: dict[str, NodeMark]) -> str:
    """The colour scale of the passed layers, and the other marks the drawing uses."""
    items = [f'<span><i class="sw" style="background:{c}"></i>{_e(t)}</span>' for c, t in _green_labels()]
    items.insert(0, '<span class="muted">passed, by relative error:</span>')
    used = {m.status for m in marks.values()}
    for status in (FAIL, DRIFT, REFERR, SKIP, "input", "unverified"):
        if status in used:
            fill, _, what = _STYLE[status]
            cls = {SKIP: " skipped", REFERR: " referr"}.get(status, "")
            items.append(f'<span><i class="sw{cls}" style="background-color:{fill}"></i>{_e(what)}</span>')
    items.append('<span class="muted">thick border: an output; hover a layer for its numbers</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def render_report_html(conversion, *, dot: str | None = None) -> str:
    """report.html of a :class:`~caffe2torch.emit.Conversion` (see the module). ``dot``: the
    Graphviz program to run (by default ``dot`` on the PATH)."""
    g = conversion.graph
    v = conversion.verification
    marks = node_marks(g, v)
    title = f"{_printable(g.name)}: Caffe to PyTorch"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        *_verdict(conversion),
        *_summary(conversion),
    ]
    if v is not None:
        parts += _not_passing(v)
        parts.append("<h2>Relative error by depth</h2>")
        plot = error_plot(g, v) if v.compared else Drawing(None, "No value was compared.")
        parts.append(plot.svg if plot.svg else f'<p class="missing">{_e(plot.note)}</p>')
    parts.append("<h2>The net</h2>")
    drawing = draw_net(g, marks, conversion.outputs, dot=dot)
    if drawing.svg:
        parts += [_legend(marks), f'<div class="drawing">{drawing.svg}</div>']
    else:
        parts.append(f'<p class="missing">{_e(drawing.note)}</p>')
    notes = list(conversion.notes) + list(getattr(getattr(conversion, "generated", None), "notes", []))
    if notes:
        parts += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"]
    parts.append('<p class="muted">The full layer-by-layer table is in report.md.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
