"""Every malformed input gets one line naming the file (and the layer or line:column where
known), exit code 2, no traceback, and no output file."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY_V2, blob_bytes, ld, tiny_arrays, v2_layer, write

RELU_SOFTMAX = 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }'

PROTOTXT_CASES = {
    # name: (text, expected message after "error: {path}")
    "syntax": (
        'layer { name: "a" type: "ReLU" bottom: "x" top: "x"\n',
        ":1:49: layer 'a': syntax error: expected \"}\"",
    ),
    "unknown_field": (
        TINY_V2.replace("kernel_size: 3 stride: 2 pad: 1", "kernel_size: 3 strides: 2 pad: 1"),
        ":12:52: layer 'conv1': unknown field 'strides' in ConvolutionParameter",
    ),
    "unknown_type": (
        TINY_V2.replace('"Softmax"', '"SoftMax"'),
        ":23: layer 'prob': unknown layer type 'SoftMax' (to convert the layers before it, pass --outputs fc)",
    ),
    "undefined_bottom": (
        TINY_V2.replace('bottom: "fc" top: "prob"', 'bottom: "fc8" top: "prob"'),
        ":23: layer 'prob' (Softmax): bottom 'fc8' is not produced by any layer",
    ),
    "cycle": (
        TINY_V2
        + 'layer { name: "loop" type: "ReLU" bottom: "later" top: "early" }\n'
        + 'layer { name: "l2" type: "ReLU" bottom: "early" top: "later" }\n',
        ":24: layer 'loop' (ReLU): bottom 'later' is produced only later, by layer 'l2' (line 25): "
        "layers must come after the layers they read (is there a cycle?)",
    ),
    "output_not_positive": (
        TINY_V2.replace("input_dim: 17\ninput_dim: 17", "input_dim: 1\ninput_dim: 1").replace(" pad: 1", ""),
        ":8: layer 'conv1' (Convolution): output size 0 is not positive "
        "(input 1, kernel 3, stride 2, pad 0, dilation 1)",
    ),
    "absurd_dimensions": (
        TINY_V2.replace("input_dim: 17\ninput_dim: 17", "input_dim: 3000000\ninput_dim: 3000000"),
        ": layer 'data' (Input): input 'data' shape 2x3x3000000x3000000 is absurdly large "
        "(54000000000000 values)",
    ),
    "zero_dimension": (
        TINY_V2.replace("input_dim: 2\n", "input_dim: 0\n"),
        ": layer 'data' (Input): input 'data' shape 0x3x17x17 has a dimension that is not positive",
    ),
    "python_layer": (
        TINY_V2.replace(
            RELU_SOFTMAX,
            'layer { name: "prop" type: "Python" bottom: "fc" top: "prob" '
            'python_param { module: "my_layers" layer: "Proposals" } }',
        ),
        ":23: layer 'prop' (Python): is a Python layer (my_layers.Proposals): its code is not "
        "imported or run, and caffe2torch converts only rpn.proposal_layer.ProposalLayer natively; "
        "replace it with a native layer, or convert it with --plugin "
        "(to convert the layers before it, pass --outputs fc)",
    ),
    "v1_unknown_enum": (
        'layers { name: "x" type: CONVOLUTIONAL bottom: "a" top: "b" }',
        ":1:26: layer 'x': unknown V1 layer type CONVOLUTIONAL",
    ),
    "v0_unknown_type": (
        'layers { layer { name: "c" type: "convolution" } bottom: "a" top: "b" }',
        ":1: layer 'c': unknown V0 layer type 'convolution'",
    ),
    "missing_num_output": (
        TINY_V2.replace("num_output: 4 ", ""),
        ":8: layer 'conv1' (Convolution): convolution_param.num_output is required and must be positive",
    ),
    "top_reused": (
        TINY_V2.replace('bottom: "pool1" top: "fc"', 'bottom: "pool1" top: "conv1"'),
        ":19: layer 'fc' (InnerProduct): top 'conv1' is already produced by layer 'relu1'; "
        "a blob name can be reused only in place (top i = bottom i)",
    ),
    "no_layers": ("# nothing\n", ": no layers: this file does not describe a net"),
    "pad_not_below_kernel": (
        TINY_V2.replace("pool: MAX kernel_size: 3 stride: 2", "pool: MAX kernel_size: 3 stride: 2 pad: 3"),
        ":15: layer 'pool1' (Pooling): pad 3x3 must be smaller than kernel 3x3",
    ),
    "solver_file": (
        'net: "train_val.prototxt"\nbase_lr: 0.01\n',
        ":1: this is a solver file, not a net: pass the net prototxt it names",
    ),
    "eltwise_shapes": (
        TINY_V2 + 'layer { name: "sum" type: "Eltwise" bottom: "fc" bottom: "pool1" top: "sum" }\n',
        ":24: layer 'sum' (Eltwise): bottoms differ in shape: 2x5 vs 2x4x4x4",
    ),
}


@pytest.mark.parametrize("case", sorted(PROTOTXT_CASES))
def test_bad_prototxt(cli, tmp_path, case):
    text, expected = PROTOTXT_CASES[case]
    path = write(tmp_path / f"{case}.prototxt", text)
    code, out, err = cli("inspect", path)
    assert code == 2
    assert out == ""
    assert err == f"error: {path}{expected}\n"


def _weights_cases(tmp_path):
    arrays = tiny_arrays()
    good = b"".join(v2_layer(n, "X", [blob_bytes(a) for a in arrays[n]]) for n in arrays)
    # A 4x3x3x3 shape with only two values.
    bad_count = ld(7, ld(1, bytes([4, 3, 3, 3]))) + ld(5, np.zeros(2, "<f4").tobytes())
    return {
        "truncated": (good[:-100], ": the file is truncated: it ends inside layer 'fc', 100 bytes short"),
        "garbage": (bytes(range(256)) * 3, ": corrupted caffemodel: field number 0 (at byte 0)"),
        "empty": (b"", ": empty file"),
        "text": (TINY_V2.encode(), ": this is a text file (a prototxt?), expected binary weights (.caffemodel)"),
        "missing_layer": (
            v2_layer("conv1", "X", [blob_bytes(a) for a in arrays["conv1"]]),
            ": layer 'fc' (InnerProduct): no weights for this layer (the net needs 2 blob(s): 5x64, 5)",
        ),
        "value_count": (
            v2_layer("conv1", "X", [bad_count]),
            ": corrupted caffemodel: layer 'conv1', blob 0: a blob of shape 4x3x3x3 needs 108 values "
            "but its data holds 2 (at byte 15)",
        ),
        "wrong_shape": (
            v2_layer("conv1", "X", [blob_bytes(arrays["conv1"][0].reshape(4, 27)), blob_bytes(arrays["conv1"][1])])
            + v2_layer("fc", "X", [blob_bytes(a) for a in arrays["fc"]]),
            ": layer 'conv1' (Convolution): blob 0 is 4x27 in the file, the net needs 4x3x3x3",
        ),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "garbage", "empty", "text", "missing_layer", "value_count", "wrong_shape"]
)
def test_bad_weights(cli, tmp_path, case):
    data, expected = _weights_cases(tmp_path)[case]
    net = write(tmp_path / "net.prototxt", TINY_V2)
    weights = tmp_path / f"{case}.caffemodel"
    weights.write_bytes(data)
    code, out, err = cli("inspect", net, weights)
    assert (code, out) == (2, "")
    assert err == f"error: {weights}{expected}\n"


def test_missing_binary_and_directory_inputs(cli, tmp_path):
    code, _, err = cli("inspect", tmp_path / "nope.prototxt")
    assert (code, err) == (2, f"error: {tmp_path / 'nope.prototxt'}: no such file\n")
    binary = tmp_path / "model.caffemodel"
    binary.write_bytes(b"\x0a\x04abcd\x00\x01\x02")
    code, _, err = cli("inspect", binary)
    assert (code, err) == (
        2, f"error: {binary}: binary data where a text prototxt was expected (a .caffemodel?)\n"
    )
    code, _, err = cli("inspect", tmp_path)
    assert (code, err) == (2, f"error: {tmp_path}: is a directory, expected a .prototxt file\n")


def test_bad_input_shape_options(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    code, _, err = cli("inspect", net, "--input-shape", "1,3,x")
    assert (code, err) == (2, "error: --input-shape '1,3,x' is not a shape: use integers like 1,3,224,224\n")
    code, _, err = cli("inspect", net, "--input-shape", "foo=1,3,4,4")
    assert (code, err) == (2, f"error: {net}: --input-shape names 'foo', but the net's inputs are: data\n")


def test_debug_shows_the_traceback(cli, tmp_path):
    from typer.testing import CliRunner

    from caffe2torch.cli import app

    path = write(tmp_path / "n.prototxt", TINY_V2.replace('"Softmax"', '"SoftMax"'))
    result = CliRunner().invoke(app, ["--debug", "inspect", str(path)])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "UnsupportedLayerError" in result.stderr


def test_failed_synth_writes_nothing(cli, tmp_path):
    bad = write(tmp_path / "bad.prototxt", TINY_V2.replace('"Softmax"', '"SoftMax"'))
    out = tmp_path / "out" / "w.caffemodel"
    out.parent.mkdir()
    code, _, _ = cli("synth-weights", bad, "-o", out)
    assert code == 2
    assert list(out.parent.iterdir()) == []
    code, _, err = cli("synth-weights", write(tmp_path / "ok.prototxt", TINY_V2), "-o", tmp_path / "nodir" / "w.caffemodel")
    assert (code, err) == (2, f"error: {tmp_path / 'nodir' / 'w.caffemodel'}: the folder to write into does not exist\n")


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    from caffe2torch.caffe import caffemodel

    def records():
        yield caffemodel.LayerRecord("a", "InnerProduct", blobs=[np.ones((2, 2), np.float32)])
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        caffemodel.write_caffemodel(tmp_path / "w.caffemodel", records())
    assert list(tmp_path.iterdir()) == []
