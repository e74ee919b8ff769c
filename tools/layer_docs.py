"""Regenerate docs/layers.md, the supported-layer table, from the layer registry and the
markers of the tests in tests/layers (``tests/layer_checks.py``).

    .venv/bin/python tools/layer_docs.py      # or: make docs
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from layer_checks import DOC, layers_markdown  # noqa: E402


def main() -> int:
    text = layers_markdown()
    DOC.parent.mkdir(parents=True, exist_ok=True)
    changed = not DOC.is_file() or DOC.read_text() != text
    DOC.write_text(text)
    print(f"{DOC.relative_to(ROOT)}: {'written' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
