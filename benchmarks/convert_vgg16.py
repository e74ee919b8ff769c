#!/usr/bin/env python3
"""Benchmark: how long and how much memory does ``caffe2torch convert`` take on VGG16 (~528 MiB)?

The work folder gets the VGG16 deploy prototxt of ``read_caffemodel.py`` and a seeded
caffemodel made with ``caffe2torch synth-weights`` (``--workdir DIR --keep`` reuses it). Each
command then runs as its own child process, round-robin ``--repeats`` times, so wall time and
peak RSS (``os.wait4``) are whole-process figures measured under the same conditions:

- ``cp`` of the caffemodel: the baseline, moving the file's bytes once;
- ``python -c "import torch"``: the start-up floor every conversion pays;
- ``python -m caffe2torch convert vgg16.prototxt vgg16.caffemodel -o OUT --overwrite``: end to
  end (parse, read the weights, check shapes, generate ``model.py``, save ``model.pth``, hash
  the sources, write ``conversion.json``, rename the folder into place).

The output folder is removed before each conversion (outside the timing), so every run does
the same work. One unrecorded ``cp`` first puts the caffemodel in the page cache. Reported:
median wall time, the largest peak RSS, wall time over ``cp``'s, RSS over the file size, and
the output folder's size. Targets for ``convert``: wall time <= 3 s and peak RSS <= 1.5 GB
(1.5e9 bytes). Writes go to the page cache, not to the disk (nothing calls fsync), for ``cp``
and ``convert`` alike. A child's peak RSS is never below this script's own RSS when it forked
the child; the script stays lean (no numpy, no torch) and prints that floor.

``--profile`` adds one conversion in-process after the timed runs, split into phases (time and
RSS after each) with cProfile's top functions, written to the JSON: where the time and memory
go. It imports caffe2torch's internals, so it follows the library's layout and may need
updating when that changes; the timed figures above do not depend on it.

    .venv/bin/python benchmarks/convert_vgg16.py [--repeats 3] [--workdir DIR --keep] [--profile]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_caffemodel import VGG16_PARAMS, prepare, run_measured, work_folder  # noqa: E402

TARGET_WALL_S = 3.0  # converting VGG16 must take at most this long, end to end
TARGET_RSS_BYTES = 1.5e9  # ... and its peak RSS must stay under 1.5 GB
RESULTS = Path(__file__).resolve().parent / "results" / "convert_vgg16.json"
CONVERT = "caffe2torch convert"
OUT = "vgg16_converted"
MIB = 2**20

# One conversion in-process, phase by phase (the steps of caffe2torch.emit.convert and
# Conversion.write), with RSS after each phase and a cProfile of the whole. Prints JSON.
PROFILE_SNIPPET = """\
import cProfile, io, json, pstats, sys, time
from pathlib import Path

def rss():
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) * 1024 for k, _, v in (l.partition(":") for l in f)
                if k in ("VmRSS", "VmHWM")}

phases = []
start = last = time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    phases.append({"phase": name, "s": now - last, **rss()})
    last = now

profile = cProfile.Profile()
profile.enable()
import torch
mark("import torch")
from caffe2torch.emit import convert
mark("import caffe2torch")
proto, weights, out = map(Path, sys.argv[1:4])
conv = convert(proto, weights)
mark("convert(): parse, read weights, check shapes, generate")
conv.write(out, overwrite=True)
mark("write(): state_dict, torch.save, manifest, rename")
profile.disable()
stream = io.StringIO()
pstats.Stats(profile, stream=stream).sort_stats("cumulative").print_stats(25)
print(json.dumps({"phases": phases, "total_s": time.perf_counter() - start,
                  "cprofile_cumulative_top25": stream.getvalue()}))
"""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def benchmark(workdir: Path, model: Path, repeats: int) -> tuple[dict, bool, int, dict]:
    copy, out = workdir / "copy.caffemodel", workdir / OUT
    py = sys.executable
    gnu_cp = subprocess.run(["cp", "--version"], capture_output=True).returncode == 0
    commands = {
        "cp (baseline)": ["cp", *(["--reflink=never"] if gnu_cp else []), model.name, copy.name],
        "python -c 'import torch'": [py, "-c", "import torch"],
        CONVERT: [py, "-m", "caffe2torch", "convert", "vgg16.prototxt", model.name, "-o", OUT,
                  "--overwrite"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rsss: dict[str, list[int]] = {name: [] for name in commands}
    failed = False
    floor = run_measured(["true"], workdir, "floor")[1]
    run_measured(commands["cp (baseline)"], workdir, "warmup")  # puts the file in page cache
    copy.unlink(missing_ok=True)
    outputs: dict = {}
    for r in range(repeats):  # round-robin, so drift on the machine hits every command alike
        print(f"round {r + 1}/{repeats} ...", flush=True)
        for i, (name, argv) in enumerate(commands.items()):
            if name == CONVERT:
                shutil.rmtree(out, ignore_errors=True)
            wall, rss, code, _ = run_measured(argv, workdir, f"cmd{i}")
            copy.unlink(missing_ok=True)
            failed |= code != 0
            walls[name].append(wall)
            rsss[name].append(rss)
            if name == CONVERT and code == 0:
                files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
                missing = {"model.py", "model.pth", "conversion.json"} - set(files)
                if missing:
                    sys.stderr.write(f"convert left no {', '.join(sorted(missing))}\n")
                    failed = True
                outputs = {"files": files, "bytes": folder_bytes(out)}
    size = model.stat().st_size
    cp_wall = statistics.median(walls["cp (baseline)"])
    rows = {}
    for name in commands:
        wall, rss = statistics.median(walls[name]), max(rsss[name])
        rows[name] = {
            "argv": [Path(a).name if a == py else a for a in commands[name]],
            "wall_s_median": wall, "wall_s_all": walls[name], "peak_rss_bytes": rss,
            "peak_rss_all": rsss[name], "rss_over_file": rss / size, "wall_over_cp": wall / cp_wall,
        }
    row = rows[CONVERT]
    row["pass_wall"] = row["wall_s_median"] <= TARGET_WALL_S
    row["pass_rss"] = row["peak_rss_bytes"] <= TARGET_RSS_BYTES
    return rows, failed, floor, outputs


def profile(workdir: Path, model: Path) -> dict | None:
    print("profiling one conversion in-process ...", flush=True)
    argv = [sys.executable, "-c", PROFILE_SNIPPET, "vgg16.prototxt", model.name, "profiled_out"]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)
    shutil.rmtree(workdir / "profiled_out", ignore_errors=True)
    if done.returncode != 0:
        sys.stderr.write("--profile failed (it is not a measured command):\n"
                         f"{done.stderr[-2000:]}\n")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: dict, size: int, floor: int, outputs: dict, prof: dict | None) -> None:
    print(f"\ncaffemodel: {size:,} bytes ({size / MIB:.1f} MiB), {VGG16_PARAMS:,} values\n")
    print(f"{'command':<28}{'wall s':>9}{'[min-max]':>15}{'RSS MiB':>10}{'RSS/file':>10}"
          f"{'wall/cp':>9}  targets")
    for name, row in rows.items():
        verdict = ""
        if "pass_wall" in row:
            verdict = (f"wall {'PASS' if row['pass_wall'] else 'FAIL'}, "
                       f"RSS {'PASS' if row['pass_rss'] else 'FAIL'}")
        span = f"[{min(row['wall_s_all']):.2f}-{max(row['wall_s_all']):.2f}]"
        print(f"{name:<28}{row['wall_s_median']:>9.3f}{span:>15}"
              f"{row['peak_rss_bytes'] / MIB:>10.1f}{row['rss_over_file']:>10.2f}"
              f"{row['wall_over_cp']:>9.1f}  {verdict}")
    print(f"\ntargets for convert: wall <= {TARGET_WALL_S} s, "
          f"peak RSS <= {TARGET_RSS_BYTES / 1e9} GB "
          f"({TARGET_RSS_BYTES / MIB:.0f} MiB); medians of wall time, max of peak RSS")
    if outputs:
        files = ", ".join(f"{k} {v:,}" for k, v in outputs["files"].items())
        print(f"output folder: {outputs['bytes']:,} bytes ({outputs['bytes'] / size:.3f}x the "
              f"caffemodel): {files}")
    print(f"RSS floor: any child shows at least {floor / MIB:.1f} MiB (this script's own RSS)")
    if prof:
        print(f"\none conversion in-process, by phase ({prof['total_s']:.2f} s in all):")
        print(f"  {'phase':<62}{'s':>7}{'RSS MiB':>10}{'peak MiB':>10}")
        for p in prof["phases"]:
            print(f"  {p['phase']:<62}{p['s']:>7.2f}{p['VmRSS'] / MIB:>10.0f}"
                  f"{p['VmHWM'] / MIB:>10.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--workdir", type=Path, help="folder for the files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="reuse an existing vgg16.caffemodel in --workdir")
    parser.add_argument("--seed", type=int, default=0, help="seed for synth-weights")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one conversion in-process, phase by phase")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    with work_folder(args.workdir, "c2t-conv-") as workdir:
        _, model = prepare(workdir, args.keep, args.seed)
        rows, failed, floor, outputs = benchmark(workdir, model, args.repeats)
        prof = profile(workdir, model) if args.profile else None
        size = model.stat().st_size

    report(rows, size, floor, outputs, prof)
    import importlib.metadata

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": importlib.metadata.version("torch"),
            "numpy": importlib.metadata.version("numpy"),
        },
        "file_bytes": size, "values": VGG16_PARAMS, "repeats": args.repeats,
        "targets": {"wall_s": TARGET_WALL_S, "peak_rss_bytes": TARGET_RSS_BYTES},
        "rss_floor_bytes": floor,
        "output_folder": outputs,
        "results": rows,
        "profile": prof,
        "any_command_failed": failed,
    }, indent=2) + "\n")
    print(f"results written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
