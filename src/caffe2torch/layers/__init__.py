"""The layer registry: one module per family of Caffe layer types.

Every module in this package is imported here and registers its classes with
:func:`register`, which rejects a type name registered twice. Adding a layer type means
adding (or editing) one module: nothing else lists them.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import DYNAMIC, Layer, LayerError, Schema, Shape, fmt_shape

_REGISTRY: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: register ``cls`` for each name in ``cls.TYPES``."""
    if not cls.TYPES:
        raise TypeError(f"{cls.__name__} declares no TYPES")
    for name in cls.TYPES:
        if name in _REGISTRY:
            raise TypeError(
                f"layer type '{name}' registered twice: {_REGISTRY[name].__name__} and {cls.__name__}"
            )
        _REGISTRY[name] = cls
    return cls


def layer_class(type_name: str) -> type[Layer] | None:
    return _REGISTRY.get(type_name)


def known_types() -> list[str]:
    return sorted(_REGISTRY)


def fork_schemas() -> list[tuple[str, Schema]]:
    """(family class, what it adds to Caffe's schema) for every registered class that declares
    a ``SCHEMA`` of its own (not one it inherits), in a fixed order (the message classes are
    built from them: see caffe/schema.py)."""
    declared = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in _REGISTRY.values() if "SCHEMA" in vars(cls)}
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
    "convertible_types", "fork_schemas", "register",
]
