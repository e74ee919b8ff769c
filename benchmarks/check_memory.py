#!/usr/bin/env python3
"""Benchmark: peak RSS of ``caffe2torch convert --random-weights`` (the conversion and its check)
on the nets the trust issue named, against a baseline checkout measured in the same run.

Each conversion runs as its own child process; its peak RSS is ``os.wait4``'s ``ru_maxrss``.
The nets are written by ``tests/nets.py`` (a U-Net declaring 10x3x480x480, VDSR at 256x256,
a TSM-style ResNet-50 at 8 frames from the corpus when ``../shared`` is here, PSPNet-101 from
the corpus): no file of ``../shared`` is copied, and a net missing there is skipped.

The baseline is another source tree of caffe2torch (``--baseline-src PATH/src``, e.g. a
``git worktree`` of the commit before a change) run with the same interpreter; without it only
the current code is measured. A baseline conversion that would need more than
``--baseline-limit`` (default 12 GiB) is run under that address-space limit and reported as
"over" when the kernel stops it, instead of taking the machine down.

Also printed: the current code's estimate of the check's peak (``caffe2torch.memory``), which
``convert`` compares with its limit before it starts, next to the measured peak.

    .venv/bin/python benchmarks/check_memory.py [--baseline-src /tmp/base/src] [--nets unet,vdsr]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import nets  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
MIB = 1 << 20


def net_files(work: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (prototxt, extra convert arguments)."""
    out = {}
    (work / "unet.prototxt").write_text(nets.unet(batch=10, size=480))
    out["unet_10x480"] = (work / "unet.prototxt", [])
    (work / "vdsr.prototxt").write_text(nets.vdsr(256))
    out["vdsr_256"] = (work / "vdsr.prototxt", [])
    resnet = CORPUS / "resnet50" / "ResNet-50-deploy.prototxt"
    if resnet.is_file():
        out["resnet50_8frames"] = (resnet, ["--input-shape", "8,3,224,224"])
    psp = CORPUS / "pspnet101_voc2012" / "pspnet101_VOC2012_473.prototxt"
    if psp.is_file():
        out["pspnet101_473"] = (psp, [])
    return out


def measure(src, prototxt, extra, work, limit) -> dict:
    # ru_maxrss of RUSAGE_CHILDREN is the largest of all children so far: run each in a
    # fresh wrapper process so that the figure is this conversion's alone.
    code = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[2:], capture_output=True, text=True, env=json.loads(sys.argv[1]))\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'rc': p.returncode, 'peak_kib': r, 'out': p.stdout[-4000:], 'err': p.stderr[-2000:]}))\n"
    )
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = work / f"out_{time.monotonic_ns()}"
    argv = [sys.executable, "-m", "caffe2torch", "convert", str(prototxt), "--random-weights",
            "-o", str(out), *extra]
    if limit:
        argv = ["prlimit", f"--as={limit}", "--", *argv]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(env), *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    rec = json.loads(proc.stdout)
    verified = next((line for line in rec["out"].splitlines() if line.startswith(("verified:", "not verified:"))), "")
    err = rec["err"].strip().splitlines()
    return {
        "exit": rec["rc"],
        "peak_mib": rec["peak_kib"] // 1024,
        "seconds": round(seconds, 1),
        "verified": verified[:140],
        "error": err[-1][:200] if rec["rc"] not in (0, 1) and err else "",
    }


def estimate(prototxt: Path, extra: list[str]) -> int | None:
    from caffe2torch.api import load_graph
    from caffe2torch.graph import parse_input_shapes
    from caffe2torch.memory import CheckOptions

    shapes = parse_input_shapes(extra[1:2]) if extra[:1] == ["--input-shape"] else None
    graph = load_graph(prototxt, input_shapes=shapes)
    return CheckOptions(unlimited=True).guard(graph).total // MIB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-src", type=Path, help="a caffe2torch src/ folder to compare with")
    ap.add_argument("--baseline-limit", type=int, default=12 << 30, help="address-space cap for the baseline")
    ap.add_argument("--nets", default="", help="comma-separated names (default: all)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="c2t-mem-") as tmp:
        work = Path(tmp)
        files = net_files(work)
        chosen = [n for n in files if not args.nets or n in args.nets.split(",")]
        for name in chosen:
            prototxt, extra = files[name]
            rec = {"estimate_mib": estimate(prototxt, extra)}
            rec["now"] = measure(None, prototxt, extra, work, None)
            if args.baseline_src:
                rec["baseline"] = measure(args.baseline_src, prototxt, extra, work, args.baseline_limit)
            results[name] = rec
            b = rec.get("baseline")
            ratio = f"{rec['now']['peak_mib'] / b['peak_mib']:.2f}x" if b and b["exit"] in (0, 1) else "-"
            base = (f"{b['peak_mib']} MiB ({b['seconds']} s, exit {b['exit']})" if b else "-")
            print(
                f"{name:18s} now {rec['now']['peak_mib']:5d} MiB ({rec['now']['seconds']} s, exit "
                f"{rec['now']['exit']}), estimate {rec['estimate_mib']} MiB; baseline {base}; "
                f"now/baseline {ratio}",
                flush=True,
            )
            for who in ("now", "baseline"):
                if who in rec and (rec[who]["error"] or rec[who]["verified"]):
                    print(f"    {who}: {rec[who]['verified'] or rec[who]['error']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
