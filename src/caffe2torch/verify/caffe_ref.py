"""Real Caffe (pycaffe, built from pinned source by ``make caffe-ref``) as a reference engine.

pycaffe is compiled against the system's numpy and protobuf, not the ones caffe2torch runs
with, so it runs as its own process (``_caffe_driver.py`` under the system ``python3``): the
inputs go to it as an ``.npz`` file, every blob comes back the same way. Where it is:
``$CAFFE2TORCH_CAFFE`` (a prefix ``make caffe-ref`` wrote), else ``.caffe/bvlc`` in the
working folder. Its Python: ``$CAFFE2TORCH_CAFFE_PYTHON``, else ``/usr/bin/python3``.
The build has no Python layers: a net's own code is never run.
"""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from google.protobuf import descriptor_pool, message_factory, text_format

from .reference import ReferenceError, ReferenceNet, layer_copy

ENV_PREFIX = "CAFFE2TORCH_CAFFE"
ENV_PYTHON = "CAFFE2TORCH_CAFFE_PYTHON"
DRIVER = Path(__file__).with_name("_caffe_driver.py")
# The builds: BVLC Caffe, and weiliu89's SSD fork for the detection layers BVLC lacks. Each is
# found by its variable, else in .caffe/ of the working folder, else of this source checkout.
BUILDS = {
    "bvlc": (ENV_PREFIX, "real Caffe", "make caffe-ref"),
    "ssd": ("CAFFE2TORCH_CAFFE_SSD", "the SSD fork of Caffe", "make caffe-ref-ssd"),
}
DEFAULT_PREFIX = Path(".caffe") / "bvlc"
_CHECKOUT = Path(__file__).resolve().parents[3]


def _built(prefix: Path) -> bool:
    return (prefix / "python" / "caffe" / "_caffe.so").is_file()


def caffe_prefix(build: str = "bvlc") -> Path:
    """The prefix of a pycaffe build (``bvlc`` or ``ssd``), or a ReferenceError saying how to
    make one."""
    env, what, make = BUILDS[build]
    given = os.environ.get(env)
    if given:
        if not _built(Path(given)):
            raise ReferenceError(f"{what} is not built at ${env} ({given}): run {make}")
        return Path(given).absolute()
    here = Path(".caffe") / build
    for prefix in (here, _CHECKOUT / ".caffe" / build):
        if _built(prefix):
            return prefix.absolute()
    raise ReferenceError(f"{what} is not built at {here}: run {make}")


def caffe_python() -> str:
    return os.environ.get(ENV_PYTHON) or "/usr/bin/python3"


def _env(prefix: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(prefix / "python"), "GLOG_minloglevel": "2"}


class CaffeBuild:
    """A pycaffe build, as the check needs it: the layer types it registers and its own
    schema (``caffe.proto`` as its ``caffe_pb2`` holds it, read as data: nothing of it runs
    here), so that what it can run is what it says, not a list kept beside it."""

    def __init__(self, prefix: Path, name: str = "real Caffe") -> None:
        self.prefix, self.name = prefix, name
        out = _drive(prefix, ["types"], 120, f"real Caffe at {prefix}", "does not import")
        info = json.loads(out)
        self.version, self.types = info["version"], frozenset(info["types"])
        source = prefix / "SOURCE"
        what = source.read_text(encoding="utf-8").strip() if source.is_file() else prefix.name
        self.label = f"Caffe {self.version} ({what}, pycaffe CPU)"

        self._layer = _schema_class(prefix / "python" / "caffe" / "proto" / "caffe_pb2.py")
        self._parsed: dict[str, str] = {}

    def gap(self, node) -> str:
        """Why this build cannot run ``node`` ("" when it can)."""
        if node.type not in self.types:
            return f"{self.name} has no {node.type} layer"
        text = text_format.MessageToString(layer_copy(node))
        if text not in self._parsed:
            try:
                text_format.Parse(text, self._layer())
                self._parsed[text] = ""
            except text_format.ParseError as e:
                why = str(e).split(" : ", 1)[-1].strip().rstrip(".")
                self._parsed[text] = f"real Caffe's schema does not read this layer: {why}"
        return self._parsed[text]


def _schema_class(pb2: Path):
    """Caffe's own LayerParameter, from the serialized descriptor in its generated
    ``caffe_pb2.py`` (taken out of the file's text as a literal, in a pool of its own)."""
    try:
        tree = ast.parse(pb2.read_text(encoding="utf-8"))
        data = next(
            node.args[0].value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile"
        )
        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(data)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.LayerParameter"))
    except (OSError, SyntaxError, StopIteration, TypeError, KeyError) as e:
        raise ReferenceError(f"cannot read real Caffe's schema: {e}", file=pb2) from None


@functools.lru_cache(maxsize=4)
def _build(prefix: Path, name: str) -> CaffeBuild:
    return CaffeBuild(prefix, name)


def caffe_build(build: str = "bvlc") -> CaffeBuild:
    """The pycaffe build the environment names (asked once per process)."""
    return _build(caffe_prefix(build), BUILDS[build][1])


class CaffeRunError(ReferenceError):
    """Real Caffe cannot set up or run the net (its own fatal line)."""


class CaffeLoaded:
    """A reference net run by real Caffe, as :class:`.opencv.LoadedReference` runs one in
    OpenCV: :meth:`run` gives every layer's outputs by layer name."""

    def __init__(self, ref: ReferenceNet, caffemodel, shown=None, prefix: Path | None = None) -> None:
        self.ref, self.caffemodel, self.shown, self.prefix = ref, caffemodel, shown, prefix
        self.seconds = {"load": 0.0, "run": 0.0}

    def close(self) -> None:
        pass

    def run(self, arrays: Mapping[int, np.ndarray]) -> dict[str, list[np.ndarray]]:
        start = time.perf_counter()
        named = {self.ref.blob[id(v)]: arrays[id(v)] for v in self.ref.inputs}
        with tempfile.TemporaryDirectory(prefix="c2t-caffe-net-") as tmp:
            net = Path(tmp) / "reference.prototxt"
            net.write_text(self.ref.text, encoding="utf-8")
            try:
                blobs = run_caffe(net, self.caffemodel, named, prefix=self.prefix)
            except ReferenceError as e:
                raise CaffeRunError(e.message, file=self.shown) from None
        self.seconds["run"] = time.perf_counter() - start
        return {
            n.name: [blobs[self.ref.blob[id(v)]] for v in n.outputs]
            for n in self.ref.layers
            if all(self.ref.blob[id(v)] in blobs for v in n.outputs)
        }


def run_caffe(
    prototxt: str | Path,
    caffemodel: str | Path,
    inputs: Mapping[str, np.ndarray],
    *,
    timeout: float | None = None,
    prefix: Path | None = None,
) -> dict[str, np.ndarray]:
    """Every blob of the net after one forward pass of real Caffe on ``inputs`` (by name)."""
    prefix = prefix or caffe_prefix()
    with tempfile.TemporaryDirectory(prefix="c2t-caffe-") as tmp:
        given, out = Path(tmp) / "inputs.npz", Path(tmp) / "blobs.npz"
        np.savez(given, **{k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
        args = [str(prototxt), str(caffemodel), str(given), str(out)]
        _drive(prefix, args, timeout, "real Caffe", "cannot run the net")
        with np.load(out, allow_pickle=False) as blobs:
            return {name: blobs[name] for name in blobs.files}


def _drive(prefix: Path, args: list[str], timeout: float | None, who: str, failed: str) -> str:
    """Run the driver under pycaffe's Python; its stdout, or a ReferenceError in Caffe's words."""
    try:
        done = subprocess.run(
            [caffe_python(), str(DRIVER), *args], capture_output=True, text=True,
            env=_env(prefix), timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReferenceError(f"{who} could not run: {e}") from None
    if done.returncode != 0:
        raise ReferenceError(f"{who} {failed}: {_reason(done.stderr, done.returncode)}")
    return done.stdout


def _reason(stderr: str, code: int) -> str:
    """Caffe's own words: its last fatal log line (``F1201 ... file.cpp:81] Check failed: ...``),
    else the driver's line, else the exit code."""
    fatal = [m.group(1) for m in re.finditer(r"^[FE]\d+ [^\]]*\] (.*)$", stderr, re.M)]
    if fatal:
        return fatal[-1].split(" (known types:")[0].strip()
    lines = [x.strip() for x in stderr.splitlines() if x.strip() and not x.lstrip().startswith(("***", "@"))]
    return lines[-1] if lines else f"exit code {code}"


__all__ = ["CaffeBuild", "CaffeLoaded", "CaffeRunError", "caffe_build", "caffe_prefix", "caffe_python", "run_caffe"]
