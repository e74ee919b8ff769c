"""``report.md``: what was converted, its inputs and outputs, and the parity table. Plain
Markdown, fixed formatting (two significant digits), no timestamps: diff-friendly."""

from __future__ import annotations

from .. import __version__
from ..folder import MANIFEST, MODEL_FILE, WEIGHT_FILES
from ..preprocess.spec import input_lines
from .layerwise import Verification


def _shape(shape) -> str:
    return "x".join("?" if d == -1 else str(d) for d in shape) if shape else "scalar"  # -1: DYNAMIC


def _num(x) -> str:
    if x is None:
        return ""
    return f"{x:.1e}" if x else "0"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def parity_markdown(v: Verification) -> list[str]:
    worst = v.worst
    verdict = {"passed": "passed", "failed": "FAILED", "unchecked": "unchecked"}[v.status]
    lines = [
        f"**{verdict}**: {len(v.compared)} values compared{v.engines_note}, {len(v.failed)} failed, "
        + (f"{len(v.drifted)} drift{' (failing: --strict)' if v.strict else ''}, " if v.drifted else "")
        + (f"{len(v.reference_errors)} reference-error, " if v.reference_errors else "")
        + f"{len(v.skipped)} skipped"
        + (
            f"; worst relative error {_num(worst.rel)} (`{_cell(worst.blob)}` after "
            f"`{_cell(worst.layer)}`)."
            if worst
            else "."
        ),
        "",
        f"Reference: {v.reference}. Input: {v.inputs}. Each value passes when "
        f"max|y - ref| <= {v.atol:g} + {v.rtol:g} * max|ref|; the relative error is "
        "max|y - ref| / max|ref|.",
        "",
    ]
    if v.explanation:
        lines += [f"> {_cell(s)}" for s in v.explanation] + [""]
    lines += [
        "| # | layer | type | blob | shape | max abs err | max rel err | result | checked by |",
        "|--:|---|---|---|---|--:|--:|---|---|",
    ]
    for i, r in enumerate(v.rows, 1):
        result = r.status if not r.note else f"{r.status}: {r.note}"
        if r.local is not None:
            result += f" (alone: {_num(r.local)})"
        lines.append(
            f"| {i} | {_cell(r.layer)} | {r.type} | {_cell(r.blob)} | {_shape(r.shape)} | "
            f"{_num(r.max_abs) if r.status != 'skipped' else ''} | "
            f"{_num(r.rel) if r.status != 'skipped' else ''} | {_cell(result)} | {r.engine} |"
        )
    return lines



def render_report(conversion, weights_format: str) -> str:
    """report.md of a :class:`~caffe2torch.emit.Conversion` (the caller's object: verify
    does not import emit)."""
    src = conversion.sources["prototxt"]
    w = conversion.sources.get("weights")
    if w and w.get("random"):
        weights = f"seeded random weights (seed {w['seed']})"
    elif w:
        weights = f"`{_cell(w['file'])}` ({w['format']}, sha256 `{str(w['sha256'])[:16]}`)"
    else:
        weights = "no weights (the net has none)"
    lines = [
        f"# {_cell(conversion.graph.name)}: Caffe to PyTorch",
        "",
        f"Converted by caffe2torch {__version__} from `{_cell(src['file'])}` "
        f"(sha256 `{src['sha256'][:16]}`) with {weights}.",
        "",
        f"- `{MODEL_FILE}`: class `{conversion.class_name}`, "
        + ("imports only torch" if conversion.engine["name"] == "native"
           else "MMdnn's generated code, made loadable from a state_dict"),
        f"- `{WEIGHT_FILES[weights_format]}`: its state_dict "
        f"({len(conversion.generated.state)} tensors)",
        f"- `{MANIFEST}`: inputs, outputs, layer map, sources, this check's summary",
        "",
        "| | blob | shape |",
        "|---|---|---|",
    ]
    lines += [f"| input | `{_cell(v.name)}` | {_shape(v.shape)} |" for v in conversion.graph.inputs]
    lines += [f"| output | `{_cell(v.name)}` | {_shape(v.shape)} |" for v in conversion.outputs]
    if conversion.preprocess is not None:
        lines += ["", "`preprocess.json` and `preprocess.py` turn an image into the input:", ""]
        lines += [f"- {_cell(line)}" for line in input_lines(conversion.preprocess)]
    lines += ["", "## Parity with Caffe", ""]
    if conversion.verification is None:
        lines.append(f"Not checked: {conversion.verification_skipped or 'not run'}.")
    else:
        lines += parity_markdown(conversion.verification)
    notes = conversion.notes + conversion.generated.notes
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"
