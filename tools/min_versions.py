#!/usr/bin/env python3
"""The lowest versions pyproject.toml declares, installed and run (`make test-min-versions`).

1. The project is copied (git's files: tracked, and untracked ones git does not ignore) and a
   wheel built from the copy with ``uv build`` (its build backend from PyPI, isolated).
2. A fresh venv gets that wheel with every dependency it declares (core, and the extras asked
   for) at its lowest allowed version: ``uv pip install --resolution lowest-direct`` from
   PyPI, with no pip or uv configuration of this machine (its constraints, mirrors, indexes).
   The wheel's requirements are passed as direct ones: uv would resolve a wheel's own
   dependencies at their highest. Then a second venv: the same floors with the newest numpy
   (a floor built for numpy 1 installs beside numpy 2, and breaks).
3. The bundled LeNet, in that venv, from a folder of its own (no real Caffe found there):
   synth-weights, inspect, convert checked layer by layer against OpenCV, verify, then
   conversion.json's verification must have passed. With the ``hdf5`` extra: the weights as a
   .caffemodel.h5, converted and checked. With ``images``: predict and verify --image on a PNG.
   safetensors: convert --format safetensors and caffe2torch.load.

Exit 0 when every step passes; otherwise the failing step's output and exit 1.

    tools/min_versions.py [--python python3.10] [--extras verify,images,hdf5] [--work DIR] [--keep]
                          [--lowest-only]
"""
from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "examples" / "lenet" / "lenet.prototxt"
INDEX = "https://pypi.org/simple"
DEFAULT_EXTRAS = "verify,images,hdf5"
START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.1f} s] {text}", flush=True)


def clean_env() -> dict[str, str]:
    """No pip or uv settings of this machine: PyPI, nothing else, no constraints."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "CAFFE2TORCH_")) or k == "UV_CACHE_DIR"  # (a CI's cache)
    }
    env.update(UV_NO_CONFIG="1", PIP_CONFIG_FILE=os.devnull, PYTHONNOUSERSITE="1")
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def run(cmd: list, *, env: dict, cwd: Path | None = None, quiet: bool = False) -> str:
    shown = " ".join(str(c).strip().splitlines()[0] + (" ..." if "\n" in str(c).strip() else "") for c in cmd)
    say(f"$ {shown}")
    done = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        raise SystemExit(f"min-versions FAILED (exit {done.returncode}): {shown}")
    if not quiet and done.stdout.strip():
        print("\n".join("    " + line for line in done.stdout.rstrip().splitlines()), flush=True)
    return done.stdout


def copy_project(dest: Path) -> None:
    """The files git knows (so no build/, *.egg-info or venv of the checkout gets in)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("min-versions: needs git, to know the project's files") from None
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def requirements(wheel: Path, extras: set[str]) -> list[str]:
    """The wheel's Requires-Dist for the core and ``extras`` (self-references expanded), with
    their markers other than ``extra``."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    name = msg["Name"].lower()
    by_extra: dict[str | None, list[str]] = {}
    for req in msg.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        rest = re.sub(r"""(and\s+)?extra\s*==\s*["'][^"']+["'](\s+and)?""", "", marker).strip()
        by_extra.setdefault(m.group(1) if m else None, []).append(spec.strip() + (f"; {rest}" if rest else ""))
    out, todo, seen = list(by_extra.get(None, [])), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in by_extra:
            known = ", ".join(sorted(k for k in by_extra if k))
            raise SystemExit(f"min-versions: the wheel has no extra '{extra}' (it has: {known})")
        seen.add(extra)
        for spec in by_extra[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\s*\[([^\]]+)\]", spec.split(";")[0].strip(), flags=re.I)
            if own:
                todo += [e.strip() for e in own.group(1).split(",")]
            else:
                out.append(spec)
    return list(dict.fromkeys(out))


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(spec: str) -> str:
    return norm(re.split(r"[<>=!~;\[ @]", spec.strip(), maxsplit=1)[0])


def install(uv: list, python: str, venv: Path, reqs: list[str], wheel: Path, resolution: str, env: dict) -> Path:
    """A fresh venv with the wheel and ``reqs`` (direct) resolved as ``resolution`` says; the
    versions of the direct ones are printed, and ``uv pip check`` must be clean."""
    shutil.rmtree(venv, ignore_errors=True)
    run([*uv, "venv", "--quiet", "--python", python, venv], env=env)
    py = venv / "bin" / "python"
    direct = venv.with_suffix(".txt")
    direct.write_text("\n".join(reqs) + "\n")
    run([*uv, "pip", "install", "--quiet", "--python", py, "--resolution", resolution,
         "--index-url", INDEX, "-r", direct, wheel], env=env)
    run([*uv, "pip", "check", "--python", py], env=env, quiet=True)
    return py


def installed(uv: list, py: Path, names: set[str], env: dict) -> dict[str, str]:
    frozen = run([*uv, "pip", "freeze", "--python", py], env=env, quiet=True)
    pins = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    return {norm(k): v for k, v in pins.items() if norm(k) in names}


def exercise(py: Path, extras: set[str], out: Path, env: dict) -> None:
    """The bundled LeNet, in a folder with no Caffe build (the check: OpenCV)."""
    c2t = py.parent / "caffe2torch"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    check = ["--reference", "opencv"] if "verify" in extras else ["--no-verify"]
    sources = ["--net", LENET, "--weights", "lenet.caffemodel"]  # (whether or not the folder records them)
    run([c2t, "--version"], env=env, cwd=out)
    run([c2t, "synth-weights", LENET, "-o", "lenet.caffemodel", "--seed", "0"], env=env, cwd=out)
    run([c2t, "inspect", LENET, "lenet.caffemodel"], env=env, cwd=out, quiet=True)
    run([c2t, "convert", LENET, "lenet.caffemodel", "-o", "lenet", *check], env=env, cwd=out)
    if "verify" in extras:
        run([c2t, "verify", "lenet", *sources, "--reference", "opencv"], env=env, cwd=out, quiet=True)
        verification = json.loads((out / "lenet" / "conversion.json").read_text())["verification"]
        if verification.get("passed") is not True:
            raise SystemExit(f"min-versions FAILED: conversion.json's verification did not pass: {verification}")
        say("conversion.json: the verification passed")
    run([c2t, "convert", LENET, "lenet.caffemodel", "-o", "lenet-st", "--format", "safetensors", "--no-verify"],
        env=env, cwd=out, quiet=True)
    run([py, "-c", LOAD_SCRIPT], env=env, cwd=out)
    if "hdf5" in extras:
        run([py, "-c", HDF5_SCRIPT], env=env, cwd=out)
        run([c2t, "convert", LENET, "lenet.caffemodel.h5", "-o", "lenet-h5", *check], env=env, cwd=out, quiet=True)
    if "images" in extras:
        run([py, "-c", "from PIL import Image; Image.new('L', (40, 30), 128).save('digit.png')"], env=env, cwd=out)
        run([c2t, "predict", "lenet", "digit.png", "--json"], env=env, cwd=out, quiet=True)
        if "verify" in extras:
            run([c2t, "verify", "lenet", *sources, "--image", "digit.png", "--reference", "opencv"],
                env=env, cwd=out, quiet=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="the Python of the venvs (default: this one)")
    ap.add_argument("--extras", default=DEFAULT_EXTRAS, help=f"extras to install and use (default: {DEFAULT_EXTRAS})")
    ap.add_argument("--uv", default=os.environ.get("UV") or shutil.which("uv") or "uv")
    ap.add_argument("--work", type=Path, help="the folder to work in (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--lowest-only", action="store_true", help="skip the second pass (floors, newest numpy)")
    args = ap.parse_args()
    extras = {e.strip() for e in args.extras.split(",") if e.strip()}
    work = args.work or Path(tempfile.mkdtemp(prefix="c2t-min-versions-"))
    work.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    uv = [args.uv]
    try:
        # 1. the wheel, from a copy of the project
        src = work / "project"
        shutil.rmtree(src, ignore_errors=True)
        copy_project(src)
        run([*uv, "build", "--quiet", "--wheel", "--index-url", INDEX, "--out-dir", work / "dist", src], env=env)
        [wheel] = sorted((work / "dist").glob("caffe2torch-*.whl"))
        reqs = requirements(wheel, extras)
        names = {req_name(r) for r in reqs}
        say("declared: " + ", ".join(reqs))
        # 2. every direct dependency at its lowest allowed version, from PyPI
        py = install(uv, args.python, work / "venv-lowest", reqs, wheel, "lowest-direct", env)
        floors = installed(uv, py, names, env)
        say("lowest: " + ", ".join(f"{k}=={v}" for k, v in sorted(floors.items())))
        exercise(py, extras, work / "run-lowest", env)
        # 3. the same floors with the newest numpy this Python gets (numpy 2 needs builds for
        #    it: a floor built for numpy 1 installs, and breaks)
        if not args.lowest_only:
            pinned = [f"{k}=={v}" for k, v in sorted(floors.items()) if k != "numpy"] + ["numpy"]
            py = install(uv, args.python, work / "venv-newest-numpy", pinned, wheel, "highest", env)
            say("lowest, newest numpy: " + ", ".join(
                f"{k}=={v}" for k, v in sorted(installed(uv, py, names, env).items())))
            exercise(py, extras, work / "run-newest-numpy", env)
        say(f"min-versions PASSED in {time.monotonic() - START:.0f} s")
        return 0
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


LOAD_SCRIPT = """
import sys, torch, caffe2torch
m = caffe2torch.load('lenet-st')
y = m(torch.zeros(1, 1, 28, 28))
assert y.shape == (1, 10), y.shape
extras = [k for k in ('cv2', 'h5py', 'PIL') if k in sys.modules]
assert not extras, f'loading a folder imported {extras}'
print('caffe2torch.load: ok, no extras imported')
"""

# The synthesized weights as Caffe's HDF5 snapshot (data/<layer>/<blob index>).
HDF5_SCRIPT = """
import h5py
from caffe2torch.caffe.caffemodel import read_caffemodel
w = read_caffemodel('lenet.caffemodel')
with h5py.File('lenet.caffemodel.h5', 'w') as f:
    for name, layer in w.layers.items():
        for i, blob in enumerate(layer.blobs):
            f.create_dataset(f'data/{name}/{i}', data=blob.data)
print('wrote lenet.caffemodel.h5 with h5py', h5py.__version__)
"""

if __name__ == "__main__":
    sys.exit(main())
