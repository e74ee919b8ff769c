"""docs/layers.md is what the registry and the layer tests' markers say (``make docs``)."""
from __future__ import annotations

from layer_checks import DOC, layers_markdown


def test_layer_table_is_up_to_date():
    assert DOC.is_file(), "docs/layers.md is missing: run `make docs`"
    assert DOC.read_text() == layers_markdown(), "docs/layers.md is out of date: run `make docs`"
