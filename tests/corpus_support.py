"""The model corpus in ../shared for the tests and the tools: where it is, the input shapes and
stages its nets need, one net converted and verified (:func:`run_one`), the summary table, and
the cache that lets the tests of one session share a conversion instead of repeating it.

``tools/inspect_corpus.py`` and ``tools/convert_corpus.py`` import this module (they put tests/
on their sys.path); the tests import it as they import ``helpers``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from helpers import CORPUS

__all__ = [
    "CORPUS", "INPUT_SHAPES", "STAGES", "SHAPES", "PROMISED", "net_files", "weight_files",
    "layer_types", "convert_net", "run_one", "markdown", "ConversionCache", "engine_totals",
]

# Nets without declared input shapes (database or Python data layers, shapeless Input layers).
INPUT_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "bayesian_segnet/bayesian_segnet_inference.prototxt": {"data": (4, 3, 360, 480)},
    "segnet/segnet_inference.prototxt": {"data": (1, 3, 360, 480)},
    "segnet_basic/segnet_basic_inference.prototxt": {"data": (1, 3, 360, 480)},
    "cifar10_full_weights_yuvval/cifar10_full_train_test.prototxt": {"data": (100, 3, 32, 32)},
    "fcn32s_voc/val.prototxt": {"data": (1, 3, 500, 500)},
    "fcn_alexnet_voc/val.prototxt": {"data": (1, 3, 500, 500)},
    "fcn32s_nyud_color_hha/test.prototxt": {"color": (1, 3, 425, 560), "hha": (1, 3, 425, 560)},
    "ocv_net_faster_rcnn_proposal/net_faster_rcnn_proposal.prototxt": {
        "rpn_cls_prob_reshape": (1, 18, 38, 50),
        "rpn_bbox_pred": (1, 36, 38, 50),
        "im_info": (1, 3),
    },
    "ocv_reshape_and_slice_routines/reshape_and_slice_routines.prototxt": {"input": (1, 3, 8, 8)},
    "mnist_autoencoder_bvlc/mnist_autoencoder.prototxt": {"data": (100, 1, 28, 28)},
}
STAGES: dict[str, list[str]] = {"mnist_autoencoder_bvlc/mnist_autoencoder.prototxt": ["test-on-test"]}

# Nets that declare a placeholder input size (OpenPose's 1x1 "defined at runtime"): converted
# at this size.
SHAPES = {
    "openpose_coco/pose_deploy_linevec.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_face/pose_deploy.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_hand/pose_deploy.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_mpi/pose_deploy_linevec.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_mpi/pose_deploy_linevec_faster_4_stages.prototxt": {"image": (1, 3, 96, 96)},
}


def _promised() -> frozenset[str]:
    from caffe2torch.layers import convertible_types

    return frozenset(convertible_types())


# The types a net may hold and still convert (the registry's own list): a net made only of
# these must convert and pass verify.
PROMISED = _promised()


def rel_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def net_files(corpus: Path = CORPUS) -> list[Path]:
    return sorted(p for p in corpus.glob("*/*.prototxt") if "solver" not in p.name)


def weight_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.caffemodel"), *folder.glob("*.caffemodel.h5")])


def layer_types(path: Path) -> set[str]:
    from caffe2torch.caffe.prototxt import read_prototxt

    return {layer.type for layer in read_prototxt(path).net.layer}


def convert_net(path: Path, workdir: Path, input_order: str | None = None):
    """The corpus sweep's conversion of one net: synth-weights (seed 1) written to
    ``workdir/w.caffemodel`` (which verify reads: keep it while the conversion is used), then
    ``convert`` with the net's input shapes and stages."""
    from caffe2torch.api import load_graph
    from caffe2torch.emit import convert
    from caffe2torch.preprocess import Options
    from caffe2torch.synth import write_synth_weights

    rel = rel_name(path)
    shapes = SHAPES.get(rel) or INPUT_SHAPES.get(rel)
    stages = STAGES.get(rel, [])
    graph = load_graph(path, input_shapes=shapes, stages=stages)
    weights = Path(workdir) / "w.caffemodel"
    write_synth_weights(graph, weights, seed=1)
    return convert(
        path, weights, input_shapes=shapes, stages=stages, preprocess=Options(input_order=input_order)
    )


class ConversionCache:
    """The conversions of corpus nets (by :func:`convert_net`, native order) that several tests
    of a session use: each is made once and kept until the last test that declares it
    (``@pytest.mark.converts(rel)``) has run, then dropped. tests/conftest.py counts those tests,
    groups them onto one xdist worker (``xdist_group``, run with ``--dist loadgroup``) and calls
    :meth:`done` after each."""

    def __init__(self, workdir: Path, uses: Counter | None = None) -> None:
        self.workdir = Path(workdir)
        self.uses = Counter(uses or {})
        self.entries: dict[str, object] = {}
        self.made: Counter = Counter()  # conversions made, by net (a test checks it stays 1)

    def get(self, path: Path):
        rel = rel_name(path)
        if self.uses[rel] <= 0:  # nothing would drop it: its weights would stay on disk
            raise LookupError(f"{rel}: declare the test with @pytest.mark.converts({rel!r})")
        if rel not in self.entries:
            folder = self.folder(rel)
            folder.mkdir(parents=True, exist_ok=True)
            self.entries[rel] = convert_net(path, folder)
            self.made[rel] += 1
        return self.entries[rel]

    def folder(self, rel: str) -> Path:
        """Where ``rel``'s conversion keeps its synthesized weights while it is used."""
        return self.workdir / rel.replace("/", "__")

    def done(self, rel: str) -> None:
        """One test that declared ``rel`` has finished: after the last, its conversion and its
        weights (hundreds of MB for the VGG-sized nets; the sweep's would fill tens of GB) go."""
        self.uses[rel] -= 1
        if self.uses[rel] <= 0:
            self.entries.pop(rel, None)
            shutil.rmtree(self.folder(rel), ignore_errors=True)


def run_one(path: Path, input_order: str | None = None, cache: ConversionCache | None = None) -> dict:
    """Convert one net (with ``cache``, its conversion shared with the session's other tests)
    and verify it layer by layer against OpenCV: one row of the corpus table."""
    from caffe2torch.errors import CaffeError
    from caffe2torch.preprocess import PreprocessError
    from caffe2torch.verify.opencv import ReferenceError
    from caffe2torch.verify.run import verify_conversion

    rel = rel_name(path)
    row = {"net": rel, "promised": False, "status": "", "detail": "", "seconds": 0.0}
    start = time.perf_counter()
    try:
        types = layer_types(path)
        row["promised"] = types <= PROMISED
        row["types"] = sorted(types - PROMISED)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if cache is not None and input_order is None:
                    conv = cache.get(path)
                else:
                    conv = convert_net(path, Path(tmp), input_order)
            except PreprocessError as e:
                if input_order and ("no 3-channel image input" in str(e) or "no image input" in str(e)):
                    row["status"], row["detail"] = "n/a", "no 3-channel image input"
                    return row
                raise
            if input_order:
                row["detail_prefix"] = "flip; " if ".flip(1)" in conv.code else "folded; "
            try:
                v = verify_conversion(conv)
            except ReferenceError as e:
                row["status"] = "no reference"
                row["detail"] = str(e).split(": ", 1)[-1]
                return row
        worst = v.worst
        row.update(
            compared=len(v.compared),
            failed=len(v.failed),
            drift=len(v.drifted),
            skipped=len(v.skipped),
            worst_rel=worst.rel if worst else None,
            worst_blob=worst.blob if worst else None,
            first_divergence=v.first_divergence.layer if v.first_divergence else None,
            skipped_types=sorted({r.type for r in v.skipped if not r.note.startswith("fused")}),
            compared_by=v.engines,
            skip_reasons=dict(Counter(_reason(r.note) for r in v.skipped)),
            reference_errors=len(v.reference_errors),
        )
        if v.passed:
            row["status"] = "pass"
        elif not v.compared:
            row["status"] = "unchecked"
        else:
            row["status"] = "FAIL"
        row["detail"] = (
            f"{len(v.compared)} compared, {len(v.failed)} failed, {len(v.drifted)} drift, "
            f"{len(v.skipped)} skipped"
            + (f"; worst rel {worst.rel:.2g} ({worst.blob})" if worst else "")
            + (f"; skipped types {','.join(row['skipped_types'])}" if row["skipped_types"] else "")
        )
        if v.explanation:
            row["detail"] += "; " + v.explanation[0]
        row["detail"] = row.pop("detail_prefix", "") + row["detail"]
    except CaffeError as e:
        row["status"] = "refused"
        row["detail"] = str(e)
    except Exception as e:  # noqa: BLE001 - a crash is a finding
        row["status"] = "CRASH"
        row["detail"] = f"{type(e).__name__}: {e}"
        row["traceback"] = traceback.format_exc()
    finally:
        row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _reason(note: str) -> str:
    """A skipped value's reason, without its layer's own names (fused with X into Y)."""
    return "fused into the next layer's submodule" if note.startswith("fused with") else note


def engine_totals(rows: list[dict]) -> list[str]:
    """Per-engine counts of the sweep: values checked by each engine, skipped and why."""
    by: Counter = Counter()
    reasons: Counter = Counter()
    for r in rows:
        by.update(r.get("compared_by") or {})
        reasons.update(r.get("skip_reasons") or {})
    nets = sum(1 for r in rows if r.get("compared_by") is not None)
    lines = [
        f"values checked, {nets} nets: "
        + ", ".join(f"{n} by {k}" for k, n in sorted(by.items()))
        + f"; {sum(reasons.values())} skipped; "
        f"{sum(r.get('reference_errors') or 0 for r in rows)} reference-error"
    ]
    lines += [f"  skipped {n:>5}: {why}" for why, n in reasons.most_common()]
    return lines


def markdown(rows: list[dict]) -> str:
    """The summary table of the verified nets, for notes and the README."""
    lines = [
        "| net | values compared | skipped (types) | drift | worst rel. error |",
        "|---|--:|---|--:|--:|",
    ]
    for r in rows:
        if r["status"] not in ("pass", "FAIL", "unchecked"):
            continue
        worst = f"{r['worst_rel']:.1e}" if r.get("worst_rel") is not None else ""
        types = ", ".join(r.get("skipped_types") or [])
        skipped = f"{r['skipped']}" + (f" ({types})" if types else "")
        status = "" if r["status"] == "pass" else f" **{r['status']}**"
        lines.append(
            f"| {r['net']}{status} | {r['compared']} | {skipped} | {r['drift']} | {worst} |"
        )
    return "\n".join(lines) + "\n"
