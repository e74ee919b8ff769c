"""The inspect and synth-weights commands, end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import TINY_V1, TINY_V2, write

from caffe2torch import __version__
from caffe2torch.api import load_graph, load_weights
from caffe2torch.caffe.caffemodel import read_caffemodel
from caffe2torch.layers.normalization import MOVING_AVERAGE_FACTOR


def test_version_and_help(cli):
    code, out, _ = cli("--version")
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    assert code == 0 and out.startswith(f"caffe2torch {__version__} (python ")
    assert f"torch {version('torch')}" in out and f"opencv {version('opencv-python-headless')}" in out
    code, out, _ = cli("--help")
    assert code == 0 and "caffe2torch inspect deploy.prototxt" in out
    code, out, _ = cli("inspect", "--help")
    assert code == 0 and "--input-shape" in out and "Examples" in out


def test_inspect_json(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V1)
    code, out, err = cli("inspect", net, "--json")
    assert (code, err) == (0, "")
    s = json.loads(out)
    assert s["format"] == "V1" and s["net"] == "tiny" and s["phase"] == "test"
    assert s["inputs"] == [{"name": "data", "shape": [2, 3, 17, 17]}]
    assert s["outputs"] == [{"name": "prob", "shape": [2, 5]}]
    rows = {r["id"]: r for r in s["layers"]}
    assert rows["conv1"]["output_shapes"] == [[2, 4, 9, 9]]
    assert rows["conv1"]["weight_shapes"] == [[4, 3, 3, 3], [4]]
    assert rows["conv1"]["params"] == 4 * 27 + 4
    assert rows["relu1"]["in_place"] and rows["relu1"]["tops"] == ["conv1"]
    assert rows["fc"]["params"] == 5 * 64 + 5
    assert s["totals"] == {"layers": 5, "learnable_layers": 2, "params": 112 + 325}
    assert s["weights"] is None


def test_inspect_table_with_weights(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    weights = tmp_path / "tiny.caffemodel"
    code, out, _ = cli("synth-weights", net, "-o", weights, "--seed", "3")
    assert code == 0 and "2 learnable layers, 437 values" in out
    code, out, err = cli("inspect", net, weights)
    assert (code, err) == (0, "")
    assert "5 layers, 2 with weights, 437 parameters" in out
    assert "every blob matches the net" in out
    assert "2x4x9x9" in out and "prob 2x5" in out


def test_synth_weights_are_deterministic(tmp_path):
    graph = load_graph(write(tmp_path / "tiny.prototxt", TINY_V2))
    from caffe2torch.synth import write_synth_weights

    paths = [tmp_path / f"w{i}.caffemodel" for i in range(3)]
    for path, seed in zip(paths, (7, 7, 8)):
        write_synth_weights(graph, path, seed=seed)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    w, check = load_weights(graph, paths[0])
    conv = check.matched["conv1"][0].data
    # He scaling: std close to sqrt(2 / fan_in) with fan_in = 3*3*3.
    assert abs(conv.std() - np.sqrt(2 / 27)) < 0.1
    assert {n: lw.type for n, lw in w.layers.items()} == {
        "data": "Input", "conv1": "Convolution", "relu1": "ReLU", "pool1": "Pooling",
        "fc": "InnerProduct", "prob": "Softmax",
    }


BN_NET = """
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 16 kernel_size: 3 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "norm" type: "Normalize" bottom: "conv" top: "n"
        norm_param { channel_shared: false scale_filler { type: "constant" value: 20 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "n" top: "a" param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 4 } }
layer { name: "ip2" type: "InnerProduct" bottom: "n" top: "b" param { name: "shared_w" } param { name: "shared_b" }
        inner_product_param { num_output: 4 } }
"""


def test_synth_batchnorm_normalize_and_shared_parameters(tmp_path):
    from caffe2torch.synth import synth_blobs

    graph = load_graph(write(tmp_path / "bn.prototxt", BN_NET))
    blobs = synth_blobs(graph, seed=0)
    mean, var, factor = blobs["bn"]
    assert factor.tolist() == [np.float32(MOVING_AVERAGE_FACTOR)]
    assert (var / factor > 0.4).all()  # positive variances once divided by the factor
    assert abs(float(mean.mean() / factor[0])) < 0.5
    scale, bias = blobs["scale"]
    assert (scale > 0).all() and scale.shape == bias.shape == (16,)
    np.testing.assert_array_equal(blobs["norm"][0], np.full(16, 20, np.float32))
    assert blobs["ip1"][0] is blobs["ip2"][0] and blobs["ip1"][1] is blobs["ip2"][1]


DEEP = "\n".join(
    ['input: "data" input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }']
    + [
        f'layer {{ name: "c{i}" type: "Convolution" bottom: "{"data" if i == 0 else f"c{i - 1}"}" '
        f'top: "c{i}" convolution_param {{ num_output: 32 kernel_size: 3 pad: 1 }} }}\n'
        f'layer {{ name: "r{i}" type: "ReLU" bottom: "c{i}" top: "c{i}" }}'
        for i in range(24)
    ]
)


def test_synth_activations_stay_sane_in_opencv(tmp_path):
    """24 conv+ReLU layers with synth weights, run by OpenCV: the output neither vanishes nor
    explodes (a plain N(0, 0.01) init would shrink it by about 1e-20)."""
    pytest.importorskip("cv2")
    from caffe2torch.synth import write_synth_weights
    from caffe2torch.verify.opencv import run_opencv

    net = write(tmp_path / "deep.prototxt", DEEP)
    graph = load_graph(net)
    weights = tmp_path / "deep.caffemodel"
    write_synth_weights(graph, weights, seed=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    out = run_opencv(net, weights, {"data": x})["r23"][0]
    assert np.isfinite(out).all()
    assert 0.05 < out.std() / x.std() < 20


def test_synth_file_reads_back_exactly(tmp_path):
    from caffe2torch.synth import synth_blobs, write_synth_weights

    graph = load_graph(write(tmp_path / "bn.prototxt", BN_NET))
    write_synth_weights(graph, tmp_path / "w.caffemodel", seed=5)
    stored = read_caffemodel(tmp_path / "w.caffemodel")
    for name, arrays in synth_blobs(graph, seed=5).items():
        for a, b in zip(arrays, stored.layers[name].blobs):
            np.testing.assert_array_equal(a, b.data)

