"""The fuzz harness shared by tests/test_fuzz.py (a short, derandomized run in the suite) and
tools/fuzz.py (``make fuzz``: the same properties for minutes, findings saved as reproducers).

A *case* is a set of input files (written fresh into an empty folder) and the command lines
(and library calls) to run on them. Every command runs in-process through
``caffe2torch.cli.app.run(argv)`` under a time limit and an address-space limit, and its
outcome is checked against the CLI's contract:

- exit 0; 1 only from ``convert``/``verify`` (the check failed); 2 with stderr exactly one line
  starting with ``error: `` and no file created or changed anywhere in the case's folder;
  130 only when the case sends Ctrl-C;
- anything else is a finding: exit 3 (the safety net for an uncaught exception: a traceback in
  disguise), another exit code, an exception escaping ``run()``, a multi-line error, a
  MemoryError (or "ran out of memory" for a tiny input), more than the time limit (a hang),
  files left behind by a failed command, a temporary file left behind by any command.

Library entry points must raise nothing but :class:`caffe2torch.errors.CaffeError` for bad
input. Everything here writes only under the folders it is given.
"""
from __future__ import annotations

import contextlib
import faulthandler
import gc
import hashlib
import io
import json
import math
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st

from helpers import TINY_V0, TINY_V1, TINY_V2, key, tiny_arrays, varint

CASE_TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT", "60"))  # seconds per command: more is a hang
MEMORY_HEADROOM = int(float(os.environ.get("FUZZ_MEMORY_GB", "6")) * (1 << 30))
CHECK_MEMORY = "2G"  # --max-memory given to the checks the targets ask for (under the headroom)

CLASSES = ("traceback", "wrong-exit", "multi-line", "hang", "memory", "files", "crash")
CLASS_TEXT = {
    "traceback": "tracebacks (exit 3, an exception escaping run(), a non-CaffeError from the library)",
    "wrong-exit": "wrong exit codes",
    "multi-line": "errors that are not one 'error: ' line",
    "hang": f"hangs (over {CASE_TIMEOUT:.0f} s)",
    "memory": "memory errors",
    "files": "files created or changed by a failed command, or temporary files left behind",
    "crash": "the process died (segfault, abort, killed)",
}

# ------------------------------------------------------------------------------------ seeds
MIXED_V2 = """name: "mixed"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { use_global_stats: true } }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "slice" type: "Slice" bottom: "conv" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 2 } }
layer { name: "sum" type: "Eltwise" bottom: "s1" bottom: "s2" top: "sum" eltwise_param { operation: SUM } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "s1" top: "cat" }
layer { name: "deconv" type: "Deconvolution" bottom: "cat" top: "up" convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }
layer { name: "pool" type: "Pooling" bottom: "up" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }
layer { name: "ip" type: "InnerProduct" bottom: "flat" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""

MISC_V2 = """name: "misc"
input: "data"
input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }
layer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "prelu" type: "PReLU" bottom: "lrn" top: "prelu" }
layer { name: "drop" type: "Dropout" bottom: "prelu" top: "prelu" dropout_param { dropout_ratio: 0.5 } include { phase: TEST } }
layer { name: "perm" type: "Permute" bottom: "prelu" top: "perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "resh" type: "Reshape" bottom: "perm" top: "resh" reshape_param { shape { dim: 0 dim: -1 } } }
layer { name: "pw" type: "Power" bottom: "resh" top: "pw" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "sig" type: "Sigmoid" bottom: "pw" top: "sig" }
"""

PROTOTXT_SEEDS = {"tiny_v2": TINY_V2, "tiny_v1": TINY_V1, "tiny_v0": TINY_V0, "mixed": MIXED_V2, "misc": MISC_V2}

NUMBERS = [
    "0", "-0", "1", "-1", "2", "3", "7", "-2147483648", "2147483647", "2147483648", "4294967295",
    "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "18446744073709551616", "99999999999999999999999999", "1e308", "1e309", "-1e-308", "1e-45",
    "nan", "-nan", "inf", "-inf", "infinity", "0.5", "1.5", "-0.5", "1e10", "0x10", "0xFFFFFFFF",
    "010", "1.", ".5", "1e", "1f", "3.4028235e38", "3.5e38", "true", "false",
]
STRINGS = [
    '""', '"x"', '"data"', '"conv1"', '"fc"', '"prob"', '"pool1"', '"\\x00"', '"\\""', '"\\\\"',
    '"\\777"', '"a\\nb"', '"\x1b[2J"', '"\u202eevil"', '"дата"', '"\\u00e9"', "'single'", '"tab\there"',
    '"' + "n" * 5000 + '"', '"../../etc/passwd"', '"a b"', '"%s%n"', '"{}"', '"__init__"', '"self"',
]
CONTROL = ["\x00", "\x01", "\x1b[31m", "\r", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\t", "\x0b", "\x0c"]


def _schema():
    from caffe2torch.caffe.schema import pb

    return pb


def _field_names() -> list[str]:
    pb = _schema()
    names = set()
    for attr in dir(pb):
        cls = getattr(pb, attr)
        d = getattr(cls, "DESCRIPTOR", None)
        if d is not None and hasattr(d, "fields"):
            names.update(f.name for f in d.fields)
    return sorted(names)


_CACHE: dict[str, Any] = {}


def field_names() -> list[str]:
    if "fields" not in _CACHE:
        _CACHE["fields"] = _field_names()
    return _CACHE["fields"]


def known_types() -> list[str]:
    if "types" not in _CACHE:
        from caffe2torch.layers import known_types as kt

        _CACHE["types"] = kt()
    return _CACHE["types"]


def v1_type_names() -> list[str]:
    if "v1types" not in _CACHE:
        pb = _schema()
        enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
        _CACHE["v1types"] = [v.name for v in enum.values]
    return _CACHE["v1types"]


# ------------------------------------------------------------------------------ file entries
@dataclass(frozen=True)
class Special:
    """A file entry that is not plain bytes: a folder, a FIFO, a symbolic link, an HDF5 file."""

    kind: str  # "dir" | "fifo" | "symlink" | "h5"
    arg: Any = None


@dataclass
class Case:
    """Inputs (relative path -> bytes or Special) and what to run on them."""

    target: str
    files: dict[str, Any]
    argvs: list[list[str]]
    lib: list[tuple[str, tuple]] = field(default_factory=list)
    interrupt_at: int | None = None  # Ctrl-C at the Nth caffe2torch function call of the first command
    note: str = ""

    def __repr__(self) -> str:
        sizes = {k: (len(v) if isinstance(v, bytes) else v.kind) for k, v in self.files.items()}
        return f"Case({self.target}, argvs={self.argvs!r}, files={sizes}, note={self.note!r})"

    def _repr_pretty_(self, p, cycle) -> None:  # how hypothesis shows a failing case
        p.text(repr(self))

    def describe(self) -> str:
        return "\n".join(shlex.join(["caffe2torch", *a]) for a in self.argvs) + (
            "\nlibrary: " + ", ".join(f"{n}{a!r}" for n, a in self.lib) if self.lib else ""
        )


def materialize(case: Case, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Plain files and folders first, links last (a link may name a file of the case).
    for rel, content in sorted(case.files.items(), key=lambda kv: isinstance(kv[1], Special) and kv[1].kind == "symlink"):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Special):
            if content.kind == "dir":
                path.mkdir(exist_ok=True)
            elif content.kind == "fifo":
                os.mkfifo(path)
            elif content.kind == "symlink":
                os.symlink(content.arg, path)
            elif content.kind == "h5":
                write_h5(path, content.arg)
            else:
                raise AssertionError(content.kind)
        else:
            path.write_bytes(content)


# ---------------------------------------------------------------------------- the outcome
class Hang(BaseException):
    """Raised in the main thread when a command runs past the time limit."""


@dataclass
class Outcome:
    argv: list[str]
    code: int | None
    stdout: str
    stderr: str
    elapsed: float
    exc: BaseException | None = None  # escaped run(), or what _bug was given (exit 3)
    tb: str = ""
    warnings: list[str] = field(default_factory=list)
    harness_interrupted: bool = False  # Ctrl-C reached this harness, not caffe2torch
    ctrl_c_where: list[str] = field(default_factory=list)  # the stack Ctrl-C was raised in


@dataclass
class Finding:
    cls: str
    signature: str
    summary: str
    detail: str
    case: Case | None = None
    argv: list[str] | None = None


@contextlib.contextmanager
def time_limit(seconds: float):
    """Hang after ``seconds`` (SIGALRM, main thread); a hang inside C code that never returns to
    Python is caught by faulthandler, which dumps every thread's stack and exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    fd = _REAL_STDERR.get("fd", 2)
    faulthandler.dump_traceback_later(seconds + 120, exit=True, file=fd)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_limit(headroom: int = MEMORY_HEADROOM):
    """At most ``headroom`` more bytes of address space while the command runs: an input that
    makes caffe2torch allocate more gets a MemoryError (a finding), not the machine's OOM killer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = _vm_size() + headroom
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def in_folder(folder: Path):
    old = os.getcwd()
    tmp = folder / ".tmp"
    tmp.mkdir(exist_ok=True)
    old_tempdir, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    os.chdir(folder)
    tempfile.tempdir = str(tmp)
    os.environ["TMPDIR"] = str(tmp)
    try:
        yield
    finally:
        os.chdir(old)
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def _purge_modules() -> None:
    for name in [n for n in sys.modules if n.startswith(("caffe2torch_model_", "caffe2torch_preprocess_"))]:
        del sys.modules[name]


def run_cli(argv: list[str], folder: Path, *, timeout: float = CASE_TIMEOUT,
            interrupt_at: int | None = None) -> Outcome:
    """``caffe2torch.cli.app.run(argv)`` in ``folder``, its stdout and stderr captured as the real
    command's would be (Python warnings included), under the time and memory limits."""
    from typer.testing import CliRunner

    import caffe2torch.cli.app  # noqa: F401 - the module (the package's ``app`` is the Typer object)

    app = sys.modules["caffe2torch.cli.app"]
    seen: dict[str, BaseException] = {}
    real_bug = app._bug

    def bug(e):
        seen["bug"] = e
        return real_bug(e)

    code, exc, tb = None, None, ""
    harness_interrupted = False
    ctrl_c_where: list[str] = []
    caught_warnings: list = []
    runner = CliRunner()
    start = time.monotonic()
    with in_folder(folder), fd_capture() as native, runner.isolation() as (out, err, _):
        app._bug = bug
        try:
            with warnings.catch_warnings(record=True) as caught_warnings:
                warnings.resetwarnings()
                for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.simplefilter("ignore", cat)
                warnings.simplefilter("default")
                for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                    warnings.filterwarnings("ignore", category=cat)
                with time_limit(timeout), memory_limit():
                    if interrupt_at is not None:
                        sys.settrace(_ctrl_c_at(interrupt_at, ctrl_c_where))
                    try:
                        code = app.run(list(argv))
                    finally:
                        sys.settrace(None)
        except KeyboardInterrupt as e:
            # Delivered to this harness (before run() began or after it returned) is not an escape.
            if _escaped_from_run(e):
                exc, tb = e, traceback.format_exc()
            else:
                harness_interrupted = True
        except BaseException as e:  # noqa: BLE001 - everything that escapes is recorded
            exc, tb = e, traceback.format_exc()
        finally:
            app._bug = real_bug
            sys.stdout.flush()
            sys.stderr.flush()
            stdout = out.getvalue().decode("utf-8", "replace")
            stderr = err.getvalue().decode("utf-8", "replace")
            _purge_modules()
        if any((folder / ".tmp").iterdir()):
            gc.collect()  # what a finalizer would clean at exit is not left behind
    stdout += native["out"]
    stderr += native["err"]
    if "bug" in seen and exc is None:
        exc = seen["bug"]
        tb = "".join(traceback.format_exception(exc))
    return Outcome(
        list(argv), code, stdout, stderr, time.monotonic() - start, exc, tb,
        [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught_warnings],
        harness_interrupted,
        ctrl_c_where,
    )


def _ctrl_c_at(n: int, where: list | None = None):
    """A trace function that raises KeyboardInterrupt (what Ctrl-C raises) on entering the
    ``n``-th caffe2torch function after run() itself: a Ctrl-C at a reproducible moment."""
    import caffe2torch

    src = os.path.dirname(caffe2torch.__file__)
    count = [0]

    def trace(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(src):
            count[0] += 1
            if count[0] == n + 1:  # the first call is run() itself
                sys.settrace(None)
                if where is not None:
                    f = frame
                    while f is not None:
                        if f.f_code.co_filename.startswith(src):
                            where.append(f"{_short_path(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}")
                        f = f.f_back
                raise KeyboardInterrupt
        return None

    return trace


def _escaped_from_run(e: BaseException) -> bool:
    return any(
        fr.name == "run" and fr.filename.endswith(os.path.join("cli", "app.py"))
        for fr in traceback.extract_tb(e.__traceback__)
    )


@contextlib.contextmanager
def fd_capture():
    """What native code (OpenCV's logging, HDF5's error stack, torch's C++ warnings) writes to
    file descriptors 1 and 2: the real command's terminal would show it."""
    captured = {"out": "", "err": ""}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    if "fd" not in _REAL_STDERR:  # where faulthandler reports a hang in native code
        _REAL_STDERR["fd"] = os.dup(2)
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        yield captured
    finally:
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            files[fd].seek(0)
            captured["out" if fd == 1 else "err"] = files[fd].read().decode("utf-8", "replace")
            files[fd].close()


_REAL_STDERR: dict[str, int] = {}


def last_frame(exc: BaseException | None, tb_text: str = "") -> str:
    """The innermost caffe2torch frame of a traceback: ``file.py:line in function``."""
    where = ""
    if exc is not None and exc.__traceback__ is not None:
        for fr in traceback.extract_tb(exc.__traceback__):
            if "caffe2torch" in fr.filename and "/tests/" not in fr.filename:
                where = f"{_short_path(fr.filename)}:{fr.lineno} in {fr.name}"
    if not where and tb_text:
        for m in re.finditer(r'File "([^"]*caffe2torch[^"]*)", line (\d+), in (\S+)', tb_text):
            if "/tests/" not in m.group(1):
                where = f"{_short_path(m.group(1))}:{m.group(2)} in {m.group(3)}"
        if not where:  # rich's traceback (--debug)
            for m in re.finditer(r"(\S*caffe2torch\S*\.py):(\d+) in (\S+)", tb_text):
                where = f"{_short_path(m.group(1))}:{m.group(2)} in {m.group(3)}"
    return where or "?"


def _short_path(p: str) -> str:
    i = p.rfind("caffe2torch/")
    return p[i:] if i >= 0 else Path(p).name


# --------------------------------------------------------------------------- the contract
MEMORY_TEXT = ("ran out of memory", "not enough memory")


def snapshot(folder: Path) -> dict[str, tuple]:
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            rel = str(p.relative_to(folder))
            if rel == ".tmp":
                continue
            out[rel] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns) if not p.is_dir() or p.is_symlink() else (st.st_mode >> 12,)
    return out


def allowed_codes(argv: list[str]) -> set[int]:
    if any(a in ("--help", "--version") for a in argv):
        return {0, 2}
    cmd = next((a for a in argv if not a.startswith("-")), None)
    if cmd in ("convert", "verify"):
        return {0, 1, 2}
    return {0, 2}


def output_location(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("-o", "--output") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--output="):
            return a.split("=", 1)[1]
    return None


def check_outcome(o: Outcome, before: dict, after: dict, *, interrupted: bool = False) -> list[Finding]:
    """The contract for one command's outcome; returns its findings."""
    findings: list[Finding] = []
    argv = o.argv
    cmd = " ".join(argv[:1]) or "(no command)"
    err_lines = o.stderr.splitlines()
    lines_shown = err_lines + o.warnings

    def add(cls, sig, summary, detail=""):
        if o.ctrl_c_where:
            sig += f"|ctrl-c@{o.ctrl_c_where[0]}"
            summary += f" (Ctrl-C at {o.ctrl_c_where[0]})"
            detail = "Ctrl-C (KeyboardInterrupt) raised on entering:\n  " + "\n  ".join(o.ctrl_c_where) + "\n" + detail
        findings.append(Finding(cls, f"{cls}|{sig}", summary, detail, argv=argv))

    if o.harness_interrupted:
        return findings  # Ctrl-C landed outside caffe2torch: nothing to judge
    if isinstance(o.exc, Hang):
        where = last_frame(o.exc, o.tb)
        add("hang", where, f"{cmd}: still running after {CASE_TIMEOUT:.0f} s (at {where})", o.tb)
        return findings
    if isinstance(o.exc, MemoryError) or (o.code == 3 and "MemoryError" in o.stderr):
        where = last_frame(o.exc, o.tb)
        add("memory", where, f"{cmd}: MemoryError at {where}", o.tb or o.stderr)
        return findings
    if o.code is None:
        where = last_frame(o.exc, o.tb)
        kind = type(o.exc).__name__
        if isinstance(o.exc, SystemExit):
            add("traceback", f"SystemExit@{where}", f"{cmd}: SystemExit({o.exc.code!r}) escaped run() (at {where})", o.tb)
        else:
            add("traceback", f"{kind}@{where}", f"{cmd}: {kind} escaped run() at {where}: {_first(o.exc)}", o.tb)
        return findings
    if o.code == 3:
        where = last_frame(o.exc, o.tb)
        kind = type(o.exc).__name__ if o.exc else "?"
        add("traceback", f"{kind}@{where}", f"{cmd}: exit 3, {kind} at {where}: {_first(o.exc)}", o.tb or o.stderr)
        return findings
    ok_codes = allowed_codes(argv) | ({130} if interrupted else set())
    if o.code not in ok_codes:
        add("wrong-exit", f"{cmd}:{o.code}", f"{cmd}: exit {o.code} (expected one of {sorted(ok_codes)})", o.stderr)
    if o.code == 2:
        if any(t in o.stderr for t in MEMORY_TEXT):
            add("memory", _norm(o.stderr), f"{cmd}: {o.stderr.strip()[:300]}", o.stderr)
        if len(lines_shown) != 1 or not o.stderr.startswith("error: "):
            shown = "\n".join(lines_shown)
            sig = _norm("\n".join(lines_shown[:2])) if argv else "no-args"
            add("multi-line", sig, f"{cmd}: exit 2 with {len(lines_shown)} line(s) on stderr: {shown[:300]!r}", shown)
    if o.code == 130:
        if len(lines_shown) != 1:
            add("multi-line", "interrupted", f"{cmd}: exit 130 with {len(lines_shown)} line(s) on stderr: {o.stderr[:300]!r}", o.stderr)
    # Files: nothing created or changed by a failed command; no temporary file ever left.
    tmp_left = [p for p in after if p.startswith(".tmp/")]
    # Ctrl-C after the output was complete (and in place) says so: only the output changed.
    written = o.code == 130 and "interrupted after writing " in o.stderr and "which is complete" in o.stderr
    if o.code in (2, 130) and not written:
        new = sorted(set(after) - set(before) - set(tmp_left))
        changed = sorted(p for p in before if p in after and before[p] != after[p])
        gone = sorted(set(before) - set(after))
        if new or changed or gone:
            what = "; ".join(f"{k}: {', '.join(v[:5])}" for k, v in (("new", new), ("changed", changed), ("removed", gone)) if v)
            add("files", f"{cmd}:{o.code}:{_norm(what)[:80]}", f"{cmd}: exit {o.code} but {what}")
    elif o.code in (0, 1) or written:
        out = output_location(argv)
        outside = [
            p for p in before
            if (p not in after or before[p] != after[p]) and not (out and _under(p, out))
        ]
        if outside:
            add("files", f"{cmd}:{o.code}:changed-inputs", f"{cmd}: exit {o.code} changed files it does not write: {', '.join(outside[:5])}")
    if tmp_left:
        add("files", f"{cmd}:tmp", f"{cmd}: exit {o.code} left temporary files: {', '.join(tmp_left[:5])}")
    return findings


def _under(rel: str, out: str) -> bool:
    out = os.path.normpath(out)
    return rel == out or rel.startswith(out.rstrip("/") + "/")


def _first(e) -> str:
    s = str(e) if e is not None else ""
    return s.splitlines()[0][:200] if s else ""


def _norm(text: str) -> str:
    """A message with the parts that vary per input (paths, numbers, quoted names) blanked."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\S*/\S*", "PATH", text)
    return re.sub(r"\d+", "N", text)[:200]


# ----------------------------------------------------------------------------- library calls
def lib_call(name: str, args: tuple, folder: Path, timeout: float = CASE_TIMEOUT) -> list[Finding]:
    """A library entry point on the case's files: it may return, or raise a CaffeError."""
    from caffe2torch.errors import CaffeError

    fn = LIBRARY[name]
    with in_folder(folder), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with time_limit(timeout), memory_limit():
                fn(*args)
        except CaffeError:
            pass
        except Hang as e:
            where = last_frame(e)
            return [Finding("hang", f"hang|lib:{name}@{where}", f"{name}{args!r}: over {timeout:.0f} s at {where}",
                            traceback.format_exc())]
        except MemoryError as e:
            where = last_frame(e)
            return [Finding("memory", f"memory|lib:{name}@{where}", f"{name}{args!r}: MemoryError at {where}",
                            traceback.format_exc())]
        except BaseException as e:  # noqa: BLE001
            where = last_frame(e)
            kind = type(e).__name__
            return [Finding("traceback", f"traceback|lib:{kind}@{where}",
                            f"{name}{args!r}: {kind} (not a CaffeError) at {where}: {_first(e)}",
                            traceback.format_exc())]
        finally:
            _purge_modules()
    return []


def _lib_table() -> dict[str, Callable]:
    def read_prototxt(p):
        from caffe2torch.caffe.prototxt import read_prototxt as f

        return f(p)

    def build_graph(p, phase="test"):
        from caffe2torch.caffe.prototxt import read_prototxt as r
        from caffe2torch.graph import build_graph as b

        return b(r(p), phase=phase)

    def load_graph(p):
        from caffe2torch.api import load_graph as f

        return f(p)

    def read_caffemodel(p):
        from caffe2torch.caffe.caffemodel import read_caffemodel as f

        return f(p)

    def load_weights(net, w):
        from caffe2torch.api import load_graph as g, load_weights as f

        return f(g(net), w)

    def read_manifest(d):
        from caffe2torch.folder import read_manifest as f

        return f(Path(d))

    def load_state(p):
        from caffe2torch.folder import load_state as f

        return f(Path(p))

    def load_converted(d):
        from caffe2torch.folder import load_converted as f

        return f(d)

    def verify_folder(d):
        from caffe2torch.memory import CheckOptions, parse_size
        from caffe2torch.verify.run import verify_folder as f

        return f(d, check=CheckOptions(max_memory=parse_size(CHECK_MEMORY)))

    def predict(d, image):
        from caffe2torch.predict import predict as f

        return f(d, [image])

    def read_mean(p):
        from caffe2torch.preprocess import read_mean as f

        return f(p)

    def parse_input_shapes(*specs):
        from caffe2torch.graph import parse_input_shapes as f

        return f(list(specs))

    return {f.__name__: f for f in (
        read_prototxt, build_graph, load_graph, read_caffemodel, load_weights, read_manifest,
        load_state, load_converted, verify_folder, predict, read_mean, parse_input_shapes,
    )}


LIBRARY = _lib_table()


# ------------------------------------------------------------------------ running one case
@dataclass
class CaseResult:
    findings: list[Finding]
    outcomes: list[Outcome]
    commands: int


def run_case(case: Case, scratch: Path, *, keep: bool = False) -> CaseResult:
    """Write the case into a fresh folder under ``scratch``, run its commands and library calls,
    and check each against the contract."""
    folder = Path(tempfile.mkdtemp(prefix=f"{case.target}-", dir=scratch))
    findings: list[Finding] = []
    outcomes: list[Outcome] = []
    try:
        materialize(case, folder)
        for i, argv in enumerate(case.argvs):
            before = snapshot(folder)
            interrupt = case.interrupt_at if i == 0 else None
            o = run_cli(argv, folder, interrupt_at=interrupt)
            after = snapshot(folder)
            outcomes.append(o)
            fs = check_outcome(o, before, after, interrupted=interrupt is not None)
            fs = [refine_memory(f, o, folder) if f.cls == "memory" else f for f in fs]
            fs = [f for f in fs if f is not None]
            for f in fs:
                f.case = case
            findings += fs
            _clean_tmp(folder)
            if any(f.cls == "hang" for f in fs):
                break
        for name, args in case.lib:
            fs = lib_call(name, args, folder)
            for f in fs:
                f.case = case
            findings += fs
            _clean_tmp(folder)
    finally:
        if not keep:
            _rmtree(folder)
    return CaseResult(findings, outcomes, len(case.argvs) + len(case.lib))


def refine_memory(f: Finding, o: Outcome, folder: Path) -> Finding | None:
    """"Ran out of memory" on a check the default --max-memory (half the machine's free
    memory) allowed but this harness's address-space limit did not is the limit's doing: rerun
    it with --max-memory under the limit; a refusal then is the designed guard, not a finding.
    A real one gets its traceback from a rerun with --debug."""
    argv = o.argv
    if argv and argv[0] in ("convert", "verify") and "--no-verify" not in argv:
        retry = [a for a in argv]
        if "--max-memory" in retry:
            i = retry.index("--max-memory")
            del retry[i:i + 2]
        retry = [a for a in retry if not a.startswith("--max-memory=")]
        retry += ["--max-memory", CHECK_MEMORY]
        o2 = run_cli(retry, folder)
        if o2.code != 2 or not any(t in o2.stderr for t in MEMORY_TEXT):
            return None
    if not o.tb:
        o3 = run_cli(["--debug", *argv], folder)
        f.detail = o3.stderr[-6000:]
        where = last_frame(None, o3.stderr)
        if where != "?":
            f.signature = f"memory|{where}"
            f.summary += f" (at {where})"
    return f


def _clean_tmp(folder: Path) -> None:
    tmp = folder / ".tmp"
    if tmp.exists():
        _rmtree(tmp)
        tmp.mkdir()


def _rmtree(path: Path) -> None:
    def onerror(func, p, exc):
        with contextlib.suppress(OSError):
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=onerror)


def format_findings(findings: list[Finding]) -> str:
    out = []
    for f in findings:
        out.append(f"[{f.cls}] {f.summary}")
        if f.case is not None:
            out.append("  reproduce: " + f.case.describe().replace("\n", "\n             "))
            for rel, content in sorted(f.case.files.items()):
                if isinstance(content, bytes) and len(content) < 600:
                    out.append(f"  {rel}: {content!r}")
                else:
                    out.append(f"  {rel}: {content if isinstance(content, Special) else f'{len(content)} bytes'}")
        if f.detail:
            out.append("  " + f.detail.strip()[-3000:].replace("\n", "\n  "))
    return "\n".join(out)


def save_finding(f: Finding, root: Path, count: int = 1) -> Path:
    """The reproducer: files/ (the inputs), repro.sh (the command lines), report.txt."""
    digest = hashlib.sha256(f.signature.encode()).hexdigest()[:10]
    folder = root / f"{f.cls}-{digest}"
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    files = folder / "files"
    if f.case is not None:
        materialize(f.case, files)
        cmds = f.case.argvs
        lines = ["#!/bin/sh", "# Run from this folder: sh repro.sh", "cd \"$(dirname \"$0\")/files\" || exit 1"]
        lines += [shlex.join(["caffe2torch", *a]) + "; echo \"exit $?\"" for a in cmds]
        if f.case.lib:
            lines.append("# library calls (python, in files/): " + "; ".join(f"{n}{a!r}" for n, a in f.case.lib))
        if f.case.interrupt_at is not None:
            lines.append(f"# Ctrl-C at the {f.case.interrupt_at}th caffe2torch function call of the first "
                         "command (tests/fuzz_support.py: run_cli(argv, folder, interrupt_at=N))")
        (folder / "repro.sh").write_text("\n".join(lines) + "\n")
        (folder / "case.json").write_text(json.dumps({
            "target": f.case.target, "argvs": cmds, "lib": [[n, list(map(str, a))] for n, a in f.case.lib],
            "interrupt_at": f.case.interrupt_at, "note": f.case.note,
        }, indent=1))
    (folder / "report.txt").write_text(
        f"class: {f.cls}\nsignature: {f.signature}\nsummary: {f.summary}\nargv: {f.argv!r}\n\n{f.detail}\n"
    )
    return folder


# ================================================================================ strategies
def _weighted(draw, options):
    """Draw from ``[(weight, strategy_or_value), ...]``."""
    total = sum(w for w, _ in options)
    r = draw(st.integers(0, total - 1))
    for w, s in options:
        if r < w:
            return draw(s) if isinstance(s, st.SearchStrategy) else s
        r -= w
    raise AssertionError


_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[{}:\[\],<>]|[^\s{}:"\'\[\],<>#]+')
_NUMBER = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)", re.I)  # unambiguous: linear


def _tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _TOKEN.finditer(text)]


def _pick(draw, items):
    return items[draw(st.integers(0, len(items) - 1))]


def _layer_spans(text: str) -> list[tuple[int, int]]:
    """Top-level ``layer {...}`` / ``layers {...}`` blocks (brace matching, strings ignored)."""
    spans = []
    for m in re.finditer(r"(?m)^\s*layers?\s*\{", text):
        depth, i, start = 0, m.end() - 1, m.start()
        in_str = None
        while i < len(text):
            c = text[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == in_str:
                    in_str = None
            elif c in "\"'":
                in_str = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    spans.append((start, i + 1))
                    break
            i += 1
    return spans


def mutate_text(draw, text: str) -> bytes:
    """1 to 4 mutations of prototxt text (structure-aware, then byte-level)."""
    n = draw(st.integers(1, 4))
    raw: bytes | None = None
    for _ in range(n):
        op = draw(st.sampled_from([
            "number", "number", "number", "field", "field", "type", "type", "string", "string",
            "delete_token", "insert_token", "dup_block", "del_block", "swap_block", "nest", "long",
            "control", "truncate", "flip", "encoding", "bottom", "top_dup",
        ]))
        toks = _tokens(text)
        if op == "number":
            nums = [s for s in toks if s[1] - s[0] < 64 and _NUMBER.fullmatch(text[s[0]:s[1]])]
            if nums:
                a, b = _pick(draw, nums)
                text = text[:a] + draw(st.sampled_from(NUMBERS)) + text[b:]
        elif op == "field":
            names = [s for s in toks if re.match(r"^[A-Za-z_]\w*$", text[s[0]:s[1]])]
            if names:
                a, b = _pick(draw, names)
                text = text[:a] + draw(st.sampled_from(field_names())) + text[b:]
        elif op == "type":
            m = list(re.finditer(r"\btype\s*:\s*(\"[^\"]*\"|\w+)", text))
            if m:
                mm = _pick(draw, m)
                new = _weighted(draw, [
                    (6, st.sampled_from(known_types()).map(lambda t: f'"{t}"')),
                    (2, st.sampled_from(v1_type_names())),
                    (1, st.sampled_from(['"conv"', '"relu"', '"pool"', '"innerproduct"', '"data"', '"padding"',
                                         '"concat"', '"softmax"', '""', '"Nope"', "5", "-1", "999"])),
                ])
                text = text[:mm.start(1)] + new + text[mm.end(1):]
        elif op == "string":
            strs = [s for s in toks if text[s[0]] in "\"'"]
            if strs:
                a, b = _pick(draw, strs)
                new = _weighted(draw, [(3, st.sampled_from(STRINGS)), (2, st.sampled_from([text[x:y] for x, y in strs]))])
                text = text[:a] + new + text[b:]
        elif op == "bottom":
            m = list(re.finditer(r"\b(bottom|top)\s*:\s*\"([^\"]*)\"", text))
            names = sorted({x.group(2) for x in m}) + ["nope", "data", ""]
            if m:
                mm = _pick(draw, m)
                text = text[:mm.start(2)] + draw(st.sampled_from(names)) + text[mm.end(2):]
        elif op == "top_dup":
            m = list(re.finditer(r"\btop\s*:\s*\"[^\"]*\"", text))
            if m:
                mm = _pick(draw, m)
                text = text[:mm.end()] + " " + mm.group() + text[mm.end():]
        elif op in ("delete_token", "insert_token"):
            if toks:
                a, b = _pick(draw, toks)
                if op == "delete_token":
                    text = text[:a] + text[b:]
                else:
                    new = draw(st.sampled_from(["{", "}", ":", '"', "layer {", "}", "#", "'", "[", "]", ",",
                                                "input_dim: 1", "bottom: \"data\"", "phase: TRAIN", "<", ">"]
                                               + NUMBERS[:8] + field_names()[:0]))
                    text = text[:a] + new + " " + text[a:]
        elif op in ("dup_block", "del_block", "swap_block"):
            spans = _layer_spans(text)
            if spans:
                a, b = _pick(draw, spans)
                if op == "dup_block":
                    text = text[:b] + "\n" + text[a:b] + text[b:]
                elif op == "del_block":
                    text = text[:a] + text[b:]
                elif len(spans) > 1:
                    c, d = _pick(draw, spans)
                    if (c, d) != (a, b):
                        (a, b), (c, d) = sorted([(a, b), (c, d)])
                        if b <= c:
                            text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        elif op == "nest":
            depth = draw(st.sampled_from([30, 101, 200, 1000, 20000]))
            name = draw(st.sampled_from(["convolution_param", "shape", "layer", "x", "include"]))
            closed = draw(st.booleans())
            where = draw(st.integers(0, len(text)))
            text = text[:where] + f" {name} {{" * depth + (" }" * depth if closed else "") + " " + text[where:]
        elif op == "long":
            n_chars = draw(st.sampled_from([300, 5000, 200_000, 3_000_000]))
            what = draw(st.sampled_from(["name", "string", "number", "comment", "ws"]))
            insert = {"name": 'name: "' + "a" * n_chars + '"', "string": '"' + "x" * n_chars + '"',
                      "number": "1" * min(n_chars, 200_000), "comment": "#" + "c" * n_chars + "\n",
                      "ws": " " * n_chars}[what]
            where = draw(st.integers(0, len(text)))
            text = text[:where] + insert + text[where:]
        elif op == "control":
            where = draw(st.integers(0, len(text)))
            text = text[:where] + draw(st.sampled_from(CONTROL)) + text[where:]
        elif op == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        elif op == "flip" and text:
            data = bytearray(text.encode("utf-8", "surrogatepass"))
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
            raw = bytes(data)
            text = raw.decode("utf-8", "replace")
        elif op == "encoding":
            kind = draw(st.sampled_from(["bom", "utf16", "latin1", "crlf", "cr"]))
            if kind == "bom":
                text = "\ufeff" + text
            elif kind == "utf16":
                return text.encode("utf-16")
            elif kind == "latin1":
                return text.replace("data", "dät").encode("latin-1", "replace")
            elif kind == "crlf":
                text = text.replace("\n", "\r\n")
            else:
                text = text.replace("\n", "\r")
        if op != "flip":
            raw = None
    return raw if raw is not None else text.encode("utf-8", "surrogatepass")


def _net_commands(draw, net: str, *, verify_share: int = 6) -> list[list[str]]:
    argvs = [["inspect", net]]
    if draw(st.integers(0, 2)) == 0:
        argvs.append(["inspect", net, "--json", "--phase", draw(st.sampled_from(["test", "train"]))])
    if draw(st.integers(0, verify_share - 1)) == 0:
        argvs.append(["convert", net, "--random-weights", "-o", "out", "--max-memory", CHECK_MEMORY])
    else:
        argvs.append(["convert", net, "--random-weights", "--no-verify", "-o", "out"])
    if draw(st.integers(0, 5)) == 0:
        argvs.append(["synth-weights", net, "-o", "w.caffemodel"])
        argvs.append(["inspect", net, "w.caffemodel"])
    return argvs


@st.composite
def prototxt_mutations(draw):
    seed = draw(st.sampled_from(sorted(PROTOTXT_SEEDS)))
    data = mutate_text(draw, PROTOTXT_SEEDS[seed])
    lib = [("build_graph", ("net.prototxt", draw(st.sampled_from(["test", "train"]))))]
    return Case("prototxt", {"net.prototxt": data}, _net_commands(draw, "net.prototxt"), lib, note=f"seed {seed}")


# ---------------------------------------------------------------- grammar-generated nets
INT_SMALL = [1, 1, 1, 2, 2, 3, 4]
INT_ODD = [0, -1, 5, 16, 255, 1000, 2**31 - 1, -2**31, 2**32 - 1, 2**40, 2**63 - 1]
FLOAT_SMALL = [0.5, 1.0, 0.0, 2.0, 0.001, 0.75]
FLOAT_ODD = [-1.0, 1e30, -1e30, 1e-40, float("nan"), float("inf"), float("-inf"), 3.4e38]
STR_POOL = ["", "data", "x", "conv1", "prob", "a" * 300, "\x1b[2J", "ü", "TEST", "deploy"]

_RANGES = {  # protobuf scalar type -> (low, high)
    1: None, 2: None, 3: (-2**63, 2**63 - 1), 4: (0, 2**64 - 1), 5: (-2**31, 2**31 - 1),
    6: (0, 2**64 - 1), 7: (0, 2**32 - 1), 13: (0, 2**32 - 1), 15: (-2**31, 2**31 - 1),
    16: (-2**63, 2**63 - 1), 17: (-2**31, 2**31 - 1), 18: (-2**63, 2**63 - 1),
}


def _scalar(draw, f, sane: bool):
    t = f.type
    if t in (1, 2):  # double, float
        return draw(st.sampled_from(FLOAT_SMALL if sane else FLOAT_SMALL + FLOAT_ODD))
    if t == 8:
        return draw(st.booleans())
    if t == 9:
        return draw(st.sampled_from(STR_POOL[:5] if sane else STR_POOL))
    if t == 12:
        return draw(st.sampled_from([b"", b"\x00\x01", b"x" * 10]))
    if t == 14:
        values = [v.number for v in f.enum_type.values]
        return draw(st.sampled_from(values))
    lo, hi = _RANGES.get(t, (-2**31, 2**31 - 1))
    pool = INT_SMALL if sane else INT_SMALL + INT_ODD
    return draw(st.sampled_from([v for v in pool if lo <= v <= hi] or [lo]))


def fill_message(draw, msg, depth: int, sane: bool, max_fields: int = 4) -> None:
    fields = [f for f in msg.DESCRIPTOR.fields]
    if not fields:
        return
    for _ in range(draw(st.integers(0, min(max_fields, len(fields))))):
        f = _pick(draw, fields)
        repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == 3
        if f.type == 11:  # message
            if depth <= 0:
                continue
            for _ in range(draw(st.integers(1, 2)) if repeated else 1):
                sub = getattr(msg, f.name).add() if repeated else getattr(msg, f.name)
                if not repeated:
                    sub.SetInParent()
                fill_message(draw, sub, depth - 1, sane, max_fields=3)
        elif repeated:
            for _ in range(draw(st.integers(1, 4))):
                getattr(msg, f.name).append(_scalar(draw, f, sane))
        else:
            try:
                setattr(msg, f.name, _scalar(draw, f, sane))
            except (ValueError, TypeError):
                pass


def _param_field(type_name: str) -> str | None:
    pb = _schema()
    special = {"Deconvolution": "convolution_param", "ConvolutionDepthwise": "convolution_param",
               "DepthwiseConvolution": "convolution_param", "ReLU6": "relu_param",
               "AnnotatedData": "annotated_data_param", "NormalizeBBox": "norm_param" }
    fields = pb.LayerParameter.DESCRIPTOR.fields_by_name
    if type_name in special and special[type_name] in fields:
        return special[type_name]
    for f in pb.LayerParameter.DESCRIPTOR.fields:
        if f.type == 11 and f.message_type.name.lower() == (type_name + "Parameter").lower():
            return f.name
    return None


COMMON_TYPES = ["Convolution", "Pooling", "ReLU", "InnerProduct", "Softmax", "Concat", "Eltwise",
                "BatchNorm", "Scale", "Deconvolution", "Slice", "Flatten", "Reshape", "Dropout",
                "Sigmoid", "TanH", "LRN", "PReLU", "Permute", "Crop", "Interp", "Upsample", "Split",
                "Power", "Normalize", "Reduction", "ArgMax", "Tile", "Bias", "ELU", "AbsVal", "Clip"]


@st.composite
def generated_nets(draw):
    """A random net of the registered layer types with random parameters, printed with
    protobuf's text_format (V2 ``layer`` or, sometimes, V1 ``layers``)."""
    from google.protobuf import text_format

    pb = _schema()
    net = pb.NetParameter()
    net.name = draw(st.sampled_from(["g", "", "net-1", "ü"]))
    blobs: list[str] = []
    v1 = draw(st.integers(0, 4)) == 4
    n_inputs = _weighted(draw, [(8, 1), (2, 2), (1, 0)])
    for i in range(n_inputs):
        name = "data" if i == 0 else f"in{i}"
        dims = draw(st.lists(st.sampled_from([1, 1, 2, 3, 4, 5, 8, 16]), min_size=4, max_size=4)) \
            if draw(st.integers(0, 5)) < 5 else draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 2**31 - 1, 100000]), min_size=1, max_size=6))
        style = draw(st.sampled_from(["input_shape", "input_dim"] + ([] if v1 else ["layer"])))
        if style == "layer":
            layer = net.layer.add()
            layer.name, layer.type = name, "Input"
            layer.top.append(name)
            layer.input_param.shape.add().dim.extend(dims)
        else:
            net.input.append(name)
            if style == "input_shape":
                net.input_shape.add().dim.extend(dims)
            else:
                net.input_dim.extend(dims)
        blobs.append(name)
    n_layers = draw(st.integers(1, 7))
    for i in range(n_layers):
        type_name = _weighted(draw, [(6, st.sampled_from(COMMON_TYPES)), (3, st.sampled_from(known_types())),
                                     (1, st.sampled_from(["", "Nope", "Python", "Input", "Silence"]))])
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = draw(st.sampled_from([f"l{i}", f"l{i}", "dup", "", "a" * 200]))
        if v1:
            v1names = v1_type_names()
            guess = re.sub(r"(?<!^)(?=[A-Z])", "_", type_name).upper()
            enum = pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
            layer.type = enum.values_by_name[guess].number if guess in enum.values_by_name else \
                enum.values_by_name[draw(st.sampled_from(v1names))].number
        else:
            layer.type = type_name
        n_bottom = _weighted(draw, [(6, 1), (2, 2), (1, 0), (1, 3)])
        for _ in range(n_bottom):
            if blobs and draw(st.integers(0, 9)) < 9:
                layer.bottom.append(_pick(draw, blobs[-3:]) if draw(st.booleans()) else _pick(draw, blobs))
            else:
                layer.bottom.append(draw(st.sampled_from(["nope", "data", ""])))
        n_top = _weighted(draw, [(8, 1), (2, 2), (1, 0)])
        for j in range(n_top):
            if j == 0 and layer.bottom and draw(st.integers(0, 3)) == 3:
                layer.top.append(layer.bottom[0])  # in place
            else:
                top = f"b{i}_{j}"
                layer.top.append(top)
                blobs.append(top)
        pf = _param_field(type_name)
        sane = draw(st.integers(0, 3)) < 3
        if pf is not None and pf in layer.DESCRIPTOR.fields_by_name and draw(st.integers(0, 4)) < 4:
            sub = getattr(layer, pf)
            sub.SetInParent()
            _sane_defaults(type_name, sub)
            fill_message(draw, sub, depth=2, sane=sane)
        if draw(st.integers(0, 9)) == 9:  # a param of another type
            others = [f.name for f in layer.DESCRIPTOR.fields if f.type == 11 and f.name.endswith("_param")]
            other = getattr(layer, _pick(draw, others))
            other.SetInParent()
            fill_message(draw, other, depth=1, sane=sane)
        if not v1 and draw(st.integers(0, 9)) == 9:
            rule = layer.include.add() if draw(st.booleans()) else layer.exclude.add()
            fill_message(draw, rule, depth=0, sane=False)
        if not v1 and draw(st.integers(0, 9)) == 9:
            fill_message(draw, layer.param.add(), depth=0, sane=sane)
    text = text_format.MessageToString(net)
    lib = [("build_graph", ("net.prototxt", "test"))]
    return Case("generated", {"net.prototxt": text.encode()}, _net_commands(draw, "net.prototxt", verify_share=4), lib)


def _sane_defaults(type_name: str, sub) -> None:
    """Values most real layers have, so that most generated nets get past the first checks and
    exercise conversion and the check."""
    d = sub.DESCRIPTOR.fields_by_name
    if "num_output" in d:
        sub.num_output = 2
    if type_name in ("Convolution", "Deconvolution", "ConvolutionDepthwise", "DepthwiseConvolution"):
        sub.kernel_size.append(1)
    if type_name == "Pooling":
        sub.kernel_size = 2


# ------------------------------------------------------------------------- caffemodel bytes
# A wire-format tree: a message is a list of [number, wire_type, value, length_override];
# value: int (varint), bytes (fixed/len), or a list (a nested message).
def _payload(value) -> bytes:
    if isinstance(value, list):
        return encode(value)
    if isinstance(value, int):
        return varint(value & ((1 << 70) - 1))
    return value


def encode(msg) -> bytes:
    out = bytearray()
    for number, wt, value, override in msg:
        out += key(number, wt)
        payload = _payload(value)
        if wt == 2:
            out += varint(len(payload) if override is None else override)
        out += payload  # varint, fixed, groups and invalid wire types: the bytes as they are
    return bytes(out)


def _f(number, wt, value, override=None):
    return [number, wt, value, override]


def blob_tree(shape, *, legacy=False, double=False, packed=True, values=None) -> list:
    n = int(np.prod(shape)) if shape else 1
    arr = np.asarray(values if values is not None else np.linspace(-1, 1, n), "<f8").reshape(shape)
    msg = []
    if legacy:
        dims = (1,) * (4 - len(shape)) + tuple(shape)
        msg += [_f(number, 0, d) for number, d in zip((1, 2, 3, 4), dims)]
    else:
        msg.append(_f(7, 2, [_f(1, 2, b"".join(varint(d) for d in shape))]))
    number, wt, fmt, dtype = (8, 1, "<d", "<f8") if double else (5, 5, "<f", "<f4")
    if packed:
        msg.append(_f(number, 2, arr.astype(dtype).tobytes()))
    else:
        msg += [_f(number, wt, struct.pack(fmt, v)) for v in arr.ravel().tolist()]
    return msg


def weights_tree(version: str, style: dict) -> list:
    arrays = tiny_arrays()
    msg = [_f(1, 2, b"tiny")]
    types = {"conv1": ("Convolution", 4, "conv"), "fc": ("InnerProduct", 14, "innerproduct")}
    for name, arrs in arrays.items():
        blobs = [blob_tree(a.shape, values=a, **style) for a in arrs]
        v2type, v1type, v0type = types[name]
        if version == "v2":
            msg.append(_f(100, 2, [_f(1, 2, name.encode()), _f(2, 2, v2type.encode())] + [_f(7, 2, b) for b in blobs]))
        elif version == "v1":
            msg.append(_f(2, 2, [_f(4, 2, name.encode()), _f(5, 0, v1type)] + [_f(6, 2, b) for b in blobs]))
        else:
            inner = [_f(1, 2, name.encode()), _f(2, 2, v0type.encode())] + [_f(50, 2, b) for b in blobs]
            msg.append(_f(2, 2, [_f(1, 2, inner)]))
    return msg


VARINTS = [0, 1, 2, 3, 127, 128, 2**31 - 1, 2**31, 2**32, 2**62, 2**63, 2**64 - 1, 2**70]


def _nodes(msg, path=()):
    """Every field of the tree: (path, field)."""
    for i, f in enumerate(msg):
        yield path + (i,), f
        if f[1] == 2 and isinstance(f[2], list):
            yield from _nodes(f[2], path + (i,))


def _parent(msg, path):
    for i in path[:-1]:
        msg = msg[i][2]
    return msg


def mutate_tree(draw, msg) -> list:
    import copy

    msg = copy.deepcopy(msg)
    for _ in range(draw(st.integers(1, 4))):
        nodes = list(_nodes(msg))
        if not nodes:
            break
        path, f = _pick(draw, nodes)
        parent = _parent(msg, path)
        i = path[-1]
        op = draw(st.sampled_from(["varint", "varint", "dims", "dims", "delete", "dup", "wire", "length",
                                   "length", "data", "unknown", "string", "move", "count"]))
        if op == "varint":
            ints = [(p, g) for p, g in nodes if g[1] == 0]
            if ints:
                p, g = _pick(draw, ints)
                g[2] = draw(st.sampled_from(VARINTS))
        elif op == "dims":
            dims = draw(st.lists(st.sampled_from(VARINTS[:9] + [4, 5, 64]), min_size=0, max_size=draw(st.sampled_from([4, 40]))))
            shapes = [(p, g) for p, g in nodes if g[0] == 7 and isinstance(g[2], list) and g[2][:1] and g[2][0][0] == 1]
            if shapes:
                p, g = _pick(draw, shapes)
                g[2] = [_f(1, 2, b"".join(varint(d) for d in dims))] if draw(st.booleans()) else [_f(1, 0, d) for d in dims]
        elif op == "delete":
            del parent[i]
        elif op == "dup":
            parent.insert(i, copy.deepcopy(f))
        elif op == "wire":
            f[1] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]))
            if f[1] in (1, 5) and not (isinstance(f[2], bytes) and len(f[2]) == (8 if f[1] == 1 else 4)):
                f[2] = encode(f[2]) if isinstance(f[2], list) else (f[2] if isinstance(f[2], bytes) else varint(f[2]))
            if f[1] == 0 and not isinstance(f[2], int):
                f[2] = 5
            if f[1] in (3, 4, 6, 7) and not isinstance(f[2], bytes):
                f[2] = b""
        elif op == "length":
            lens = [(p, g) for p, g in nodes if g[1] == 2]
            if lens:
                p, g = _pick(draw, lens)
                true = len(encode(g[2]) if isinstance(g[2], list) else g[2])
                g[3] = max(0, true + draw(st.sampled_from([-3, -1, 1, 2, 100, 2**31, 2**40])))
        elif op == "data":
            datas = [(p, g) for p, g in nodes if g[0] in (5, 8, 6, 9) and g[1] == 2]
            if datas:
                p, g = _pick(draw, datas)
                n = draw(st.sampled_from([0, 1, 3, 4, 7, 8, 108, 400]))
                g[2] = draw(st.sampled_from([b"\x00", b"\xff", b"\x7f\xc0\x00\x00"])) * n
        elif op == "unknown":
            wt = draw(st.sampled_from([0, 2, 3, 4, 6, 7]))
            number = draw(st.sampled_from([0, 15, 99, 1000, 19000, 2**29 - 1]))
            parent.insert(i, _f(number, wt, 1 if wt == 0 else b"\x01\x02"))
        elif op == "string":
            strs = [(p, g) for p, g in nodes if g[1] == 2 and isinstance(g[2], bytes) and g[0] in (1, 2, 4)]
            if strs:
                p, g = _pick(draw, strs)
                g[2] = draw(st.sampled_from([b"", b"\xff\xfe", b"conv1", b"fc", b"a" * 100000, b"\x1b[2J", b"x\x00y"]))
        elif op == "move":
            msgs = [(p, g) for p, g in nodes if g[1] == 2 and isinstance(g[2], list)]
            if msgs:
                p, g = _pick(draw, msgs)
                moved = parent.pop(i)
                if g is not moved:
                    g[2].append(moved)
                else:
                    parent.insert(i, moved)
        elif op == "count":  # a shape whose count disagrees with the data
            shapes = [(p, g) for p, g in nodes if g[0] == 7 and g[1] == 2 and isinstance(g[2], list)]
            if shapes:
                p, g = _pick(draw, shapes)
                g[2] = [_f(1, 2, b"".join(varint(d) for d in draw(st.lists(st.sampled_from([1, 2, 3, 4, 5, 64, 0]), min_size=1, max_size=5))))]
    return msg


def mutate_bytes(draw, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "append", "zero"]))
        if op == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif op == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.sampled_from([b"\xff" * 10, b"\x80" * 11, b"\x00", b"\x0a\xff\xff\xff\xff\x0f"]))
        elif op == "append":
            data += draw(st.sampled_from([b"\x00", b"\x0a", b"\xa2\x06", b"garbage" * 10]))
        elif op == "zero" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i:i + 16] = b"\x00" * len(data[i:i + 16])
    return bytes(data)


@st.composite
def caffemodel_mutations(draw):
    version = draw(st.sampled_from(["v2", "v2", "v1", "v0"]))
    style = draw(st.sampled_from([{}, {"legacy": True}, {"double": True}, {"packed": False},
                                  {"legacy": True, "double": True}, {"double": True, "packed": False}]))
    tree = weights_tree(version, style)
    if draw(st.integers(0, 5)):
        tree = mutate_tree(draw, tree)
    data = encode(tree)
    if draw(st.integers(0, 2)) == 0:
        data = mutate_bytes(draw, data)
    net = {"v2": TINY_V2, "v1": TINY_V1, "v0": TINY_V0}[draw(st.sampled_from(["v2", "v2", version]))]
    files = {"net.prototxt": net.encode(), "w.caffemodel": data}
    argvs = [["inspect", "net.prototxt", "w.caffemodel"], _convert_with("w.caffemodel", draw)]
    return Case("caffemodel", files, argvs, [("read_caffemodel", ("w.caffemodel",))], note=f"{version} {style}")


def _convert_with(weights: str, draw) -> list[str]:
    if draw(st.integers(0, 5)) == 0:
        return ["convert", "net.prototxt", weights, "-o", "out", "--max-memory", CHECK_MEMORY]
    return ["convert", "net.prototxt", weights, "-o", "out", "--no-verify"]


# --------------------------------------------------------------------------------- HDF5
def write_h5(path: Path, spec: list) -> None:
    """``spec``: [(kind, h5path, arg)], kind: dataset (arg: (shape, dtype, fill)), group,
    soft (arg: target), external (arg: (file, path)), attr (arg: value), big (arg: shape),
    garbage (the whole file is arg bytes)."""
    import h5py

    damage = [s for s in spec if s[0] == "damage"]
    spec = [s for s in spec if s[0] != "damage"]
    if damage:
        write_h5(path, spec)
        for _, at, value in damage:
            data = bytearray(path.read_bytes())
            if data:
                data[at % len(data)] = value
                path.write_bytes(bytes(data))
        return
    if spec and spec[0][0] == "garbage":
        path.write_bytes(spec[0][2])
        return
    with h5py.File(path, "w") as f:
        for kind, name, arg in spec:
            try:
                if kind == "dataset":
                    shape, dtype, fill = arg
                    if dtype == "str":
                        f.create_dataset(name, data=np.array([b"ab"] * max(1, math.prod(shape) if shape else 1)))
                    elif dtype == "compound":
                        f.create_dataset(name, shape=shape, dtype=np.dtype([("a", "<f4"), ("b", "<i4")]))
                    elif dtype == "vlen":
                        f.create_dataset(name, shape=shape, dtype=h5py.vlen_dtype(np.float32))
                    else:
                        with np.errstate(all="ignore"), warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            a = np.full(shape, fill, dtype=dtype)
                        f.create_dataset(name, data=a)
                elif kind == "big":
                    f.create_dataset(name, shape=arg, dtype="f4", chunks=True)
                elif kind == "group":
                    f.require_group(name)
                elif kind == "soft":
                    f[name] = h5py.SoftLink(arg)
                elif kind == "external":
                    f[name] = h5py.ExternalLink(*arg)
                elif kind == "attr":
                    f.require_group(name).attrs["x"] = arg
            except (ValueError, TypeError, KeyError, OSError):
                pass  # the spec asked for something h5py will not write: skip it


@st.composite
def hdf5_cases(draw):
    """A good HDF5 snapshot of the tiny net (data/LAYER/INDEX datasets) with 0 to 3 changes:
    names, dtypes, shapes, links, groups where datasets belong, huge lazily-allocated data."""
    arrays = tiny_arrays()
    spec = [["dataset", f"data/{n}/{i}", (a.shape, "<f4", 0.5)] for n, arrs in arrays.items() for i, a in enumerate(arrs)]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["top", "layer", "index", "dtype", "shape", "fill", "kind", "kind", "extra", "drop"]))
        if not spec:
            break
        entry = _pick(draw, spec)
        parts = entry[1].split("/")
        if op == "top":
            new = draw(st.sampled_from(["", "weights", "data/data", "DATA"]))
            for e in spec:
                e[1] = "/".join(([new] if new else []) + e[1].split("/")[1:])
        elif op == "layer" and len(parts) >= 2:
            parts[1] = draw(st.sampled_from(["x", parts[1] + "/sub", "conv1", "fc", "prob", "a" * 300]))
            entry[1] = "/".join(parts)
        elif op == "index":
            parts[-1] = draw(st.sampled_from(["x", "-1", "00", "2", "999999999999", "1.0"]))
            entry[1] = "/".join(parts)
        elif op == "dtype" and entry[0] == "dataset":
            shape, _, fill = entry[2]
            dtype = draw(st.sampled_from(["<f8", "<f2", "<i4", "u1", "bool", "c8", "str", "compound", "vlen", ">f4"]))
            entry[2] = (shape, dtype, 1 if dtype in ("<i4", "u1", "bool") else fill)
        elif op == "shape" and entry[0] == "dataset":
            shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 4, 5, 64, 3]), max_size=5)))
            entry[2] = (shape, entry[2][1], entry[2][2])
        elif op == "fill" and entry[0] == "dataset" and entry[2][1] in ("<f4", "<f8", ">f4", "<f2"):
            entry[2] = (entry[2][0], entry[2][1], draw(st.sampled_from([float("nan"), float("inf"), 1e38, 0.0])))
        elif op == "kind":
            kind = draw(st.sampled_from(["big", "group", "soft", "external", "attr"]))
            entry[0] = kind
            entry[2] = {
                "big": draw(st.sampled_from([(2**20, 2**20, 4), (2**31,), (0, 2**40), (1,) * 33, (4, 3, 3, 2**30)])),
                "group": None,
                "soft": draw(st.sampled_from(["/data", "/nope", "/data/conv1/1", "/", "/" + entry[1]])),
                "external": (draw(st.sampled_from(["/etc/hostname", "other.h5", "w.caffemodel.h5"])), "/"),
                "attr": 1,
            }[kind]
        elif op == "extra":
            spec.append(["group", draw(st.sampled_from(["data/extra", "data/fc/0/deeper", "other", "data/conv1/2"])), None])
        elif op == "drop":
            spec.remove(entry)
    spec = [tuple(e) for e in spec]
    if draw(st.integers(0, 9)) == 9:
        spec = [("garbage", "", draw(st.sampled_from([b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, b"", b"\x89HDF\r\n\x1a\n"])))]
    name = draw(st.sampled_from(["w.caffemodel.h5", "w.caffemodel.h5", "w.h5"]))
    if draw(st.integers(0, 5)) == 5:  # byte-level damage, done when the file is written
        spec.append(("damage", draw(st.integers(0, 10**6)), draw(st.integers(0, 255))))
    files = {"net.prototxt": TINY_V2.encode(), name: Special("h5", tuple(spec))}
    return Case("hdf5", files, [["inspect", "net.prototxt", name], _convert_with(name, draw)], [("read_caffemodel", (name,))])


# ------------------------------------------------------------------------------ mean files
def _full(shape, value, dtype):
    try:
        return np.full(shape, value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        return np.zeros(shape, dtype=dtype)


@st.composite
def mean_cases(draw):
    kind = draw(st.sampled_from(["binaryproto", "binaryproto", "npy"]))
    if kind == "binaryproto":
        shape = draw(st.sampled_from([(1, 3, 17, 17), (3, 17, 17), (3,), (3, 1, 1), (1, 3, 4, 4), (2, 3, 17, 17)]))
        tree = blob_tree(shape, legacy=draw(st.booleans()), double=draw(st.integers(0, 3)) == 0)
        if draw(st.integers(0, 4)):
            tree = mutate_tree(draw, tree)
        data = encode(tree)
    else:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = _full(draw(st.sampled_from([(3,), (3, 17, 17), (1, 3, 17, 17), (0,), (3, 0, 2), ()])),
                        draw(st.sampled_from([100.0, float("nan"), 1e39])),
                        dtype=draw(st.sampled_from(["<f4", "<f8", "<i2", ">f4", "<f2", "c8", "O", "U3", "bool"])))
        buf = io.BytesIO()
        try:
            np.save(buf, arr, allow_pickle=True)
        except (ValueError, TypeError):
            np.save(buf, np.zeros(3, "<f4"))
        data = buf.getvalue()
        if draw(st.integers(0, 2)) == 0:
            header_end = data.find(b"\n") + 1
            header = data[:header_end]
            header = header.replace(b"'shape': (", draw(st.sampled_from([b"'shape': (99999999999, ", b"'shape': (-1, ", b"'shape': (", b"'shape': (2**70, "])))
            data = header + data[header_end:]
    if draw(st.integers(0, 2)) == 0:
        data = mutate_bytes(draw, data)
    name = f"mean.{kind}"
    argv = ["convert", "net.prototxt", "--random-weights", "--mean-file", name, "-o", "out"]
    argv += ["--max-memory", CHECK_MEMORY] if draw(st.integers(0, 3)) == 0 else ["--no-verify"]
    if draw(st.integers(0, 3)) == 0:
        argv += ["--fold-normalization"]
    return Case("mean", {"net.prototxt": TINY_V2.encode(), name: data}, [argv], [("read_mean", (name,))])


# -------------------------------------------------------------------------- converted folders
def base_folder(scratch: Path, weights_format: str = "pth") -> dict[str, bytes]:
    """The files of a converted tiny net (net.prototxt, conv/...), made once per process with
    caffe2torch itself (``convert --random-weights``)."""
    key_ = f"base-{weights_format}"
    if key_ in _CACHE:
        return _CACHE[key_]
    folder = Path(tempfile.mkdtemp(prefix="base-", dir=scratch))
    (folder / "net.prototxt").write_text(TINY_V2)
    argv = ["convert", "net.prototxt", "--random-weights", "-o", "conv", "--format", weights_format]
    o = run_cli(argv, folder)
    assert o.code == 0, (o.code, o.stderr, o.tb)
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".tmp" not in p.parts:
            files[str(p.relative_to(folder))] = p.read_bytes()
    from PIL import Image

    for name, size, fmt in (("img.png", (17, 17), "PNG"), ("big.jpg", (40, 23), "JPEG")):
        buf = io.BytesIO()
        Image.fromarray((np.arange(size[0] * size[1] * 3) % 251).astype(np.uint8).reshape(size[1], size[0], 3)).save(buf, fmt)
        files[name] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 3, 17, 17), "<f4"))
    files["x.npy"] = buf.getvalue()
    _rmtree(folder)
    _CACHE[key_] = files
    return files


JSON_ODD = [None, True, False, 0, -1, 1, 2**31, 2**64, -2**63, 1e308, float("nan"), float("inf"), "", "x",
            "a" * 10000, [], {}, [1, 2], {"a": 1}, [[[]]], "model.py", "../model.py", "BGR", "image", "tensor",
            "caffe2torch-conversion/2", 0.5, [0, 3, 17, 17], [1, 3, -1, 17], ["data"], [2**40, 3]]


def _json_paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, path + (i,))


def mutate_json(draw, data: bytes) -> bytes:
    import copy

    obj = json.loads(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_json_paths(obj))
        path = _pick(draw, paths)
        op = draw(st.sampled_from(["set", "set", "set", "delete", "extra", "deep", "dup_list"]))
        if not path:
            if op in ("set", "deep"):
                obj = draw(st.sampled_from([[], None, 5, "x", [obj]]))
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        k = path[-1]
        if op == "set":
            parent[k] = copy.deepcopy(draw(st.sampled_from(JSON_ODD)))
        elif op == "delete":
            del parent[k]
        elif op == "extra" and isinstance(parent[k], dict):
            parent[k][draw(st.sampled_from(["extra", "", "__proto__", "ü"]))] = draw(st.sampled_from(JSON_ODD[:12]))
        elif op == "deep":
            depth = draw(st.sampled_from([50, 900, 5000, 100000]))
            parent[k] = "DEEP"
            text = json.dumps(obj)
            return text.replace('"DEEP"', "[" * depth + "]" * depth, 1).encode()
        elif op == "dup_list" and isinstance(parent[k], list) and parent[k]:
            parent[k] = parent[k] * draw(st.sampled_from([2, 3, 100]))
    text = json.dumps(obj, allow_nan=True, indent=draw(st.sampled_from([None, 1])))
    if draw(st.integers(0, 5)) == 0:
        return mutate_bytes(draw, text.encode())
    return text.encode()


MODEL_PY_EDITS = [
    ("syntax", lambda t: t.replace("def forward(", "def forward(;", 1)),
    ("raise", lambda t: t + "\nraise RuntimeError('broken on import')\n"),
    ("raise_multiline", lambda t: t + "\nraise ValueError('line one\\nline two')\n"),
    ("exit", lambda t: t + "\nimport sys\nsys.exit(0)\n"),
    ("exit_msg", lambda t: t + "\nraise SystemExit('bye')\n"),
    ("noclass", lambda t: re.sub(r"class (\w+)\(", r"class \1_renamed(", t, count=1)),
    ("init_raises", lambda t: t.replace("super().__init__()", "super().__init__()\n        raise TypeError('init')", 1)),
    ("forward_raises", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        raise IndexError('forward')\n", t, count=1)),
    ("returns_none", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return None\n", t, count=1)),
    ("returns_str", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return 'x'\n", t, count=1)),
    ("returns_list", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return [torch.zeros(1)]\n", t, count=1)),
    ("returns_dict", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return {'prob': torch.zeros(1, 5)}\n", t, count=1)),
    ("returns_tuple3", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return (torch.zeros(1, 5),) * 3\n", t, count=1)),
    ("returns_empty", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.zeros(0, 5)\n", t, count=1)),
    ("returns_empty_tuple", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return ()\n", t, count=1)),
    ("returns_nan", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.full((1, 5), float('nan'))\n", t, count=1)),
    ("returns_int", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.ones(1, 5, dtype=torch.int64)\n", t, count=1)),
    ("returns_shape", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.ones(3, 2, 7)\n", t, count=1)),
    ("returns_scalar", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.tensor(1.0)\n", t, count=1)),
    ("returns_complex", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.ones(1, 5, dtype=torch.complex64)\n", t, count=1)),
    ("returns_float", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return 1.5\n", t, count=1)),
    ("returns_grad", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return torch.ones(1, 5, requires_grad=True) * 2\n", t, count=1)),
    ("returns_mixed", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return (torch.zeros(1, 5), None)\n", t, count=1)),
    ("recursion", lambda t: re.sub(r"(def forward\([^)]*\)[^:]*:\n)", r"\1        return self.forward(*args, **kwargs) if False else self(x)\n", t, count=1)),
    ("class_not_module", lambda t: re.sub(r"class (\w+)\([^)]*\):", r"class \1:", t, count=1)),
    ("empty", lambda t: ""),
    ("binary", lambda t: "\x00\xff"),
    ("bom", lambda t: "\ufeff" + t),
    ("nul", lambda t: t.replace("import", "\x00import", 1)),
    ("missing_attr", lambda t: t.replace("self.fc", "self.nope", 1)),
    ("huge_literal", lambda t: t + "\nX = [" + "1," * 200000 + "]\n"),
    ("deep_parens", lambda t: t + "\nX = " + "(" * 300 + ")" * 300 + "\n"),
]

PREPROCESS_PY_EDITS = [
    ("syntax", lambda t: t + "\ndef (\n"),
    ("raise", lambda t: t + "\nraise RuntimeError('pre')\n"),
    ("exit", lambda t: t + "\nraise SystemExit(0)\n"),
    ("none", lambda t: t + "\ndef preprocess(image, input=None, **kw):\n    return None\n"),
    ("str", lambda t: t + "\ndef preprocess(image, input=None, **kw):\n    return 'x'\n"),
    ("list", lambda t: t + "\ndef preprocess(image, input=None, **kw):\n    return [[1.0]]\n"),
    ("shape", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.zeros((1, 3, 5, 5), _np.float32)\n"),
    ("nan", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.full((1, 3, 17, 17), _np.nan, _np.float32)\n"),
    ("int", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.zeros((1, 3, 17, 17), _np.int64)\n"),
    ("f64", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.zeros((1, 3, 17, 17), _np.float64)\n"),
    ("torch", lambda t: t + "\nimport torch as _t\ndef preprocess(image, input=None, **kw):\n    return _t.zeros(1, 3, 17, 17)\n"),
    ("object", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.array([object()])\n"),
    ("0d", lambda t: t + "\nimport numpy as _np\ndef preprocess(image, input=None, **kw):\n    return _np.float32(1)\n"),
    ("nofunc", lambda t: t.replace("def preprocess(", "def preprocess_renamed(")),
    ("notcallable", lambda t: t + "\npreprocess = 5\n"),
    ("nospec", lambda t: t + "\nSPEC = None\n"),
    ("spec_list", lambda t: t + "\nSPEC = []\n"),
    ("spec_odd", lambda t: t + "\nSPEC = {'inputs': 5, 'outputs': 'x'}\n"),
    ("spec_empty", lambda t: t + "\nSPEC = {'inputs': [], 'outputs': []}\n"),
    ("raises_value", lambda t: t + "\ndef preprocess(image, input=None, **kw):\n    raise ValueError('a\\nb')\n"),
    ("recursion", lambda t: t + "\ndef preprocess(image, input=None, **kw):\n    return preprocess(image)\n"),
    ("empty", lambda t: ""),
]

PTH_CASES = [
    "truncate", "flip", "empty", "random", "pickle_dict", "pickle_list", "pickle_reduce", "pickle_proto0",
    "wrong_dtype", "wrong_shape", "missing_key", "extra_key", "non_str_key", "list_of_tensors", "zero_dim",
    "nested", "nan", "zip_member_flip", "zip_no_data", "npy", "safetensors_as_pth", "huge_shape_claim",
    "sparse", "bf16", "half", "complex", "bool", "uint8", "view", "nonfinite_inf", "empty_dict",
]


def _pth_bytes(draw, good: bytes) -> bytes:
    import torch

    state = torch.load(io.BytesIO(good), weights_only=True)
    kind = draw(st.sampled_from(PTH_CASES))
    k0 = sorted(state)[draw(st.integers(0, len(state) - 1))]

    def save(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    if kind == "truncate":
        return good[:draw(st.integers(0, len(good) - 1))]
    if kind == "flip":
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "empty":
        return b""
    if kind == "random":
        return bytes(draw(st.binary(min_size=1, max_size=300)))
    if kind == "pickle_dict":
        return pickle.dumps({"a": 1})
    if kind == "pickle_list":
        return save([1, 2, 3])
    if kind == "pickle_reduce":
        return save({k0: _Evil()})
    if kind == "pickle_proto0":
        return pickle.dumps({k0: [1.0, 2.0]}, protocol=0)
    new = dict(state)
    if kind == "wrong_dtype":
        new[k0] = state[k0].to(torch.float64)
    elif kind == "wrong_shape":
        new[k0] = torch.zeros(*(draw(st.sampled_from([(1,), (2, 2), (5, 64, 1), (0,), (7, 3, 3, 3)]))))
    elif kind == "missing_key":
        del new[k0]
    elif kind == "extra_key":
        new[draw(st.sampled_from(["extra.weight", "", "conv1.weight.x", "a" * 5000]))] = torch.zeros(2)
    elif kind == "non_str_key":
        new[5] = torch.zeros(1)
    elif kind == "list_of_tensors":
        return save(list(state.values()))
    elif kind == "zero_dim":
        new[k0] = torch.tensor(1.0)
    elif kind == "nested":
        new[k0] = {"w": state[k0]}
    elif kind == "nan":
        new[k0] = torch.full_like(state[k0], float("nan"))
    elif kind == "nonfinite_inf":
        new[k0] = torch.full_like(state[k0], float("inf"))
    elif kind == "zip_member_flip" or kind == "zip_no_data":
        zin = zipfile.ZipFile(io.BytesIO(good))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                content = zin.read(info)
                if kind == "zip_no_data" and "/data/" in info.filename:
                    continue
                if kind == "zip_member_flip" and info.filename.endswith("data.pkl") and content:
                    content = bytearray(content)
                    content[draw(st.integers(0, len(content) - 1))] = draw(st.integers(0, 255))
                    content = bytes(content)
                zout.writestr(info.filename, content)
        return out.getvalue()
    elif kind == "npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros(3))
        return buf.getvalue()
    elif kind == "safetensors_as_pth":
        from safetensors.torch import save as st_save

        return st_save({k: v.contiguous() for k, v in state.items()})
    elif kind == "huge_shape_claim":
        # A storage of 4 floats viewed as a huge tensor (the pickle claims the size).
        t = torch.zeros(4)
        new[k0] = t.as_strided((2**31, 2**31), (0, 0))
    elif kind == "sparse":
        new[k0] = state[k0].reshape(state[k0].shape[0], -1).to_sparse()
    elif kind == "bf16":
        new[k0] = state[k0].to(torch.bfloat16)
    elif kind == "half":
        new = {k: v.half() for k, v in state.items()}
    elif kind == "complex":
        new[k0] = state[k0].to(torch.complex64)
    elif kind == "bool":
        new[k0] = state[k0] > 0
    elif kind == "uint8":
        new[k0] = state[k0].to(torch.uint8)
    elif kind == "view":
        big = torch.zeros(10_000)
        new[k0] = big[: state[k0].numel()].view(state[k0].shape)
    elif kind == "empty_dict":
        new = {}
    try:
        return save(new)
    except Exception:  # noqa: BLE001 - torch refuses to save it: write the good file
        return good


class _Evil:
    def __reduce__(self):
        return (print, ("pwned: weights_only was not used",))


def _safetensors_bytes(draw, good: bytes) -> bytes:
    n = struct.unpack("<Q", good[:8])[0]
    header = good[8:8 + n]
    body = good[8 + n:]
    kind = draw(st.sampled_from(["len_huge", "len_short", "header_garbage", "offsets", "dtype", "truncate", "flip", "shape"]))
    if kind == "len_huge":
        return struct.pack("<Q", draw(st.sampled_from([2**63, 2**40, n + 1, 0]))) + header + body
    if kind == "len_short":
        return struct.pack("<Q", max(0, n - 5)) + header + body
    if kind == "header_garbage":
        h = draw(st.sampled_from([b"{", b"[]", b'{"a": 1}', b"\xff" * 10, b'{"__metadata__": 5}']))
        return struct.pack("<Q", len(h)) + h + body
    meta = json.loads(header)
    k0 = sorted(k for k in meta if k != "__metadata__")[0]
    if kind == "offsets":
        meta[k0]["data_offsets"] = draw(st.sampled_from([[0, 10**12], [10, 5], [-1, 4], [0, 0], ["a", 1]]))
    elif kind == "dtype":
        meta[k0]["dtype"] = draw(st.sampled_from(["F64", "I8", "XX", "BOOL", "", 5]))
    elif kind == "shape":
        meta[k0]["shape"] = draw(st.sampled_from([[2**40], [-1], [], [0], "x", [1, 2, 3, 4, 5, 6, 7, 8, 9]]))
    elif kind == "truncate":
        return good[:draw(st.integers(0, len(good) - 1))]
    elif kind == "flip":
        data = bytearray(good)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    h = json.dumps(meta).encode()
    return struct.pack("<Q", len(h)) + h + body


FILE_SWAPS = [None, "delete", "dir", "fifo", "devzero", "dangling", "loop", "empty"]


@st.composite
def folder_mutations(draw, scratch: Path):
    fmt = draw(st.sampled_from(["pth", "pth", "pth", "safetensors"]))
    files = dict(base_folder(scratch, fmt))
    wname = "conv/model.pth" if fmt == "pth" else "conv/model.safetensors"
    targets = ["conv/conversion.json", "conv/conversion.json", "conv/conversion.json", wname, wname,
               "conv/preprocess.json", "conv/preprocess.py", "conv/model.py", "conv/model.py", "net.prototxt",
               "files"]
    notes = []
    done = set()
    for _ in range(draw(st.integers(1, 2))):
        what = draw(st.sampled_from(targets))
        if what in done or (what != "files" and not isinstance(files.get(what), bytes)):
            continue  # changed already, or replaced by a folder, a link...
        done.add(what)
        notes.append(what)
        if what.endswith(".json"):
            files[what] = mutate_json(draw, files[what])
        elif what == wname:
            files[what] = _pth_bytes(draw, files[what]) if fmt == "pth" else _safetensors_bytes(draw, files[what])
        elif what == "conv/model.py":
            if draw(st.integers(0, 4)):
                name, edit = draw(st.sampled_from(MODEL_PY_EDITS))
                notes.append(name)
                files[what] = edit(files[what].decode()).encode("utf-8", "surrogatepass")
            else:
                lines = files[what].decode().splitlines(keepends=True)
                i = draw(st.integers(0, len(lines) - 1))
                del lines[i]
                files[what] = "".join(lines).encode()
        elif what == "conv/preprocess.py":
            name, edit = draw(st.sampled_from(PREPROCESS_PY_EDITS))
            notes.append(name)
            files[what] = edit(files[what].decode()).encode()
        elif what == "net.prototxt":
            files[what] = mutate_text(draw, TINY_V2)
        else:
            victim = draw(st.sampled_from(sorted(k for k in files if k.startswith("conv/")) + ["net.prototxt", "img.png", "conv"]))
            swap = draw(st.sampled_from(FILE_SWAPS[1:]))
            notes.append(f"{victim}->{swap}")
            if victim == "conv":
                for k in [k for k in files if k.startswith("conv/")]:
                    del files[k]
                files["conv"] = Special("symlink", "nowhere") if swap != "empty" else b""
                continue
            if swap == "delete":
                files.pop(victim, None)
            elif swap == "dir":
                files[victim] = Special("dir")
            elif swap == "fifo":
                files[victim] = Special("fifo")
            elif swap == "devzero":
                files[victim] = Special("symlink", "/dev/zero")
            elif swap == "dangling":
                files[victim] = Special("symlink", "nowhere-at-all")
            elif swap == "loop":
                files[victim] = Special("symlink", Path(victim).name)
            else:
                files[victim] = b""
    if draw(st.integers(0, 5)) == 0 and isinstance(files.get("img.png"), bytes):  # a damaged image too
        files["img.png"] = mutate_bytes(draw, files["img.png"]) if draw(st.booleans()) else files["img.png"][:draw(st.integers(0, 200))]
    argvs = []
    which = draw(st.sampled_from(["verify", "predict", "both"]))
    if which in ("verify", "both"):
        argv = ["verify", "conv", "--max-memory", CHECK_MEMORY]
        extra = draw(st.sampled_from([[], [], ["--json"], ["--image", "img.png"], ["--input", "x.npy"], ["--strict"], ["--image", "big.jpg"]]))
        argvs.append(argv + extra)
    if which in ("predict", "both"):
        argvs.append(["predict", "conv", draw(st.sampled_from(["img.png", "img.png", "big.jpg"]))] + draw(st.sampled_from([[], ["--json"], ["--top", "1"]])))
    lib_name = draw(st.sampled_from(["read_manifest", "load_state", "load_converted", "load_converted", "verify_folder", "predict", None, None]))
    lib = []
    if lib_name == "load_state":
        lib = [("load_state", (wname,))]
    elif lib_name == "predict":
        lib = [("predict", ("conv", "img.png"))]
    elif lib_name:
        lib = [(lib_name, ("conv",))]
    return Case("folder", files, argvs, lib, note=" ".join(notes) + f" ({fmt})")


# ------------------------------------------------------------------------------- CLI argv
INT_VALUES = ["0", "1", "-1", "2", "3", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
              "18446744073709551616", "1e3", "nan", "inf", "", "abc", "٣", "0x10", " 1", "1_000", "+1", "0" * 400 + "1"]
FLOAT_VALUES = ["nan", "inf", "-inf", "1e309", "-0", "1e-400", "0", "-1", "1e-5", "0.5", "abc", "", "1,5", "١٫٥",
                "1e-4", "NaN", "+inf", "1" * 400]
SHAPES = ["1,3,17,17", "data=1,3,17,17", "1x3x17x17", "=1,2", "data=", "0,3,17,17", "1,3,-17,17", "99999999999,1",
          "1" * 11, "1," * 40, "nope=1,3,17,17", "data=1,3,1,1", "data=2147483647,3,17,17", "data=1,3,100000,100000",
          "٣,3,17,17", "1,3,17,17,1,1", "data=1,3,17", "data=2,3,33,33", "", " ", "a=b=1,3,17,17", "data=1,3,5000,5000",
          "data=1,1,17,17", "1,3,,17"]
PATHS_IN = ["net.prototxt", "w.caffemodel", "conv", "img.png", "mean.binaryproto", "mean.npy", "labels.txt", "x.npy",
            "missing.prototxt", "adir", "/dev/null", "/dev/zero", "fifo", "loop", "dangling", "net.prototxt/x", "a" * 300,
            "нет.prototxt", "", "-", "v1.prototxt", "w.caffemodel.h5", "conv/model.pth", "conv/conversion.json",
            "solver.prototxt", "text.caffemodel", "~", "conv/", "./net.prototxt", "big.png"]
PATHS_OUT = ["out", "out", "out2", "conv", "adir", "net.prototxt", "/dev/null", "fifo", "missing/deeper/out", "", ".",
             "a" * 300, "net.prototxt/out", "dangling", "loop", "out.caffemodel", "w.caffemodel", "ü"]
CHOICES = {
    "--phase": ["test", "train", "TEST", "", "val", "ṫest"],
    "--stage": ["", "deploy", "x" * 1000, "\x1b[2J"],
    "--outputs": ["prob", "fc", "fc,prob", "nope", ",", "", " , ", "data", "conv1,nope", "relu1", "pool1," * 50],
    "--class-name": ["Net", "", "1abc", "class", "torch", "nn", "A" * 300, "Ünï", "F", "self", "Tiny", "__init__", "Module",
                     "None", "print"],
    "--format": ["pth", "safetensors", "", "PTH", "onnx"],
    "--engine": ["native", "native", "mmdnn", "", "x"],
    "--mean": ["104,117,123", "1", "nan", "", "1,2", "a,b", "1e400", "-1e39", "1,2,3,4", " 1 2 3", ",,,", "1e38,1e38,1e38"],
    "--input-order": ["bgr", "rgb", "BGR", "", "gray", "x"],
    "--caffe-order": ["bgr", "rgb", "RGB", "", "x"],
    "--max-memory": ["8G", "none", "0", "-1", "1.5g", "1e3", "nan", "", "1T", "99999999999999999999999G", "0.5", "1 k",
                     "2G", "100", "512M", "infinity"],
    "--top": ["1", "0", "-1", "5", "1000000", "huge", "9223372036854775808"],
    "--reference": ["auto", "opencv", "caffe", "", "Caffe", "pycaffe"],
    "--license": ["MIT", "BSD-2-Clause", "", "a\nb", "L" * 300, "\x1b[2J"],
}
OPTIONS = {
    "inspect": {"pos": ["net", "weights"], "opts": {"--input-shape": "shape", "-s": "shape", "--phase": "choice",
                                                     "--stage": "choice", "--json": None, "--plugin": "in", "--proto": "in", "--ignore-unknown-fields": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "synth-weights": {"pos": ["net"], "opts": {"--output": "out", "-o": "out", "--seed": "int", "--input-shape": "shape",
                                               "-s": "shape", "--phase": "choice", "--stage": "choice", "--overwrite": None,
                                               "--plugin": "in", "--proto": "in", "--ignore-unknown-fields": None,
                                               "--json": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "convert": {"pos": ["net", "weights"], "opts": {
        "--output": "out", "-o": "out", "--input-shape": "shape", "-s": "shape", "--outputs": "choice",
        "--class-name": "choice", "--format": "choice", "--random-weights": None, "--seed": "int", "--overwrite": None,
        "--phase": "choice", "--stage": "choice", "--verify": None, "--no-verify": None, "--engine": "choice",
        "--keep-intermediate": None, "--mmdnn-python": "in", "--mean": "choice", "--mean-file": "in", "--scale": "float",
        "--input-order": "choice", "--caffe-order": "choice", "--fold-normalization": None,
        "--check-batch": "int",
        "--max-memory": "choice", "--reference": "choice", "--plugin": "in", "--proto": "in", "--ignore-unknown-fields": None,
        "--labels": "in", "--license": "choice", "--record-paths": None, "--json": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "verify": {"pos": ["folder"], "opts": {"--input": "in", "-i": "in", "--image": "in", "--seed": "int", "--rtol": "float",
                                           "--atol": "float", "--strict": None, "--net": "in", "--weights": "in",
                                           "--json": None, "--check-batch": "int", "--max-memory": "choice",
                                           "--reference": "choice", "--plugin": "in", "--proto": "in", "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "predict": {"pos": ["folder", "image"], "opts": {"--labels": "in", "--top": "choice", "--json": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "convert-all": {"pos": ["folder"], "opts": {"--output": "out", "-o": "out", "--jobs": "int", "-j": "int", "--random-weights": None,
                                                "--seed": "int", "--shard": "choice", "--merge": "in", "--force": None, "--timeout": "float",
                                                "--max-memory": "choice", "--json": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
    "export-onnx": {"pos": ["folder"], "opts": {"--output": "out", "-o": "out", "--dynamic-batch": None, "--opset": "int",
                                                "--overwrite": None, "--json": None, "--quiet": None, "-q": None, "--verbose": None, "-v": None}},
}
GOOD_POS = {"net": ["net.prototxt", "net.prototxt", "v1.prototxt"], "weights": ["w.caffemodel", "w.caffemodel.h5"],
            "folder": ["conv"], "image": ["img.png"]}


def cli_files(scratch: Path) -> dict[str, Any]:
    from caffe2torch.caffe.caffemodel import LayerRecord, write_caffemodel, write_blobproto

    base = dict(base_folder(scratch, "pth"))
    if "cli-extra" not in _CACHE:
        tmp = Path(tempfile.mkdtemp(prefix="cli-", dir=scratch))
        arrays = tiny_arrays()
        write_caffemodel(tmp / "w.caffemodel", [LayerRecord(n, "X", [], [], a) for n, a in arrays.items()])
        write_blobproto(tmp / "mean.binaryproto", np.full((1, 3, 17, 17), 100.0, np.float32), legacy=True)
        np.save(tmp / "mean.npy", np.array([104.0, 117.0, 123.0], np.float32))
        import h5py

        with h5py.File(tmp / "w.caffemodel.h5", "w") as f:
            for n, arrs in arrays.items():
                for i, a in enumerate(arrs):
                    f.create_dataset(f"data/{n}/{i}", data=a)
        extra = {p.name: p.read_bytes() for p in tmp.iterdir()}
        _rmtree(tmp)
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(buf, "PNG")
        extra["big.png"] = buf.getvalue()
        extra["labels.txt"] = b"n01 zero\nn02 one\nthree\n\n\xff\xfe bad utf8\n" + b"x" * 300 + b"\n"
        extra["v1.prototxt"] = TINY_V1.encode()
        extra["solver.prototxt"] = b'net: "net.prototxt"\nbase_lr: 0.01\n'
        extra["text.caffemodel"] = TINY_V2.encode()
        extra["adir"] = Special("dir")
        extra["fifo"] = Special("fifo")
        extra["loop"] = Special("symlink", "loop")
        extra["dangling"] = Special("symlink", "nowhere")
        _CACHE["cli-extra"] = extra
    base.update(_CACHE["cli-extra"])
    return base


def _value(draw, kind, flag):
    if kind == "int":
        return draw(st.sampled_from(INT_VALUES))
    if kind == "float":
        return draw(st.sampled_from(FLOAT_VALUES))
    if kind == "shape":
        return draw(st.sampled_from(SHAPES))
    if kind == "in":
        return draw(st.sampled_from(PATHS_IN))
    if kind == "out":
        return draw(st.sampled_from(PATHS_OUT))
    return draw(st.sampled_from(CHOICES.get(flag, ["x", ""])))


@st.composite
def cli_argvs(draw, scratch: Path):
    """Random command lines of the real commands and flags, with odd values and odd paths."""
    command = draw(st.sampled_from(["inspect", "synth-weights", "convert", "convert", "convert", "verify", "predict",
                                    "nope", ""]))
    spec = OPTIONS.get(command, {"pos": [], "opts": {}})
    argv = [command] if command else []
    for p in spec["pos"]:
        if draw(st.integers(0, 5)) == 0:
            continue
        argv.append(draw(st.sampled_from(GOOD_POS[p])) if draw(st.integers(0, 2)) else draw(st.sampled_from(PATHS_IN)))
    if command == "predict" and draw(st.integers(0, 3)) == 0:
        argv.append(draw(st.sampled_from(PATHS_IN)))
    opts = sorted(spec["opts"])
    if command == "convert" and draw(st.integers(0, 2)):
        argv += ["-o", draw(st.sampled_from(PATHS_OUT))]
        if draw(st.integers(0, 1)):
            argv.append("--random-weights")
        if draw(st.integers(0, 2)):
            argv.append("--no-verify")
    if command == "synth-weights" and draw(st.integers(0, 2)):
        argv += ["-o", draw(st.sampled_from(["out.caffemodel", "w.caffemodel", "net.prototxt", "adir", "/dev/null", "fifo",
                                             "missing/x.caffemodel", "conv/model.pth", ""]))]
    for _ in range(draw(st.integers(0, 5))):
        if opts and draw(st.integers(0, 9)):
            flag = _pick(draw, opts)
            kind = spec["opts"][flag]
        else:
            other = OPTIONS[draw(st.sampled_from(sorted(OPTIONS)))]["opts"]
            flag = draw(st.sampled_from(sorted(other) + ["--nope", "-x", "--", "--json=1", "--help", "--version", "-"]))
            kind = other.get(flag)
        if kind is None:
            argv.append(flag)
            continue
        value = _value(draw, kind, flag)
        form = draw(st.sampled_from(["sep", "sep", "eq", "missing"]))
        if form == "eq" and flag.startswith("--"):
            argv.append(f"{flag}={value}")
        elif form == "missing":
            argv.append(flag)
        else:
            argv += [flag, value]
    if "--max-memory" not in " ".join(argv) and command in ("convert", "verify"):
        argv += ["--max-memory", CHECK_MEMORY]
    if draw(st.integers(0, 20)) == 0:
        argv.insert(0, draw(st.sampled_from(["--version", "--nope", "--help"])))
    files = cli_files(scratch)
    lib = []
    if draw(st.integers(0, 4)) == 0:
        lib = [("parse_input_shapes", tuple(draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))))]
    return Case("cli", files, [argv], lib)


@st.composite
def interrupts(draw, scratch: Path):
    """Ctrl-C at a random moment (the Nth function call) of a conversion and its check, of
    synth-weights, verify or predict."""
    files = dict(cli_files(scratch))
    argv = draw(st.sampled_from([
        ["convert", "net.prototxt", "--random-weights", "-o", "out", "--max-memory", CHECK_MEMORY],
        ["convert", "net.prototxt", "w.caffemodel", "-o", "out", "--no-verify"],
        ["convert", "net.prototxt", "w.caffemodel", "-o", "conv", "--overwrite", "--max-memory", CHECK_MEMORY],
        ["convert", "net.prototxt", "--random-weights", "-o", "out", "--format", "safetensors", "--mean-file", "mean.binaryproto", "--max-memory", CHECK_MEMORY],
        ["synth-weights", "net.prototxt", "-o", "out.caffemodel"],
        ["synth-weights", "net.prototxt", "-o", "w.caffemodel", "--overwrite"],
        ["verify", "conv", "--max-memory", CHECK_MEMORY],
        ["predict", "conv", "img.png"],
    ]))
    at = draw(st.integers(1, 4000))
    return Case("interrupt", files, [argv], interrupt_at=at)


def _prepared(scratch: Path) -> Path:
    """The converted folders and files the strategies copy, made before any drawing (they
    are made with caffe2torch itself; hypothesis must not see their randomness)."""
    base_folder(scratch, "pth")
    base_folder(scratch, "safetensors")
    cli_files(scratch)
    return scratch


TARGETS: dict[str, Callable[[Path], st.SearchStrategy]] = {
    "prototxt": lambda scratch: prototxt_mutations(),
    "generated": lambda scratch: generated_nets(),
    "caffemodel": lambda scratch: caffemodel_mutations(),
    "hdf5": lambda scratch: hdf5_cases(),
    "mean": lambda scratch: mean_cases(),
    "folder": lambda scratch: folder_mutations(_prepared(scratch)),
    "cli": lambda scratch: cli_argvs(_prepared(scratch)),
    "interrupt": lambda scratch: interrupts(_prepared(scratch)),
}
