"""Measure where OpenCV's dnn module computes something other than real Caffe, and write the
table to docs/opencv-deviations.md.

Each case is a one-layer deploy net (an Input layer, then the layer) with seeded weights
(``caffe2torch.synth``) and a seeded input (``numpy.random.default_rng(0)``). Real Caffe (BVLC,
built by ``make caffe-ref``) and OpenCV (``cv2.dnn``, fusion off, CPU) run it; the table gives
both results and what the project does about the layer for OpenCV (``Layer.opencv_gap``,
``Layer.opencv_top_gap``, ``Layer.opencv_layer``, read from the layer as it is now).

    .venv/bin/python tools/opencv_deviations.py           # write the doc
    .venv/bin/python tools/opencv_deviations.py --check   # exit 1 if it is out of date
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caffe2torch.api import load_graph
from caffe2torch.layers import known_types, layer_class
from caffe2torch.caffe.schema import pb
from caffe2torch.caffe.caffemodel import LayerRecord, write_caffemodel
from caffe2torch.synth import synth_blobs, write_synth_weights
from caffe2torch.verify.caffe_ref import ENV_PREFIX, caffe_build, run_caffe
from caffe2torch.verify.opencv import opencv, run_opencv
from caffe2torch.verify.reference import ReferenceError
from caffe2torch.verify.parity import ATOL, RTOL

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "opencv-deviations.md"
SEED = 0
SHAPE = (2, 3, 5, 4)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class Case:
    """One layer named ``out`` reading ``in0``, ``in1``... (``inputs``: their shapes) and
    writing ``out0``, ``out1``...

    ``values``: the inputs' values, ``normal`` (standard normal), ``positive``
    (``|normal| + 0.1``), ``small`` (``normal * 1e-4``) or ``indices:N`` (integers in [0, N)),
    or one of these per input, separated by commas. ``opencv_param``: what OpenCV gets instead
    of ``param`` (the project's rewrite, same meaning), None for the same net. ``varies``:
    OpenCV's values change from run to run (it reads memory it did not write), so the table
    gives no number for them. ``note``: a line under the table."""

    name: str
    type: str
    param: str = ""
    inputs: tuple[tuple[int, ...], ...] = (SHAPE,)
    tops: int = 1
    values: str = "normal"
    opencv_param: str | None = None
    varies: bool = False
    note: str = ""  # what else was seen, for the notes under the table

    def layers(self, param: str | None = None, prefix: str = "") -> str:
        """The Input layer and the layer, every name (layers, blobs) after ``prefix``."""
        param = self.param if param is None else param
        shapes = "".join(
            " shape {" + "".join(f" dim: {d}" for d in s) + " }" for s in self.inputs
        )
        ins = " ".join(f'top: "{prefix}in{k}"' for k in range(len(self.inputs)))
        bottoms = " ".join(f'bottom: "{prefix}in{k}"' for k in range(len(self.inputs)))
        tops = " ".join(f'top: "{prefix}out{k}"' for k in range(self.tops))
        return (
            f'layer {{ name: "{prefix}input" type: "Input" {ins} input_param {{{shapes} }} }}\n'
            f'layer {{ name: "{prefix}out" type: "{self.type}" {bottoms} {tops} {param} }}\n'
        )

    def prototxt(self, param: str | None = None) -> str:
        return f'name: "{self.name}"\n' + self.layers(param)

    def arrays(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(SEED)
        out = {}
        kinds = self.values.split(",")
        for k, shape in enumerate(self.inputs):
            kind = kinds[min(k, len(kinds) - 1)]
            if kind.startswith("indices:"):
                x = rng.integers(0, int(kind.split(":")[1]), shape).astype(np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32)
                if kind == "positive":
                    x = np.abs(x) + np.float32(0.1)
                elif kind == "small":
                    x = x * np.float32(1e-4)
            out[f"in{k}"] = x
        return out


def C(name, type_, param="", **kw) -> Case:  # noqa: N802 - reads as a table
    return Case(name, type_, param, **kw)


POOL = (1, 2, 6, 6)
DEPTHWISE = "convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 1 }"
FLOOR = "pooling_param { pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR }"
CASES: list[Case] = [
    # MVN: OpenCV adds eps to the variance, Caffe to the standard deviation.
    C("mvn-eps-0.1", "MVN", "mvn_param { normalize_variance: true eps: 0.1 }"),
    C("mvn-eps-default", "MVN", "mvn_param { normalize_variance: true }",
      note="eps 1e-9 is lost next to a variance near 1; the next row, with a standard deviation near "
      "1e-4, shows the deviation at the default eps"),
    # eps 1e-9 matters where the standard deviation is near sqrt(1e-9) = 3e-5.
    C("mvn-eps-default-small-input", "MVN", "mvn_param { normalize_variance: true }", values="small"),
    C("mvn-across-eps-0.1", "MVN", "mvn_param { across_channels: true normalize_variance: true eps: 0.1 }"),
    C("mvn-across-mean-only", "MVN", "mvn_param { across_channels: true normalize_variance: false }"),
    C("mvn-mean-only", "MVN", "mvn_param { normalize_variance: false }"),
    # LRN
    C("lrn-across-k-1", "LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 }"),
    C("lrn-across-k-2", "LRN", "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }"),
    C("lrn-within", "LRN", "lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.5 beta: 0.75 }"),
    # Log, Power, Exp
    C("log-default", "Log", "", values="positive"),
    C("log-base-scale-shift", "Log", "log_param { base: 2 scale: 0.5 shift: 1 }", values="positive"),
    C("power", "Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
    C("power-fractional", "Power", "power_param { power: 0.5 scale: 2 shift: 0.1 }", values="positive"),
    C("exp-default", "Exp"),
    C("exp-base-scale-shift", "Exp", "exp_param { base: 2 scale: 0.5 shift: 0.1 }"),
    # InnerProduct
    C("ip", "InnerProduct", "inner_product_param { num_output: 4 }"),
    C("ip-transpose", "InnerProduct", "inner_product_param { num_output: 4 transpose: true }"),
    C("ip-axis-2", "InnerProduct", "inner_product_param { num_output: 4 axis: 2 }"),
    # Convolution, Deconvolution
    C("conv-dilation-2", "Convolution", "convolution_param { num_output: 4 kernel_size: 3 dilation: 2 }",
      inputs=((1, 3, 7, 7),)),
    C("conv-group", "Convolution", "convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 group: 2 }",
      inputs=((1, 4, 6, 6),)),
    # Depthwise 3x3 pad 1 where the input has a side of 1 (SSDLite's last feature maps). On
    # them OpenCV reads memory it did not write: its values change from run to run.
    C("depthwise-3x3-pad-1-on-1x1", "Convolution", DEPTHWISE, inputs=((1, 8, 1, 1),), varies=True,
      note="seen from 0.31 to 4e+31 in separate runs; also with 3, 4 or 16 channels and on 1x2, 2x1, "
      "1x3 inputs, never with group 1 or on 2x2"),
    C("depthwise-3x3-pad-1-on-1x4", "Convolution", DEPTHWISE, inputs=((1, 8, 1, 4),), varies=True),
    C("depthwise-3x3-pad-1-on-2x2", "Convolution", DEPTHWISE, inputs=((1, 8, 2, 2),)),
    C("conv-3x3-pad-1-on-1x1", "Convolution", "convolution_param { num_output: 8 kernel_size: 3 pad: 1 }",
      inputs=((1, 8, 1, 1),)),
    C("deconv-stride-2", "Deconvolution", "convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 }",
      inputs=((1, 3, 4, 4),)),
    C("deconv-dilation-2", "Deconvolution", "convolution_param { num_output: 2 kernel_size: 3 dilation: 2 }",
      inputs=((1, 3, 4, 4),)),
    # Slice, Concat
    C("slice-axis-2", "Slice", "slice_param { axis: 2 slice_point: 2 }", tops=2),
    C("slice-slice-dim-2", "Slice", "slice_param { slice_dim: 2 slice_point: 2 }", tops=2),
    C("slice-equal-parts", "Slice", "slice_param { axis: 1 }", tops=3),
    C("concat-axis-1", "Concat", "", inputs=((2, 3, 2, 2), (2, 2, 2, 2))),
    C("concat-axis-0", "Concat", "concat_param { axis: 0 }", inputs=((2, 3, 2, 2), (1, 3, 2, 2))),
    C("concat-concat-dim-0", "Concat", "concat_param { concat_dim: 0 }", inputs=((2, 3, 2, 2), (1, 3, 2, 2))),
    # Pooling
    C("pool-max-pad-ceil", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
      inputs=(POOL,)),
    C("pool-ave-pad-ceil", "Pooling", "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
      inputs=(POOL,)),
    C("pool-ave-stride-gt-kernel", "Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 3 }",
      inputs=((1, 2, 7, 7),)),
    C("pool-max-stride-gt-kernel", "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 3 }",
      inputs=((1, 2, 7, 7),)),
    # Without pad Caffe keeps a last window that starts past the input (ceil rounding): its AVE
    # divides 0 by 0, its MAX is -FLT_MAX.
    C("pool-ave-window-outside", "Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 4 }",
      inputs=((1, 2, 4, 4),)),
    C("pool-max-window-outside", "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 4 }",
      inputs=((1, 2, 4, 4),), note="Caffe gives -FLT_MAX for the windows past the input, OpenCV 0"),
    C("pool-round-floor", "Pooling", FLOOR, inputs=(POOL,),
      note="OpenCV's schema has no round_mode: its parser then drops the whole pooling_param "
      "(any field it does not know does the same), so the kernel size is 0"),
    C("pool-round-ceil", "Pooling", FLOOR.replace("FLOOR", "CEIL"), inputs=(POOL,)),
    # What the project gives OpenCV for it (Pooling.opencv_layer):
    C("pool-round-floor-as-ceil-mode", "Pooling", FLOOR, inputs=(POOL,),
      opencv_param="pooling_param { pool: MAX kernel_size: 3 stride: 2 ceil_mode: false }"),
    C("pool-global-ave", "Pooling", "pooling_param { pool: AVE global_pooling: true }", inputs=(POOL,)),
    C("pool-max-mask", "Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", inputs=(POOL,),
      tops=2),
    C("pool-max-mask-pad-ceil", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }",
      inputs=((2, 3, 7, 5),), tops=2),
    # Activations
    C("relu-negative-slope", "ReLU", "relu_param { negative_slope: 0.1 }"),
    C("elu-alpha-0.5", "ELU", "elu_param { alpha: 0.5 }"),
    C("prelu", "PReLU"),
    C("prelu-channel-shared", "PReLU", "prelu_param { channel_shared: true }"),
    C("sigmoid", "Sigmoid"),
    C("tanh", "TanH"),
    C("absval", "AbsVal"),
    C("bnll", "BNLL"),
    C("swish", "Swish"),
    C("swish-beta-2", "Swish", "swish_param { beta: 2 }"),
    C("threshold", "Threshold", "threshold_param { threshold: 0.3 }"),
    C("clip", "Clip", "clip_param { min: -0.5 max: 0.5 }"),
    C("dropout", "Dropout", "dropout_param { dropout_ratio: 0.3 }"),
    # Element-wise, Scale, Bias
    C("eltwise-sum-coeff", "Eltwise", "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }",
      inputs=(SHAPE, SHAPE)),
    C("eltwise-prod", "Eltwise", "eltwise_param { operation: PROD }", inputs=(SHAPE, SHAPE)),
    C("eltwise-max", "Eltwise", "eltwise_param { operation: MAX }", inputs=(SHAPE, SHAPE)),
    C("scale-bias-term", "Scale", "scale_param { bias_term: true }"),
    C("scale-axis-2", "Scale", "scale_param { axis: 2 num_axes: 1 bias_term: true }"),
    C("scale-two-bottoms-axis-0", "Scale", "scale_param { axis: 0 }", inputs=(SHAPE, (2, 3))),
    C("bias", "Bias", "bias_param { axis: 1 num_axes: 1 }"),
    C("batchnorm-global-stats", "BatchNorm", "batch_norm_param { use_global_stats: true eps: 1e-5 }"),
    # Reductions, indexing
    C("softmax-axis-2", "Softmax", "softmax_param { axis: 2 }"),
    C("argmax-axis-1", "ArgMax", "argmax_param { axis: 1 }"),
    C("argmax-top-2", "ArgMax", "argmax_param { top_k: 2 }"),
    C("reduction-sum-axis-1", "Reduction", "reduction_param { operation: SUM axis: 1 }"),
    C("reduction-mean-axis-2", "Reduction", "reduction_param { operation: MEAN axis: 2 coeff: 2 }"),
    C("embed", "Embed", "embed_param { num_output: 4 input_dim: 5 }", inputs=((2, 3),), values="indices:5"),
    # Shapes
    C("crop-axis-2-offset-1", "Crop", "crop_param { axis: 2 offset: 1 }",
      inputs=((1, 3, 6, 6), (1, 3, 4, 4))),
    C("batch-reindex", "BatchReindex", inputs=(SHAPE, (3,)), values="normal,indices:2"),
    C("tile-axis-1", "Tile", "tile_param { axis: 1 tiles: 2 }"),
    C("flatten", "Flatten"),
    C("flatten-axis-2", "Flatten", "flatten_param { axis: 2 }"),
    C("reshape", "Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 4 } }"),
]


@dataclass
class Top:
    """One output: Caffe's largest magnitude, OpenCV's largest difference from it (NaN where
    both are NaN counts as equal), the project's bound for it."""

    caffe_max: float
    diff: float  # inf for a wrong shape or a missing output
    shape_note: str = ""  # OpenCV's shape, where its size is not Caffe's
    nan_note: str = ""

    @property
    def bound(self) -> float:
        return ATOL + RTOL * self.caffe_max

    @property
    def agrees(self) -> bool:
        return self.diff <= self.bound

    @classmethod
    def compare(cls, theirs: np.ndarray | None, ref: np.ndarray) -> Top:
        ref = np.asarray(ref, np.float64)
        finite = np.abs(ref[~np.isnan(ref)])
        caffe_max = float(finite.max()) if finite.size else 0.0
        if theirs is None:
            return cls(caffe_max, float("inf"), "no output")
        y = np.asarray(theirs, np.float64)
        if y.size != ref.size:
            return cls(caffe_max, float("inf"), f"shape {_shape(y.shape)}, Caffe's {_shape(ref.shape)}")
        y = y.reshape(ref.shape)  # OpenCV drops trailing 1s of some shapes
        both = np.isnan(y) & np.isnan(ref)
        diff = np.abs(y - ref)
        diff[both] = 0
        err = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
        note = f"both NaN at {int(both.sum())} of {both.size}" if both.any() else ""
        return cls(caffe_max, err, nan_note=note)


@dataclass
class Measured:
    case: Case
    tops: list[Top]  # with OpenCV's values, or only Caffe's where it refused
    refused: str  # OpenCV's reason, "" when it ran the net
    handling: str  # what the project does about this layer for OpenCV

    @property
    def verdict(self) -> str:
        if self.refused:
            return "refuses"
        return "agrees" if all(t.agrees for t in self.tops) else "deviates"


def _reason(err: ReferenceError, tmp: str) -> str:
    text = err.message.split(": ", 1)[-1] if err.message.startswith("OpenCV cannot") else err.message
    text = text.replace(tmp, "").replace("|", "/")
    text = re.sub(r"\s*in function '[^']*'", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _handling(graph) -> str:
    """What the project does for OpenCV about the layer ``out``: cut it (opencv_gap), leave
    out an output (opencv_top_gap) or rewrite it (opencv_layer)."""
    node = next(n for n in graph.nodes if n.name == "out")
    op = node.op
    cls = type(op).__name__
    said = []
    if gap := op.opencv_gap(node):
        said.append(f"`{cls}.opencv_gap`: {gap}")
    for k in range(1, len(node.outputs)):
        if gap := op.opencv_top_gap(k):
            said.append(f"`{cls}.opencv_top_gap({k})`: {gap}")
    layer = type(op.proto)()
    layer.CopyFrom(op.proto)
    if op.opencv_layer(layer):
        said.append(f"`{cls}.opencv_layer` rewrites it")
    return "; ".join(said)


@contextlib.contextmanager
def single_threaded():
    """Both engines on one thread, so that every run sums in the same order (the same bytes
    twice), and OpenCV's log quiet; the settings are put back after."""
    cv2 = opencv()
    threads, log = cv2.getNumThreads(), cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # refusals: in the table
    saved = {v: os.environ.get(v) for v in THREAD_VARS}
    os.environ.update(dict.fromkeys(THREAD_VARS, "1"))  # read by the Caffe process
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)
        cv2.utils.logging.setLogLevel(log)
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def measure(cases: list[Case]) -> list[Measured]:
    """Run ``cases`` in both engines (call it under :func:`single_threaded`): in real Caffe as
    one net, every name after its case's number (one process: Caffe takes seconds to start),
    in OpenCV one by one (it refuses some)."""
    with tempfile.TemporaryDirectory(prefix="c2t-dev-") as tmp:
        tmp_path = Path(tmp)
        graphs, weights, records, feed = [], [], [], {}
        for i, case in enumerate(cases):
            net = tmp_path / f"{i}.prototxt"
            net.write_text(case.prototxt())
            graph = load_graph(net)
            blobs = synth_blobs(graph, SEED)
            weights.append(tmp_path / f"{i}.caffemodel")
            write_synth_weights(graph, weights[-1], seed=SEED, blobs=blobs)
            pre = f"c{i}_"
            records += [
                LayerRecord(pre + n.name, n.type, [pre + v.name for v in n.inputs],
                            [pre + v.name for v in n.outputs], blobs.get(n.id, []))
                for n in graph.nodes
            ]
            feed.update({pre + k: v for k, v in case.arrays().items()})
            graphs.append(graph)
        net = tmp_path / "all.prototxt"
        net.write_text('name: "all"\n' + "".join(c.layers(prefix=f"c{i}_") for i, c in enumerate(cases)))
        write_caffemodel(tmp_path / "all.caffemodel", records, net_name="all")
        try:
            caffe = run_caffe(net, tmp_path / "all.caffemodel", feed)
        except ReferenceError as e:
            raise RuntimeError(f"a case Caffe cannot run: {e}") from None
        return [
            _measure_one(c, g, w, {k[len(f"c{i}_"):]: v for k, v in caffe.items() if k.startswith(f"c{i}_")})
            for i, (c, g, w) in enumerate(zip(cases, graphs, weights))
        ]


def _measure_one(case: Case, graph, weights: Path, caffe: dict[str, np.ndarray]) -> Measured:
    handling = _handling(graph)
    shown = weights.with_suffix(".prototxt")
    if case.opencv_param is not None:
        shown = weights.with_suffix(".opencv.prototxt")
        shown.write_text(case.prototxt(case.opencv_param))
    try:
        got = run_opencv(shown, weights, case.arrays())
    except ReferenceError as e:
        tops = [Top.compare(None, caffe[f"out{k}"]) for k in range(case.tops)]
        return Measured(case, tops, _reason(e, str(weights.parent)), handling)
    # OpenCV names some layers (Convolution) after their first top.
    outs = got.get("out") or got.get("out0") or []
    tops = [Top.compare(outs[k] if k < len(outs) else None, caffe[f"out{k}"]) for k in range(case.tops)]
    return Measured(case, tops, "", handling)


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def _num(x: float, digits: int = 3) -> str:
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def _diff(t: Top, varies: bool) -> str:
    if t.shape_note:
        return t.shape_note
    if varies and not t.agrees:
        return "changes from run to run (OpenCV reads memory it did not write)"
    if t.agrees and t.diff < 1e-5:
        text = "< 1e-5"  # float rounding (or 0): its digits depend on the CPU's instructions
    else:
        text = _num(t.diff, 2)
    return f"{text} ({t.nan_note})" if t.nan_note else text


HEADER = """\
# OpenCV against real Caffe: measured

Generated by `tools/opencv_deviations.py` (`--check`: whether this file is up to date;
tests/test_opencv_deviations.py runs it). Each case is one layer named `out` after an Input
layer, with seeded weights (`caffe2torch.synth`, seed {seed}) and a seeded input
(`numpy.random.default_rng({seed})`: standard normal; *positive*: `|normal| + 0.1`; *small*:
`normal * 1e-4`; *indices*: integers), run by real {caffe}, built by `make caffe-ref`,
and by OpenCV {cv} (`cv2.dnn`, fusion off, CPU, one thread). Agrees: `max|OpenCV - Caffe| <=
{atol:g} + {rtol:g} * max|Caffe|` on every output (the project's tolerance; `a / b`: a
layer's outputs), where a NaN in both counts as equal; "< 1e-5": equal but for float rounding. The last
column is what the project does about the layer for OpenCV now: `opencv_gap`, the check cuts
the layer and compares it with nothing; `opencv_top_gap`, one output is not compared;
`opencv_layer`, OpenCV gets the layer rewritten.
"""


def _row(m: Measured) -> str:
    c = m.case
    params = f"`{c.param}`" if c.param else "(defaults)"
    if c.opencv_param is not None:
        params += f"; OpenCV gets `{c.opencv_param}`"
    inputs = ", ".join(_shape(s) for s in c.inputs)
    if c.values != "normal":
        inputs += f" ({c.values.split(':')[0]})"
    caffe_max = " / ".join(_num(t.caffe_max) for t in m.tops)
    if m.refused:
        diff = f"OpenCV refuses: {m.refused}"
    else:
        diff = " / ".join(_diff(t, c.varies) for t in m.tops)
    return (
        f"| {c.name} | {c.type} | {params} | {inputs} | {caffe_max} | {diff} | {m.verdict} "
        f"| {m.handling or '-'} |"
    )


def _consistent(m: Measured) -> str:
    """Empty when the project's handling of the layer fits the measurement, else what is odd."""
    if m.case.opencv_param is not None:
        return ""  # the row measures the project's rewrite itself
    if m.verdict == "agrees" and m.handling:
        return "**not shown**: OpenCV agrees"
    if m.verdict != "agrees" and not m.handling:
        return f"**not handled**: OpenCV {m.verdict}"
    return ""


def render(measured: list[Measured], bvlc, caffe_label: str, cv_version: str, ssd=()) -> str:
    lines = [HEADER.format(seed=SEED, caffe=caffe_label, cv=cv_version, atol=ATOL, rtol=RTOL), ""]
    lines.append(
        "| Case | Layer | Parameters | Input | max\\|Caffe\\| | max\\|OpenCV - Caffe\\| "
        "| Verdict | The project, for OpenCV |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    lines += [_row(m) for m in measured]
    notes = [f"- {m.case.name}: {m.case.note}." for m in measured if m.case.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "## The project's special cases against the table", ""]
    lines.append(
        "Rows where the project treats the layer specially though OpenCV agrees, or where "
        "OpenCV deviates or refuses and the project does nothing:"
    )
    lines.append("")
    odd = [(m, s) for m in measured if (s := _consistent(m))]
    lines += [f"- {m.case.name}: {s} ({m.handling or 'no special case'})" for m, s in odd] or ["- none"]
    lines += ["", "## The forks' layers: which engine checks them", ""]
    lines.append(
        "Types the project converts that BVLC Caffe does not have: no row above can show what "
        "OpenCV does with them. The SSD fork's build (`make caffe-ref-ssd`) checks those a "
        "family declares measured against it (`CAFFE_FORKS`, tests/test_caffe_fork.py); "
        "`--reference auto` gives each layer to the first engine of BVLC Caffe, the SSD fork, "
        "OpenCV that can run it."
    )
    lines.append("")
    lines.append("| Type | Family | SSD fork | OpenCV | Checked by (auto) |")
    lines.append("|---|---|---|---|---|")
    have = set(bvlc)
    for type_ in [t for t in known_types() if t not in have and t != "Python"]:
        op = layer_class(type_)
        if op.SOURCE or op.TRAINING_ONLY:
            continue  # OpenCV reads deploy nets: their Input layer, no loss
        fork = (
            "checks it" if type_ in op.CAFFE_FORKS.get("ssd", ())
            else "has one of this name, not measured against ours" if type_ in ssd
            else "-"
        )
        cv = "runs it" if type_ in op.OPENCV else "-"
        if cv != "-" and _rewrites(type_):
            cv += f" (`{op.__name__}.opencv_layer` rewrites it)"
        by = "SSD fork" if fork == "checks it" else "OpenCV" if cv != "-" else "nothing (skipped)"
        lines.append(f"| {type_} | `{op.__name__}` | {fork} | {cv} | {by} |")
    return "\n".join(lines) + "\n"


def _rewrites(type_: str) -> bool:
    """Whether the project rewrites a layer of this type (default parameters) for OpenCV."""
    layer = pb.LayerParameter(name="out", type=type_)
    layer.bottom.extend(["a", "b", "c"][: max(1, layer_class(type_).BOTTOMS[0])])
    layer.convolution_param.num_output = 1  # what the convolutions need
    layer.convolution_param.kernel_size.append(1)
    try:
        op = layer_class(type_)(layer)
    except Exception:  # noqa: BLE001 - parameters it needs: not a rewrite we can see
        return False
    copy = pb.LayerParameter()
    copy.CopyFrom(layer)
    return bool(op.opencv_layer(copy))


def case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def build() -> str:
    caffe = caffe_build()  # ReferenceError when real Caffe is not built
    ssd = caffe_build("ssd")  # (and its SSD fork)
    with single_threaded():
        measured = measure([c for c in CASES if c.type in caffe.types])
    return render(measured, caffe.types, caffe.label, opencv().__version__, ssd.types)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = ap.parse_args(argv)
    try:
        text = build()
    except ReferenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    current = DOC.read_text() if DOC.is_file() else None
    if args.check:
        if current != text:
            diff = difflib.unified_diff(
                (current or "").splitlines(), text.splitlines(), "written", "measured now", lineterm="", n=0
            )
            print(f"{DOC.relative_to(ROOT)} is out of date: run tools/opencv_deviations.py", file=sys.stderr)
            print("\n".join(list(diff)[2:]), file=sys.stderr)
            return 1
        print(f"{DOC.relative_to(ROOT)}: up to date")
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"{DOC.relative_to(ROOT)}: {'up to date' if current == text else 'written'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault(ENV_PREFIX, str(ROOT / ".caffe" / "bvlc"))  # run from any folder
    os.environ.setdefault("CAFFE2TORCH_CAFFE_SSD", str(ROOT / ".caffe" / "ssd"))
    sys.exit(main())
