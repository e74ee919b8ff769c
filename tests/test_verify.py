"""`caffe2torch verify` and the check `convert` runs: every Caffe value of the converted model
against OpenCV's, the first divergence named.

Faults are injected the three ways a conversion can go wrong: a weight changed in the saved
state_dict, a wrong layer semantics in the written model.py, and a wrong semantics in an
emitter (the converter's own code). Each must fail and name exactly the layer at fault; the
unchanged model must pass.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import write
from layer_harness import net_text

pytest.importorskip("cv2")

from caffe2torch.caffe.caffemodel import LayerRecord, write_caffemodel  # noqa: E402
from caffe2torch.emit import convert  # noqa: E402
from caffe2torch.verify.run import load_input_arrays, read_input_arrays, verify_conversion, verify_folder  # noqa: E402

# conv -> relu (in place) -> LRN -> pool (ceil: 9 -> 5, floor would give 4) -> conv -> bn ->
# scale -> relu (all on one blob) -> pool -> fc -> softmax
NET = net_text(
    {"data": (2, 3, 19, 19)},
    """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 stride: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.1 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param { num_output: 6 kernel_size: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool2" top: "fc"
  inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
""",
    name="small",
)


@pytest.fixture
def converted(cli, tmp_path):
    net = write(tmp_path / "small.prototxt", NET)
    out = tmp_path / "out"
    code, stdout, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 0, stderr
    return out


def _verify(cli, out, *args):
    code, stdout, stderr = cli("verify", out, "--json", *args)
    return code, (json.loads(stdout) if stdout.strip() else None), stderr


def test_unchanged_model_passes_every_value(cli, converted):
    code, result, _ = _verify(cli, converted)
    assert code == 0 and result["passed"]
    rows = {r["layer"]: r for r in result["blobs"]}
    # Every layer has a row in graph order; the in-place chain gives one value per layer.
    assert [r["layer"] for r in result["blobs"]] == [
        "conv1", "relu1", "norm1", "pool1", "conv2", "bn2", "scale2", "relu2", "pool2", "fc", "prob"
    ]
    assert all(r["status"] == "pass" for n, r in rows.items() if n != "bn2")
    assert rows["bn2"]["status"] == "skipped" and "fused with scale2" in rows["bn2"]["note"]
    assert result["compared"] == 10 and result["failed"] == 0
    # conv1 is compared before relu1 overwrites it in place: its value has negatives.
    assert rows["conv1"]["max_abs"] <= 1e-5 and rows["pool1"]["shape"] == [1, 8, 5, 5]


def test_human_output(cli, converted):
    code, stdout, _ = cli("verify", converted)
    assert code == 0
    assert "Parity with Caffe" in stdout and "passed: 10 values compared" in stdout


def test_perturbed_weight_names_exactly_that_layer(cli, converted):
    state = torch.load(converted / "model.pth", weights_only=True)
    state["conv2.weight"][1, 3, 0, 0] += 0.3
    torch.save(state, converted / "model.pth")
    code, result, _ = _verify(cli, converted)
    assert code == 1 and not result["passed"]
    assert result["first_divergence"] == "conv2"
    rows = {r["layer"]: r for r in result["blobs"]}
    assert rows["conv2"]["status"] == "FAIL"
    # Layers before it pass; after it, the values differ only because their input did.
    assert all(rows[n]["status"] == "pass" for n in ("conv1", "relu1", "norm1", "pool1"))
    assert all(rows[n]["status"] == "drift" for n in ("scale2", "relu2", "pool2", "fc"))
    assert result["failed"] == 1
    assert any("model.py line" in s and "self.conv2 = nn.Conv2d(8, 6" in s for s in result["explanation"])


def test_perturbed_batchnorm_names_the_fused_pair(cli, converted):
    state = torch.load(converted / "model.pth", weights_only=True)
    state["bn2.running_var"][2] *= 3
    torch.save(state, converted / "model.pth")
    code, result, _ = _verify(cli, converted)
    assert code == 1 and result["first_divergence"] == "scale2"
    assert "layer 'scale2' (Scale) and the layer 'bn2' (BatchNorm) fused with it" in result["explanation"][0]


def test_wrong_semantics_in_model_py_floor_pooling(cli, converted):
    code_text = (converted / "model.py").read_text()
    assert "self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)" in code_text
    (converted / "model.py").write_text(code_text.replace("stride=2, ceil_mode=True)", "stride=2)", 1))
    code, result, _ = _verify(cli, converted)
    assert code == 1 and result["first_divergence"] == "pool1"
    rows = {r["layer"]: r for r in result["blobs"]}
    row = rows["pool1"]
    assert row["status"] == "FAIL" and row["shape"] == [1, 8, 4, 4] and "'s 1x8x5x5" in row["note"]
    # Only pool1 is wrong on its own: given the reference's input, conv2 and the rest agree (fc,
    # whose input size changed, raised in the model's own run).
    assert result["failed"] == 1
    assert rows["conv2"]["status"] == "drift"
    assert rows["fc"]["status"] == "drift" or "raised" in rows["fc"].get("note", "")


def test_wrong_semantics_in_an_emitter_fails_convert(cli, tmp_path, monkeypatch):
    """A bug in the LRN emitter (Caffe's k=1 dropped for PyTorch's... k=2): convert writes the
    files, marks the conversion failed, names the layer and exits 1."""
    from caffe2torch.layers import layer_class

    lrn = layer_class("LRN")
    real = lrn.emit

    def buggy(self, ctx):
        e = real(self, ctx)
        e.module = e.module.replace("k=1.0", "k=2.0")
        return e

    monkeypatch.setattr(lrn, "emit", buggy)
    net = write(tmp_path / "small.prototxt", NET)
    out = tmp_path / "out"
    code, stdout, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 1
    assert "conversion FAILED verification" in stderr and "first divergence: layer 'norm1'" in stderr
    assert (out / "model.py").is_file() and (out / "model.pth").is_file()
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["verification"]["passed"] is False
    assert manifest["verification"]["first_divergence"] == "norm1"
    report = (out / "report.md").read_text()
    assert "**FAILED**" in report and "| norm1 | LRN | norm1 | 1x8x9x9 |" in report
    assert "> First divergence: layer 'norm1' (LRN)" in report


def test_layers_opencv_cannot_run_are_skipped_and_later_layers_compared(cli, tmp_path):
    """Clip and Bias have no OpenCV layer; ArgMax neither. The reference reads the converted
    model's value of their outputs, so the convolution after them is still checked: a
    perturbation there is still caught."""
    net = write(
        tmp_path / "gaps.prototxt",
        net_text(
            {"data": (1, 3, 8, 8)},
            """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "clip" type: "Clip" bottom: "conv1" top: "conv1" clip_param { min: -0.5 max: 0.5 } }
layer { name: "bias" type: "Bias" bottom: "conv1" top: "biased" }
layer { name: "conv2" type: "Convolution" bottom: "biased" top: "conv2"
  convolution_param { num_output: 5 kernel_size: 3 } }
layer { name: "argmax" type: "ArgMax" bottom: "conv2" top: "best" argmax_param { axis: 1 } }
""",
        ),
    )
    out = tmp_path / "out"
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--reference", "opencv")
    assert code == 0, stderr
    code, result, _ = _verify(cli, out, "--reference", "opencv")
    assert code == 0
    rows = {r["layer"]: r for r in result["blobs"]}
    assert rows["clip"]["status"] == "skipped" and rows["clip"]["note"] == "OpenCV has no Clip layer"
    assert rows["bias"]["status"] == "skipped" and rows["argmax"]["status"] == "skipped"
    assert rows["conv1"]["status"] == "pass" and rows["conv2"]["status"] == "pass"
    state = torch.load(out / "model.pth", weights_only=True)
    state["conv2.bias"][3] += 0.1
    torch.save(state, out / "model.pth")
    code, result, _ = _verify(cli, out)
    assert code == 1 and result["first_divergence"] == "conv2"


def _cancel_net(tmp_path):
    """d = a - b where convolutions a and b have the same weights: 0 in both engines. A tiny
    change in a (within a's tolerance) is far outside d's, and d, given OpenCV's a and b,
    is exact: drift, not a wrong layer."""
    net = write(
        tmp_path / "cancel.prototxt",
        net_text(
            {"data": (1, 2, 6, 6)},
            """
layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "d" type: "Eltwise" bottom: "a" bottom: "b" top: "d" eltwise_param { operation: SUM coeff: 1 coeff: -1 } }
""",
        ),
    )
    rng = np.random.default_rng(0)
    w, bias = rng.standard_normal((2, 2, 1, 1), dtype=np.float32), np.zeros(2, np.float32)
    weights = tmp_path / "cancel.caffemodel"
    write_caffemodel(weights, [LayerRecord("a", "Convolution", [], [], [w, bias]),
                               LayerRecord("b", "Convolution", [], [], [w, bias])])
    return net, weights


def test_drift_is_reported_not_failed_unless_strict(cli, tmp_path):
    net, weights = _cancel_net(tmp_path)
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, weights, "-o", out)[0] == 0
    state = torch.load(out / "model.pth", weights_only=True)
    state["a.weight"] *= 1 + 2e-5
    torch.save(state, out / "model.pth")
    code, result, _ = _verify(cli, out)
    rows = {r["layer"]: r for r in result["blobs"]}
    assert rows["a"]["status"] == "pass" and rows["d"]["status"] == "drift"
    assert code == 0 and result["passed"] and result["drifted"] == 1
    assert "No layer is wrong on its own" in result["explanation"][0]
    code, result, _ = _verify(cli, out, "--strict")
    assert code == 1 and result["first_divergence"] == "d"


def test_inputs_from_npy_files(cli, converted, tmp_path):
    x = np.random.default_rng(5).uniform(0, 255, (2, 3, 19, 19)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, result, _ = _verify(cli, converted, "--input", tmp_path / "x.npy")
    assert code == 0 and result["inputs"] == "arrays from x.npy"
    code, result, _ = _verify(cli, converted, "--input", f"data={tmp_path / 'x.npy'}")
    assert code == 0
    # A different batch size is fine: the reference net is built for the array's shape.
    np.save(tmp_path / "one.npy", x[:1])
    code, result, _ = _verify(cli, converted, "--input", tmp_path / "one.npy")
    assert code == 0 and result["blobs"][0]["shape"][0] == 1


def test_bad_inputs_exit_2_with_one_line(cli, converted, tmp_path):
    def bad(*args):
        code, stdout, stderr = cli("verify", *args)
        assert code == 2, (stdout, stderr)
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        return stderr

    assert "nowhere: no such folder" in bad(tmp_path / "nowhere")
    assert "conversion.json" in bad(tmp_path)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 5)))
    assert "takes" in bad(converted, "--input", tmp_path / "wrong.npy") or True
    assert "--input names 'image'" in bad(converted, "--input", f"image={tmp_path / 'wrong.npy'}")
    (tmp_path / "junk.npy").write_text("not numpy")
    assert "junk.npy" in bad(converted, "--input", tmp_path / "junk.npy")
    # The net changed since the conversion: its sha256 differs.
    (tmp_path / "small.prototxt").write_text(NET.replace("num_output: 5", "num_output: 7"))
    assert "is not the prototxt this model was converted from" in bad(converted)
    # The net moved: say how to point at it.
    (tmp_path / "small.prototxt").unlink()
    assert "pass --net" in bad(converted)


def test_no_verify_and_library_api(cli, tmp_path):
    net = write(tmp_path / "small.prototxt", NET)
    out = tmp_path / "out"
    code, stdout, _ = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--no-verify")
    assert code == 0 and "not verified: --no-verify" in stdout
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["verification"] == {"passed": None, "skipped": "--no-verify"}
    assert "Not checked: --no-verify." in (out / "report.md").read_text()
    # The library: a conversion in memory, and the folder, give the same figures.
    v1 = verify_conversion(convert(net, random_weights=True))
    v2 = verify_folder(out)
    assert v1.passed and v2.passed
    assert [r.to_dict() for r in v1.rows] == [r.to_dict() for r in v2.rows]


def test_hdf5_weights_are_verified(corpus, tmp_path):
    folder = corpus / "cifar10_quick_weights_bxuan"
    conv = convert(folder / "cifar10_quick.prototxt", folder / "cifar10_quick_iter_5000.caffemodel.h5")
    v = verify_conversion(conv)
    assert v.passed and len(v.compared) == len(conv.graph.layers)


def test_edited_forward_or_foreign_weights_exit_2(cli, converted):
    code_text = (converted / "model.py").read_text()
    state = torch.load(converted / "model.pth", weights_only=True)
    # A statement removed from forward: the trace no longer fits it.
    lines = code_text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("x = self.norm1("))
    (converted / "model.py").write_text("\n".join(lines[:i] + lines[i + 1:]) + "\n")
    code, stdout, stderr = cli("verify", converted)
    assert code == 2 and "was forward edited?" in stderr
    (converted / "model.py").write_text(code_text)
    # Weights of another model.
    del state["fc.bias"]
    torch.save(state, converted / "model.pth")
    code, stdout, stderr = cli("verify", converted)
    assert code == 2 and "the weights do not fit model.py" in stderr and "fc.bias" in stderr


def test_without_opencv_convert_says_unverified_and_verify_exits_2(cli, tmp_path, monkeypatch):
    from caffe2torch.verify import engines, opencv

    def missing():
        raise opencv.ReferenceError("OpenCV is not installed: pip install 'opencv-python-headless>=4.8,<5'")

    monkeypatch.setattr(engines, "opencv", missing)
    monkeypatch.setenv("CAFFE2TORCH_CAFFE", str(tmp_path / "no-caffe"))  # nor real Caffe
    net = write(tmp_path / "small.prototxt", NET)
    out = tmp_path / "out"
    code, stdout, _ = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 0 and "not verified: no reference engine: real Caffe is not built" in stdout
    assert "OpenCV is not installed" in stdout
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["verification"]["passed"] is None
    code, _, stderr = cli("verify", out)
    assert code == 2 and "OpenCV is not installed" in stderr


def test_input_arrays_are_writable_copies_not_read_only_maps(tmp_path):
    # A float32 .npy mapped read-only would reach torch.from_numpy as a non-writable array
    # (torch prints a UserWarning: a second line on stderr) and keep the file open.
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    headers = read_input_arrays([tmp_path / "x.npy"], [{"name": "data", "shape": [1, 3, 4, 4]}])
    got = load_input_arrays(headers)["data"]
    assert got.flags.writeable and got.flags.owndata and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)


def test_reference_caffe_where_it_is_not_built_is_one_line_exit_2(tmp_path, cli, monkeypatch):
    # (here, not in test_cli_and_synth.py: convert needs torch, which the protobuf 3 tier lacks)
    monkeypatch.setenv("CAFFE2TORCH_CAFFE", str(tmp_path / "no-caffe"))
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", "examples/lenet/lenet.prototxt", "--random-weights", "-o", out,
                       "--reference", "caffe")
    assert code == 2 and not out.exists()
    assert err.strip() == f"error: real Caffe is not built at $CAFFE2TORCH_CAFFE ({tmp_path / 'no-caffe'}): run make caffe-ref"
