"""Real Caffe (pycaffe built by ``make caffe-ref``) as the reference: converted models against
Caffe itself, where OpenCV cannot check them or computes something else. Every test skips with
one line when real Caffe is not built."""
from __future__ import annotations

import json

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


@pytest.mark.parametrize("build", ["bvlc", "ssd"])
def test_real_caffe_is_built_without_python_layers(tmp_path, build):
    # A reference never runs a net's own code: neither build has a Python layer at all.
    try:
        prefix = caffe_prefix(build)
    except ReferenceError as e:
        pytest.skip(str(e))
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
        run_caffe(net, weights, {"data": np.zeros((1, 2), np.float32)}, prefix=prefix)


# ------------------------------------------------------------------ --reference caffe|opencv|auto
def _verification(folder):
    return json.loads((folder / "conversion.json").read_text())["verification"]


def _net(tmp_path, text, name="net.prototxt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_verify_against_real_caffe_passes_and_names_a_changed_weight(tmp_path, cli):
    import torch

    out = tmp_path / "lenet"
    code, _, err = cli("convert", "--record-paths", "examples/lenet/lenet.prototxt", "--random-weights", "-o", out,
                       "--reference", "caffe")
    assert code == 0, err
    v = _verification(out)
    assert v["reference"].startswith("Caffe 1.0.0") and v["passed"] is True
    assert v["compared_by"] == {"caffe": v["compared"]} and v["compared"] == 8
    assert v["checked_by"] == {"caffe": ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"]}
    assert "| checked by |" in (out / "report.md").read_text()
    code, text, err = cli("verify", out, "--reference", "caffe", "--json")
    assert code == 0, err
    import json

    assert all(b["engine"] == "caffe" for b in json.loads(text)["blobs"])
    # One weight of conv2 changed in model.pth: Caffe's conv2 differs, and the check says so.
    state = torch.load(out / "model.pth", weights_only=True)
    key = next(k for k in state if k.startswith("conv2") and k.endswith("weight"))
    state[key][0, 0, 0, 0] += 0.5
    torch.save(state, out / "model.pth")
    code, text, err = cli("verify", out, "--reference", "caffe", "--json")
    result = json.loads(text)
    assert code == 1 and result["first_divergence"] == "conv2", err
    assert "first divergence: layer 'conv2'" in err


def test_mvn_is_checked_by_caffe_and_skipped_by_opencv(tmp_path, cli):
    net = _net(tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 6 dim: 5 }\n'
               'layer { name: "mvn" type: "MVN" bottom: "data" top: "out" '
               'mvn_param { normalize_variance: true eps: 0.1 } }\n')
    for reference, status in (("caffe", "pass"), ("opencv", "skipped"), ("auto", "pass")):
        out = tmp_path / reference
        code, _, err = cli("convert", "--record-paths", net, "-o", out, "--reference", reference)
        assert code == 0, err
        code, text, err = cli("verify", out, "--reference", reference, "--json")
        assert code == (1 if status == "skipped" else 0), err  # nothing checked: not a pass
        (row,) = json.loads(text)["blobs"]
        assert row["status"] == status, row
        assert row.get("engine", "") == ("" if status == "skipped" else "caffe")


def test_ssdlite_depthwise_on_1x1_passes_against_caffe(tmp_path, cli):
    # OpenCV computes garbage for a depthwise 3x3, pad 1, on a 1x1 map (SSDLite's last
    # feature maps); real Caffe checks it: it passes, compared.
    net = _net(tmp_path, 'input: "data" input_shape { dim: 1 dim: 8 dim: 1 dim: 1 }\n'
               'layer { name: "dw" type: "Convolution" bottom: "data" top: "dw" '
               'convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 1 } }\n'
               'layer { name: "relu" type: "ReLU" bottom: "dw" top: "dw" }\n')
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--reference", "caffe")
    assert code == 0, err
    v = _verification(out)
    assert v["passed"] is True and v["compared_by"] == {"caffe": 2}, v


def test_auto_takes_caffe_and_opencv_where_caffe_lacks_the_type(tmp_path, cli):
    # DepthwiseConvolution is a fork's type, not BVLC's: OpenCV checks it (as a grouped
    # Convolution), real Caffe every other layer.
    net = _net(tmp_path, 'input: "data" input_shape { dim: 1 dim: 4 dim: 6 dim: 6 }\n'
               'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" '
               'convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n'
               'layer { name: "dw" type: "DepthwiseConvolution" bottom: "c" top: "d" '
               'convolution_param { num_output: 4 group: 4 kernel_size: 3 pad: 1 } }\n'
               'layer { name: "relu" type: "ReLU" bottom: "d" top: "e" }\n')
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 0, err
    v = _verification(out)
    assert v["checked_by"] == {"caffe": ["conv", "relu"], "opencv": ["dw"]}
    assert v["compared_by"] == {"caffe": 2, "opencv": 1} and v["passed"] is True
    assert "OpenCV" in v["reference"] and v["reference"].startswith("Caffe")
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "c", "--reference", "caffe")
    assert code == 0, err
    code, text, err = cli("verify", tmp_path / "c", "--reference", "caffe", "--json")
    assert code == 0, err
    dw = next(b for b in json.loads(text)["blobs"] if b["layer"] == "dw")
    assert dw["status"] == "skipped" and "has no DepthwiseConvolution layer" in dw["note"]


# ------------------------------------------------------------------ real nets, real Caffe
BIG = ["bvlc_reference_caffenet/deploy.prototxt", "bvlc_googlenet/deploy.prototxt", "resnet50/ResNet-50-deploy.prototxt"]


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("rel", [pytest.param(r, marks=pytest.mark.converts(r)) for r in BIG], ids=lambda r: r.split("/")[0])
def test_imagenet_nets_pass_against_real_caffe_alone(rel, corpus_conversions):
    from helpers import CORPUS

    from caffe2torch.memory import CheckOptions
    from caffe2torch.verify.run import verify_conversion

    conv = corpus_conversions.get(CORPUS / rel)
    v = verify_conversion(conv, check=CheckOptions(reference="caffe"))
    assert v.passed and v.reference.startswith("Caffe"), v.explanation
    assert set(v.engines) == {"caffe"} and v.engines["caffe"] == len(v.compared) > 20
    assert all(r.note.startswith("fused with") for r in v.skipped)  # Caffe runs every layer


def test_the_ssd_fork_checks_what_bvlc_cannot_read(tmp_path, cli):
    # ceil_mode (the fork's pooling field 13) does not parse in BVLC's schema, and BVLC has no
    # Normalize: with the fork built, both are checked by it, the rest by BVLC.
    try:
        caffe_prefix("ssd")
    except ReferenceError as e:
        pytest.skip(str(e))
    net = _net(tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
               'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" '
               'convolution_param { num_output: 4 kernel_size: 3 } }\n'
               'layer { name: "pool" type: "Pooling" bottom: "c" top: "p" '
               'pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: false } }\n'
               'layer { name: "norm" type: "Normalize" bottom: "p" top: "n" '
               'norm_param { across_spatial: false channel_shared: false } }\n')
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--reference", "caffe")
    assert code == 0, err
    v = _verification(out)
    assert v["checked_by"] == {"caffe": ["conv"], "caffe-ssd": ["pool", "norm"]}, v
    assert v["passed"] is True and "SSD" in v["reference"]


def test_where_caffe_cannot_set_the_net_up_auto_checks_with_opencv(tmp_path, cli, monkeypatch):
    from caffe2torch.verify import caffe_ref

    def refuse(self, arrays):
        raise caffe_ref.CaffeRunError("real Caffe cannot run the net: Check failed: made up here")

    monkeypatch.setattr(caffe_ref.CaffeLoaded, "run", refuse)
    out = tmp_path / "auto"
    code, _, err = cli("convert", "--record-paths", "examples/lenet/lenet.prototxt", "--random-weights", "-o", out)
    assert code == 0, err
    v = _verification(out)
    assert v["passed"] is True and v["compared_by"] == {"opencv": 8}
    assert v["explanation"][0] == (
        "real Caffe cannot run the net: Check failed: made up here: every layer was checked "
        "against OpenCV instead."
    )
    code, stdout, err = cli("convert", "--record-paths", "examples/lenet/lenet.prototxt", "--random-weights", "-o",
                            tmp_path / "caffe", "--reference", "caffe")
    assert code == 0 and "not verified: " in stdout and "made up here" in stdout, err
