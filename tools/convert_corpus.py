"""Convert every net of the corpus in ../shared with seeded random weights and verify it layer
by layer against OpenCV's dnn module (an independent Caffe implementation).

    .venv/bin/python tools/convert_corpus.py [--json FILE] [--markdown FILE] [NAME-FILTER ...]

Each net gets synth-weights (seed 1), a seeded random input, one conversion and the same
check ``convert`` runs (every value within ``1e-5 + 1e-4 * max|ref|``). The script prints one
line per net and the totals, and exits 1 when a net that converts fails verification, a net
crashes, OpenCV cannot run a net that converts, or a net whose layer types are all in the
list the emitter promises (issue 3) is refused.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from inspect_corpus import CORPUS, INPUT_SHAPES, STAGES, net_files  # noqa: E402

# The layer types issue 3 lists (data layers included), and the forks' names for them.
PROMISED = {
    "Input",
    "Data",
    "ImageData",
    "MemoryData",
    "HDF5Data",
    "DummyData",
    "WindowData",
    "AnnotatedData",
    "DenseImageData",
    "Convolution",
    "ConvolutionDepthwise",
    "DepthwiseConvolution",
    "Deconvolution",
    "InnerProduct",
    "Pooling",
    "ReLU",
    "ReLU6",
    "Clip",
    "PReLU",
    "ELU",
    "Sigmoid",
    "TanH",
    "AbsVal",
    "Power",
    "Exp",
    "Log",
    "BNLL",
    "Threshold",
    "BatchNorm",
    "Scale",
    "Bias",
    "LRN",
    "MVN",
    "Eltwise",
    "Concat",
    "Slice",
    "Split",
    "Flatten",
    "Reshape",
    "Softmax",
    "Dropout",
    "Crop",
    "Permute",
    "Tile",
    "Reduction",
    "ArgMax",
    "Silence",
    "ShuffleChannel",
    "Axpy",
    # dropped from a deploy graph
    "Accuracy",
    "SoftmaxWithLoss",
    "EuclideanLoss",
    "SigmoidCrossEntropyLoss",
}


# Nets that declare a placeholder input size (OpenPose's 1x1 "defined at runtime").
SHAPES = {
    "openpose_coco/pose_deploy_linevec.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_face/pose_deploy.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_hand/pose_deploy.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_mpi/pose_deploy_linevec.prototxt": {"image": (1, 3, 96, 96)},
    "openpose_mpi/pose_deploy_linevec_faster_4_stages.prototxt": {"image": (1, 3, 96, 96)},
}


def layer_types(path: Path) -> set[str]:
    from caffe2torch.caffe.prototxt import read_prototxt

    return {layer.type for layer in read_prototxt(path).net.layer}


def run_one(path: Path, input_order: str | None = None) -> dict:
    from caffe2torch.api import load_graph
    from caffe2torch.emit import convert
    from caffe2torch.errors import CaffeError
    from caffe2torch.preprocess import Options, PreprocessError
    from caffe2torch.synth import write_synth_weights
    from caffe2torch.verify.opencv import ReferenceError
    from caffe2torch.verify.run import verify_conversion

    rel = f"{path.parent.name}/{path.name}"
    shapes = SHAPES.get(rel) or INPUT_SHAPES.get(rel)
    stages = STAGES.get(rel, [])
    row = {"net": rel, "promised": False, "status": "", "detail": "", "seconds": 0.0}
    start = time.perf_counter()
    try:
        types = layer_types(path)
        row["promised"] = types <= PROMISED
        row["types"] = sorted(types - PROMISED)
        graph = load_graph(path, input_shapes=shapes, stages=stages)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "w.caffemodel"
            write_synth_weights(graph, weights, seed=1)
            try:
                conv = convert(
                    path, weights, input_shapes=shapes, stages=stages,
                    preprocess=Options(input_order=input_order),
                )
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filters", nargs="*")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path, help="write the summary table of verified nets")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--input-order", choices=["rgb"], help="convert every 3-channel net to take RGB, and verify"
    )
    args = ap.parse_args()
    files = [
        p for p in net_files(CORPUS) if not args.filters or any(f in str(p) for f in args.filters)
    ]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=4) as pool:
        rows = []
        for row in pool.imap(functools.partial(run_one, input_order=args.input_order), files):
            flag = "*" if row["promised"] else " "
            print(f"{flag} {row['status']:<13} {row['net']:<70} {row['detail'][:200]}", flush=True)
            rows.append(row)
    done = [r for r in rows if r["status"] in ("pass", "FAIL", "unchecked")]
    bad = [r for r in rows if r["status"] in ("FAIL", "CRASH", "no reference")]
    bad += [r for r in rows if r["status"] == "refused" and r["promised"]]
    print(
        f"\n{len(rows)} nets: {len(done)} convert, of which {sum(r['status'] == 'pass' for r in done)} "
        f"pass verify ({sum(r['compared'] for r in done)} values compared), "
        f"{sum(r['status'] == 'unchecked' for r in done)} have nothing OpenCV can check; "
        f"{sum(r['status'] == 'refused' for r in rows)} refused; "
        f"{sum(r['status'] == 'n/a' for r in rows)} without a 3-channel input (--input-order); "
        f"{len(bad)} problems"
    )
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
