"""Plugins: converters for layer types caffe2torch lacks, from Python files the user names.

``--plugin my_layers.py`` imports that file (under a private module name) for the one command,
and the classes it registers with ``caffe2torch.layers.register`` (a layer type) or
``register_python`` (a Caffe ``Python`` layer, by its ``module.layer``) convert as the
built-in families do: the same :class:`~caffe2torch.layers.Layer` interface (shape rule,
weights, emission with its helpers, reference capability, ``SCHEMA`` for its parameters).

This is the one place caffe2torch runs code the user did not get from it, and only code the
user named: a plugin is never found or loaded implicitly (``verify`` of a folder converted with
one requires it again, with the same sha256, before anything of it runs). What it registered
is removed again when the command ends, so nothing stays registered in a process.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from . import layers
from .caffe import schema
from .errors import MiB, CaffeError, check_file, read_input
from .layers.base import HELPER_NAMES

PLUGIN_LIMIT = 16 * MiB
MODULE_PREFIX = "_caffe2torch_plugin_"


class PluginError(CaffeError):
    """A ``--plugin`` file cannot be loaded, or is not the one a folder was converted with."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: its file, sha256, and what it registered."""

    path: Path
    sha256: str
    types: tuple[str, ...]
    python: tuple[str, ...]

    def record(self, outdir: Path | None = None) -> dict:
        """What conversion.json keeps: the file, its sha256, the layer types and Python layers
        it registered, and, given ``outdir`` (``--record-paths``), its path from the folder
        (as the sources'). ``verify`` takes the plugin again by ``--plugin`` either way."""
        out: dict = {"file": self.path.name}
        if outdir is not None:
            path = self.path.as_posix()
            with contextlib.suppress(ValueError):  # another drive
                path = Path(os.path.relpath(self.path.absolute(), Path(outdir).absolute())).as_posix()
            out["path"] = path
        return {**out, "sha256": self.sha256, "types": list(self.types), "python": list(self.python)}


_LOADED: list[Plugin] = []


def loaded() -> list[Plugin]:
    """The plugins loaded now, in the order given."""
    return list(_LOADED)


@contextlib.contextmanager
def plugins_loaded(paths: Iterable[str | Path]) -> Iterator[list[Plugin]]:
    """Load each plugin file for the ``with`` block; afterwards the registry, the schema and
    ``sys.modules`` are as they were."""
    helpers = set(HELPER_NAMES)
    before = list(_LOADED)
    modules: list[str] = []
    try:
        with layers.registrations_undone():
            for path in paths:
                _LOADED.append(_load(Path(path), modules))
            yield list(_LOADED)
    finally:
        HELPER_NAMES.intersection_update(helpers)
        _LOADED[:] = before
        for name in modules:
            sys.modules.pop(name, None)
        if modules:
            schema.rebuild()


def _load(path: Path, modules: list[str]) -> Plugin:
    if path.suffix != ".py":
        check_file(path, PluginError, "a Python plugin (.py)", limit=PLUGIN_LIMIT)
        raise PluginError("is not a .py file: a plugin is a Python file", file=path)
    data = read_input(path, PluginError, "a Python plugin (.py)", limit=PLUGIN_LIMIT)
    digest = hashlib.sha256(data).hexdigest()
    for other in _LOADED:
        if other.sha256 == digest:
            raise PluginError(f"is given twice (the same file as {other.path})", file=path)
    types_before, python_before = set(layers.known_types()), set(layers.python_layers())
    name = f"{MODULE_PREFIX}{digest[:16]}"
    modules.append(name)
    _execute(data, path, name)
    new_types = tuple(sorted(set(layers.known_types()) - types_before))
    new_python = tuple(sorted(set(layers.python_layers()) - python_before))
    if not new_types and not new_python:
        raise PluginError(
            "registers no converter: decorate a subclass of caffe2torch.layers.Layer with "
            "@register (a layer type) or @register_python (a Python layer by module.layer)",
            file=path,
        )
    for cls in [layers.layer_class(t) for t in new_types] + [layers.python_class(p) for p in new_python]:
        if not (isinstance(cls, type) and issubclass(cls, layers.Layer)):
            raise PluginError(f"registers {cls!r}, which is not a caffe2torch.layers.Layer subclass", file=path)
    try:
        schema.rebuild()
    except (TypeError, ValueError, KeyError) as e:
        raise PluginError(f"its SCHEMA cannot be added to Caffe's: {_first_line(e)}", file=path) from None
    return Plugin(path, digest, new_types, new_python)


def _execute(data: bytes, path: Path, name: str) -> None:
    """Run the plugin's code (the bytes hashed) as module ``name``; one line on failure."""
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(data, str(path), "exec"), module.__dict__)  # the user's own plugin, by name
    except SyntaxError as e:
        raise PluginError(f"cannot be imported: {e.msg}", file=path, line=e.lineno) from None
    except layers.RegistrationError as e:  # a type already registered (a built-in one, say)
        raise PluginError(f"cannot be loaded: {_first_line(e)}", file=path, line=_line_in(e, path)) from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the plugin's own failure, one line
        raise _failed(e, path) from None


def _failed(e: BaseException, path: Path) -> PluginError:
    return PluginError(
        f"cannot be imported: {type(e).__name__}: {_first_line(e)}", file=path, line=_line_in(e, path)
    )


def _line_in(e: BaseException, path: Path) -> int | None:
    """The last line of the plugin file in the traceback of ``e``."""
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _first_line(e: BaseException) -> str:
    return next((s.strip() for s in str(e).splitlines() if s.strip()), type(e).__name__)


# ------------------------------------------------------------------ what a folder recorded
def check_recorded(recorded: Sequence[dict], given: Sequence[str | Path], manifest: Path) -> None:
    """Before any plugin runs: ``given`` must be exactly the plugins of ``recorded`` (the
    ``plugins`` of a folder's conversion.json), the same files by sha256."""
    want = {r.get("sha256"): r for r in recorded}
    seen = set()
    for path in given:
        path = Path(path)
        data = read_input(path, PluginError, "a Python plugin (.py)", limit=PLUGIN_LIMIT)
        digest = hashlib.sha256(data).hexdigest()
        if digest in want:
            seen.add(digest)
            continue
        same_name = [r for r in recorded if r.get("file") == path.name]
        if same_name:
            raise PluginError(
                f"is not the plugin this model was converted with (sha256 {digest[:16]}, "
                f"{manifest.name} says {str(same_name[0].get('sha256'))[:16]})",
                file=path,
            )
        raise PluginError(f"was not used to convert this model ({manifest} names no such plugin)", file=path)
    missing = [r for sha, r in want.items() if sha not in seen]
    if missing:
        names = ", ".join(f"{r.get('file')} (sha256 {str(r.get('sha256'))[:16]})" for r in missing)
        raise PluginError(
            f"this model was converted with the plugin(s) {names}: pass the same --plugin again "
            "(verify runs no plugin it is not given)",
            file=manifest,
        )


def check_model_imports(code: str) -> None:
    """model.py imports only torch, whatever a plugin's emission put in it."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        bad = [n for n in names if n.split(".")[0] not in ("torch", "__future__")]
        if bad:
            who = ", ".join(p.path.name for p in _LOADED) or "a layer's emission"
            raise PluginError(
                f"the generated model.py would import {', '.join(bad)} (line {node.lineno}): it must "
                f"import only torch, so a converter's code goes into its Helpers (from {who})"
            )
