"""Real Caffe (pycaffe built by ``make caffe-ref``) as the reference: converted models against
Caffe itself, where OpenCV cannot check them or computes something else. Every test skips with
one line when real Caffe is not built."""
from __future__ import annotations

import numpy as np
import pytest
from layer_harness import ATOL, RTOL, one, run

from caffe2torch.api import load_graph
from caffe2torch.emit import convert
from caffe2torch.synth import write_synth_weights
from caffe2torch.verify.caffe_ref import caffe_prefix, run_caffe
from caffe2torch.verify.opencv import ReferenceError
from caffe2torch.verify.parity import compare, random_inputs, run_model


@pytest.fixture(autouse=True)
def real_caffe():
    try:
        return caffe_prefix()
    except ReferenceError as e:
        pytest.skip(str(e))


def _close(y, ref):
    c = compare(np.asarray(y), np.asarray(ref).reshape(np.shape(y)), "out", "", atol=ATOL, rtol=RTOL)
    assert c.ok, f"max|y - caffe| = {c.max_abs:.3g} > bound {c.bound:.3g}"
    return c


def _against_caffe(tmp_path, inputs, layers, **kw):
    r = run(tmp_path, inputs, layers, **kw)
    blobs = run_caffe(r.path, r.weights, r.inputs)
    for y, v in zip(r.ours, r.conversion.graph.layers[-1].outputs):
        _close(y, blobs[v.name])


@pytest.mark.parametrize("across", [False, True])
def test_mvn_with_variance_matches_real_caffe(tmp_path, across):
    # OpenCV adds eps to the variance (MVN.opencv_gap): only real Caffe checks this layer.
    param = f"mvn_param {{ across_channels: {str(across).lower()} normalize_variance: true eps: 0.1 }}"
    _against_caffe(tmp_path, {"data": (2, 3, 5, 4)}, one("MVN", param))


def test_depthwise_3x3_pad_1_on_a_1x1_input_matches_real_caffe(tmp_path):
    # SSDLite's last feature maps: OpenCV returns garbage here, which made a correct
    # conversion fail the check.
    param = "convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 1 }"
    _against_caffe(tmp_path, {"data": (1, 8, 1, 1)}, one("Convolution", param))


def test_lenet_matches_real_caffe(tmp_path):
    net = "examples/lenet/lenet.prototxt"
    graph = load_graph(net)
    weights = tmp_path / "lenet.caffemodel"
    write_synth_weights(graph, weights, seed=3)
    conv = convert(net, weights)
    feed = random_inputs(graph.inputs, 3)
    ours = run_model(conv.module(), graph.inputs, feed)
    blobs = run_caffe(net, weights, feed)
    for y, v in zip(ours, conv.outputs):
        _close(y, blobs[v.name])


def test_real_caffe_is_built_without_python_layers(tmp_path):
    # A reference never runs a net's own code: the build has no Python layer at all.
    (tmp_path / "evil.py").write_text("raise SystemExit('imported')\n")
    net = tmp_path / "net.prototxt"
    net.write_text(
        'input: "data" input_shape { dim: 1 dim: 2 }\n'
        'layer { name: "py" type: "Python" bottom: "data" top: "out" '
        'python_param { module: "evil" layer: "Evil" } }\n'
    )
    weights = tmp_path / "empty.caffemodel"
    weights.write_bytes(b"")
    with pytest.raises(ReferenceError, match="Unknown layer type: Python"):
        run_caffe(net, weights, {"data": np.zeros((1, 2), np.float32)})
