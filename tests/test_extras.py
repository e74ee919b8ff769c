"""The optional dependencies (extras): OpenCV (verify), Pillow (images), h5py (hdf5). Each is
imported only where it is used; without it, the command that needs it says so in one line
naming the extra to install (exit 2), and everything else works: a conversion without OpenCV
(and without a built Caffe) is written and marked "not verified"."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caffe2torch.errors import CaffeError, WeightsError
from caffe2torch.extras import MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet" / "lenet.prototxt"
EXTRAS = ("cv2", "h5py", "PIL")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

NO_OPENCV = "verifying needs OpenCV: pip install 'caffe2torch[verify]'"
NO_REFERENCE = f"no reference engine: real Caffe is not built (make caffe-ref), and {NO_OPENCV}"
NO_PILLOW = "reading images needs Pillow: pip install 'caffe2torch[images]'"


@pytest.fixture
def without(monkeypatch):
    """``without("cv2")``: the module (and its submodules) cannot be imported, as when it is
    not installed."""

    def block(*names: str) -> None:
        for name in names:
            for key in [k for k in sys.modules if k.startswith(name + ".")]:
                monkeypatch.setitem(sys.modules, key, None)
            monkeypatch.setitem(sys.modules, name, None)

    return block


@pytest.fixture
def no_caffe(monkeypatch, tmp_path):
    """Real Caffe not built (the check's auto reference is then OpenCV alone)."""
    monkeypatch.setenv("CAFFE2TORCH_CAFFE", str(tmp_path / "no-caffe"))
    monkeypatch.setenv("CAFFE2TORCH_CAFFE_SSD", str(tmp_path / "no-caffe-ssd"))
    monkeypatch.chdir(tmp_path)


class _Broken:
    """A meta path finder for which ``name`` is installed but fails to import (an OpenCV
    wheel built for another numpy)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise ImportError("numpy.core.multiarray failed to import")
        return None


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------- require()
def test_require_names_the_extra_in_one_line(without):
    without("cv2")
    with pytest.raises(MissingExtraError) as e:
        require("cv2", "verify", "verifying")
    assert str(e.value) == NO_OPENCV
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_require_takes_the_callers_error_class_and_location(without):
    without("h5py")
    with pytest.raises(WeightsError) as e:
        require("h5py", "hdf5", "reading HDF5 weights", error=WeightsError, file="w.caffemodel.h5")
    assert str(e.value) == "w.caffemodel.h5: reading HDF5 weights needs h5py: pip install 'caffe2torch[hdf5]'"


def test_require_of_a_submodule_names_the_package(without):
    without("PIL")
    with pytest.raises(CaffeError) as e:
        require("PIL.Image", "images", "reading images")
    assert str(e.value) == NO_PILLOW


def test_require_says_when_a_module_is_installed_but_does_not_import(monkeypatch):
    for key in [k for k in sys.modules if k == "cv2" or k.startswith("cv2.")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(sys, "meta_path", [_Broken("cv2"), *sys.meta_path])
    with pytest.raises(MissingExtraError) as e:
        require("cv2", "verify", "verifying")
    assert str(e.value) == (
        "verifying needs OpenCV, which is installed but does not import "
        "(numpy.core.multiarray failed to import)"
    )


def test_require_returns_the_module():
    import json as json_module

    assert require("json", "verify", "anything") is json_module


# ---------------------------------------------------------------------- OpenCV: verify
def test_without_opencv_convert_converts_and_says_not_verified(cli, tmp_path, without, no_caffe):
    without("cv2")
    out = tmp_path / "lenet"
    code, stdout, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "-o", out)
    assert code == 0, stderr
    assert f"not verified: {NO_REFERENCE}" in _lines(stdout)
    assert _lines(stderr) == []
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["verification"] == {"passed": None, "skipped": NO_REFERENCE}
    assert (out / "report.md").is_file() and (out / "model.pth").is_file()
    # verify needs a reference: one line, exit 2
    code, stdout, stderr = cli("verify", out)
    assert (code, _lines(stderr)) == (2, [f"error: {NO_REFERENCE}"])


def test_without_opencv_an_explicit_opencv_reference_is_refused_before_any_work(cli, tmp_path, without, no_caffe):
    without("cv2")
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "-o", out, "--reference", "opencv")
    assert (code, _lines(stderr)) == (2, [f"error: {NO_OPENCV}"])
    assert not out.exists()


def test_with_a_broken_opencv_convert_still_converts(cli, tmp_path, monkeypatch, no_caffe):
    for key in [k for k in sys.modules if k == "cv2" or k.startswith("cv2.")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(sys, "meta_path", [_Broken("cv2"), *sys.meta_path])
    out = tmp_path / "lenet"
    code, stdout, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "-o", out)
    assert code == 0, stderr
    skipped = json.loads((out / "conversion.json").read_text())["verification"]["skipped"]
    assert skipped.endswith("verifying needs OpenCV, which is installed but does not import (numpy.core.multiarray failed to import)")


def test_opencv_5_without_the_caffe_importer_is_one_line(cli, tmp_path, monkeypatch, no_caffe):
    import types

    cv2 = types.ModuleType("cv2")
    cv2.__version__ = "5.0.0"
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", LENET, "--random-weights", "-o", out, "--reference", "opencv")
    assert (code, _lines(stderr)) == (2, [
        "error: OpenCV 5.0.0 has no Caffe importer (dropped in 5.x): pip install 'caffe2torch[verify]' (OpenCV 4)"
    ])


def test_without_opencv_convert_no_verify_and_inspect_work(cli, tmp_path, without):
    without("cv2")
    code, _, stderr = cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", tmp_path / "x")
    assert code == 0, stderr
    code, stdout, stderr = cli("inspect", LENET)
    assert code == 0 and "conv1" in stdout, stderr


# ----------------------------------------------------------------------- h5py: hdf5
def test_without_h5py_hdf5_weights_are_one_line(cli, tmp_path, without):
    without("h5py")
    weights = tmp_path / "lenet.caffemodel.h5"
    weights.write_bytes(HDF5_SIGNATURE + bytes(64))  # read as HDF5 from its signature
    line = f"error: {weights}: reading HDF5 weights needs h5py: pip install 'caffe2torch[hdf5]'"
    code, _, stderr = cli("inspect", LENET, weights)
    assert (code, _lines(stderr)) == (2, [line])
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", LENET, weights, "-o", out, "--no-verify")
    assert (code, _lines(stderr)) == (2, [line])
    assert not out.exists()


def test_without_h5py_binary_weights_still_convert(cli, tmp_path, without):
    without("h5py")
    weights = tmp_path / "lenet.caffemodel"
    assert cli("synth-weights", LENET, "-o", weights)[0] == 0
    code, _, stderr = cli("convert", "--record-paths", LENET, weights, "-o", tmp_path / "lenet", "--no-verify")
    assert code == 0, stderr


# ---------------------------------------------------------------------- Pillow: images
def test_without_pillow_images_are_one_line(cli, tmp_path, without):
    out = tmp_path / "lenet"
    assert cli("convert", "--record-paths", LENET, "--random-weights", "--no-verify", "-o", out)[0] == 0
    image = tmp_path / "digit.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    without("PIL")
    code, _, stderr = cli("predict", out, image)
    assert (code, _lines(stderr)) == (2, [f"error: {NO_PILLOW}"])
    pytest.importorskip("cv2")  # (the reference comes first)
    code, _, stderr = cli("verify", out, "--image", image, "--net", LENET)
    assert (code, _lines(stderr)) == (2, [f"error: {NO_PILLOW}"])


# ------------------------------------------------- import caffe2torch, load: no extras
SCRIPT = """
import sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None
from caffe2torch.cli.app import run
if {convert!r}:
    assert run(["convert", {lenet!r}, "--random-weights", "--no-verify", "-o", {out!r}]) == 0
    assert run(["inspect", {lenet!r}]) == 0
import caffe2torch, torch
model = caffe2torch.load({out!r})
assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
print("IMPORTED", sorted(k for k in sys.modules if k.split(".")[0] in {extras!r} and sys.modules[k] is not None))
"""


@pytest.mark.parametrize("blocked", [False, True], ids=["installed", "missing"])
def test_import_convert_and_load_never_import_the_extras(tmp_path, blocked):
    out = tmp_path / "lenet"

    def run(convert: bool) -> str:
        code = SCRIPT.format(
            blocked=EXTRAS if blocked else (), convert=convert, lenet=str(LENET), out=str(out), extras=EXTRAS
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]

    assert run(convert=True) == "IMPORTED []"  # the CLI, convert --no-verify, inspect
    assert run(convert=False) == "IMPORTED []"  # a fresh interpreter: import caffe2torch, load
