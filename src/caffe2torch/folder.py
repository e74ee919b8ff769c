"""The converted folder: what is in it, how it is written, and how it is read back.

Writing (:class:`Destination`) never destroys anything the user did not ask to replace:

- the destination is checked before any work starts (is it a folder we may write into? can we
  write there at all?), so a conversion never ends with "cannot write" after minutes of work;
- ``--overwrite`` replaces only a folder that caffe2torch wrote (its ``conversion.json`` is
  there and it holds nothing but caffe2torch's files), and never the current folder, a folder
  holding an input of the run, or a parent of either;
- the files are written into a temporary folder beside the destination; an old folder is moved
  aside, the new one renamed into place, and the old one deleted only then. A failure at any
  point (an error, a full disk, Ctrl-C) puts the old folder back and leaves no stray folder.

Reading (:func:`read_manifest`, :func:`load_state`, :func:`load_converted`) checks every file
of a folder given to ``verify`` or ``predict`` and turns anything wrong into one line naming
the file: a ``conversion.json`` with fields of the wrong type, a ``model.py`` that does not
import, a tampered or truncated weights file (loaded with ``weights_only``, never pickle).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import (
    GiB,
    TEXT_LIMIT,
    CaffeError,
    OutputError,
    WeightsError,
    check_file,
    read_text,
    reading,
)

FORMAT = "caffe2torch-conversion/1"
MANIFEST = "conversion.json"
MODEL_FILE = "model.py"
REPORT_FILE = "report.md"
# The hub files (caffe2torch.hub), the drawn report, and what export-onnx writes by default.
HUB_FILES = ("hubconf.py", "README.md", "config.json")
REPORT_HTML = "report.html"
ONNX_FILE = "model.onnx"
PREPROCESS_JSON = "preprocess.json"
PREPROCESS_FILE = "preprocess.py"
MEAN_FILE = "mean.pth"
WEIGHT_FILES = {"pth": "model.pth", "safetensors": "model.safetensors"}
INTERMEDIATE_DIR = "mmdnn"  # the MMdnn engine's own files (--keep-intermediate)
# What caffe2torch may find in a folder it wrote (importing model.py adds __pycache__).
OWN_FILES = frozenset(
    {MANIFEST, MODEL_FILE, REPORT_FILE, PREPROCESS_JSON, PREPROCESS_FILE, MEAN_FILE,
     *WEIGHT_FILES.values(), *HUB_FILES, REPORT_HTML, ONNX_FILE}
)
OWN_DIRS = frozenset({"__pycache__", INTERMEDIATE_DIR})
WEIGHTS_LIMIT = 64 * GiB


class FolderError(CaffeError):
    """A converted folder (given to verify or predict) cannot be used."""


# ------------------------------------------------------------------------------ writing
def dump_json(data) -> str:
    """Indented JSON, with lists of plain values (shapes) and records in a list (an input, a
    step of the trace) each on one line. Refuses NaN and infinities (not JSON)."""

    def flat(x) -> bool:
        return isinstance(x, list) and all(
            not isinstance(e, (dict, list)) or (isinstance(e, list) and flat(e)) for e in x
        )

    def record(x) -> bool:
        return isinstance(x, dict) and all(
            not isinstance(v, (dict, list)) or flat(v) for v in x.values()
        )

    def enc(x, indent: str, in_list: bool = False) -> str:
        inner = indent + "  "
        if isinstance(x, dict) and x and not (in_list and record(x)):
            items = [f"{inner}{json.dumps(k)}: {enc(v, inner)}" for k, v in x.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        if isinstance(x, list) and x and not flat(x):
            items = [inner + enc(e, inner, in_list=True) for e in x]
            return "[\n" + ",\n".join(items) + "\n" + indent + "]"
        return json.dumps(x, separators=(", ", ": "), allow_nan=False)

    return enc(data, "") + "\n"


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _inside_known(entry: Path) -> bool:
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return entry.name in OWN_DIRS
    return entry.name in OWN_FILES


def written_by_us(folder: Path) -> str:
    """Why ``folder`` is not a folder caffe2torch wrote ("" when it is)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return f"it has no {MANIFEST}, so caffe2torch did not write it"
    try:
        with open(manifest, encoding="utf-8") as f:
            fmt = json.loads(f.read(TEXT_LIMIT)).get("format", "")
    except (OSError, ValueError, AttributeError, RecursionError):
        fmt = ""
    if not str(fmt).startswith("caffe2torch-conversion/"):
        return f"its {MANIFEST} was not written by caffe2torch"
    foreign = sorted(e.name for e in folder.iterdir() if not _inside_known(e))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"it also holds files caffe2torch did not write ({shown})"
    return ""


@dataclass
class Destination:
    """Where a command writes its output, checked before any work starts (see the module)."""

    path: Path
    replace: bool  # an existing folder of caffe2torch's is replaced
    is_file: bool = False

    @classmethod
    def folder(cls, outdir: str | Path, *, inputs: Iterable[Path | None], overwrite: bool) -> "Destination":
        outdir = Path(outdir)
        shown = outdir
        _check_name(outdir)
        if outdir.is_symlink():
            raise OutputError(
                "is a symbolic link: give the folder itself (caffe2torch replaces the link's "
                "name, never what it points to)",
                file=shown,
            )
        absolute = Path(os.path.abspath(outdir))
        parent = absolute.parent
        _check_parent(parent, shown)
        real = Path(os.path.realpath(parent)) / absolute.name
        cwd = Path(os.path.realpath(Path.cwd()))
        if real.exists() and not real.is_dir():
            raise OutputError("exists and is not a folder", file=shown)
        replace = False
        if real.is_dir():
            if _is_within(cwd, real):
                what = "the current folder" if real == cwd else "a parent of the current folder"
                raise OutputError(
                    f"is {what}: caffe2torch never replaces it; give a new folder with -o",
                    file=shown,
                )
            for p in inputs:
                if p is None:
                    continue
                rp = Path(os.path.realpath(os.path.abspath(p)))
                if _is_within(rp, real):
                    what = "holds" if rp.parent == real else "is a parent of"
                    raise OutputError(
                        f"{what} an input of this run ({p}): caffe2torch never replaces it; "
                        "give a new folder with -o",
                        file=shown,
                    )
            try:
                empty = not any(real.iterdir())
            except OSError as e:
                raise OutputError(f"cannot be listed: {e.strerror or e}", file=shown) from None
            if not empty:
                if not overwrite:
                    raise OutputError(
                        "the folder exists and is not empty: pass --overwrite to replace a "
                        "folder caffe2torch wrote, or give a new folder",
                        file=shown,
                    )
                why = written_by_us(real)
                if why:
                    raise OutputError(
                        f"--overwrite replaces only a folder caffe2torch wrote, and {why}; "
                        "give a new folder",
                        file=shown,
                    )
                replace = True
        _probe(parent, shown, absolute.name)
        return cls(Path(outdir), replace)

    @classmethod
    def file(cls, out: str | Path, *, inputs: Iterable[Path | None], overwrite: bool) -> "Destination":
        out = Path(out)
        _check_name(out)
        if out.is_symlink():
            raise OutputError("is a symbolic link: give the file itself", file=out)
        absolute = Path(os.path.abspath(out))
        _check_parent(absolute.parent, out, what="the folder to write into")
        real = Path(os.path.realpath(absolute.parent)) / absolute.name
        if real.is_dir():
            raise OutputError("is a folder; give the file to write", file=out)
        for p in inputs:
            if p is not None and Path(os.path.realpath(os.path.abspath(p))) == real:
                raise OutputError(
                    f"is an input of this run ({p}): caffe2torch never overwrites its input",
                    file=out,
                )
        if real.exists():
            if not real.is_file():
                raise OutputError("exists and is not a regular file", file=out)
            if not overwrite:
                raise OutputError("exists: pass --overwrite to replace it", file=out)
        _probe(absolute.parent, out, absolute.name)
        return cls(out, real.exists(), is_file=True)

    def write_folder(self, fill: Callable[[Path], None]) -> Path:
        """Call ``fill(tmp)`` to write the files into a temporary folder, then put it in
        place (see the module docstring)."""
        outdir = self.path
        parent = Path(os.path.abspath(outdir)).parent
        old = tmp = None
        try:
            with no_interrupt():
                try:
                    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=parent))
                except OSError as e:
                    raise OutputError(f"cannot write: {e.strerror or e}", file=parent) from None
            os.chmod(tmp, folder_mode())
            with _writing(outdir):
                fill(tmp)
                settle_tree(tmp)  # normal modes, and every file on disk before the rename
                with no_interrupt():
                    if self.replace and outdir.exists():
                        why = written_by_us(outdir)  # again: it may have changed meanwhile
                        if why:
                            raise OutputError(f"--overwrite refused: {why}", file=outdir)
                        old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".old", dir=parent))
                        os.rename(outdir, old / "x")
                    try:
                        os.rename(tmp, outdir)
                    except BaseException:
                        if old is not None:
                            os.rename(old / "x", outdir)
                            os.rmdir(old)
                            old = None
                        raise
                    fsync_folder(parent)  # the rename itself on disk
                    if old is not None:
                        shutil.rmtree(old, ignore_errors=True)
                        old = None
                    WRITTEN.append(outdir)
        except BaseException:
            with no_interrupt():
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                if old is not None and not outdir.exists() and (old / "x").exists():
                    os.rename(old / "x", outdir)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            raise
        return outdir


def _check_name(path: Path) -> None:
    """A path the OS can take at all (each name at most 255 bytes, the whole at most 4096)."""
    raw = os.fsencode(os.path.abspath(path))
    if len(raw) >= 4096 or any(len(part) > 255 for part in raw.split(b"/")):
        raise OutputError("cannot be written: File name too long", file=path)
    if b"\0" in raw:
        raise OutputError("cannot be written: the name holds a NUL character", file=path)


def _check_parent(parent: Path, shown: Path, what: str = "the folder to write into") -> None:
    if not parent.exists():
        raise OutputError(f"{what} does not exist", file=shown)
    if not parent.is_dir():
        raise OutputError(f"{what} is not a folder", file=shown)


def _probe(parent: Path, shown: Path, name: str) -> None:
    """Can we create entries in ``parent``? (A real try, removed at once: permissions, a
    read-only or special file system, a name that is too long.)"""
    try:
        probe = tempfile.mkdtemp(prefix=f".{name[:200]}.", suffix=".probe", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise OutputError(f"cannot be written: {e.strerror or e}", file=shown) from None
    if len(os.fsencode(name)) > 255:
        raise OutputError("cannot be written: File name too long", file=shown)


@contextlib.contextmanager
def _writing(path: Path):
    """OS errors of writing (a full disk, a file system that went read-only) as one line."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", file=path) from None


@contextlib.contextmanager
def no_interrupt():
    """Ctrl-C held back (delivered right after) while the output is put in place, so that an
    interruption never leaves it half-swapped: before, nothing changed; after, it is done."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    if main and hasattr(signal, "pthread_sigmask"):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    else:  # pragma: no cover
        yield


# The outputs completed by this process (the CLI says so when Ctrl-C comes after them).
WRITTEN: list[Path] = []


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux: a
    momentary ``os.umask(0)`` would give another thread's new files mode 0666)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode of a new file, as ``open()`` gives it: 0666 less the umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode of a new folder, as ``mkdir`` gives it: 0777 less the umask."""
    return 0o777 & ~current_umask()


def fsync_folder(path: Path) -> None:
    """A folder's entries on disk (a rename or a new file is durable only once its folder is
    synced). A file system that cannot sync folders (EINVAL) is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # not readable, or not a folder we can open: nothing to sync through
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def settle_tree(root: Path) -> None:
    """Before a written folder is put in place: every file under ``root`` gets mode 0666 and
    every folder 0777, less the umask (what ``open()`` and ``mkdir`` give, whatever wrote
    them: ``mkstemp`` gives 0600, ``mkdtemp`` 0700), and each is synced to disk, files first,
    then the folders from the deepest up. Links are left alone."""
    fmode, dmode = file_mode(), folder_mode()
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not stat.S_ISREG(os.lstat(p).st_mode):
                continue
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                if stat.S_IMODE(os.fstat(fd).st_mode) != fmode:
                    os.fchmod(fd, fmode)
                os.fsync(fd)
            finally:
                os.close(fd)
        if stat.S_IMODE(os.lstat(dirpath).st_mode) != dmode:
            os.chmod(dirpath, dmode)
        fsync_folder(Path(dirpath))


@contextlib.contextmanager
def atomic_file(path: Path):
    """A binary file written beside ``path`` and renamed onto it only when complete."""
    tmp = None
    try:
        with no_interrupt(), _writing(path):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
            f = os.fdopen(fd, "wb")
        with _writing(path):
            with f:
                yield f
                f.flush()
                os.fchmod(f.fileno(), file_mode())  # as open() would make it, not mkstemp's 0600
                os.fsync(f.fileno())  # its bytes on disk before the rename makes it the file
            with no_interrupt():
                os.replace(tmp, path)
                tmp = None
            fsync_folder(path.parent)  # the rename itself on disk
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def save_weights(state: dict, path: Path, weights_format: str) -> None:
    """The state_dict as ``model.pth`` (torch.save of tensors only) or safetensors."""
    try:
        if weights_format == "safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        else:
            import torch

            torch.save(state, path)
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", file=path) from None
    except RuntimeError as e:  # torch's zip writer: "PytorchStreamWriter failed writing file"
        raise OutputError(f"cannot write: {_first_line(e)}", file=path) from None


# ------------------------------------------------------------------------------- hashing
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Digest(threading.Thread):
    """sha256 of a file in the background (hashlib releases the GIL), from the bytes already
    read when there are any; ``str()`` waits for it."""

    def __init__(self, path: Path, data: bytes | None) -> None:
        super().__init__(daemon=True)
        self.path, self.data, self.value, self.error = path, data, "", None
        self.start()

    def run(self) -> None:
        try:
            self.value = (
                hashlib.sha256(self.data).hexdigest() if self.data is not None else sha256_file(self.path)
            )
        except OSError as e:
            self.error = e
        self.data = None

    def __str__(self) -> str:
        self.join()
        if self.error is not None:
            raise WeightsError(f"cannot read: {self.error.strerror or self.error}", file=self.path)
        return self.value


# ----------------------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """``conversion.json``: what a folder holds and how it was made. Written by
    :meth:`to_dict` in a fixed key order (byte-identical for the same conversion), read back
    and checked field by field by :func:`read_manifest`.

    ``inputs``/``outputs``: ``{"name", "shape"}`` per blob; ``layer_map``: Caffe layer ->
    attribute of the model; ``sources``: the files read, with their sha256; ``options``: the
    phase, stages and input flags; ``trace``: what each forward statement computes (the
    contract with ``verify``, see :mod:`caffe2torch.verify.instrument`)."""

    class_name: str
    weights_file: str
    inputs: list[dict]
    outputs: list[dict]
    trace: list[dict]
    engine: dict = field(default_factory=lambda: {"name": "native"})
    layer_map: dict[str, str] = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    plugins: list[dict] = field(default_factory=list)  # the --plugin files (caffe2torch.plugins)
    options: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    preprocess: dict | None = None
    verification: dict | None = None
    versions: dict = field(default_factory=dict)
    format: str = FORMAT
    model_file: str = MODEL_FILE

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "engine": self.engine,
            "class_name": self.class_name,
            "model_file": self.model_file,
            "weights_file": self.weights_file,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "layer_map": self.layer_map,
            "sources": self.sources,
            **({"plugins": self.plugins} if self.plugins else {}),
            "options": self.options,
            "notes": self.notes,
            "preprocess": self.preprocess,
            "verification": self.verification,
            "versions": self.versions,
            "trace": self.trace,
        }

    def source(self, key: str) -> dict:
        """``sources[key]`` ("prototxt", "weights"), {} when absent."""
        return self.sources.get(key) or {}


# ------------------------------------------------------------------------------ reading
def _first_line(e: BaseException) -> str:
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()
    return type(e).__name__


class _Check:
    """Type checks of a conversion.json, each failure one line naming the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, what: str):
        raise FolderError(f"'{field}' {what} (edited by hand? convert again)", file=self.path)

    def str(self, value, field: str, allow_none: bool = False) -> str | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, str):
            self.fail(field, "must be text")
        return value

    def int(self, value, field: str, low: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "must be a whole number")
        if low is not None and value < low:
            self.fail(field, f"must be at least {low}")
        return value

    def num(self, value, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(field, "must be a finite number")
        return float(value)

    def list(self, value, field: str) -> list:
        if not isinstance(value, list):
            self.fail(field, "must be a list")
        return value

    def dict(self, value, field: str, allow_none: bool = False) -> dict | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, dict):
            self.fail(field, "must be an object")
        return value

    def shape(self, value, field: str, dynamic: bool = False) -> list[int]:
        self.list(value, field)
        if len(value) > 32:
            self.fail(field, "has more than 32 axes")
        for d in value:
            self.int(d, field)
            if not (d > 0 or (dynamic and d == -1)) or d >= 1 << 31:
                self.fail(field, f"has a dimension {d} that is not a positive int32")
        return value


def parse_json(text: str, path: Path, error: type[CaffeError]):
    """JSON text of a folder's file, or one line naming it (NaN and infinities are not JSON,
    nor is nesting too deep to read)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error("is not JSON caffe2torch reads (nested too deeply)", file=path) from None
    except ValueError as e:
        raise error(f"is not JSON ({_json_error(e)})", file=path) from None


def read_manifest(outdir: Path) -> Manifest:
    """The validated ``conversion.json`` of a converted folder."""
    outdir = Path(outdir)
    try:
        st = os.stat(outdir)
    except FileNotFoundError:
        raise FolderError("no such folder", file=outdir) from None
    except OSError as e:
        raise FolderError(f"cannot be read: {e.strerror or e}", file=outdir) from None
    if not stat.S_ISDIR(st.st_mode):
        raise FolderError("is not a folder (give the folder convert wrote)", file=outdir)
    path = outdir / MANIFEST
    text = read_text(path, FolderError, "a conversion.json", limit=TEXT_LIMIT)
    manifest = parse_json(text, path, FolderError)
    c = _Check(path)
    c.dict(manifest, "the file")
    for key in ("class_name", "model_file", "weights_file", "inputs", "outputs", "trace"):
        if key not in manifest:
            raise FolderError(
                f"has no '{key}' (written by an older caffe2torch? convert again)", file=path
            )
    fmt = manifest.get("format")
    if fmt is not None and not str(fmt).startswith("caffe2torch-conversion/"):
        c.fail("format", f"is {str(fmt)[:40]!r}, not a caffe2torch conversion")
    name = c.str(manifest["class_name"], "class_name")
    if not (name.isidentifier() and name.isascii()):
        c.fail("class_name", "is not a Python class name")
    if manifest["model_file"] != MODEL_FILE:
        c.fail("model_file", f"must be {MODEL_FILE}")
    if manifest["weights_file"] not in WEIGHT_FILES.values():
        c.fail("weights_file", f"must be {' or '.join(WEIGHT_FILES.values())}")
    for key, dynamic in (("inputs", False), ("outputs", True)):
        items = c.list(manifest[key], key)
        if key == "inputs" and not items:
            c.fail(key, "is empty")
        for i, item in enumerate(items):
            c.dict(item, f"{key}[{i}]")
            c.str(item.get("name"), f"{key}[{i}].name")
            c.shape(item.get("shape"), f"{key}[{i}].shape", dynamic=dynamic)
    layer_map = c.dict(manifest.get("layer_map", {}), "layer_map")
    for k, v in layer_map.items():
        c.str(v, f"layer_map.{k}")
    sources = c.dict(manifest.get("sources", {}), "sources")
    for key in ("prototxt", "weights", "proto"):
        src = c.dict(sources.get(key), f"sources.{key}", allow_none=True) or {}
        for f in ("file", "sha256", "path", "format"):
            c.str(src.get(f), f"sources.{key}.{f}", allow_none=True)
        if "seed" in src:
            c.int(src["seed"], f"sources.{key}.seed", low=0)
    plugins = c.list(manifest.get("plugins", []), "plugins")
    for i, rec in enumerate(plugins):
        c.dict(rec, f"plugins[{i}]")
        for f in ("file", "path", "sha256"):
            c.str(rec.get(f), f"plugins[{i}].{f}", allow_none=f == "path")
        for f in ("types", "python"):
            for j, registered in enumerate(c.list(rec.get(f, []), f"plugins[{i}].{f}")):
                c.str(registered, f"plugins[{i}].{f}[{j}]")
    options = c.dict(manifest.get("options", {}), "options")
    if options.get("phase", "test") not in ("test", "train"):
        c.fail("options.phase", "must be 'test' or 'train'")
    for i, s in enumerate(c.list(options.get("stages", []), "options.stages")):
        c.str(s, f"options.stages[{i}]")
    if not isinstance(options.get("ignore_unknown_fields", False), bool):
        c.fail("options.ignore_unknown_fields", "must be true or false")
    pre = c.dict(manifest.get("preprocess"), "preprocess", allow_none=True)
    if pre is not None:
        check_preprocess(pre, c)
    for i, step in enumerate(c.list(manifest["trace"], "trace")):
        where = f"trace[{i}]"
        c.dict(step, where)
        for j, layer in enumerate(c.list(step.get("layers"), f"{where}.layers")):
            c.str(layer, f"{where}.layers[{j}]")
        st = c.list(step.get("statements"), f"{where}.statements")
        if len(st) != 2:
            c.fail(f"{where}.statements", "must be [start, end]")
        for s in st:
            c.int(s, f"{where}.statements", low=0)
        for rw in ("reads", "writes"):
            for j, ref in enumerate(c.list(step.get(rw), f"{where}.{rw}")):
                at = f"{where}.{rw}[{j}]"
                c.list(ref, at)
                if len(ref) != 3:
                    c.fail(at, "must be [variable, layer, top]")
                var = c.str(ref[0], at)
                if not var.isidentifier():
                    c.fail(at, "names a variable that is not a Python identifier")
                c.str(ref[1], at)
                c.int(ref[2], at, low=0)
    engine = c.dict(manifest.get("engine", {"name": "native"}), "engine")
    notes = c.list(manifest.get("notes", []), "notes")
    for i, note in enumerate(notes):
        c.str(note, f"notes[{i}]")
    return Manifest(
        class_name=name,
        weights_file=manifest["weights_file"],
        inputs=manifest["inputs"],
        outputs=manifest["outputs"],
        trace=manifest["trace"],
        engine=engine,
        layer_map=layer_map,
        sources=sources,
        plugins=plugins,
        options=options,
        notes=notes,
        preprocess=pre,
        verification=c.dict(manifest.get("verification"), "verification", allow_none=True),
        versions=c.dict(manifest.get("versions", {}), "versions"),
        format=fmt or FORMAT,
    )


def check_preprocess(pre: dict, c: _Check | None = None, path: Path | None = None) -> dict:
    """Type checks of a ``preprocess`` record (conversion.json or preprocess.json)."""
    c = c or _Check(path or Path(PREPROCESS_JSON))
    c.dict(pre, "preprocess")
    if not c.list(pre.get("inputs"), "preprocess.inputs"):
        c.fail("preprocess.inputs", "is empty")
    for i, out in enumerate(c.list(pre.get("outputs", []), "preprocess.outputs")):
        c.dict(out, f"preprocess.outputs[{i}]")
        c.str(out.get("name"), f"preprocess.outputs[{i}].name")
        if not isinstance(out.get("softmax", False), bool):
            c.fail(f"preprocess.outputs[{i}].softmax", "must be true or false")
    for i, rec in enumerate(c.list(pre.get("inputs", []), "preprocess.inputs")):
        at = f"preprocess.inputs[{i}]"
        c.dict(rec, at)
        c.str(rec.get("name"), f"{at}.name")
        if rec.get("kind") not in ("image", "tensor"):
            c.fail(f"{at}.kind", "must be 'image' or 'tensor'")
        how = c.dict(rec.get("model_input"), f"{at}.model_input", allow_none=True) or {}
        if not isinstance(how.get("reverse_channels", False), bool):
            c.fail(f"{at}.model_input.reverse_channels", "must be true or false")
        if how.get("divide_by") is not None:
            if c.num(how["divide_by"], f"{at}.model_input.divide_by") == 0:
                c.fail(f"{at}.model_input.divide_by", "must not be 0")
        if how.get("add_mean") is not None:
            for m in c.list(how["add_mean"], f"{at}.model_input.add_mean"):
                c.num(m, f"{at}.model_input.add_mean")
        if rec.get("kind") == "image":
            shape = c.shape(rec.get("shape"), f"{at}.shape")
            if len(shape) != 4:
                c.fail(f"{at}.shape", "must be N, C, H, W")
            if rec.get("scale") is not None:
                c.num(rec["scale"], f"{at}.scale")
            mean = rec.get("mean")
            if mean is not None and mean != MEAN_FILE:
                for m in c.list(mean, f"{at}.mean"):
                    c.num(m, f"{at}.mean")
            for f in ("resize", "crop"):
                if rec.get(f) is not None:
                    size = c.shape(rec[f], f"{at}.{f}")
                    if len(size) != 2:
                        c.fail(f"{at}.{f}", "must be [height, width]")
            for f in ("channel_order", "caffe_order"):
                if rec.get(f) not in ("BGR", "RGB", "gray"):
                    c.fail(f"{at}.{f}", "must be BGR, RGB or gray")
            c.str(rec.get("mean_missing"), f"{at}.mean_missing", allow_none=True)
    return pre


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _json_error(e: ValueError) -> str:
    return str(e).split(": line")[0] if isinstance(e, json.JSONDecodeError) else str(e)


def load_state(path: Path) -> dict[str, Any]:
    """A converted folder's weights (``model.pth`` with ``weights_only``, or safetensors):
    a dict of tensors, or one line saying why not (never torch's advice to load it unsafely)."""
    import torch

    check_file(path, WeightsError, "the model's weights", limit=WEIGHTS_LIMIT)
    with reading(path, WeightsError, "the model's weights"):
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                import warnings

                with warnings.catch_warnings():  # torch's notes on old pickle protocols
                    warnings.simplefilter("ignore")
                    state = torch.load(path, weights_only=True, map_location="cpu")
        except OSError:
            raise
        except MemoryError:
            raise WeightsError("not enough memory to load it", file=path) from None
        except Exception as e:  # noqa: BLE001 - every way a file can fail to load is one message
            raise WeightsError(f"cannot be loaded as a state_dict: {_load_reason(e, path)}", file=path) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError("does not hold a state_dict (names -> tensors)", file=path)
    return state


def _load_reason(e: Exception, path: Path) -> str:
    import pickle
    import zipfile

    text = str(e)
    if path.suffix != ".safetensors" and not zipfile.is_zipfile(path):
        return "it is truncated or not a file torch.save wrote"
    if isinstance(e, (zipfile.BadZipFile, EOFError)) or "zip archive" in text or "central directory" in text:
        return "it is truncated or not a file torch.save wrote"
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in text:
        return (
            "it holds objects other than tensors, which caffe2torch never loads (it loads "
            "weights with weights_only: caffe2torch writes none)"
        )
    if "safetensors" in type(e).__module__ or "header" in text.lower():
        return "its safetensors header is invalid (truncated or not a safetensors file)"
    return "it is damaged (" + type(e).__name__ + ")"


def import_file(path: Path, error: type[CaffeError], what: str, prefix: str):
    """Import a folder's own Python file (``model.py``, ``preprocess.py``) under a module name
    of its own, so that several folders load into one process; one line naming the file on
    any failure. (The folder's code is run by design: it is what loading a model means.)"""
    import importlib.util

    check_file(path, error, what)
    name = f"{prefix}_{hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise error(f"cannot be imported: {e.msg} (line {e.lineno})", file=path) from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the file's own failure, one line
        sys.modules.pop(name, None)
        raise error(f"cannot be imported: {type(e).__name__}: {_first_line(e)}", file=path) from None
    return module


def import_model(outdir: Path, manifest: Manifest):
    """A folder's model class, from its ``model.py`` (see :func:`import_file`)."""
    path = outdir / MODEL_FILE
    module = import_file(path, FolderError, "the model's code (model.py)", "caffe2torch_model")
    cls = getattr(module, manifest.class_name, None)
    if not isinstance(cls, type):
        raise FolderError(f"has no class {manifest.class_name} (conversion.json names it)", file=path)
    return cls


def load_converted(outdir: str | Path):
    """Build the model of a converted folder and load its weights (``weights_only``); returns
    it in eval mode. Every file is checked; any problem is one :class:`CaffeError` line."""
    outdir = Path(outdir)
    manifest = read_manifest(outdir)
    cls = import_model(outdir, manifest)
    state = load_state(outdir / manifest.weights_file)
    try:
        model = cls()
    except (Exception, SystemExit) as e:  # noqa: BLE001
        raise FolderError(
            f"{manifest.class_name}() fails: {type(e).__name__}: {_first_line(e)}",
            file=outdir / MODEL_FILE,
        ) from None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise FolderError(f"{manifest.class_name} is not a torch nn.Module", file=outdir / MODEL_FILE)
    try:
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - missing/unexpected keys, wrong shapes
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else _first_line(e)
        raise WeightsError(
            f"does not fit {MODEL_FILE}: {detail}", file=outdir / manifest.weights_file
        ) from None
    return model.eval()
