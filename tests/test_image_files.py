"""The image's inputs agree with what CI tests: the hash-locked requirements in docker/ pin the
versions of requirements/constraints.txt and requirements/mmdnn.txt, the Dockerfile's version
labels match the locks, and the container entry script gives its one-line errors.

The image itself is built and run by `make image-test` (docker/image-test.sh), which needs root."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

import caffe2torch

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "entrypoint" / "caffe2torch-entry.sh"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (lock files: with their hashes)."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if m:
            out[norm(m.group(1))] = m.group(2)
    return out


def lock_entries(path: Path) -> dict[str, list[str]]:
    """name -> its hashes, for a pip-compile style lock file."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==", line)
        if m:
            current = norm(m.group(1))
            entries[current] = []
        elif current and "--hash=sha256:" in line:
            entries[current].append(line.split("--hash=sha256:")[1].split()[0])
        elif not line.startswith(" "):
            current = None
    return entries


CONSTRAINTS = pins(ROOT / "requirements" / "constraints.txt")
LOCKS = {v: ROOT / "docker" / f"requirements-{v}.lock" for v in ("cuda", "cpu")}


@pytest.mark.parametrize("variant", ["cuda", "cpu"])
def test_main_lock_pins_what_ci_tests_every_package_hashed(variant):
    lock = pins(LOCKS[variant])
    entries = lock_entries(LOCKS[variant])
    assert set(lock) == set(entries)
    assert all(len(h) >= 1 and all(len(x) == 64 for x in h) for h in entries.values())
    # caffe2torch's own dependencies are all there, at CI's versions (torch: the same release)
    for dep in ("numpy", "protobuf", "h5py", "typer", "rich", "torch", "safetensors", "opencv-python-headless"):
        assert dep in lock, dep
    shared = set(lock) & set(CONSTRAINTS)
    assert {"numpy", "protobuf", "opencv-python-headless", "torch"} <= shared
    for name in sorted(shared):
        assert lock[name].split("+")[0] == CONSTRAINTS[name], (variant, name, lock[name], CONSTRAINTS[name])
    assert lock["torch"] == ("2.13.0+cpu" if variant == "cpu" else "2.13.0")
    assert any(n.startswith("nvidia-") for n in lock) == (variant == "cuda")


def test_mmdnn_lock_pins_the_engine_environment_except_torch():
    lock = pins(ROOT / "docker" / "mmdnn.lock")
    engine = pins(ROOT / "requirements" / "mmdnn.txt")
    assert "torch" not in lock  # shared with the main environment in the image
    assert {k: v for k, v in engine.items() if k != "torch"}.items() <= lock.items()
    assert lock["protobuf"] == "3.20.3" and lock["mmdnn"] == "0.3.1"
    assert all(lock_entries(ROOT / "docker" / "mmdnn.lock").values())


def dockerfile_args() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))


def test_dockerfile_labels_match_the_locks_and_the_package():
    args = dockerfile_args()
    lock = pins(LOCKS["cuda"])
    assert args["CAFFE2TORCH_VERSION"] == caffe2torch.__version__
    assert args["TORCH_VERSION"] == lock["torch"]
    assert args["OPENCV_VERSION"] == lock["opencv-python-headless"]
    assert args["MMDNN_VERSION"] == pins(ROOT / "docker" / "mmdnn.lock")["mmdnn"]
    assert re.fullmatch(r"docker\.io/nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu22\.04", args["BASE_IMAGE"])
    # the CUDA of the base matches the CUDA torch was built for (cuda-toolkit 13.0.x on PyPI)
    toolkit = pins(LOCKS["cuda"])["cuda-toolkit"]
    assert args["BASE_IMAGE"].split(":")[1].split(".")[:2] == toolkit.split(".")[:2]


def test_cpu_wheel_in_docker_wheels_has_the_locked_hash():
    wheels = sorted((ROOT / "docker" / "wheels").glob("torch-2.13.0+cpu-*.whl"))
    if not wheels:
        pytest.skip("docker/wheels holds no CPU torch wheel (make torch-wheel)")
    digest = sha256(wheels[0].read_bytes()).hexdigest()
    assert digest in lock_entries(LOCKS["cpu"])["torch"]


# ----------------------------------------------------------------------- the entry script
def run_entry(*args, workspace: str):
    if shutil.which("bash") is None or shutil.which("mountpoint") is None:
        pytest.skip("needs bash and mountpoint (util-linux)")
    env = dict(os.environ, CAFFE2TORCH_WORKSPACE=workspace)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", str(ENTRY), *args], capture_output=True, text=True, env=env, check=False)


def test_entry_refuses_an_unmounted_workspace_in_one_line(tmp_path):
    r = run_entry("convert", "net.prototxt", "-o", "out", workspace=str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f'caffe2torch: error: {tmp_path} is not mounted: run with -v "$PWD:{tmp_path}" '
        "and give paths relative to that folder"
    ]
    assert list(tmp_path.iterdir()) == []


def test_entry_help_needs_no_workspace_and_is_the_default(tmp_path):
    if shutil.which("caffe2torch", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the caffe2torch script is not installed beside this Python")
    for args in ((), ("--help",), ("convert", "--help")):
        r = run_entry(*args, workspace=str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "Usage: caffe2torch" in r.stdout


def test_entry_names_a_missing_input(tmp_path):
    if subprocess.run(["mountpoint", "-q", "/"], check=False).returncode != 0:
        pytest.skip("/ is not a mount point here")
    if os.access("/", os.W_OK) is False:
        pytest.skip("needs a writable mounted folder")
    r = run_entry("convert", "no-such-net-4c1d.prototxt", "-o", "out-4c1d", workspace="/")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "caffe2torch: error: no-such-net-4c1d.prototxt: no such file in / (the mounted folder); "
        "paths are relative to it, host paths outside it are not visible"
    ]
    assert not Path("/out-4c1d").exists()


def _continued(text: str, start: str) -> list[str]:
    """The words after ``start`` up to the end of its logical line (backslash continuations)."""
    m = re.search(re.escape(start) + r"((?:[^\n]*\\\n)*[^\n]*)", text)
    return m.group(1).replace("\\\n", " ").split()


def test_dockerfile_caffe_stage_installs_what_make_caffe_ref_does():
    listed = set(_continued((ROOT / "Makefile").read_text(), "CAFFE_PACKAGES :="))
    stage = (ROOT / "Dockerfile").read_text().split(" AS caffe\n", 1)[1].split("\nFROM ", 1)[0]
    words = _continued(stage, "apt-get install -y --no-install-recommends")
    installed = set(words[: words.index("&&")])
    assert installed == listed | {"ca-certificates", "debian-archive-keyring"}
    version = re.search(r"^VERSION=(\S+)$", (ROOT / "docker/caffe/build.sh").read_text(), re.M).group(1)
    assert f"(Debian caffe {version})" in (ROOT / "Dockerfile").read_text()
