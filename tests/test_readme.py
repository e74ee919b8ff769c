"""The README's first screen works when copied: after `make example` (here: the same commands
into a temporary folder), the activation line, `caffe2torch verify`, the one-line load, and
both load snippets of the Convert section, with two folders in one process."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """What `make example` leaves: out/lenet (and a second folder, for two in one process)."""
    pytest.importorskip("cv2")
    work = tmp_path_factory.mktemp("readme")
    cli = [sys.executable, "-m", "caffe2torch"]
    lenet = ROOT / "examples" / "lenet" / "lenet.prototxt"
    (work / "out").mkdir()
    for args in (
        ["synth-weights", lenet, "-o", "out/lenet.caffemodel", "--seed", "0", "--overwrite"],
        ["convert", lenet, "out/lenet.caffemodel", "-o", "out/lenet", "--overwrite", "--record-paths"],
        ["convert", lenet, "--random-weights", "-o", "googlenet", "--class-name", "GoogleNet"],
        ["convert", lenet, "--random-weights", "--seed", "1", "-o", "vgg16_fc7"],
    ):
        proc = subprocess.run([*cli, *map(str, args)], cwd=work, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return work


@pytest.mark.slow
def test_the_first_screen_runs_as_written(example):
    first = _blocks("sh")[1]  # the block after the two make commands
    lines = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert lines[0] == ". .venv/bin/activate"
    for line in lines[1:]:
        proc = subprocess.run(
            line.replace("caffe2torch ", f"{sys.executable} -m caffe2torch ", 1).replace(
                "python -c", f"{sys.executable} -c", 1
            ),
            shell=True, cwd=example, capture_output=True, text=True,
        )
        assert proc.returncode == 0, (line, proc.stderr)
    assert "torch.Size([1, 10])" in proc.stdout


@pytest.mark.slow
def test_the_load_snippets_run_as_written(example):
    snippets = [b for b in _blocks("python") if "googlenet" in b]
    assert len(snippets) == 2 and "caffe2torch.load" in snippets[0] and "spec_from_file_location" in snippets[1]
    code = (
        "import torch\n" + snippets[0] + snippets[1]
        + "x = torch.zeros(1, 1, 28, 28)\n"
        + "assert type(model) is not type(vgg) and model(x).shape == vgg(x).shape == (1, 10)\n"
        + "assert not torch.equal(caffe2torch.load('googlenet')(x), vgg(x))\n"
        + "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=example, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
