"""export-onnx: a converted folder as one ONNX file with Caffe's names, checked with
onnxruntime at batch 1 and 3; Reshapes that fix the batch named, and rewritten with
dynamic_batch; bad input as one line; the CLI. Every number is measured here again against the
folder's own torch model, not only read from the result."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write

from caffe2torch.emit import convert
from caffe2torch.errors import CaffeError, OutputError
from caffe2torch.folder import FolderError, load_converted

TOL = 1e-5

# data 1x3x12x12 -> conv 6x12x12 -> relu -> pool 6x6x6 -> fc "fc/logits" 10 -> prob.
SMALL = """
name: "small"
input: "data"
input_shape { dim: 1 dim: 3 dim: 12 dim: 12 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc/logits"
  inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc/logits" top: "prob" }
"""

# A detector-like head whose Reshape hard-codes batch 1 (dim: 1 where dim: 0 copies it):
# conf 1x128x4 from conv 1x8x8x8; loc from Flatten (which keeps the batch) and an fc.
FIXED = """
name: "fixed"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "perm" type: "Permute" bottom: "conv1" top: "perm"
  permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conf_reshape" type: "Reshape" bottom: "perm" top: "conf_reshape"
  reshape_param { shape { dim: 1 dim: -1 dim: 4 } } }
layer { name: "conf" type: "Softmax" bottom: "conf_reshape" top: "conf"
  softmax_param { axis: 2 } }
layer { name: "flat" type: "Flatten" bottom: "conv1" top: "flat" }
layer { name: "loc" type: "InnerProduct" bottom: "flat" top: "loc"
  inner_product_param { num_output: 5 } }
"""

# A Reshape that mixes the samples whatever the batch (2 rows of a batch of 1): it runs at
# batch 3, wrongly; nothing to rewrite.
MIXED = """
name: "mixed"
input: "data"
input_shape { dim: 1 dim: 3 dim: 4 dim: 4 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pairs" type: "Reshape" bottom: "conv1" top: "pairs"
  reshape_param { shape { dim: 2 dim: -1 } } }
"""

# Two inputs with one batch (a siamese pair), and two that do not share a first axis.
PAIR = """
name: "pair"
input: "a"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
input: "b"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer { name: "ca" type: "Convolution" bottom: "a" top: "ca" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "cb" type: "Convolution" bottom: "b" top: "cb" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "sum" type: "Eltwise" bottom: "ca" bottom: "cb" top: "sum" }
"""
UNEVEN = """
name: "uneven"
input: "x"
input_shape { dim: 1 dim: 4 }
input: "y"
input_shape { dim: 2 dim: 4 }
layer { name: "both" type: "Concat" bottom: "x" bottom: "y" top: "both" concat_param { axis: 0 } }
layer { name: "scaled" type: "Power" bottom: "both" top: "scaled" power_param { scale: 2 } }
"""


@pytest.fixture(scope="module")
def onnx_packages():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return onnx, ort


def _folder(tmp_path_factory, name: str, text: str, **kw) -> Path:
    root = tmp_path_factory.mktemp(name)
    net = write(root / f"{name}.prototxt", text)
    return convert(net, random_weights=True, seed=3, **kw).write(root / "out")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _folder(tmp_path_factory, "small", SMALL, outputs=["fc/logits", "prob"])


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    return _folder(tmp_path_factory, "fixed", FIXED)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _folder(tmp_path_factory, "mixed", MIXED)


def _session(ort, path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _rel(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _torch(model, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    return [t.numpy() for t in (y if isinstance(y, tuple) else (y,))]


# ------------------------------------------------------------------------ a small net
def test_small_net_is_exported_with_caffes_names_and_checked_at_batch_1_and_3(
    onnx_packages, small, tmp_path
):
    from caffe2torch.onnx_export import export_onnx

    onnx, ort = onnx_packages
    result = export_onnx(small, tmp_path / "small.onnx")
    assert result.path == tmp_path / "small.onnx" and result.path.is_file()
    assert result.passed is True and result.failures == []
    assert result.dynamic_batch and not result.fixed_batch and not result.rewritten
    assert result.inputs == ["data"] and result.outputs == ["fc/logits", "prob"]
    assert set(result.errors) == {1, 3}
    for batch in (1, 3):
        assert set(result.errors[batch]) == {"fc/logits", "prob"}
        assert all(0 <= e <= TOL for e in result.errors[batch].values()), result.errors
    assert all(e <= TOL for e in result.per_sample.values())
    assert result.opset >= 18

    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["data"]
    assert [o.name for o in graph.output] == ["fc/logits", "prob"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 12, 12]
    assert result.shapes["data"] == ["batch", 3, 12, 12]

    # Measured again here: onnxruntime against the folder's model, at batch 1 and 3.
    model = load_converted(small)
    session = _session(ort, result.path)
    rng = np.random.default_rng(11)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 12, 12)).astype(np.float32)
        got = session.run(None, {"data": x})
        for g, r in zip(got, _torch(model, x)):
            assert _rel(g, r) <= TOL
    assert (result.to_dict()["errors"]).keys() == {"1", "3"}


def test_default_file_is_in_the_folder_and_is_never_overwritten_unasked(onnx_packages, small):
    from caffe2torch.onnx_export import export_onnx

    target = small / "model.onnx"
    assert not target.exists()
    try:
        result = export_onnx(small, check=False)
        assert result.path == target and target.is_file()
        assert result.passed is None and result.errors == {}
        before = target.read_bytes()
        with pytest.raises(OutputError) as e:
            export_onnx(small)
        assert str(e.value) == f"{target}: exists: pass --overwrite to replace it"
        assert target.read_bytes() == before
        again = export_onnx(small, overwrite=True)
        assert again.passed is True
        # written beside it and renamed: no temporary file is left
        assert not [p.name for p in small.iterdir() if p.name.startswith(".model.onnx")]
    finally:
        target.unlink(missing_ok=True)


# ----------------------------------------------------------- Reshapes that fix the batch
def test_a_reshape_to_batch_1_is_named_and_the_file_has_a_static_batch(onnx_packages, fixed, tmp_path):
    from caffe2torch.onnx_export import export_onnx

    onnx, ort = onnx_packages
    result = export_onnx(fixed, tmp_path / "static.onnx")
    assert not result.dynamic_batch and result.batch == 1 and result.passed is True
    assert [f.layer for f in result.fixed_batch] == ["conf_reshape"]
    assert result.fixed_batch[0].code == "perm.reshape(1, -1, 4)"
    (note,) = result.notes
    assert "'conf_reshape'" in note and "static batch of 1" in note and "--dynamic-batch" in note
    assert set(result.errors) == {1} and all(e <= TOL for e in result.errors[1].values())

    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["data"]
    assert [o.name for o in graph.output] == ["conf", "loc"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    # batch 3 is refused by onnxruntime, instead of being folded into one sample
    session = _session(ort, result.path)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"data": np.zeros((3, 3, 8, 8), np.float32)})


def test_dynamic_batch_rewrites_it_and_batch_3_equals_each_sample_alone(onnx_packages, fixed, tmp_path):
    from caffe2torch.onnx_export import export_onnx

    onnx, ort = onnx_packages
    code = (fixed / "model.py").read_text()
    result = export_onnx(fixed, tmp_path / "dynamic.onnx", dynamic_batch=True)
    assert result.dynamic_batch and result.rewritten and result.passed is True
    assert [f.layer for f in result.fixed_batch] == ["conf_reshape"]
    assert "perm.shape[0]" in result.notes[0]
    for numbers in (result.errors[1], result.errors[3], result.per_sample, result.per_sample_onnx):
        assert set(numbers) == {"conf", "loc"} and all(e <= TOL for e in numbers.values()), numbers
    assert (fixed / "model.py").read_text() == code  # the folder is never changed
    assert result.shapes["conf"] == ["batch", 128, 4]

    # The folder's model folds a batch of 3 into one sample...
    model = load_converted(fixed)
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert _torch(model, x)[0].shape == (1, 384, 4)
    # ... the ONNX file gives, at batch 3, what the model gives for each sample alone.
    each = [_torch(model, x[i : i + 1]) for i in range(3)]
    got = _session(ort, result.path).run(None, {"data": x})
    for k, name in enumerate(["conf", "loc"]):
        stacked = np.concatenate([e[k] for e in each])
        assert got[k].shape == stacked.shape
        assert _rel(got[k], stacked) <= TOL, name
    graph = onnx.load(str(result.path)).graph
    assert [o.name for o in graph.output] == ["conf", "loc"]


def test_a_net_that_mixes_its_samples_gets_a_static_batch(onnx_packages, mixed, tmp_path):
    from caffe2torch.onnx_export import export_onnx

    result = export_onnx(mixed, tmp_path / "mixed.onnx")
    assert not result.dynamic_batch and not result.fixed_batch and result.passed is True
    (note,) = result.notes
    assert "does not give each sample's result" in note and "'pairs'" in note
    assert "2x96 at batch 3" in note and "2x32 each" in note
    assert result.per_sample["pairs"] == float("inf")
    assert result.to_dict()["per_sample"] == {"pairs": None}  # JSON has no infinity


def test_inputs_share_the_dynamic_batch_or_the_file_is_static(onnx_packages, tmp_path_factory, tmp_path):
    from caffe2torch.onnx_export import OnnxExportError, export_onnx

    onnx, ort = onnx_packages
    pair = export_onnx(_folder(tmp_path_factory, "pair", PAIR), tmp_path / "pair.onnx")
    assert pair.dynamic_batch and pair.passed is True and pair.inputs == ["a", "b"]
    assert all(e <= TOL for b in (1, 3) for e in pair.errors[b].values())
    graph = onnx.load(str(pair.path)).graph
    assert [i.name for i in graph.input] == ["a", "b"] and [o.name for o in graph.output] == ["sum"]
    assert pair.shapes["a"][0] == pair.shapes["b"][0] == pair.shapes["sum"][0] == "batch"

    uneven = _folder(tmp_path_factory, "uneven", UNEVEN)
    result = export_onnx(uneven, tmp_path / "uneven.onnx")
    assert not result.dynamic_batch and result.passed is True
    assert result.notes == [
        "the inputs do not share a first axis (x 1x4, y 2x4): the ONNX file has the static "
        "shapes the model was converted at"
    ]
    assert result.shapes == {"x": [1, 4], "y": [2, 4], "scaled": [3, 4]}
    with pytest.raises(OnnxExportError, match=r"out/conversion.json: cannot export a dynamic batch: the inputs do not share"):
        export_onnx(uneven, tmp_path / "again.onnx", dynamic_batch=True)
    assert not (tmp_path / "again.onnx").exists()


# --------------------------------------------------------------------------- bad input
def test_bad_folders_are_one_line(onnx_packages, tmp_path):
    from caffe2torch.onnx_export import OnnxExportError, export_onnx

    with pytest.raises(FolderError, match=r"nowhere: no such folder$"):
        export_onnx(tmp_path / "nowhere")
    f = write(tmp_path / "net.prototxt", SMALL)
    with pytest.raises(FolderError, match=r"net.prototxt: is not a folder"):
        export_onnx(f)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match=r"conversion.json"):
        export_onnx(tmp_path / "empty")
    with pytest.raises(OnnxExportError, match="opset 0: give a positive whole number"):
        export_onnx(tmp_path / "nowhere", opset=0)


def test_the_output_must_be_a_file_we_may_write(onnx_packages, small, tmp_path):
    from caffe2torch.onnx_export import export_onnx

    with pytest.raises(OutputError, match="is a folder; give the file to write"):
        export_onnx(small, tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        export_onnx(small, tmp_path / "no" / "such" / "x.onnx")
    with pytest.raises(OutputError, match="is an input of this run"):
        export_onnx(small, small / "model.py", overwrite=True)


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime", "onnxscript"])
def test_a_missing_package_is_one_line_naming_the_extra(small, tmp_path, monkeypatch, missing):
    from caffe2torch.onnx_export import export_onnx

    monkeypatch.setitem(sys.modules, missing, None)  # "import onnx" fails as if not installed
    with pytest.raises(CaffeError) as e:
        export_onnx(small, tmp_path / "x.onnx")
    assert str(e.value).endswith(f"needs {missing}: pip install 'caffe2torch[onnx]'")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "x.onnx").exists()


def test_relative_error():
    from caffe2torch.onnx_export import relative_error

    ref = np.array([1.0, -4.0, 2.0])
    assert relative_error(ref + [0, 4e-5, 0], ref) == pytest.approx(1e-5)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.full(3, 1e-7), np.zeros(3)) == pytest.approx(1e-7)  # absolute
    assert relative_error(np.zeros((1, 3)), np.zeros(3)) == float("inf")  # shapes differ
    nan = np.array([np.nan, 1.0])
    assert relative_error(nan, nan) == 0.0
    assert relative_error(np.array([0.0, 1.0]), nan) == float("inf")


# --------------------------------------------------------------------------------- CLI
def test_cli_human_and_json(onnx_packages, cli, fixed, tmp_path):
    target = tmp_path / "face.onnx"
    code, out, err = cli("export-onnx", fixed, "-o", target, "--dynamic-batch")
    assert code == 0, err
    assert str(target) in out and "ONNX opset" in out
    assert "data (batch, 3, 8, 8)" in out and "conf (batch, 128, 4)" in out
    assert "dynamic" in out and "batch 1" in out and "batch 3" in out and "passed" in out
    assert "conf_reshape" in out

    code, out, err = cli("export-onnx", fixed, "-o", target)  # exists
    assert code == 2 and out == ""
    assert err.strip() == f"error: {target}: exists: pass --overwrite to replace it"

    code, out, err = cli("export-onnx", fixed, "-o", target, "--overwrite", "--json", "-q")
    assert code == 0, err
    data = json.loads(out)  # one JSON object, nothing else
    assert data["path"] == str(target) and data["passed"] is True
    assert data["dynamic_batch"] is False and data["batch"] == 1
    assert data["inputs"] == ["data"] and data["outputs"] == ["conf", "loc"]
    assert all(e <= TOL for e in data["errors"]["1"].values())
    assert data["fixed_batch"] == [{"layer": "conf_reshape", "code": "perm.reshape(1, -1, 4)", "batch": 1}]


def test_cli_exits_1_when_the_check_fails(onnx_packages, cli, mixed, tmp_path):
    # Asked for a dynamic batch, a net that mixes its samples is exported so, and fails.
    code, out, err = cli("export-onnx", mixed, "-o", tmp_path / "m.onnx", "--dynamic-batch")
    assert code == 1
    assert "FAILED" in out and (tmp_path / "m.onnx").is_file()
    assert "export-onnx FAILED its check" in err and "'pairs'" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_bad_input_is_one_line(cli, tmp_path):
    code, out, err = cli("export-onnx", tmp_path / "nowhere")
    assert code == 2 and out == ""
    assert err.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
    code, out, err = cli("export-onnx", tmp_path, "--opset", "0")
    assert code == 2 and "--opset" in err


# ------------------------------------------------------------------------------ corpus
# Small input shapes where the net allows (global pooling, fully convolutional); detectors
# as their SSD head (DetectionOutput computes its output's size from the data, which
# torch.export cannot hold), classifiers with their logits (random weights saturate softmax).
CORPUS_NETS = {
    "bvlc_googlenet/deploy.prototxt": ({"data": (1, 3, 224, 224)}, None),
    "squeezenet_v1.1/deploy.prototxt": ({"data": (1, 3, 227, 227)}, None),
    "resnet50/ResNet-50-deploy.prototxt": ({"data": (1, 3, 224, 224)}, ["fc1000", "prob"]),
    "mobilenet_v2_shicai/mobilenet_v2_deploy.prototxt": ({"data": (1, 3, 160, 160)}, ["fc7", "prob"]),
    "shufflenet_v1_g3/shufflenet_1x_g3_deploy.prototxt": ({"data": (1, 3, 224, 224)}, None),
    # (its logits: with random weights its softmax is steep, 7.5e-6 from rounding alone)
    "opencv_face_detector_res10_ssd/deploy.prototxt": (
        {"data": (1, 3, 150, 150)}, ["mbox_loc", "mbox_conf", "mbox_priorbox"],
    ),
    "mobilenet_ssd_voc/MobileNetSSD_deploy.prototxt": (
        {"data": (1, 3, 300, 300)}, ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
    ),
    "fcn_alexnet_voc/val.prototxt": ({"data": (1, 3, 256, 256)}, ["score"]),
}


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.parametrize("rel", sorted(CORPUS_NETS))
def test_corpus_nets_equal_their_torch_model_at_batch_1_and_3(onnx_packages, corpus, rel, tmp_path):
    from caffe2torch.onnx_export import export_onnx, relative_error

    onnx, ort = onnx_packages
    net = corpus / rel
    if not net.is_file():
        pytest.skip(f"{rel} is not in the corpus")
    shapes, outputs = CORPUS_NETS[rel]
    folder = convert(net, random_weights=True, seed=1, input_shapes=shapes, outputs=outputs).write(
        tmp_path / "out"
    )
    result = export_onnx(folder, tmp_path / "model.onnx")
    assert result.passed is True, result.failures
    assert result.dynamic_batch and not result.fixed_batch, result.notes
    names = outputs or result.outputs
    assert result.outputs == names
    for batch in (1, 3):
        assert set(result.errors[batch]) == set(names)
        assert all(e <= TOL for e in result.errors[batch].values()), (batch, result.errors)
    assert all(e <= TOL for e in result.per_sample.values()), result.per_sample

    graph = onnx.load(str(result.path), load_external_data=False).graph
    assert [i.name for i in graph.input] == list(shapes)
    assert [o.name for o in graph.output] == names
    if "mbox_priorbox" in names:  # the priors do not depend on the batch
        assert result.shapes["mbox_priorbox"][0] == 1 and result.shapes["mbox_loc"][0] == "batch"
    # One output measured again here against the folder's model, at batch 3.
    model = load_converted(folder)
    x = np.random.default_rng(2).standard_normal((3, *shapes["data"][1:])).astype(np.float32)
    got = _session(ort, result.path).run(None, {"data": x})
    for g, r in zip(got, _torch(model, x)):
        assert relative_error(g, r) <= TOL
