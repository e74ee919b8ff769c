#!/usr/bin/env python3
"""Benchmark: how long does the per-layer verification of VGG16 take, against plain forwards?

The work folder gets the VGG16 deploy prototxt of ``read_caffemodel.py`` (batch 1, 3x224x224)
and a seeded caffemodel (``caffe2torch synth-weights``), converted once with ``--no-verify``
(``--workdir DIR --keep`` reuses them). One child process then measures, round-robin
``--repeats`` times, all in the same process and on the same input:

- baseline: one OpenCV forward (``cv2.dnn``, default settings, net loaded beforehand) plus
  one forward of the converted model (``load_converted``, ``torch.no_grad``);
- ``verify_folder(OUT)``, the library call behind ``caffe2torch verify OUT``, end to end:
  reading conversion.json, the prototxt, the sha256 of both sources, the weights (torch) and
  the caffemodel (OpenCV, in a background thread), OpenCV's run with every layer's output kept,
  the instrumented model's run with each value compared as it is made, the table;
- of that, the check itself: OpenCV's per-layer run plus the instrumented run with its
  comparisons (both nets loaded), from the timings verify_folder records;
- a cold baseline: what the plain forwards cost when they also load both nets (OpenCV reads
  the caffemodel, torch loads model.pth), the same loading verify does.

Target: the check takes under 3x the baseline (one OpenCV forward plus one PyTorch forward).
The end-to-end figure is reported against both baselines. Median of the repeats.

    .venv/bin/python benchmarks/verify_vgg16.py [--repeats 5] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_caffemodel import prepare, run_measured, work_folder  # noqa: E402

TARGET_RATIO = 3.0
RESULTS = Path(__file__).resolve().parent / "results" / "verify_vgg16.json"
OUT = "vgg16_converted"

CHILD = """\
import json, sys, time
import numpy as np, torch, cv2
from caffe2torch.emit import load_converted
from caffe2torch.verify.run import verify_folder

proto, model, out, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
xt = torch.from_numpy(x)

def ocv_load():
    net = cv2.dnn.readNetFromCaffe(proto, model)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    return net

def ocv_forward(net):
    net.setInput(x)
    return net.forward()

def torch_forward(m):
    with torch.no_grad():
        return m(xt)

net, m = ocv_load(), load_converted(out)
ocv_forward(net), torch_forward(m), verify_folder(out)  # warm-up: first-call costs
rows = {k: [] for k in ("ocv", "torch", "verify", "check", "cold")}
for _ in range(repeats):
    t = time.perf_counter(); ocv_forward(net); rows["ocv"].append(time.perf_counter() - t)
    t = time.perf_counter(); torch_forward(m); rows["torch"].append(time.perf_counter() - t)
    t = time.perf_counter(); v = verify_folder(out); rows["verify"].append(time.perf_counter() - t)
    assert v.status == "passed", v.to_dict(rows=False)
    s = v.seconds
    rows["check"].append(s["reference_run"] + s["model_run"] + s.get("model_local_run", 0.0))
    t = time.perf_counter()
    ocv_forward(ocv_load()); torch_forward(load_converted(out))
    rows["cold"].append(time.perf_counter() - t)
print(json.dumps({"rows": rows, "compared": len(v.compared), "threads": torch.get_num_threads(),
                  "opencv": cv2.__version__, "torch": torch.__version__}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--workdir", type=Path, help="keep the VGG16 files here (default: a temp folder)"
    )
    ap.add_argument("--keep", action="store_true", help="reuse the files in --workdir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with work_folder(args.workdir, "c2t-verify-") as workdir:
        proto, model = prepare(workdir, args.keep, args.seed)
        out = workdir / OUT
        if not (args.keep and (out / "conversion.json").is_file()):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "caffe2torch",
                    "convert",
                    str(proto),
                    str(model),
                    "-o",
                    str(out),
                    "--overwrite",
                    "--no-verify",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        wall, rss, code, stdout = run_measured(
            [sys.executable, "-c", CHILD, str(proto), str(model), str(out), str(args.repeats)],
            workdir,
            "verify",
        )
        if code != 0:
            return 1
    data = json.loads(stdout.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in data["rows"].items()}
    base = med["ocv"] + med["torch"]
    ratios = {
        "check / forwards": med["check"] / base,
        "verify end to end / forwards": med["verify"] / base,
        "verify end to end / cold forwards (loading both nets too)": med["verify"] / med["cold"],
    }
    ok = ratios["check / forwards"] < TARGET_RATIO
    print(
        f"VGG16, batch 1, {data['compared']} values compared; torch {data['torch']} "
        f"({data['threads']} threads), OpenCV {data['opencv']}; median of {args.repeats}"
    )
    print(f"  one OpenCV forward          {med['ocv']:.3f} s")
    print(f"  one PyTorch forward         {med['torch']:.3f} s")
    print(f"  baseline (sum)              {base:.3f} s")
    print(
        f"  the check (both runs)       {med['check']:.3f} s   {ratios['check / forwards']:.2f}x "
        f"baseline (target < {TARGET_RATIO:g}x): {'OK' if ok else 'OVER'}"
    )
    print(
        f"  verify_folder end to end    {med['verify']:.3f} s   "
        f"{ratios['verify end to end / forwards']:.2f}x baseline"
    )
    print(
        f"  cold forwards (load + run)  {med['cold']:.3f} s   verify end to end is "
        f"{ratios['verify end to end / cold forwards (loading both nets too)']:.2f}x this"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "medians_s": med,
                "ratios": ratios,
                "target_ratio": TARGET_RATIO,
                "ok": ok,
                "runs_s": data["rows"],
                "compared": data["compared"],
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
