"""The trust issue: every case a new user and a fuzz campaign found, with its exact message and
exit code. Exit 2 with one line naming the file (and the layer or field) for every bad input,
nothing written, nothing of the user's replaced; exit 1 only for "converted, the check failed".
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_V2, ld, v2_layer, varint, write
from layer_harness import net_text

import nets

pytest.importorskip("cv2")

CLI = [sys.executable, "-m", "caffe2torch"]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _tiny(folder: Path, cli) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    net = write(folder / "det1.prototxt", TINY_V2)
    weights = folder / "det1.caffemodel"
    assert cli("synth-weights", net, "-o", weights)[0] == 0
    return net, weights


def _one_line(code, stdout, stderr, exit_code=2):
    assert code == exit_code, (stdout, stderr)
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    return stderr[len("error: "):-1]


def _strays(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ output never destroys input
def test_overwrite_of_the_folder_holding_the_inputs_is_refused(cli, tmp_path):
    d = tmp_path / "models"
    net, weights = _tiny(d, cli)
    (d / "notes.txt").write_text("mine")
    before = _hashes(d)
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", d, "--overwrite"))
    assert msg == (
        f"{d}: holds an input of this run ({net}): caffe2torch never replaces it; give a new "
        "folder with -o"
    )
    assert _hashes(d) == before and _strays(tmp_path) == []


def test_overwrite_of_the_current_folder_is_refused(cli, tmp_path, monkeypatch):
    d = tmp_path / "models"
    _tiny(d, cli)
    before = _hashes(d)
    monkeypatch.chdir(d)
    msg = _one_line(*cli("convert", "--record-paths", "det1.prototxt", "det1.caffemodel", "-o", ".", "--overwrite"))
    assert msg == ".: is the current folder: caffe2torch never replaces it; give a new folder with -o"
    monkeypatch.chdir(d / "..")
    sub = d / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    msg = _one_line(*cli("convert", "--record-paths", "../det1.prototxt", "--random-weights", "-o", "..", "--overwrite"))
    assert msg == "..: is a parent of the current folder: caffe2torch never replaces it; give a new folder with -o"
    assert _hashes(d) == before and _strays(tmp_path) == []


def test_overwrite_of_a_parent_of_an_input_is_refused(cli, tmp_path, monkeypatch):
    d = tmp_path / "zoo"
    net, weights = _tiny(d / "lenet", cli)
    before = _hashes(d)
    monkeypatch.chdir(tmp_path)
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", d, "--overwrite"))
    assert msg == (
        f"{d}: is a parent of an input of this run ({net}): caffe2torch never replaces it; "
        "give a new folder with -o"
    )
    assert _hashes(d) == before


def test_overwrite_of_a_folder_caffe2torch_did_not_write_is_refused(cli, tmp_path):
    net, weights = _tiny(tmp_path / "in", cli)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    before = _hashes(other)
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", other, "--overwrite"))
    assert msg == (
        f"{other}: --overwrite replaces only a folder caffe2torch wrote, and it has no "
        "conversion.json, so caffe2torch did not write it; give a new folder"
    )
    # A folder caffe2torch wrote, with a file of the user's added: refused too.
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, weights, "-o", out)[0] == 0
    (out / "my_notes.txt").write_text("keep")
    kept = _hashes(out)
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", out, "--overwrite"))
    assert msg == (
        f"{out}: --overwrite replaces only a folder caffe2torch wrote, and it also holds files "
        "caffe2torch did not write (my_notes.txt); give a new folder"
    )
    assert _hashes(out) == kept and _hashes(other) == before


def test_a_failed_replacement_keeps_the_old_folder(cli, tmp_path, monkeypatch):
    net, weights = _tiny(tmp_path / "in", cli)
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, weights, "-o", out)[0] == 0
    before = _hashes(out)
    from caffe2torch.emit import conversion

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conversion, "save_weights", full)
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", out, "--overwrite"))
    assert msg == f"{out}: cannot write: No space left on device"
    assert _hashes(out) == before and _strays(tmp_path) == []


def test_unwritable_outputs_are_refused_before_any_work(cli, tmp_path):
    net = write(tmp_path / "det1.prototxt", TINY_V2)
    missing = tmp_path / "never_read.caffemodel"  # the destination is checked first
    msg = _one_line(*cli("convert", "--record-paths", net, missing, "-o", "/proc/x"))
    assert msg.startswith("/proc/x: cannot be written: ")
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    msg = _one_line(*cli("convert", "--record-paths", net, missing, "-o", link))
    assert msg == (
        f"{link}: is a symbolic link: give the folder itself (caffe2torch replaces the link's "
        "name, never what it points to)"
    )
    long = tmp_path / ("x" * 300)
    msg = _one_line(*cli("convert", "--record-paths", net, missing, "-o", long))
    assert msg.startswith(str(tmp_path)[:40]) and msg.endswith("xxxxxxxxxx: cannot be written: File name too long")
    assert re.search(r"…\(\d{3} more characters\)…", msg)  # a name that long is shortened
    msg = _one_line(*cli("synth-weights", net, "-o", "/proc/x.caffemodel"))
    assert msg.startswith("/proc/x.caffemodel: cannot be written: ")
    assert _strays(tmp_path) == []


def test_synth_weights_never_overwrites_its_input(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    before = net.read_bytes()
    for extra in ((), ("--overwrite",)):
        msg = _one_line(*cli("synth-weights", net, "-o", net, *extra))
        assert msg == f"{net}: is an input of this run ({net}): caffe2torch never overwrites its input"
    assert net.read_bytes() == before
    w = tmp_path / "w.caffemodel"
    assert cli("synth-weights", net, "-o", w)[0] == 0
    assert _one_line(*cli("synth-weights", net, "-o", w, "--seed", "1")) == f"{w}: exists: pass --overwrite to replace it"
    first = w.read_bytes()
    assert cli("synth-weights", net, "-o", w, "--seed", "1", "--overwrite")[0] == 0
    assert w.read_bytes() != first


def test_synth_weights_on_a_full_disk_writes_nothing(cli, tmp_path, monkeypatch):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    from caffe2torch import folder

    def full(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(folder.os, "replace", full)
    w = tmp_path / "w.caffemodel"
    assert _one_line(*cli("synth-weights", net, "-o", w)) == f"{w}: cannot write: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]


# --------------------------------------------------------------------------------- memory
def _peak_rss_mib(args, cwd) -> tuple[int, float, subprocess.CompletedProcess]:
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(r // 1024, p.returncode)\n"
        "sys.stderr.write(p.stdout + p.stderr)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd)
    peak, rc = proc.stdout.split()
    return int(peak), time.perf_counter() - start, subprocess.CompletedProcess(args, int(rc), "", proc.stderr)


@pytest.mark.slow
def test_a_unet_declaring_batch_10_at_480_converts_in_under_2_gb(tmp_path):
    net = write(tmp_path / "unet.prototxt", nets.unet(batch=10, size=480))
    peak, _, proc = _peak_rss_mib([*CLI, "convert", "unet.prototxt", "--random-weights", "-o", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "verified: passed: 54 values compared" in proc.stderr
    assert "at batch 1 (the prototxt declares 10" in json.loads((tmp_path / "out/conversion.json").read_text())["verification"]["inputs"]
    assert peak < 2048, f"peak RSS {peak} MiB"
    assert net.exists()


def test_a_check_over_the_memory_limit_is_refused_before_anything_is_read(cli, tmp_path):
    net = write(tmp_path / "unet.prototxt", nets.unet(batch=10, size=480))
    corrupt = tmp_path / "unet.caffemodel"
    corrupt.write_bytes(b"\x0a\xff\xff\xff\x0f")  # never read: the estimate comes first
    msg = _one_line(*cli("convert", "--record-paths", net, corrupt, "-o", tmp_path / "out", "--max-memory", "500M"))
    assert msg.startswith(f"{net}: the check would need about 1.9 GiB (")
    assert msg.endswith(
        "over the limit of 500 MiB set by --max-memory; nothing was started. The check runs on "
        "data 1x3x480x480: give a smaller --input-shape, or convert with --no-verify, or raise "
        "--max-memory"
    )
    assert not (tmp_path / "out").exists()
    # The batch of the check can be chosen; the limit can be lifted.
    msg = _one_line(*cli("convert", "--record-paths", net, corrupt, "-o", tmp_path / "out", "--check-batch", "10", "--max-memory", "8G"))
    assert "data 10x3x480x480" in msg and "over the limit of 8.0 GiB" in msg
    assert _one_line(*cli("convert", "--record-paths", net, "-o", tmp_path / "out", "--max-memory", "lots")).endswith(
        "Invalid value for --max-memory: 'lots' is not a size: give e.g. 8G, 512M or none (see 'caffe2torch convert --help')"
    )


# ----------------------------------------------------------- files inside a converted folder
@pytest.fixture
def folder(cli, tmp_path):
    net, weights = _tiny(tmp_path / "in", cli)
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, weights, "-o", out)[0] == 0
    return out


def test_a_tampered_or_truncated_model_pth_is_one_line(cli, folder, tmp_path):
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((17, 17, 3), np.uint8)).save(image)
    pth = folder / "model.pth"
    good = pth.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "random": bytes(range(256)) * 8,
    }
    for name, data in cases.items():
        pth.write_bytes(data)
        for args in (("verify", folder), ("predict", folder, image)):
            msg = _one_line(*cli(*args))
            assert msg == f"{pth}: cannot be loaded as a state_dict: it is truncated or not a file torch.save wrote", name

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"conv1.weight": Evil()}, pth)
    for args in (("verify", folder), ("predict", folder, image)):
        code, out, err = cli(*args)
        msg = _one_line(code, out, err)
        assert msg == (
            f"{pth}: cannot be loaded as a state_dict: it holds objects other than tensors, which "
            "caffe2torch never loads (it loads weights with weights_only: caffe2torch writes none)"
        )
        assert "weights_only=False" not in err and "pwned" not in out


@pytest.mark.parametrize(
    "edit, field, what",
    [
        (lambda m: m["inputs"][0].update(shape=["a", 3]), "inputs[0].shape", "must be a whole number"),
        (lambda m: m["inputs"][0].update(shape=[0, 3, 17, 17]), "inputs[0].shape", "has a dimension 0 that is not a positive int32"),
        (lambda m: m["options"].update(phase=5), "options.phase", "must be 'test' or 'train'"),
        (lambda m: m["options"].update(stages=7), "options.stages", "must be a list"),
        (lambda m: m.update(class_name="not a name"), "class_name", "is not a Python class name"),
        (lambda m: m.update(model_file="../../evil.py"), "model_file", "must be model.py"),
        (lambda m: m["trace"][0].update(statements=["x"]), "trace[0].statements", "must be [start, end]"),
        (lambda m: m["preprocess"]["inputs"][0]["model_input"].update(divide_by="x"),
         "preprocess.inputs[0].model_input.divide_by", "must be a finite number"),
    ],
)
def test_a_conversion_json_with_wrong_types_is_one_line(cli, folder, edit, field, what):
    path = folder / "conversion.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    msg = _one_line(*cli("verify", folder))
    assert msg == f"{path}: '{field}' {what} (edited by hand? convert again)"


def test_a_conversion_json_that_is_not_json_is_one_line(cli, folder):
    path = folder / "conversion.json"
    path.write_text('{"format": NaN}')
    assert _one_line(*cli("verify", folder)) == f"{path}: is not JSON (NaN is not JSON)"
    path.write_text('{"format": ')
    assert _one_line(*cli("verify", folder)).startswith(f"{path}: is not JSON (Expecting value")


def test_a_broken_model_py_is_one_line(cli, folder, tmp_path):
    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((17, 17, 3), np.uint8)).save(image)
    model = folder / "model.py"
    text = model.read_text()
    model.write_text(text + "\nraise RuntimeError('broken on import')\n")
    assert _one_line(*cli("verify", folder)) == f"{model}: cannot be imported: RuntimeError: broken on import"
    assert _one_line(*cli("predict", folder, image)) == f"{model}: cannot be imported: RuntimeError: broken on import"
    model.write_text(text.replace("def forward(", "def forward(;"))
    assert _one_line(*cli("verify", folder)).startswith(f"{model}: cannot parse: ")
    assert _one_line(*cli("predict", folder, image)).startswith(f"{model}: cannot be imported: ")


# ------------------------------------------------------------------ weights files and blobs
def test_a_blob_with_a_zero_count_and_absurd_dims_is_one_line(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    blob = ld(7, ld(1, b"".join(varint(d) for d in (0, 2**62, 2**62))))
    w = tmp_path / "w.caffemodel"
    w.write_bytes(v2_layer("conv1", "Convolution", [blob]))
    msg = _one_line(*cli("convert", "--record-paths", net, w, "-o", tmp_path / "out"))
    assert msg == (
        f"{w}: corrupted caffemodel: layer 'conv1', blob 0: blob shape "
        "0x4611686018427387904x4611686018427387904 has a dimension over Caffe's limit of "
        "2^31 - 1 (at byte 25)"
    )


def test_hdf5_weights_that_claim_terabytes_or_link_elsewhere_are_one_line(cli, tmp_path):
    h5py = pytest.importorskip("h5py")
    net = write(tmp_path / "net.prototxt", TINY_V2)

    def h5(name, build):
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            build(f)
        return path

    big = h5("big.caffemodel.h5", lambda f: f.create_dataset("data/conv1/0", shape=(2**20, 2**20, 4), dtype="f4"))
    assert big.stat().st_size < 1 << 20
    msg = _one_line(*cli("convert", "--record-paths", net, big, "-o", tmp_path / "o"))
    assert msg == (
        f"{big}: layer 'conv1': blob 0 of shape 1048576x1048576x4 is over Caffe's blob limits "
        "(32 axes, 2^31 - 1 values)"
    )

    def loop(f):
        g = f.create_group("data")
        g["conv1"] = h5py.SoftLink("/data/conv1")

    looped = h5("loop.caffemodel.h5", loop)
    msg = _one_line(*cli("convert", "--record-paths", net, looped, "-o", tmp_path / "o"))
    assert msg == f"{looped}: 'data/conv1' is a soft link, which caffe2torch does not follow"

    def external(f):
        g = f.create_group("data")
        g["conv1"] = h5py.ExternalLink("/etc/passwd", "/")

    ext = h5("ext.caffemodel.h5", external)
    msg = _one_line(*cli("convert", "--record-paths", net, ext, "-o", tmp_path / "o"))
    assert msg == f"{ext}: 'data/conv1' is a link to another file (/etc/passwd), which caffe2torch does not follow"


# ---------------------------------------------------------------- inputs that are not files
@pytest.mark.parametrize(
    "kind, args, expected",
    [
        ("prototxt", ("inspect", "{x}"), "{x}: is a character device, expected a .prototxt file"),
        ("weights", ("convert", "{net}", "{x}", "-o", "{tmp}/o"), "{x}: is a character device, expected a weights file"),
        ("mean", ("convert", "{net}", "--random-weights", "--mean-file", "{x}", "-o", "{tmp}/o"),
         "{x}: is a character device, expected a mean file (.binaryproto)"),
    ],
)
def test_dev_zero_as_an_input_is_one_line(cli, tmp_path, kind, args, expected):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    fill = {"x": "/dev/zero", "net": str(net), "tmp": str(tmp_path)}
    msg = _one_line(*cli(*[a.format(**fill) for a in args]))
    assert msg == expected.format(**fill)


def test_dev_zero_as_labels_is_one_line(cli, folder, tmp_path):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((17, 17, 3), np.uint8)).save(image)
    msg = _one_line(*cli("predict", folder, image, "--labels", "/dev/zero"))
    assert msg == "/dev/zero: is a character device, expected a labels file"


def test_huge_sparse_files_are_refused_unread(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    sparse = tmp_path / "huge.prototxt"
    with open(sparse, "wb") as f:
        f.truncate(12 << 30)
    msg = _one_line(*cli("inspect", sparse))
    assert msg == (
        f"{sparse}: is 12.0 GiB, over the limit of 64.0 MiB: no net description is that large "
        "(the largest real ones are a few MB)"
    )
    weights = sparse.rename(tmp_path / "huge.caffemodel")
    msg = _one_line(*cli("convert", "--record-paths", net, weights, "-o", tmp_path / "o"))
    assert msg == (
        f"{weights}: is 12.0 GiB: Caffe reads binary caffemodels of at most 2 GiB (protobuf's "
        "limit, kProtoReadBytesLimit), so no Caffe could load it"
    )
    mean = weights.rename(tmp_path / "huge.binaryproto")
    msg = _one_line(*cli("convert", "--record-paths", net, "--random-weights", "--mean-file", mean, "-o", tmp_path / "o"))
    assert msg == f"{mean}: is 12.0 GiB, over the limit of 2.0 GiB: Caffe reads binary protos of at most 2 GiB"


@pytest.mark.slow
def test_a_fifo_as_any_input_never_blocks(tmp_path):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args, expected in (
        (["inspect", fifo], f"{fifo}: is a FIFO (named pipe), expected a .prototxt file"),
        (["convert", net, fifo, "-o", tmp_path / "o"], f"{fifo}: is a FIFO (named pipe), expected a weights file"),
        (["convert", net, "--random-weights", "--mean-file", fifo, "-o", tmp_path / "o"],
         f"{fifo}: is a FIFO (named pipe), expected a mean file (.binaryproto)"),
    ):
        proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stderr) == (2, f"error: {expected}\n")


def test_a_decompression_bomb_image_is_refused_before_decoding(cli, folder, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))
    msg = _one_line(*cli("predict", folder, bomb))
    assert msg == (
        f"{bomb}: is 100000x100000 pixels, over the limit of 268,435,456 (a decompression bomb, "
        "or far larger than any net's input)"
    )
    assert _one_line(*cli("verify", folder, "--image", bomb)).startswith(f"{bomb}: is 100000x100000 pixels")


def _png_header(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_npy_inputs_are_checked_from_their_header(cli, folder, tmp_path):
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (1, 3, 100000, 100000)}
        )
    msg = _one_line(*cli("verify", folder, "--input", huge))
    assert msg == f"{huge}: holds an array of 1x3x100000x100000; the model's input 'data' is Nx3x17x17 (N at least 1)"
    truncated = tmp_path / "short.npy"
    with open(truncated, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (4, 3, 17, 17)})
        f.write(b"\0" * 100)
    msg = _one_line(*cli("verify", folder, "--input", truncated))
    assert msg.startswith(f"{truncated}: is truncated: its header says 4x3x17x17 float32, which needs")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    assert _one_line(*cli("verify", folder, "--input", empty)) == f"{empty}: not an .npy array (the file is empty)"
    damaged = tmp_path / "damaged.npy"
    damaged.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", 22) + b"{'descr': f(), 'x':1}\n")
    msg = _one_line(*cli("verify", folder, "--input", damaged))
    assert msg == f"{damaged}: not an .npy array (its header is damaged)"
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 5), np.float32))
    assert _one_line(*cli("verify", folder, "--input", wrong)) == (
        f"{wrong}: holds an array of 2x3x5; the model's input 'data' is Nx3x17x17 (N at least 1)"
    )


# -------------------------------------------------------------------------- the CLI's options
@pytest.mark.parametrize(
    "args, expected",
    [
        (("convert", "{net}", "--random-weights", "--seed", "-1"),
         "Invalid value for --seed: -1: give a whole number from 0 to 2^63 - 1 (see 'caffe2torch convert --help')"),
        (("synth-weights", "{net}", "-o", "{tmp}/w.caffemodel", "--seed", "-1"),
         "Invalid value for --seed: -1: give a whole number from 0 to 2^63 - 1 (see 'caffe2torch synth-weights --help')"),
        (("convert", "{net}", "--random-weights", "--mean", "nan"), "--mean 'nan': every value must be a finite number"),
        (("convert", "{net}", "--random-weights", "--scale", "inf"),
         "Invalid value for --scale: inf is not a finite number (see 'caffe2torch convert --help')"),
        (("convert", "{net}", "--random-weights", "--format", "onnx"),
         "Invalid value for '--format': Value error, 'onnx' is not one of 'pth', 'safetensors'. "
         "(see 'caffe2torch convert --help')"),
        (("convert",), "Missing argument 'PROTOTXT'. (see 'caffe2torch convert --help')"),
        (("convert", "{net}", "--no-such-flag"), "No such option: --no-such-flag (see 'caffe2torch convert --help')"),
        (("inspect", "{net}", "--input-shape", "9" * 5000),
         "--input-shape '" + "9" * 59 + "…(4,923 more characters)…" + "9" * 18
         + "': a dimension is at most 2^31 - 1, and a blob has 32 axes at most"),
    ],
)
def test_bad_options_are_one_line(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)  # (convert's default output folder is ./converted)
    net = write(tmp_path / "net.prototxt", TINY_V2)
    fill = {"net": str(net), "tmp": str(tmp_path)}
    msg = _one_line(*cli(*[a.format(**fill) for a in args]))
    assert msg == expected.format(**fill)
    assert "Exceeds the limit" not in msg
    assert [p.name for p in tmp_path.iterdir()] == ["net.prototxt"]


@pytest.mark.parametrize("name", ["nn", "super", "torch", "F", "Tensor", "Scale"])
def test_a_class_name_that_shadows_what_model_py_uses_is_refused(cli, tmp_path, name):
    net = write(tmp_path / "net.prototxt", TINY_V2)
    msg = _one_line(*cli("convert", "--record-paths", net, "--random-weights", "--class-name", name, "-o", tmp_path / "o"))
    assert msg == f"--class-name '{name}': model.py uses that name itself; choose another"
    assert not (tmp_path / "o").exists()


def test_tolerances_must_be_finite(cli, folder):
    for flag in ("--rtol", "--atol"):
        for value in ("nan", "inf", "-1"):
            msg = _one_line(*cli("verify", folder, flag, value))
            assert msg.startswith(f"Invalid value for {flag}: ")


def test_names_with_control_characters_or_of_a_megabyte_are_shown_safely(cli, tmp_path):
    evil = 'a\\033[2J\\rerror: forged\\n'
    text = TINY_V2.replace('bottom: "fc" top: "prob"', f'bottom: "{evil}" top: "prob"')
    net = write(tmp_path / "net.prototxt", text)
    msg = _one_line(*cli("inspect", net))
    assert msg == (
        f"{net}:23: layer 'prob' (Softmax): bottom 'a\\x1b[2J\\x0derror: forged ' is not "
        "produced by any layer"
    )
    long = "n" * 1_000_000
    net = write(tmp_path / "long.prototxt", TINY_V2.replace('bottom: "fc" top: "prob"', f'bottom: "{long}" top: "prob"'))
    code, out, err = cli("inspect", net)
    msg = _one_line(code, out, err)
    assert len(err) < 400 and "…(999,922 more characters)…" in msg and msg.endswith("is not produced by any layer")


# ------------------------------------------------------------------- what Caffe accepts
def test_outputs_infer_only_the_layers_they_need(cli, tmp_path):
    after = """
layer { name: "bad" type: "Reshape" bottom: "prob" top: "bad" reshape_param { shape { dim: 7 dim: 7 } } }
layer { name: "py" type: "Python" bottom: "bad" top: "py" python_param { module: "my_layers" layer: "Proposals" } }
layer { name: "odd" type: "Frobnicate" bottom: "py" top: "odd" }
"""
    net = write(tmp_path / "net.prototxt", TINY_V2 + after)
    msg = _one_line(*cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o"))
    assert msg.startswith(f"{net}: 2 layers cannot be converted: 'py' (Python my_layers.Proposals, line 26)")
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--outputs", "prob")
    assert code == 0, err
    manifest = json.loads((tmp_path / "o/conversion.json").read_text())
    assert manifest["outputs"] == [{"name": "prob", "shape": [2, 5]}]
    assert manifest["verification"]["passed"] is True
    assert {k: manifest["layer_map"][k] for k in ("bad", "py", "odd")} == {"bad": "dropped", "py": "dropped", "odd": "dropped"}


def test_a_net_ending_in_silence_returns_the_silenced_blob(cli, tmp_path):
    net = write(tmp_path / "color.prototxt", nets.colorization())
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 0, err
    manifest = json.loads((tmp_path / "o/conversion.json").read_text())
    assert manifest["outputs"] == [{"name": "class8_ab", "shape": [1, 2, 64, 64]}]
    assert manifest["verification"]["passed"] is True
    assert "class8_ab: read only by a Silence layer, so returned as output(s)" in out


def test_a_net_with_no_outputs_names_the_candidates(cli, tmp_path):
    text = TINY_V2 + 'layer { name: "sink" type: "Python" bottom: "prob" python_param { module: "m" layer: "L" } }\n'
    net = write(tmp_path / "net.prototxt", text)
    msg = _one_line(*cli("inspect", net))
    assert msg == (
        f"{net}: the net has no outputs (every blob is read by a layer): name the blobs to "
        "return with --outputs, e.g. one of conv1, pool1, fc, prob"
    )
    assert cli("inspect", net, "--json") [0] == 2


def test_unused_tops_of_a_slice_are_not_outputs(cli, tmp_path):
    net = write(tmp_path / "tsm.prototxt", nets.tsm_slice(64))
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 0, err
    manifest = json.loads((tmp_path / "o/conversion.json").read_text())
    assert manifest["outputs"] == [{"name": "head", "shape": [1, 4, 8, 8]}]
    assert "-> Tensor:" in (tmp_path / "o/model.py").read_text()
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o2", "--outputs", "head,part63")
    assert code == 0 and len(json.loads((tmp_path / "o2/conversion.json").read_text())["outputs"]) == 2


# -------------------------------------------------------------- messages that say what is known
def test_preprocessing_the_prototxt_does_not_state_is_an_assumption(cli, tmp_path):
    net = write(tmp_path / "det1.prototxt", nets.mtcnn_pnet())
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 0, err
    line = (
        "Input data: BGR, pixels 0..255 (the prototxt does not say; Caffe's defaults assumed: "
        "BGR, pixels 0..255, no mean, scale 1; preprocess.py makes it)"
    )
    assert line in out
    assert line in (tmp_path / "o/model.py").read_text()
    assert line in (tmp_path / "o/report.md").read_text()
    spec = json.loads((tmp_path / "o/preprocess.json").read_text())["inputs"][0]
    assert spec["assumed"] == ["channel_order", "pixel_range", "scale", "mean"]
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o2", "--mean", "127.5", "--scale", "0.0078125")
    assert (
        "Input data: BGR, pixels 0..255, minus mean [127.5, 127.5, 127.5], times 0.0078125 (the prototxt "
        "does not say; Caffe's defaults assumed: BGR, pixels 0..255; preprocess.py makes it)"
    ) in out


DATA_WITH_MISSING_MEAN = """
name: "m"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.0078125 mean_file: "missing_mean.binaryproto" }
  data_param { source: "lmdb" batch_size: 1 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" bottom: "label" top: "loss" }
"""


def test_folding_says_exactly_what_was_folded_and_predict_warns_of_a_missing_mean(cli, tmp_path):
    net = write(tmp_path / "m.prototxt", DATA_WITH_MISSING_MEAN)
    out_dir = tmp_path / "o"
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "--input-shape", "1,3,8,8", "--fold-normalization", "-o", out_dir)
    assert code == 0, err
    assert (
        "Input data: BGR, pixels 0..255, no mean (the prototxt's mean file missing_mean.binaryproto "
        "is not here), scale 0.0078125 folded into conv1 (preprocess.py makes it)"
    ) in out
    assert "mean and scale" not in out
    from PIL import Image

    image = tmp_path / "img.png"
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(image)
    code, out, err = cli("predict", out_dir, image)
    assert code == 0
    assert err == (
        "warning: the prototxt names the mean file missing_mean.binaryproto, which was not found "
        "when this folder was converted: the images are not mean-subtracted, so the outputs may "
        "be wrong (convert again with --mean-file)\n"
    )
    # Nothing to fold at all: said so, and nothing claimed.
    net2 = write(tmp_path / "m2.prototxt", DATA_WITH_MISSING_MEAN.replace("scale: 0.0078125 ", ""))
    code, out, err = cli("convert", "--record-paths", net2, "--random-weights", "--input-shape", "1,3,8,8", "--fold-normalization", "-o", tmp_path / "o2")
    assert code == 0 and "folded into conv1" not in out
    assert "--fold-normalization: nothing folded into the layers reading 'data': it has no mean (the mean file missing_mean.binaryproto is not here) and scale 1" in out


def test_shared_weights_are_noted_only_for_layers_with_weights(cli, tmp_path):
    crops = "".join(
        f'layer {{ name: "crop" type: "Crop" bottom: "conv1" bottom: "ref" top: "c{i}" crop_param {{ axis: 2 offset: {i} }} }}\n'
        for i in range(5)
    )
    layers = (
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 2 kernel_size: 1 } }\n'
        + crops
        + 'layer { name: "sum" type: "Eltwise" bottom: "c0" bottom: "c1" bottom: "c2" bottom: "c3" bottom: "c4" top: "sum" }\n'
    )
    net = write(tmp_path / "crop.prototxt", net_text({"data": (1, 2, 10, 10), "ref": (1, 2, 4, 4)}, layers))
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 0, err
    assert "share one set of weights" not in out
    twice = layers.replace('name: "crop"', 'name: "crop_x"') + layers.split("\n")[0].replace('top: "conv1"', 'top: "conv1b"') + "\n"
    net = write(tmp_path / "twice.prototxt", net_text({"data": (1, 2, 10, 10), "ref": (1, 2, 4, 4)}, twice))
    code, out, err = cli("inspect", net)
    assert code == 0 and "2 layers are named 'conv1': they share one set of weights" in out


def test_strict_counts_each_value_once_and_failures_go_to_stderr(cli, tmp_path):
    from test_verify import _cancel_net

    net, weights = _cancel_net(tmp_path)
    out_dir = tmp_path / "out"
    assert cli("convert", "--record-paths", net, weights, "-o", out_dir)[0] == 0
    state = torch.load(out_dir / "model.pth", weights_only=True)
    state["a.weight"] *= 1 + 2e-5
    torch.save(state, out_dir / "model.pth")
    code, out, err = cli("verify", out_dir, "--strict")
    assert code == 1
    assert "0 failed, 1 drift (failing: --strict), 0 skipped" in out
    assert err == (
        f"verification FAILED: {out_dir} does not compute what the Caffe net does (first "
        "divergence: layer 'd'; 1 value(s) failed)\n"
    )
    state["a.weight"] *= 2
    torch.save(state, out_dir / "model.pth")
    code, out, err = cli("verify", out_dir)
    assert code == 1 and err.startswith("verification FAILED: ") and "first divergence: layer 'a'" in err


# ----------------------------------------------------------------- a reference that is wrong
def test_a_wrong_reference_value_is_a_reference_error_not_a_failure(cli, tmp_path):
    """OpenCV's depthwise 3x3 convolution with pad 1 over a 1x1 input is wrong (SSDLite's last
    box predictors): the model matches an exact float64 computation of the layer."""
    net = write(tmp_path / "ssdlite.prototxt", nets.ssdlite_head(64))
    code, out, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--reference", "opencv")
    assert code == 0, out + err
    v = json.loads((tmp_path / "o/conversion.json").read_text())["verification"]
    assert v["passed"] is True and v["reference_errors"] >= 1, v
    assert any("The reference is wrong at" in line for line in v["explanation"])
    code, out, err = cli("verify", tmp_path / "o", "--json", "--reference", "opencv")
    rows = {r["layer"]: r for r in json.loads(out)["blobs"]}
    faulty = [r for r in rows.values() if r["status"] == "reference-error"]
    assert faulty and all("exact float64 computation" in r["note"] for r in faulty)
    assert all(r["shape"][2:] == [1, 1] for r in faulty)
    # The layers after it are still checked (against the model's value given to OpenCV).
    assert rows["mbox_loc"]["status"] == "pass" and rows["mbox_conf"]["status"] == "pass"


def test_a_wrong_model_on_the_same_layer_still_fails(cli, tmp_path):
    """The exact computation decides for the model only where the model matches it."""
    net = write(tmp_path / "ssdlite.prototxt", nets.ssdlite_head(64))
    out = tmp_path / "o"
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", out)[0] == 0
    state = torch.load(out / "model.pth", weights_only=True)
    state["pw5_mbox_loc_dw.weight"] *= 2
    torch.save(state, out / "model.pth")
    code, stdout, err = cli("verify", out, "--json")
    result = json.loads(stdout)
    assert code == 1 and result["first_divergence"] == "pw5_mbox_loc/dw"
    rows = {r["layer"]: r for r in result["blobs"]}
    assert rows["pw5_mbox_loc/dw"]["status"] == "FAIL"


def test_the_exact_convolution_is_caffes(tmp_path):
    """The float64 convolution the check trusts over OpenCV equals torch's on a grid of
    groups, strides, pads, dilations and odd sizes, and gives Caffe's one output where the
    kernel overhangs the input."""
    from caffe2torch.api import load_graph

    rng = np.random.default_rng(0)
    cases = [
        (4, 8, 7, 3, 1, 1, 1, 1), (4, 6, 9, 3, 2, 1, 2, 2), (6, 6, 5, 3, 1, 1, 6, 1),
        (8, 8, 1, 3, 1, 1, 8, 1), (3, 4, 6, 2, 3, 0, 1, 1), (2, 4, 11, 5, 2, 2, 2, 2),
    ]
    for c, n_out, size, k, s, p, g, d in cases:
        text = net_text({"data": (2, c, size, size + 1)}, (
            f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{ '
            f"num_output: {n_out} kernel_size: {k} stride: {s} pad: {p} group: {g} dilation: {d} }} }}\n"
        ))
        node = load_graph(write(tmp_path / "c.prototxt", text)).node("c")
        x = rng.standard_normal((2, c, size, size + 1))
        w = rng.standard_normal(node.weight_shapes[0])
        b = rng.standard_normal(node.weight_shapes[1])
        (ours,) = node.op.exact([x], [w, b])
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                          stride=s, padding=p, dilation=d, groups=g).numpy()
        if want.shape != ours.shape:  # the overhang: Caffe's truncation keeps one output
            assert size + 2 * p < d * (k - 1) + 1 and ours.shape[2] == 1
            continue
        np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ interruption
@pytest.mark.slow
def test_ctrl_c_during_the_check_exits_130_and_writes_nothing(tmp_path):
    write(tmp_path / "unet.prototxt", nets.unet(batch=1, size=480))
    proc = subprocess.Popen(
        [*CLI, "convert", "unet.prototxt", "--random-weights", "-o", "out"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C as a terminal gives it, whatever this process inherited (a job started in the
        # background by a non-interactive shell ignores SIGINT, and so would the child).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8)  # in the check: OpenCV loading and running, the model running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip().endswith("interrupted: nothing was written"), err
    assert "terminate called" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unet.prototxt"]
