"""Real Caffe (pycaffe, built from pinned source by ``make caffe-ref``) as a reference engine.

pycaffe is compiled against the system's numpy and protobuf, not the ones caffe2torch runs
with, so it runs as its own process (``_caffe_driver.py`` under the system ``python3``): the
inputs go to it as an ``.npz`` file, every blob comes back the same way. Where it is:
``$CAFFE2TORCH_CAFFE`` (a prefix ``make caffe-ref`` wrote), else ``.caffe/bvlc`` in the
working folder. Its Python: ``$CAFFE2TORCH_CAFFE_PYTHON``, else ``/usr/bin/python3``.
The build has no Python layers: a net's own code is never run.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from .opencv import ReferenceError

ENV_PREFIX = "CAFFE2TORCH_CAFFE"
ENV_PYTHON = "CAFFE2TORCH_CAFFE_PYTHON"
DEFAULT_PREFIX = Path(".caffe") / "bvlc"
DRIVER = Path(__file__).with_name("_caffe_driver.py")


def caffe_prefix() -> Path:
    """The prefix of the pycaffe build, or a ReferenceError saying how to make one."""
    prefix = Path(os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX)
    if not (prefix / "python" / "caffe" / "_caffe.so").is_file():
        where = f"${ENV_PREFIX} ({prefix})" if os.environ.get(ENV_PREFIX) else str(prefix)
        raise ReferenceError(f"real Caffe is not built at {where}: run make caffe-ref")
    return prefix.absolute()


def caffe_python() -> str:
    return os.environ.get(ENV_PYTHON) or "/usr/bin/python3"


def run_caffe(
    prototxt: str | Path, caffemodel: str | Path, inputs: Mapping[str, np.ndarray], *, timeout: float | None = None
) -> dict[str, np.ndarray]:
    """Every blob of the net after one forward pass of real Caffe on ``inputs`` (by name)."""
    prefix = caffe_prefix()
    env = {**os.environ, "PYTHONPATH": str(prefix / "python"), "GLOG_minloglevel": "2"}
    with tempfile.TemporaryDirectory(prefix="c2t-caffe-") as tmp:
        given, out = Path(tmp) / "inputs.npz", Path(tmp) / "blobs.npz"
        np.savez(given, **{k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
        try:
            done = subprocess.run(
                [caffe_python(), str(DRIVER), str(prototxt), str(caffemodel), str(given), str(out)],
                capture_output=True, text=True, env=env, timeout=timeout, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ReferenceError(f"real Caffe could not run: {e}") from None
        if done.returncode != 0:
            raise ReferenceError(f"real Caffe cannot run the net: {_reason(done.stderr, done.returncode)}")
        with np.load(out, allow_pickle=False) as blobs:
            return {name: blobs[name] for name in blobs.files}


def _reason(stderr: str, code: int) -> str:
    """Caffe's own words: its last fatal log line (``F1201 ... file.cpp:81] Check failed: ...``),
    else the driver's line, else the exit code."""
    fatal = [m.group(1) for m in re.finditer(r"^[FE]\d+ [^\]]*\] (.*)$", stderr, re.M)]
    if fatal:
        return fatal[-1].split(" (known types:")[0].strip()
    lines = [x.strip() for x in stderr.splitlines() if x.strip() and not x.lstrip().startswith(("***", "@"))]
    return lines[-1] if lines else f"exit code {code}"


__all__ = ["caffe_prefix", "caffe_python", "run_caffe"]
