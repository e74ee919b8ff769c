"""The held-out trial, repeated on nets the tests build (tests/nets.py): MTCNN's P-Net,
VanillaCNN, VDSR, an SSDLite-style detector and the colorization net, each converted, verified
and run on an image with ``predict``, as a new user would.

Numbers are checked three ways: ``convert``'s check (every layer against OpenCV), ``verify``
on the written folder, and ``predict``'s outputs against OpenCV's forward of the same image,
preprocessed independently here with OpenCV and numpy as Caffe's data layer does.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write

import nets

cv2 = pytest.importorskip("cv2")

TRIAL = {
    "mtcnn_pnet": nets.mtcnn_pnet,
    "vanilla_cnn": nets.vanilla_cnn,
    "vdsr": lambda: nets.vdsr(64),
    "ssdlite": lambda: nets.ssdlite_head(64),
    "colorization": lambda: nets.colorization(64),
}


def _caffe_blob(image_rgb: np.ndarray, shape) -> np.ndarray:
    """The Caffe input from an RGB image, as Caffe's data layer makes it: OpenCV's BGR (or its
    grey), resized to the input with OpenCV's bilinear filter, pixels 0..255, no mean."""
    _, c, h, w = shape
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None] if c == 1 else bgr
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        img = img.reshape(h, w, c)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)


@pytest.mark.parametrize("name", sorted(TRIAL))
def test_trial_convert_verify_predict(cli, tmp_path, name):
    from PIL import Image

    from caffe2torch.api import load_graph
    from caffe2torch.verify.opencv import run_opencv

    net = write(tmp_path / f"{name}.prototxt", TRIAL[name]())
    weights = tmp_path / f"{name}.caffemodel"
    assert cli("synth-weights", net, "-o", weights, "--seed", "3")[0] == 0
    out = tmp_path / "out"
    code, stdout, stderr = cli("convert", "--record-paths", net, weights, "-o", out)
    assert code == 0, stdout + stderr
    manifest = json.loads((out / "conversion.json").read_text())
    check = manifest["verification"]
    assert check["passed"] is True and check["failed"] == 0, check
    code, stdout, stderr = cli("verify", out, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["passed"] and result["compared"] == check["compared"]

    graph = load_graph(net)
    shape = graph.inputs[0].shape
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (shape[2] + 5, shape[3] + 3, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    code, stdout, stderr = cli("predict", out, path, "--json")
    assert code == 0, stderr
    (pred,) = json.loads(stdout)
    blob = _caffe_blob(image, shape)
    ref = run_opencv(net, weights, {graph.inputs[0].name: blob}, graph=graph)
    for o in pred["outputs"]:
        producer = next(v.producer for v in graph.outputs if v.name == o["name"])
        theirs = np.asarray(ref[producer.name][0] if producer.name in ref else ref[o["name"]][0], np.float64)
        scale = max(1e-6, float(np.abs(theirs).max()))
        for stat, fn in (("min", np.min), ("max", np.max), ("mean", np.mean)):
            # preprocess.py's bilinear resize rounds as cv::resize does: within a pixel level
            assert abs(o[stat] - float(fn(theirs))) <= 2e-2 * scale + 1e-4, (name, o["name"], stat)
        if "values" in o:
            np.testing.assert_allclose(o["values"], theirs.reshape(-1), rtol=0, atol=2e-2 * scale + 1e-4)
    print(
        f"\n{name}: convert+check {check['compared']} values, worst {check['worst_rel']}, "
        f"reference errors {check.get('reference_errors', 0)}; verify passed; predict "
        + ", ".join(f"{o['name']} {'x'.join(map(str, o['shape']))} mean {o['mean']:.4g}" for o in pred["outputs"])
    )
