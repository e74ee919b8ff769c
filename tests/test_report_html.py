"""report.html: the net drawn by Graphviz with each layer coloured by its check, the error-by-depth
plot, the header. Unit tests of the marks and the page; then each page opened in headless
Chromium, whose screenshot must show the drawing (and the broken layer in the failure colour).
"""
from __future__ import annotations

import dataclasses
import html
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CORPUS, write
from layer_harness import net_text

from caffe2torch.verify import report_html
from caffe2torch.verify.layerwise import DRIFT, FAIL, PASS, REFERR, SKIP, Row, Verification
from caffe2torch.verify.report_html import (
    FAIL_COLOR,
    GREENS,
    NEEDS_DOT,
    NEEDS_MPL,
    REFERR_COLOR,
    SKIP_COLOR,
    green_for,
    node_marks,
    render_report_html,
)

DOT = shutil.which("dot")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_dot = pytest.mark.skipif(DOT is None, reason="Graphviz's dot is not installed (apt install graphviz)")
needs_mpl = pytest.mark.skipif(
    __import__("importlib").util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: chromium is not installed (apt install chromium)"
)

# conv -> relu -> conv2 -> bn -> scale (fused) -> relu -> pool -> fc -> softmax, and a branch
# (conv1 read twice: an Eltwise) so that the drawing has a join.
NET = net_text(
    {"data": (1, 3, 12, 12)},
    """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "relu1" }
layer { name: "conv2" type: "Convolution" bottom: "relu1" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: true } }
layer { name: "sum" type: "Eltwise" bottom: "conv2" bottom: "relu1" top: "sum" }
layer { name: "pool" type: "Pooling" bottom: "sum" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
""",
    name="small",
)


# ------------------------------------------------------------------------------ helpers
class _Node:
    def __init__(self, id, type, inputs=(), source=False):
        self.id = self.name = id
        self.type = type
        self.inputs = list(inputs)
        self.outputs = [_Value(id, self)]
        self.is_source = source


class _Value:
    def __init__(self, name, producer):
        self.name, self.producer, self.shape = name, producer, (1, 4)


class _Graph:
    def __init__(self, nodes):
        self.nodes = nodes
        self.name = "fake"
        self.inputs = [nodes[0].outputs[0]]

    @property
    def layers(self):
        return [n for n in self.nodes if not n.is_source]


def _chain(*specs):
    """A chain of fake nodes: data, then (id, type) each reading the one before."""
    nodes = [_Node("data", "Input", source=True)]
    for id, type in specs:
        nodes.append(_Node(id, type, [nodes[-1].outputs[0]]))
    return _Graph(nodes)


def _row(layer, status, rel=None, fused=(), note=""):
    r = Row(layer, "T", layer, (1, 4), status, note=note, fused=list(fused))
    if rel is not None:
        r.max_abs, r.ref_max, r.bound = rel, 1.0, 1e-5 + 1e-4
    return r


def _verification(rows, strict=False):
    return Verification("test reference", "seeded", 1e-4, 1e-5, rows=rows, strict=strict)


class _Conversion:
    """What render_report_html reads of a Conversion."""

    def __init__(self, graph, verification, skipped="not run"):
        self.graph = graph
        self.verification = verification
        self.verification_skipped = skipped
        self.outputs = [graph.nodes[-1].outputs[0]]
        self.class_name = "Fake"
        self.notes = []


def _node_fills(page: str) -> dict[str, str]:
    """Each drawn layer's fill colour, by the layer name its tooltip starts with."""
    fills = {}
    for m in re.finditer(r'<g class="node[^"]*">\s*<title>([^<]*)</title>\s*<polygon fill="([^"]+)"', page):
        fills[html.unescape(m.group(1)).split(" (", 1)[0]] = m.group(2)
    return fills


# --------------------------------------------------------------------------------- unit
def test_marks_colour_each_layer_by_its_result():
    g = _chain(("a", "Convolution"), ("b", "ReLU"), ("c", "Convolution"), ("d", "Clip"),
               ("e", "LRN"), ("f", "BatchNorm"), ("g", "Scale"), ("h", "Eltwise"))
    v = _verification([
        _row("a", PASS, 3e-8),
        _row("b", PASS, 4e-5),
        _row("c", FAIL, 0.5),
        _row("d", SKIP, note="OpenCV has no Clip layer"),
        _row("e", REFERR, note="the reference's value is not finite"),
        _row("f", SKIP, note="fused with g into g; compared after it"),
        _row("g", PASS, 2e-6, fused=["f"]),
        _row("h", DRIFT, 2e-3),
    ])
    marks = node_marks(g, v)
    assert marks["data"].status == "input"
    assert marks["a"].fill == GREENS[0][1] and marks["b"].fill == GREENS[3][1]  # by decade
    assert marks["a"].fill != marks["b"].fill
    assert marks["c"].status == FAIL and marks["c"].fill == FAIL_COLOR
    assert marks["d"].fill == SKIP_COLOR and "dashed" in marks["d"].style
    assert marks["e"].fill == REFERR_COLOR and "diagonals" in marks["e"].style
    # BatchNorm fused into Scale: drawn with the result of the value it was compared after
    assert marks["f"].status == PASS and marks["f"].fill == marks["g"].fill == GREENS[2][1]
    assert marks["h"].status == DRIFT
    greens = {c for _, c in GREENS}
    assert FAIL_COLOR not in greens and REFERR_COLOR not in greens and SKIP_COLOR not in greens
    # Under --strict drift fails: the failure colour
    assert node_marks(g, _verification(v.rows, strict=True))["h"].fill == FAIL_COLOR
    # Not checked at all: every layer plain, inputs too
    assert {m.status for m in node_marks(g, None).values()} == {"input", "unverified"}


def test_green_scale_is_ordered_by_error():
    assert green_for(0.0) == green_for(None) == GREENS[0][1]
    assert [green_for(x) for x in (1e-8, 5e-7, 5e-6, 5e-5, 5e-4, 0.5)] == [c for _, c in GREENS]


def test_a_layer_with_a_failing_and_a_passing_value_is_failed():
    g = _chain(("s", "Slice"))
    rows = [_row("s", PASS, 1e-7), _row("s", FAIL, 1.0)]
    m = node_marks(g, _verification(rows))["s"]
    assert m.status == FAIL and m.rel == 1.0


@needs_dot
@needs_mpl
def test_page_is_deterministic_self_contained_and_tooltipped():
    g = _chain(("conv", "Convolution"), ("bad", "InnerProduct"), ("clip", "Clip"), ("odd\"\\n<name>", "ReLU"))
    v = _verification([_row("conv", PASS, 2e-7), _row("bad", FAIL, 0.3), _row("clip", SKIP, note="no Clip"),
                       _row('odd"\\n<name>', PASS, 0.0)])
    c = _Conversion(g, v)
    page = render_report_html(c)
    assert page == render_report_html(c)  # byte-identical
    # self-contained: no script, no fetched asset, no embedded font
    for fetched in ("<script", "<link", "<img", "src=", "@import", "@font-face", "url(http", 'href="http'):
        assert fetched not in page, fetched
    fills = _node_fills(page)
    assert fills["bad"] == FAIL_COLOR
    assert all(f != FAIL_COLOR for k, f in fills.items() if k != "bad")
    assert fills["clip"] == SKIP_COLOR and fills["conv"] in {c for _, c in GREENS}
    assert 'odd"\\n<name>' in fills  # shown as it is: no DOT escapes, HTML-escaped
    assert "FAILED" in page and "first divergence: layer <code>bad</code>" in page
    assert "rel 3.00e-01" in page  # the tooltip's numbers
    assert "Relative error by depth" in page and 'class="plot"' in page
    assert html.escape(NEEDS_DOT) not in page and html.escape(NEEDS_MPL) not in page


@needs_mpl
def test_without_dot_the_page_says_what_the_drawing_needs(monkeypatch):
    g = _chain(("conv", "Convolution"))
    c = _Conversion(g, _verification([_row("conv", PASS, 1e-6)]))
    monkeypatch.setattr(report_html.shutil, "which", lambda name: None)
    page = render_report_html(c)
    assert html.escape(NEEDS_DOT) in page and "apt install graphviz" in page
    assert 'class="plot"' in page and "passed" in page  # the plot and the header are still there
    assert "<polygon" not in page.split('class="plot"')[0]
    # a dot that is there but fails
    bad = Path(__file__).parent / "no-such-dot"
    assert html.escape(NEEDS_DOT) in render_report_html(c, dot=str(bad))


@needs_dot
def test_without_matplotlib_the_page_says_what_the_plot_needs(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    g = _chain(("conv", "Convolution"))
    page = render_report_html(_Conversion(g, _verification([_row("conv", PASS, 1e-6)])))
    assert html.escape(NEEDS_MPL) in page and "<polygon" in page  # the drawing is still there


@needs_dot
def test_unverified_conversion_has_no_plot():
    g = _chain(("conv", "Convolution"))
    page = render_report_html(_Conversion(g, None, skipped="--no-verify"))
    assert "<b>not verified</b>: --no-verify" in page
    assert 'class="plot"' not in page and "not verified" in page
    assert set(_node_fills(page).values()) == {"#ffffff"}


# ------------------------------------------------------------------------------ real nets
def _broken(tmp_path):
    """The small net converted with seeded weights, then one weight of conv2 changed in the
    conversion before it is checked: conv2 (with its fused BatchNorm) fails."""
    from caffe2torch.emit import convert
    from caffe2torch.verify.run import verify_conversion

    net = write(tmp_path / "small.prototxt", NET)
    c = convert(net, random_weights=True)
    key = next(k for k in c.generated.state if k.startswith("conv2.") and k.endswith("weight"))
    w = np.array(c.generated.state[key], copy=True)
    w.flat[0] += 1.0
    c.generated.state[key] = w
    c.verification = verify_conversion(c)
    return c


@needs_dot
@needs_mpl
def test_broken_layer_is_red_in_the_written_report(tmp_path):
    pytest.importorskip("cv2")
    c = _broken(tmp_path)
    assert c.verification.status == "failed" and c.verification.first_divergence.layer == "conv2"
    out = c.write(tmp_path / "out")
    page = (out / report_html_name()).read_text(encoding="utf-8")
    fills = _node_fills(page)
    assert fills["conv2"] == FAIL_COLOR
    assert [k for k, f in fills.items() if f == FAIL_COLOR] == ["conv2"]  # the rest drift
    assert fills["conv1"] in {c for _, c in GREENS}
    # the same conversion, written again: the same bytes
    again = c.write(tmp_path / "again")
    assert (again / report_html_name()).read_bytes() == (out / report_html_name()).read_bytes()


def report_html_name() -> str:
    from caffe2torch import folder

    return getattr(folder, "REPORT_HTML", "report.html")


def _screenshot(page: Path, png: Path, size=(1200, 1400)) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={png.parent / 'profile'}",
         f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()],
        capture_output=True, timeout=120,
    )
    assert done.returncode == 0 and png.is_file(), done.stderr.decode(errors="replace")[-2000:]
    return time.perf_counter() - start


def _pixels(png: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


def _boxes_of(px: np.ndarray, colour: str, min_width: int = 60, tol: int = 2) -> int:
    """How many pixel rows hold a run of at least ``min_width`` pixels of ``colour``: a node's
    box (at least 72 px wide), not a legend swatch (12 px) or a plot marker."""
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    mask = np.all(np.abs(px.astype(int) - rgb) <= tol, axis=2)
    rows = 0
    for line in mask:
        padded = np.concatenate([[0], line.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        runs = edges[1::2] - edges[::2]
        rows += bool(runs.size and runs.max() >= min_width)
    return rows


def _not_blank(px: np.ndarray) -> None:
    ink = np.any(px < 200, axis=2).mean()
    colours = len(np.unique(px.reshape(-1, 3)[::7], axis=0))
    assert ink > 0.01 and colours > 20, f"the screenshot looks blank ({ink:.3%} ink, {colours} colours)"


@pytest.mark.slow
@needs_chromium
@needs_dot
@needs_mpl
def test_browser_shows_the_broken_layer_in_the_failure_colour(tmp_path):
    pytest.importorskip("cv2")
    c = _broken(tmp_path)
    page = tmp_path / "report.html"
    page.write_text(render_report_html(c), encoding="utf-8")
    png = tmp_path / "shot.png"
    _screenshot(page, png, size=(1200, 2000))
    px = _pixels(png)
    _not_blank(px)
    # A node's box is about 24 px tall here; its label breaks the runs on about half of its
    # rows, so one red box gives 12 rows (no legend swatch or plot marker is 60 px wide).
    assert _boxes_of(px, FAIL_COLOR) >= 8, "no box in the failure colour on screen"
    assert sum(_boxes_of(px, g) for _, g in GREENS) >= 15, "no passed (green) box on screen"


@pytest.mark.slow
@pytest.mark.corpus
@needs_chromium
@needs_dot
@needs_mpl
@pytest.mark.converts("bvlc_googlenet/deploy.prototxt")
def test_browser_shows_googlenet_all_green(corpus_conversions, tmp_path):
    pytest.importorskip("cv2")
    from caffe2torch.verify.run import verify_conversion

    c = corpus_conversions.get(CORPUS / "bvlc_googlenet" / "deploy.prototxt")
    if c.verification is None:  # a copy checked: the session's conversion is left as it is
        c = dataclasses.replace(c, verification=verify_conversion(c))
    assert c.verification.passed
    text = render_report_html(c)
    fills = _node_fills(text)
    assert len(fills) == len(c.graph.nodes)
    assert FAIL_COLOR not in fills.values()
    assert sum(f in {g for _, g in GREENS} for f in fills.values()) > 100
    page = tmp_path / "report.html"
    page.write_text(text, encoding="utf-8")
    png = tmp_path / "shot.png"
    _screenshot(page, png, size=(1400, 2400))
    px = _pixels(png)
    _not_blank(px)
    assert sum(_boxes_of(px, g) for _, g in GREENS) >= 30, "no passed (green) box on screen"
    assert _boxes_of(px, FAIL_COLOR) == 0
