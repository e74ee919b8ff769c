"""The layer registry: one module per family of Caffe layer types.

Every module in this package is imported here and registers its classes with
:func:`register`, which rejects a type name registered twice. Adding a layer type means
adding (or editing) one module: nothing else lists them.
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
from typing import Iterator

from .base import DYNAMIC, Layer, LayerError, Schema, Shape, fmt_shape

_REGISTRY: dict[str, type[Layer]] = {}
# Python layers recognised by their ``module.layer`` (``python_param``) and converted natively:
# their code is never imported; the class reimplements it.
_PYTHON: dict[str, type[Layer]] = {}


class RegistrationError(TypeError):
    """A class registered for a name another class has, or registered for no name."""


def _add(registry: dict[str, type[Layer]], names, cls: type[Layer], what: str, attr: str) -> type[Layer]:
    if not names:
        raise RegistrationError(f"{cls.__name__} declares no {attr}")
    for name in names:
        if name in registry:
            raise RegistrationError(f"{what} '{name}' registered twice: {registry[name].__name__} and {cls.__name__}")
        registry[name] = cls
    return cls


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: register ``cls`` for each name in ``cls.TYPES``."""
    return _add(_REGISTRY, cls.TYPES, cls, "layer type", "TYPES")


def register_python(cls: type[Layer]) -> type[Layer]:
    """Class decorator: register ``cls`` for each ``module.layer`` in ``cls.PYTHON``, the Caffe
    ``Python`` layers it reimplements (their code is never imported)."""
    return _add(_PYTHON, cls.PYTHON, cls, "Python layer", "PYTHON names")


def python_qualname(layer) -> str:
    """``module.layer`` of a Python layer's ``python_param``."""
    p = layer.python_param
    return f"{p.module or '?'}.{p.layer or '?'}"


def layer_class(type_name: str, layer=None) -> type[Layer] | None:
    """The family of ``type_name``; for a ``Python`` layer given with its LayerParameter
    ``layer``, the class registered for its ``module.layer`` when there is one."""
    if type_name == "Python" and layer is not None:
        cls = _PYTHON.get(python_qualname(layer))
        if cls is not None:
            return cls
    return _REGISTRY.get(type_name)


def python_layers() -> list[str]:
    """The ``module.layer`` names of the Python layers converted natively."""
    return sorted(_PYTHON)


def python_class(name: str) -> type[Layer] | None:
    """The class registered for the Python layer ``module.layer``."""
    return _PYTHON.get(name)


@contextlib.contextmanager
def registrations_undone() -> Iterator[None]:
    """What is registered inside the block (a plugin's converters, for one command) is
    unregistered when it ends."""
    saved = dict(_REGISTRY), dict(_PYTHON)
    try:
        yield
    finally:
        for registry, before in zip((_REGISTRY, _PYTHON), saved):
            registry.clear()
            registry.update(before)


def known_types() -> list[str]:
    return sorted(_REGISTRY)


def fork_schemas() -> list[tuple[str, Schema]]:
    """(family class, what it adds to Caffe's schema) for every registered class that declares
    a ``SCHEMA`` of its own (not one it inherits), in a fixed order (the message classes are
    built from them: see caffe/schema.py)."""
    classes = [*_REGISTRY.values(), *_PYTHON.values()]
    declared = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in classes if "SCHEMA" in vars(cls)}
    return [(who, declared[who].SCHEMA) for who in sorted(declared)]


def emits(type_name: str) -> bool:
    """Whether the family of ``type_name`` has a PyTorch form (some parameters may still be
    refused, with the reason)."""
    cls = _REGISTRY[type_name]
    return cls.emit is not Layer.emit


def convertible_types() -> list[str]:
    """The types a net may hold and still convert: those with a PyTorch form, the data
    layers (they become the model's inputs) and the training-only layers (dropped from a
    deploy graph). What the corpus sweep promises; ``Python`` layers are never run."""
    return sorted(
        t for t, cls in _REGISTRY.items()
        if t != "Python" and (emits(t) or cls.SOURCE or cls.TRAINING_ONLY)
    )


for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod != "base":
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = [
    "DYNAMIC", "Layer", "LayerError", "Shape", "fmt_shape", "layer_class", "known_types", "emits",
    "convertible_types", "fork_schemas", "register", "register_python", "python_layers",
    "python_qualname", "python_class", "registrations_undone", "RegistrationError",
]
