"""Every module of the package imports first, on its own, in a fresh interpreter: no import
cycle hides behind import order or a lazy import."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import caffe2torch

SRC = Path(caffe2torch.__file__).parent
MODULES = sorted(
    m.name for m in pkgutil.walk_packages([str(SRC)], prefix="caffe2torch.")
    # The drivers run in MMdnn's and pycaffe's own environments; __main__ runs the command line.
    if not m.name.endswith(("._driver", "._caffe_driver", ".__main__"))
)
# Function-level imports of the package's own modules, each with its reason (none breaks a
# cycle): the CLI keeps torch out of the commands that do not need it, the binary caffemodel
# reader keeps protobuf out unless a V0/V1 net is read.
LAZY = {
    ("caffe2torch.cli.app", "caffe2torch"),  # convert and verify (caffe2torch.public) import torch
    ("caffe2torch", "caffe2torch"),  # caffe2torch.convert, loaded on first use (PEP 562)
    ("caffe2torch.zoo", "caffe2torch"),  # convert-all's workers import the engine (torch); its parent never does
    ("caffe2torch.zoo", "caffe2torch.emit"),
    ("caffe2torch.caffe.caffemodel", "caffe2torch.caffe.upgrade"),
    ("caffe2torch.caffe.caffemodel", "caffe2torch.caffe.schema"),
}


def test_every_module_imports_first_in_a_fresh_interpreter():
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {MODULES!r}:\n"
        "    for m in [k for k in sys.modules if k.startswith('caffe2torch')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert len(MODULES) > 40
    assert out.stdout.strip() == "", out.stdout


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_function_level_import_of_the_package_except_the_listed_ones():
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    target = _resolve(module, path.name == "__init__.py", node)
                    if target.startswith("caffe2torch"):
                        found.add((module, target))
                elif isinstance(node, ast.Import):
                    found |= {(module, a.name) for a in node.names if a.name.startswith("caffe2torch")}
    assert found == LAZY, f"unlisted: {sorted(found - LAZY)}; gone: {sorted(LAZY - found)}"


def test_the_parts_of_the_package_import_each_other_without_a_cycle():
    """Parts: the package's subpackages and top-level modules (CONTRIBUTING.md gives their
    order). A cycle between two parts fails, even where lazy imports would hide it."""
    edges: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        part = (module.split(".") + ["__init__"])[1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {  # `if TYPE_CHECKING:` imports are for annotations, never run
            id(n) for block in ast.walk(tree)
            if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
            for stmt in block.body for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only:
                target = _resolve(module, path.name == "__init__.py", node)
                if target.startswith("caffe2torch"):
                    other = (target.split(".") + ["__init__"])[1]
                    if other not in (part, "__init__") and part != "__main__":
                        edges.setdefault(part, set()).add(other)
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(part: str, path: list[str]) -> None:
        if state.get(part) == "done":
            return
        assert state.get(part) != "open", "import cycle: " + " -> ".join(path + [part])
        state[part] = "open"
        for other in sorted(edges.get(part, ())):
            visit(other, path + [part])
        state[part] = "done"
        order.append(part)

    for part in sorted(edges):
        visit(part, [])
    assert order.index("verify") < order.index("emit")  # emit checks what it made
