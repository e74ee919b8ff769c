"""Python names from Caffe names, and text from inputs made safe to put in generated code.

Caffe names are free text (``inception_3a/1x1``, ``conv1/dw``, ``fc7-conv``). Like torch.fx,
every character that cannot be in an identifier becomes ``_``, a leading digit gets a ``_``
prefix, and keywords, builtins that generated code uses and ``nn.Module``'s own attributes get
a ``_`` suffix. :class:`Namer` hands out unique names in one namespace.
"""

from __future__ import annotations

import keyword
import re

from torch import nn

from ..errors import CaffeError, safe_text
from ..layers.base import HELPER_NAMES

_INVALID = re.compile(r"[^0-9A-Za-z_]+")
# Names generated code refers to, which a local variable must not shadow.
CODE_NAMES = frozenset({"self", "torch", "nn", "F", "Tensor", "float", "tuple", "int", "super"})
MODULE_ATTRS = frozenset(dir(nn.Module))


def sanitize(name: str, *, reserved: frozenset[str] | set[str] = frozenset()) -> str:
    """``inception_3a/1x1`` -> ``inception_3a_1x1``; ``1x1`` -> ``_1x1``; ``def`` -> ``def_``."""
    s = _INVALID.sub("_", name).strip("_") or "layer"
    if s[0].isdigit():
        s = "_" + s
    while keyword.iskeyword(s) or keyword.issoftkeyword(s) or s in reserved:
        s += "_"
    return s


def class_name(name: str) -> str:
    """A class name from the net's name: sanitised, first letter upper case."""
    s = sanitize(name)
    s = s.lstrip("_") or "Net"
    if s[0].isdigit():
        s = "Net" + s
    return s[0].upper() + s[1:]


def is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and name.isascii()


def check_class_name(name: str) -> None:
    """A ``--class-name`` must be a plain identifier that does not shadow a name model.py
    uses (``nn``, ``torch``, ``F``, ``Tensor``, builtins, helpers such as ``Scale``)."""
    if not is_identifier(name) or keyword.issoftkeyword(name):
        raise CaffeError(f"--class-name '{safe_text(name, 60)}' is not a Python identifier")
    if name in CODE_NAMES or name in HELPER_NAMES or name.startswith("__") or name == "self":
        raise CaffeError(
            f"--class-name '{name}': model.py uses that name itself; choose another"
        )


class Namer:
    """Unique names in one namespace: a clash gets ``_1``, ``_2``..."""

    def __init__(self, reserved: frozenset[str] | set[str] = frozenset()) -> None:
        self.reserved = frozenset(reserved)
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        base = sanitize(name, reserved=self.reserved)
        out, i = base, 0
        while out in self.used:
            i += 1
            out = f"{base}_{i}"
        self.used.add(out)
        return out

    def free(self, name: str) -> None:
        self.used.discard(name)
