"""The markers of tests/layers, kept honest: the running test's ``opencv`` and ``formula``
types go to ``layer_harness``, whose checks refuse a type the test does not declare."""
from __future__ import annotations

import layer_harness
import pytest


@pytest.fixture(autouse=True)
def marked_types(request):
    """The layer types the running test declares: {"opencv": ..., "formula": ...}."""
    marked = {
        kind: frozenset(t for mark in request.node.iter_markers(kind) for t in mark.args)
        for kind in ("opencv", "formula")
    }
    layer_harness.MARKED = marked
    try:
        yield marked
    finally:
        layer_harness.MARKED = None
