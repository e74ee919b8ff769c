"""Which layer types the tests of tests/layers check, and against what: read statically from
their ``opencv`` / ``formula`` markers (importing the modules, running nothing). Used by
tests/test_registry.py and to generate docs/layers.md (``make docs``, tests/test_docs.py).
"""
from __future__ import annotations

import importlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from caffe2torch import layers as registry

LAYER_TESTS = Path(__file__).resolve().parent / "layers"
KINDS = ("opencv", "formula")
DOC = Path(__file__).resolve().parents[1] / "docs" / "layers.md"


def layer_test_modules() -> list:
    """The modules of tests/layers (the package ``layers``: tests/ is on sys.path, as pytest
    puts it there for tests/conftest.py)."""
    return [
        importlib.import_module(f"layers.{p.stem}") for p in sorted(LAYER_TESTS.glob("test_*.py"))
    ]


def marked_tests() -> dict[str, dict[str, list[str]]]:
    """kind ("opencv", "formula") -> layer type -> the tests that declare it. Tests marked
    xfail (a check that does not run yet) are left out."""
    out: dict[str, dict[str, list[str]]] = {k: defaultdict(list) for k in KINDS}
    for mod in layer_test_modules():
        for name, fn in sorted(vars(mod).items()):
            if not (name.startswith("test") and callable(fn)):
                continue
            marks = getattr(fn, "pytestmark", [])
            if any(m.name == "xfail" for m in marks):
                continue
            for m in marks:
                if m.name in KINDS:
                    for t in m.args:
                        out[m.name][t].append(f"tests/layers/{mod.__name__.split('.')[-1]}.py::{name}")
    return {k: dict(v) for k, v in out.items()}


def family(type_name: str) -> str:
    return registry.layer_class(type_name).__module__.rsplit(".", 1)[-1]


def _no_pytorch_form(type_name: str) -> str:
    """The reason a type of an emitting family still has no PyTorch form ("" when it has one):
    its family's emit, asked with default parameters, says so for the type itself."""
    from caffe2torch.caffe.prototxt import read_prototxt
    from caffe2torch.layers.base import EmitContext, NotConvertible

    try:
        text = f'layer {{ name: "l" type: "{type_name}" bottom: "x" top: "y" }}'
        op = registry.layer_class(type_name)(read_prototxt("probe.prototxt", text).net.layer[0])
        shape = (1, 3, 4, 4)
        op.emit(EmitContext(None, [shape], [shape], [np.zeros(s, np.float32) for s in op.weight_shapes([shape])]))
    except NotConvertible as e:
        if f"'{type_name}' has no PyTorch conversion" in str(e):
            return "no PyTorch form yet"
    except Exception:  # noqa: BLE001 - other parameters or inputs needed: it has a form
        pass
    return ""


def converts(type_name: str) -> str:
    cls = registry.layer_class(type_name)
    if type_name == "Python":
        native = ", ".join(f"`{n}`" for n in registry.python_layers())
        return f"its code is never run; converted natively: {native}"
    if cls.SOURCE:
        return "no: data layer, becomes an input"
    if cls.TRAINING_ONLY:
        return "no: training-only, dropped"
    if not registry.emits(type_name):
        return "no: no PyTorch form yet"
    gap = _no_pytorch_form(type_name)
    return f"no: {gap}" if gap else "yes"


def checked_by(type_name: str, marked: dict[str, dict[str, list[str]]]) -> str:
    cv, formula = type_name in marked["opencv"], type_name in marked["formula"]
    return {(True, True): "both", (True, False): "OpenCV", (False, True): "numpy formula test"}.get(
        (cv, formula), "—"
    )


def layers_markdown() -> str:
    marked = marked_tests()
    lines = [
        "# Layer types",
        "",
        "Generated from the layer registry (`caffe2torch.layers`) and the `opencv` / `formula`",
        "markers of the tests in `tests/layers/` by `tests/layer_checks.py`: do not edit, run",
        "`make docs` to regenerate (`tests/test_docs.py` fails when this file is out of date).",
        "",
        "**checked by**: *OpenCV*, a test compares the type's conversion with OpenCV's dnn module;",
        "*numpy formula test*, with a numpy implementation of Caffe's formula written in the test;",
        "*both*; *—*, no layer test (the corpus sweep may still compare it, `make corpus`).",
        "",
        "| type | family | converts | checked by |",
        "|---|---|---|---|",
    ]
    for t in registry.known_types():
        lines.append(f"| {t} | `layers/{family(t)}.py` | {converts(t)} | {checked_by(t, marked)} |")
    return "\n".join(lines) + "\n"
