"""Inputs: preprocess.json and preprocess.py, mean files, the channel order folded into the
first layer (--input-order rgb), the normalization folded (--fold-normalization), predict.

References: the unconverted model fed the Caffe-side input; numpy (and OpenCV's cvtColor and
resize) for preprocess.py; the real mean file's .npy; Caffe's own feature for cnn3dobj."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from helpers import CORPUS, write

from caffe2torch.caffe.caffemodel import read_blobproto, write_blobproto
from caffe2torch.emit.conversion import convert
from caffe2torch.preprocess import Options, load_mean, read_mean, save_mean

cv2 = pytest.importorskip("cv2")

CONV_PAD = """
name: "rgbnet"
input: "data"
input_shape { dim: 2 dim: 3 dim: 12 dim: 12 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

CONV_NOPAD = CONV_PAD.replace(" pad: 1", " stride: 2")

# The input is read by a convolution and by a concat: no single set of weights can take the swap.
TWO_READERS = """
name: "tworeaders"
input: "data"
input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "cat" type: "Concat" bottom: "data" bottom: "conv1" top: "cat" }
layer { name: "conv2" type: "Convolution" bottom: "cat" top: "conv2"
  convolution_param { num_output: 4 kernel_size: 1 } }
"""

IP_FIRST = """
name: "ipfirst"
input: "data"
input_shape { dim: 2 dim: 3 dim: 5 dim: 4 }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" inner_product_param { num_output: 7 } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 } }
"""


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(conversion, x) -> np.ndarray:
    with torch.no_grad():
        return conversion.module()(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


# ------------------------------------------------------------------------ --input-order rgb
@pytest.mark.parametrize("net", [CONV_PAD, IP_FIRST])
def test_rgb_model_on_rgb_equals_the_caffe_model_on_bgr_folded_into_weights(tmp_path, net):
    path = write(tmp_path / "net.prototxt", net)
    bgr = convert(path, random_weights=True, seed=3)
    rgb = convert(path, random_weights=True, seed=3, preprocess=Options(input_order="rgb"))
    assert ".flip(" not in rgb.code  # folded, no extra step
    first = "conv1" if "conv1" in net else "fc1"
    w_bgr, w_rgb = bgr.state_dict()[f"{first}.weight"], rgb.state_dict()[f"{first}.weight"]
    c = 3
    assert torch.equal(
        w_rgb.reshape(w_rgb.shape[0], c, -1), w_bgr.reshape(w_bgr.shape[0], c, -1).flip(1)
    )
    x_bgr = np.random.default_rng(0).normal(size=bgr.graph.inputs[0].shape).astype(np.float32)
    assert rel(run(rgb, x_bgr[:, ::-1]), run(bgr, x_bgr)) <= 1e-6
    assert rgb.preprocess.inputs[0].channel_order == "RGB"
    assert rgb.preprocess.inputs[0].folded["channel_order"] == f"folded into the weights of {first}"


def test_rgb_explicit_flip_when_the_input_has_other_readers(tmp_path):
    path = write(tmp_path / "net.prototxt", TWO_READERS)
    bgr = convert(path, random_weights=True, seed=1)
    rgb = convert(path, random_weights=True, seed=1, preprocess=Options(input_order="rgb"))
    assert "data = data.flip(1)" in rgb.code
    assert torch.equal(bgr.state_dict()["conv1.weight"], rgb.state_dict()["conv1.weight"])
    assert any("'cat' (Concat)" in n for n in rgb.notes)
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    assert rel(run(rgb, x[:, ::-1]), run(bgr, x)) <= 1e-6


# A convolution with two bottoms applies one set of weights to both: folding the swap of one
# input into them would also swap the other.
TWO_BOTTOMS = """
name: "twobottoms"
input: "a"
input: "b"
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
input_shape { dim: 1 dim: 3 dim: 6 dim: 6 }
layer { name: "conv" type: "Convolution" bottom: "a" bottom: "b" top: "ca" top: "cb"
  convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "sum" type: "Eltwise" bottom: "ca" bottom: "cb" top: "sum" }
"""


def test_rgb_not_folded_into_weights_shared_by_two_bottoms(tmp_path):
    from caffe2torch.verify.run import verify_conversion

    path = write(tmp_path / "net.prototxt", TWO_BOTTOMS)
    bgr = convert(path, random_weights=True, seed=1)
    rgb = convert(path, random_weights=True, seed=1, preprocess=Options(input_order="rgb"))
    assert "a = a.flip(1)" in rgb.code and "b = b.flip(1)" in rgb.code
    assert torch.equal(bgr.state_dict()["conv.weight"], rgb.state_dict()["conv.weight"])
    rng = np.random.default_rng(2)
    a, b = (rng.normal(size=(1, 3, 6, 6)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        y_bgr = bgr.module()(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        y_rgb = rgb.module()(torch.from_numpy(a[:, ::-1].copy()), torch.from_numpy(b[:, ::-1].copy())).numpy()
    assert rel(y_rgb, y_bgr) <= 1e-6
    assert verify_conversion(rgb).status == "passed"


def test_rgb_model_verifies_layer_by_layer_against_the_bgr_reference(cli, tmp_path):
    from caffe2torch.verify.run import verify_conversion

    for net in (CONV_PAD, TWO_READERS):
        path = write(tmp_path / "net.prototxt", net)
        rgb = convert(path, random_weights=True, seed=2, preprocess=Options(input_order="rgb"))
        v = verify_conversion(rgb)
        assert v.status == "passed" and len(v.compared) >= 3
        assert "with its channels reversed (BGR to RGB)" in v.inputs
    # the folder on disk: the same, from conversion.json
    path = write(tmp_path / "net.prototxt", CONV_PAD)
    code, _, stderr = cli("convert", "--record-paths", path, "--random-weights", "-o", tmp_path / "o", "--input-order", "rgb")
    assert code == 0, stderr
    manifest = json.loads((tmp_path / "o" / "conversion.json").read_text())
    assert manifest["options"]["input_order"] == "rgb"
    assert manifest["preprocess"]["inputs"][0]["model_input"] == {"reverse_channels": True}
    code, stdout, stderr = cli("verify", tmp_path / "o", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["passed"] is True
    # A model that does not reverse its input (the weights flipped back) is caught at conv1.
    state = torch.load(tmp_path / "o" / "model.pth", weights_only=True)
    state["conv1.weight"] = state["conv1.weight"].flip(1).contiguous()
    torch.save(state, tmp_path / "o" / "model.pth")
    code, stdout, _ = cli("verify", tmp_path / "o", "--json")
    assert code == 1 and json.loads(stdout)["first_divergence"] == "conv1"


# ------------------------------------------------------------------------ --fold-normalization
@pytest.mark.parametrize("order", [None, "rgb"])
def test_fold_normalization_exact_for_a_convolution_without_padding(tmp_path, order):
    path = write(tmp_path / "net.prototxt", CONV_NOPAD)
    mean, scale = [104.0, 117.0, 123.0], 0.017
    plain = convert(path, random_weights=True, seed=4)
    folded = convert(
        path, random_weights=True, seed=4,
        preprocess=Options(mean=mean, scale=scale, fold_normalization=True, input_order=order),
    )
    spec = folded.preprocess.inputs[0]
    assert spec.mean is None and spec.scale == 1.0 and spec.folded["layers"] == ["conv1"]
    raw = np.random.default_rng(5).uniform(0, 255, size=(2, 3, 12, 12)).astype(np.float32)  # BGR
    caffe_in = (raw - np.asarray(mean, np.float32).reshape(1, 3, 1, 1)) * np.float32(scale)
    model_in = raw[:, ::-1] if order else raw
    assert rel(run(folded, model_in), run(plain, caffe_in)) <= 1e-5
    from caffe2torch.verify.run import verify_conversion

    v = verify_conversion(folded)
    assert v.status == "passed", v.explanation
    assert v.inputs.startswith("seeded uniform pixels 0..255 (seed 0), normalized for the reference")
    assert "un-normalized" in v.inputs


def test_fold_normalization_refused_when_not_exact(cli, tmp_path):
    padded = write(tmp_path / "pad.prototxt", CONV_PAD)
    code, stdout, stderr = cli(
        "convert", padded, "--random-weights", "-o", tmp_path / "o", "--mean", "104,117,123",
        "--fold-normalization",
    )
    assert code == 2 and not (tmp_path / "o").exists()
    assert stderr.strip().splitlines() == [
        f"error: {padded}:5: layer 'conv1' (Convolution): --fold-normalization: cannot fold the "
        "mean and scale of 'data' exactly: 'conv1' pads its input by 1: Caffe pads the "
        "normalized input with zeros, which are not the mean in pixels, so the borders would differ"
    ]
    nopad = write(tmp_path / "nopad.prototxt", CONV_NOPAD)
    np.save(tmp_path / "mean.npy", np.ones((3, 12, 12), np.float32))
    code, _, stderr = cli(
        "convert", nopad, "--random-weights", "-o", tmp_path / "o", "--mean-file",
        tmp_path / "mean.npy", "--fold-normalization",
    )
    assert code == 2 and "is an image, which varies over the picture" in stderr
    two = write(tmp_path / "two.prototxt", TWO_READERS)
    code, _, stderr = cli(
        "convert", two, "--random-weights", "-o", tmp_path / "o", "--scale", "0.5", "--fold-normalization",
    )
    assert code == 2 and "'cat' (Concat) is not a Convolution or InnerProduct" in stderr


# ------------------------------------------------------------------------ mean files
def test_real_legacy_mean_file_equals_its_npy():
    folder = CORPUS / "mnist_mean"
    if not folder.is_dir():
        pytest.skip("../shared/corpus is not here")
    blob = read_blobproto(folder / "mnist_mean.binaryproto")
    assert blob.legacy and blob.shape == (1, 1, 28, 28)
    ref = np.load(folder / "mnist_mean.npy")
    assert np.array_equal(blob.data, ref)
    assert np.array_equal(read_mean(folder / "mnist_mean.binaryproto"), ref[0])


@pytest.mark.parametrize("legacy", [True, False])
def test_mean_written_by_the_tool_round_trips(tmp_path, legacy):
    mean = np.random.default_rng(6).uniform(0, 255, size=(3, 5, 7)).astype(np.float32)
    write_blobproto(tmp_path / "m.binaryproto", mean[None], legacy=legacy)
    blob = read_blobproto(tmp_path / "m.binaryproto")
    assert blob.legacy == legacy and blob.shape == (1, 3, 5, 7)
    assert np.array_equal(read_mean(tmp_path / "m.binaryproto"), mean)
    save_mean(mean, tmp_path / "mean.pth")
    assert np.array_equal(load_mean(tmp_path / "mean.pth"), mean)
    assert torch.load(tmp_path / "mean.pth", weights_only=True)["mean"].dtype == torch.float32


def test_bad_mean_files_give_one_line(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", CONV_PAD)
    (tmp_path / "bad.binaryproto").write_bytes(b"\x08\x01\x10\x02\x2a\x03abc")
    for args, needle in (
        (["--mean-file", tmp_path / "missing.binaryproto"], "missing.binaryproto: no such file"),
        (["--mean-file", tmp_path / "bad.binaryproto"], "bad.binaryproto: "),
        (["--mean", "1,2"], "--mean has 2 values for an input with 3 channels"),
        (["--mean", "a,b,c"], "--mean 'a,b,c': give numbers"),
    ):
        code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", *args)
        assert code == 2, (args, stderr)
        assert needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert not (tmp_path / "o").exists()
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--input-order", "xyz")
    assert code == 2 and "'xyz' is not one of 'bgr', 'rgb'" in stderr  # a usage error, shown by typer
    grey = write(tmp_path / "grey.prototxt", CONV_PAD.replace("dim: 3 dim: 12", "dim: 1 dim: 12"))
    code, _, stderr = cli("convert", "--record-paths", grey, "--random-weights", "-o", tmp_path / "o", "--input-order", "rgb")
    assert code == 2 and "no 3-channel image input" in stderr


# ------------------------------------------------------------------------ the spec
V1_IMAGE_DATA = """
name: "v1net"
layers {
  name: "data"
  type: IMAGE_DATA
  top: "data"
  top: "label"
  image_data_param {
    source: "list.txt"
    mean_file: "mean.binaryproto"
    scale: 0.00390625
    batch_size: 1
    crop_size: 16
    new_height: 20
    new_width: 24
  }
}
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
"""


def test_v1_image_data_scale_and_mean_file_reach_preprocess_json(cli, tmp_path):
    mean = np.random.default_rng(7).uniform(90, 130, size=(1, 3, 20, 24)).astype(np.float32)
    write_blobproto(tmp_path / "mean.binaryproto", mean, legacy=True)
    net = write(tmp_path / "v1.prototxt", V1_IMAGE_DATA)
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 0, stderr
    spec = json.loads((tmp_path / "o" / "preprocess.json").read_text())["inputs"][0]
    assert spec["shape"] == [1, 3, 16, 16]
    assert (spec["channel_order"], spec["resize"], spec["crop"]) == ("BGR", [20, 24], [16, 16])
    assert spec["scale"] == 0.00390625 and spec["mean"] == "mean.pth"
    where = "prototxt (V1 format, upgraded as Caffe does): layer 'data' (ImageData)"
    assert spec["sources"]["scale"] == f"{where} transform_param.scale"
    assert spec["sources"]["mean"] == f"{where} transform_param.mean_file 'mean.binaryproto'"
    assert spec["sources"]["crop"].startswith(f"{where} transform_param.crop_size")
    assert spec["sources"]["resize"] == f"{where} image_data_param new_height/new_width"
    assert "BGR" in spec["sources"]["caffe_order"]
    assert np.array_equal(load_mean(tmp_path / "o" / "mean.pth"), mean[0])
    manifest = json.loads((tmp_path / "o" / "conversion.json").read_text())
    assert manifest["preprocess"] == json.loads((tmp_path / "o" / "preprocess.json").read_text())
    # byte-identical again, mean.pth included
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o2")[0] == 0
    for f in ("mean.pth", "preprocess.json", "preprocess.py", "conversion.json", "model.pth"):
        assert (tmp_path / "o" / f).read_bytes() == (tmp_path / "o2" / f).read_bytes(), f
    # flags win over the prototxt, and say what the prototxt said
    code, _, _ = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "p", "--scale", "0.5", "--mean", "1")
    spec = json.loads((tmp_path / "p" / "preprocess.json").read_text())["inputs"][0]
    assert spec["scale"] == 0.5 and spec["mean"] == [1.0, 1.0, 1.0]
    assert spec["sources"]["scale"] == "--scale (the prototxt says 0.00390625)"
    assert not (tmp_path / "p" / "mean.pth").exists()


def test_corpus_image_data_net_with_an_absent_mean_file(corpus, tmp_path):
    net = corpus / "caffenet_dnns_easily_fooled" / "imagenet_deploy_image_memory_data.prototxt"
    conversion = convert(net, random_weights=True, seed=0)
    spec = conversion.preprocess.inputs[0]
    assert (spec.resize, spec.crop, spec.mean) == ([256, 256], [227, 227], None)
    assert "imagenet_mean.binaryproto', which is not here" in spec.sources["mean"]
    assert any("give --mean-file" in n for n in conversion.notes)


# ------------------------------------------------------------------------ preprocess.py
def load_preprocess(folder):
    name = f"pre_{abs(hash(str(folder)))}"
    spec = importlib.util.spec_from_file_location(name, folder / "preprocess.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def numpy_preprocess(spec: dict, rgb: np.ndarray, mean_image: np.ndarray | None) -> np.ndarray:
    """The same spec, written independently with numpy and OpenCV (uint8 HWC RGB in)."""
    if spec["channel_order"] == "gray":
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[None].astype(np.float32)
    else:
        img = rgb if spec["channel_order"] == "RGB" else rgb[..., ::-1]
        size = spec["resize"] or spec["shape"][2:]
        if list(img.shape[:2]) != list(size):
            img = cv2.resize(np.ascontiguousarray(img), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        img = img.transpose(2, 0, 1).astype(np.float32)
    h, w = img.shape[1:]
    if spec["crop"]:
        ch, cw = spec["crop"]
        top, left = (h - ch) // 2, (w - cw) // 2
        img = img[:, top : top + ch, left : left + cw]
        if mean_image is not None:
            mean_image = mean_image[:, top : top + ch, left : left + cw]
    if mean_image is not None:
        img = img - mean_image
    elif spec["mean"] is not None:
        img = img - np.asarray(spec["mean"], np.float32).reshape(-1, 1, 1)
    return (img * np.float32(spec["scale"]))[None]


def test_preprocess_py_equals_numpy(cli, tmp_path):
    mean = np.random.default_rng(8).uniform(90, 130, size=(1, 3, 20, 24)).astype(np.float32)
    write_blobproto(tmp_path / "mean.binaryproto", mean, legacy=True)
    net = write(tmp_path / "v1.prototxt", V1_IMAGE_DATA)
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")[0] == 0
    pre = load_preprocess(tmp_path / "o")
    tree = ast.parse((tmp_path / "o" / "preprocess.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
    assert imported == {"json", "pathlib", "torch"}
    rng = np.random.default_rng(9)
    img = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)  # RGB, already the resize size
    ours = pre.preprocess(img).numpy()
    ref = numpy_preprocess(pre.SPEC["inputs"][0], img, mean[0][:, :, :])
    assert ours.shape == (1, 3, 16, 16) and np.array_equal(ours, ref)
    # the same image given as BGR (cv2.imread) or CHW
    assert np.array_equal(pre.preprocess(img[..., ::-1].copy(), order="BGR").numpy(), ref)
    assert np.array_equal(pre.preprocess(torch.from_numpy(img).permute(2, 0, 1), layout="CHW").numpy(), ref)
    # resized (OpenCV's bilinear on 8-bit pixels): within one pixel level, times the scale
    big = rng.integers(0, 256, size=(41, 37, 3), dtype=np.uint8)
    diff = np.abs(pre.preprocess(big).numpy() - numpy_preprocess(pre.SPEC["inputs"][0], big, mean[0]))
    assert diff.max() <= 1.0 * 0.00390625 + 1e-7


def test_preprocess_py_grey_is_opencvs_and_rgb_mean_is_reordered(cli, tmp_path):
    grey = write(tmp_path / "grey.prototxt", CONV_PAD.replace("dim: 3 dim: 12", "dim: 1 dim: 12"))
    assert cli("convert", "--record-paths", grey, "--random-weights", "-o", tmp_path / "g", "--mean", "33.3")[0] == 0
    pre = load_preprocess(tmp_path / "g")
    img = np.random.default_rng(10).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    ref = numpy_preprocess(pre.SPEC["inputs"][0], img, None)
    assert np.array_equal(pre.preprocess(img).numpy(), ref)
    colour = write(tmp_path / "c.prototxt", CONV_PAD)
    assert cli("convert", "--record-paths", colour, "--random-weights", "-o", tmp_path / "c", "--mean", "104,117,123",
               "--input-order", "rgb")[0] == 0
    pre = load_preprocess(tmp_path / "c")
    spec = pre.SPEC["inputs"][0]
    assert spec["mean"] == [123.0, 117.0, 104.0] and spec["channel_order"] == "RGB"
    x = pre.preprocess(img).numpy()
    assert np.array_equal(x, numpy_preprocess(spec, img, None))
    assert np.array_equal(x[0, 0], img[..., 0].astype(np.float32) - 123.0)


# ------------------------------------------------------------------------ predict
def test_predict_cnn3dobj_reproduces_caffes_feature(cli, corpus, tmp_path):
    folder = corpus / "cnn3dobj_triplet"
    code, _, stderr = cli(
        "convert", folder / "3d_triplet_testIMG.prototxt", folder / "3d_triplet_iter_30000.caffemodel",
        "-o", tmp_path / "t", "--mean", "0", "--scale", "1",
    )
    assert code == 0, stderr
    spec = json.loads((tmp_path / "t" / "preprocess.json").read_text())["inputs"][0]
    assert (spec["channel_order"], spec["mean"], spec["scale"]) == ("gray", [0.0], 1.0)
    assert (spec["sources"]["mean"], spec["sources"]["scale"]) == ("--mean", "--scale")
    code, stdout, stderr = cli("predict", tmp_path / "t", folder / "4_78.png", "--json")
    assert code == 0, stderr
    feat = json.loads(stdout)[0]["outputs"][0]
    assert feat["name"] == "feat" and feat["shape"] == [1, 3]
    caffe = [-312.4805, 8.4768486, -224.98953]
    assert rel(feat["values"], caffe) <= 1e-3
    assert np.allclose(feat["values"], caffe, rtol=1e-3)
    # the preprocessing gives the blob the corpus collector derived from the PNG
    pre = load_preprocess(tmp_path / "t")
    from caffe2torch.predict import load_image

    blob = pre.preprocess(load_image(folder / "4_78.png")).numpy()
    assert np.array_equal(blob, np.load(folder / "input_1x1x64x64.npy"))
    code, stdout, _ = cli("predict", tmp_path / "t", folder / "4_78.png")
    assert code == 0 and "-312.48" in stdout


CLASSIFIER = """
name: "cls"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 6 } }
"""


@pytest.mark.parametrize("softmax", [True, False])
def test_predict_top_classes_with_labels(cli, tmp_path, softmax):
    from PIL import Image

    text = CLASSIFIER + ('layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n' if softmax else "")
    net = write(tmp_path / "net.prototxt", text)
    assert cli("convert", "--record-paths", net, "--random-weights", "--seed", "2", "-o", tmp_path / "o", "--mean", "100")[0] == 0
    img = np.random.default_rng(11).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    labels = [f"n0000000{i} class {i}" for i in range(6)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    code, stdout, stderr = cli("predict", tmp_path / "o", tmp_path / "x.png", "--labels", tmp_path / "labels.txt",
                               "--top", "3", "--json")
    assert code == 0, stderr
    got = json.loads(stdout)[0]
    # reference: the converted model on the numpy preprocessing, softmax in numpy
    from caffe2torch.emit.conversion import load_converted

    x = (img[..., ::-1].transpose(2, 0, 1).astype(np.float32) - 100.0)[None]
    with torch.no_grad():
        y = load_converted(tmp_path / "o")(torch.from_numpy(np.ascontiguousarray(x))).numpy().reshape(-1)
    p = y if softmax else np.exp(y - y.max()) / np.exp(y - y.max()).sum()
    order = np.argsort(-p, kind="stable")[:3]
    assert [t["index"] for t in got["top"]] == order.tolist()
    assert [t["label"] for t in got["top"]] == [f"class {i}" for i in order]
    assert np.allclose([t["probability"] for t in got["top"]], p[order], rtol=1e-5)
    assert got["softmax_applied"] is (not softmax)


def test_predict_bad_inputs(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", CLASSIFIER)
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")[0] == 0
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    for args, needle in (
        ([tmp_path / "o", tmp_path / "missing.png"], "missing.png: no such file"),
        ([tmp_path / "o", tmp_path / "notimage.png"], "is not an image Pillow can read"),
        ([tmp_path, tmp_path / "notimage.png"], "conversion.json: no such file"),
    ):
        code, _, stderr = cli("predict", *args)
        assert code == 2 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
    (tmp_path / "o" / "preprocess.json").unlink()
    code, _, stderr = cli("predict", tmp_path / "o", tmp_path / "notimage.png")
    assert code == 2 and "has no preprocess.py and preprocess.json" in stderr


def test_mmdnn_engine_refuses_weight_folding(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", CONV_PAD)
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--engine", "mmdnn",
                          "--input-order", "rgb")
    assert code == 2 and "the native engine does that" in stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags", [[], ["--input-order", "rgb"], ["--input-order", "rgb", "--fold-normalization"]])
def test_verify_with_an_image_through_preprocess_py(cli, tmp_path, flags):
    from PIL import Image

    net = write(tmp_path / "net.prototxt", CONV_NOPAD)
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--mean", "104,117,123",
                          "--scale", "0.017", *flags)
    assert code == 0, stderr
    img = np.random.default_rng(12).integers(0, 256, size=(30, 26, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[::-1]).save(tmp_path / "b.png")
    code, stdout, stderr = cli("verify", tmp_path / "o", "--image", tmp_path / "a.png", "--image",
                               tmp_path / "b.png", "--json")
    assert code == 0, stderr
    got = json.loads(stdout)
    assert got["passed"] is True and got["inputs"].startswith("images from a.png, b.png through preprocess.py")
    assert [r["shape"] for r in got["blobs"] if r["layer"] == "conv1"] == [[2, 4, 5, 5]]


@pytest.mark.parametrize("flags", [[], ["--input-order", "rgb"], ["--input-order", "rgb", "--fold-normalization"]])
def test_the_reference_gets_the_caffe_blob_of_the_image(cli, tmp_path, flags):
    """What --image gives OpenCV is Caffe's blob (BGR, (pixel - mean) * scale), whatever the
    model itself takes."""
    from PIL import Image

    from caffe2torch.predict import image_batch
    from caffe2torch.preprocess.spec import caffe_input

    net = write(tmp_path / "net.prototxt", CONV_NOPAD)
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--mean", "104,117,123",
               "--scale", "0.017", *flags)[0] == 0
    img = np.random.default_rng(13).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    name, batch, how = image_batch(tmp_path / "o", [tmp_path / "a.png"])
    caffe_blob = (img[..., ::-1].transpose(2, 0, 1).astype(np.float32)
                  - np.asarray([104, 117, 123], np.float32).reshape(3, 1, 1)) * np.float32(0.017)
    assert name == "data" and np.array_equal(caffe_input(how, batch), caffe_blob[None])


def test_a_mean_image_of_another_size(cli, tmp_path):
    mean = np.random.default_rng(14).uniform(90, 130, size=(1, 3, 20, 24)).astype(np.float32)
    write_blobproto(tmp_path / "mean.binaryproto", mean, legacy=True)
    # cropped data without a resize: the images were the mean's size, then cropped
    no_resize = V1_IMAGE_DATA.replace("    new_height: 20\n    new_width: 24\n", "")
    net = write(tmp_path / "v1.prototxt", no_resize)
    spec = convert(net, random_weights=True).preprocess.inputs[0]
    assert (spec.resize, spec.crop, spec.mean) == ([20, 24], [16, 16], None)
    assert np.array_equal(spec.mean_image, mean[0])
    assert spec.sources["resize"].startswith("the mean image's size 20x24")
    # a deploy net whose input fits neither: the per-channel average (Caffe's classification.cpp)
    deploy = write(tmp_path / "net.prototxt", CONV_PAD)
    spec = convert(deploy, random_weights=True, preprocess=Options(mean_file=tmp_path / "mean.binaryproto")).preprocess.inputs[0]
    assert spec.mean_image is None
    assert np.allclose(spec.mean, mean[0].mean(axis=(1, 2)), rtol=1e-6)
    assert "per-channel average" in spec.sources["mean"]
