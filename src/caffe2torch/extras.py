"""The optional dependencies (``pip install 'caffe2torch[EXTRA]'``), imported only where used.

``import caffe2torch``, ``convert`` (without its check), ``inspect`` and loading a converted
folder need only the core dependencies. Each optional module is imported through
:func:`require` at the moment it is needed, so that a missing one is one line saying what
needs it and which extra installs it, never a traceback::

    cv2 = require("cv2", "verify", "verifying", error=ReferenceError)
    # -> "verifying needs OpenCV: pip install 'caffe2torch[verify]'"

The extras (``pyproject.toml``): ``verify`` (OpenCV), ``images`` (Pillow), ``hdf5`` (h5py),
``onnx`` (onnx, onnxruntime, onnxscript), ``report`` (graphviz, matplotlib), ``all``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import CaffeError

# Import name -> the name a user knows it by (what pip installs).
NAMES = {
    "cv2": "OpenCV",
    "PIL": "Pillow",
    "h5py": "h5py",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxscript": "onnxscript",
    "graphviz": "graphviz",
    "matplotlib": "matplotlib",
}


class MissingExtraError(CaffeError):
    """An optional dependency is not installed, or is installed but does not import."""


def install_hint(extra: str) -> str:
    return f"pip install 'caffe2torch[{extra}]'"


def require(
    module: str,
    extra: str,
    why: str,
    *,
    error: type[CaffeError] = MissingExtraError,
    **where,
) -> ModuleType:
    """``module`` imported, or ``error`` (one line: "WHY needs NAME: pip install
    'caffe2torch[EXTRA]'"). ``where`` (``file=``, ``layer=``...) locates the error as any
    :class:`CaffeError`. A module that is there but fails to import (built for another numpy,
    a missing system library) says so, with the first line of its reason (reinstalling the
    extra would not mend it)."""
    top = module.split(".")[0]
    name = NAMES.get(top, top)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = isinstance(e, ModuleNotFoundError) and (
            e.name is None or module == e.name or module.startswith(e.name + ".")
        )
        if missing:
            raise error(f"{why} needs {name}: {install_hint(extra)}", **where) from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise error(f"{why} needs {name}, which is installed but does not import ({reason[:200]})", **where) from None


__all__ = ["MissingExtraError", "NAMES", "install_hint", "require"]
