"""Convert every net of the corpus in ../shared with seeded random weights and compare its
outputs with OpenCV's dnn module (an independent Caffe implementation).

    .venv/bin/python tools/convert_corpus.py [--json FILE] [NAME-FILTER ...]

Each net gets synth-weights (seed 1), a seeded random input and one conversion; the outputs
must agree within ``max|y - ref| <= 1e-5 + 1e-4 * max|ref|`` (the bound of the layer tests).
Nets are grouped by whether all their layer types are in the list the emitter promises
(issue 3); the script prints one line per net and the totals, and exits 1 when a net of that
group fails.
"""

from __future__ import annotations

import argparse
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


def run_one(path: Path) -> dict:
    import numpy as np

    from caffe2torch.api import load_graph
    from caffe2torch.emit import convert
    from caffe2torch.errors import CaffeError
    from caffe2torch.synth import write_synth_weights
    from caffe2torch.verify.parity import compare_outputs

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
            # Also compare the logits under a final Softmax: a saturated softmax hides errors.
            outputs = [v.name for v in graph.outputs]
            outputs += [
                v.producer.inputs[0].name
                for v in graph.outputs
                if v.producer.type == "Softmax"
                and not v.producer.inputs[0].producer.is_source
                and v.producer.inputs[0].name not in outputs
            ]
            conv = convert(path, weights, input_shapes=shapes, stages=stages, outputs=outputs)
            rng = np.random.default_rng(0)
            arrays = {v.name: rng.standard_normal(v.shape, dtype=np.float32) for v in graph.inputs}
            try:
                results = compare_outputs(conv, path, weights, arrays)
            except CaffeError as e:
                row["status"] = "no reference"
                row["detail"] = str(e).split(": ", 1)[-1]
                return row
            worst = max(results, key=lambda c: c.max_abs / max(c.bound, 1e-30))
            row["outputs"] = [
                {"blob": c.blob, "max_abs": c.max_abs, "ref_max": c.ref_max, "ok": c.ok}
                for c in results
            ]
            row["status"] = "match" if all(c.ok for c in results) else "MISMATCH"
            if row["status"] == "MISMATCH":
                ours, theirs = float64_arbitration(conv, graph, arrays, path, weights)
                row["float64"] = {"ours": ours, "opencv": theirs}
        row["detail"] = (
            f"{len(results)} output(s); worst {worst.blob}: max|d| {worst.max_abs:.3g} "
            f"(bound {worst.bound:.3g}, rel {worst.rel:.2g})"
        )
        if "float64" in row:
            f64 = row["float64"]
            row["detail"] += (
                f"; error against a float64 run: ours {f64['ours']:.2g}, OpenCV {f64['opencv']:.2g}"
            )
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


def float64_arbitration(conv, graph, arrays, path, weights) -> tuple[float, float]:
    """For a mismatch: the same model in float64, as the exact answer to both engines' float32
    runs. A deep net with random weights can amplify rounding until the engines disagree; if
    OpenCV is much further from the float64 run than our float32 model, that is the cause."""
    import numpy as np
    import torch

    from caffe2torch.verify.opencv import run_opencv

    ref = run_opencv(path, weights, arrays, graph=graph)
    model = conv.module()
    xs = [torch.from_numpy(arrays[v.name]) for v in graph.inputs]
    with torch.no_grad():
        ours = model(*xs)
        exact = model.double()(*[x.double() for x in xs])
    ours = ours if isinstance(ours, tuple) else (ours,)
    exact = exact if isinstance(exact, tuple) else (exact,)
    worst_ours = worst_cv = 0.0
    for v, a, e in zip(conv.outputs, ours, exact):
        e = e.numpy()
        theirs = (
            ref[v.producer.name][v.producer.outputs.index(v)]
            if v.producer.name in ref
            else ref[v.name][0]
        )
        scale = max(float(np.abs(e).max()), 1e-30)
        worst_ours = max(worst_ours, float(np.abs(a.numpy() - e).max()) / scale)
        worst_cv = max(worst_cv, float(np.abs(theirs.reshape(e.shape) - e).max()) / scale)
    return worst_ours, worst_cv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filters", nargs="*")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    files = [
        p for p in net_files(CORPUS) if not args.filters or any(f in str(p) for f in args.filters)
    ]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=4) as pool:
        rows = []
        for row in pool.imap(run_one, files):
            flag = "*" if row["promised"] else " "
            print(f"{flag} {row['status']:<13} {row['net']:<70} {row['detail'][:200]}", flush=True)
            rows.append(row)
    promised = [r for r in rows if r["promised"]]
    bad = [r for r in promised if r["status"] != "match"]
    print(
        f"\n{len(rows)} nets; {len(promised)} with every layer type in the promised list (*): "
        f"{len(promised) - len(bad)} match OpenCV, {len(bad)} do not"
    )
    others = [r for r in rows if not r["promised"]]
    print(
        f"other nets: {sum(r['status'] == 'match' for r in others)} match, "
        f"{sum(r['status'] == 'refused' for r in others)} refused, "
        f"{sum(r['status'] not in ('match', 'refused') for r in others)} other"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
