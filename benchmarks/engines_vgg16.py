#!/usr/bin/env python3
"""Benchmark: the native engine against the MMdnn engine on VGG16 (553 MB caffemodel).

The work folder gets the VGG16 deploy prototxt of ``read_caffemodel.py`` and a seeded
caffemodel (``--workdir DIR --keep`` reuses them). Measured, each as its own child process
(wall time and peak RSS from ``os.wait4``, which include the MMdnn engine's own subprocess):

- the conversion: ``caffe2torch convert ... --no-verify`` with ``--engine native`` and with
  ``--engine mmdnn`` (round-robin, ``--repeats`` times; median wall, largest peak RSS);
- the activation memory of the two generated models: one forward at batch 8 in a fresh
  process each, after a warm-up, as the rise of VmHWM over VmRSS (``/proc/self/clear_refs``),
  the same method as ``vgg16_forward.py``.

Reported as ratios MMdnn / native. Needs the MMdnn environment (``make mmdnn-env``).

    .venv/bin/python benchmarks/engines_vgg16.py [--repeats 3] [--workdir DIR --keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_caffemodel import prepare, run_measured, work_folder  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "engines_vgg16.json"
ENGINES = ("native", "mmdnn")
MIB = 2**20

MEMORY_CHILD = """\
import gc, json, sys
import torch
sys.path.insert(0, sys.argv[3])
from vgg16_forward import read_status, reset_peak
from caffe2torch.emit import load_converted
torch.set_num_threads(2)
model = load_converted(sys.argv[1])
x = torch.randn(int(sys.argv[2]), 3, 224, 224, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    model(x)
    gc.collect()
    assert reset_peak(), "cannot reset VmHWM here"
    base = read_status()["VmRSS"]
    out = model(x)
    peak = read_status()["VmHWM"]
print(json.dumps({"activation_bytes": peak - base, "out": list(out.shape)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    env = dict(os.environ)
    mmdnn = Path(".venv-mmdnn/bin/python").absolute()
    if "CAFFE2TORCH_MMDNN_PYTHON" not in env and mmdnn.exists():
        env["CAFFE2TORCH_MMDNN_PYTHON"] = str(mmdnn)
    here = str(Path(__file__).resolve().parent)
    with work_folder(args.workdir, "c2t-engines-") as workdir:
        proto, model = prepare(workdir, args.keep, args.seed)
        rows: dict[str, dict[str, list]] = {e: {"wall": [], "rss": []} for e in ENGINES}
        for i in range(args.repeats):
            for engine in ENGINES:
                out = workdir / f"out_{engine}"
                shutil.rmtree(out, ignore_errors=True)
                argv = [
                    sys.executable,
                    "-m",
                    "caffe2torch",
                    "convert",
                    str(proto),
                    str(model),
                    "-o",
                    str(out),
                    "--no-verify",
                    "--engine",
                    engine,
                ]
                wall, rss, code, _ = run_measured(argv, workdir, f"{engine}_{i}", env=env)
                if code != 0:
                    return 1
                rows[engine]["wall"].append(wall)
                rows[engine]["rss"].append(rss)
        memory = {}
        for engine in ENGINES:
            _, _, code, stdout = run_measured(
                [
                    sys.executable,
                    "-c",
                    MEMORY_CHILD,
                    str(workdir / f"out_{engine}"),
                    str(args.batch),
                    here,
                ],
                workdir,
                f"memory_{engine}",
            )
            if code != 0:
                return 1
            memory[engine] = json.loads(stdout.strip().splitlines()[-1])["activation_bytes"]
    med = {e: statistics.median(rows[e]["wall"]) for e in ENGINES}
    rss = {e: max(rows[e]["rss"]) for e in ENGINES}
    ratios = {
        "conversion wall, mmdnn / native": med["mmdnn"] / med["native"],
        "conversion peak RSS, mmdnn / native": rss["mmdnn"] / rss["native"],
        f"activation memory at batch {args.batch}, mmdnn / native": memory["mmdnn"]
        / memory["native"],
    }
    print(f"VGG16 (553 MB caffemodel), median of {args.repeats} conversions each")
    for e in ENGINES:
        print(
            f"  {e:<7} convert {med[e]:6.2f} s, peak RSS {rss[e] / MIB:7.0f} MiB; "
            f"activations at batch {args.batch}: {memory[e] / MIB:6.0f} MiB"
        )
    for k, v in ratios.items():
        print(f"  {k}: {v:.2f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "wall_s": rows,
                "median_wall_s": med,
                "peak_rss_bytes": rss,
                "activation_bytes": memory,
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
