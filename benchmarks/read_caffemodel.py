#!/usr/bin/env python3
"""Benchmark: how fast and lean is the caffemodel reader on a VGG16-size file (~553 MB)?

Each command runs as its own child process, so wall time and peak RSS are whole-process
figures; ``cp`` of the same file, measured in the same run, is the baseline. A child's peak
RSS (from ``wait4``) is never below this script's own RSS when it forked the child, so this
script stays lean (it does not import numpy) and reports that floor (``true``'s peak RSS).

    .venv/bin/python benchmarks/read_caffemodel.py [--repeats 3] [--workdir DIR --keep]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

VGG16_PARAMS = 138_357_544
TARGET_WALL_S = 1.5  # reading a VGG16 file must take at most this long
TARGET_RSS_RATIO = 1.5  # ... and its peak RSS must stay under this many times the file size
RESULTS = Path(__file__).resolve().parent / "results" / "read_caffemodel.json"

# VGG16 deploy net (Simonyan & Zisserman, configuration D), V2 format, one layer a line.
VGG16_PROTOTXT = """\
name: "VGG16"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }
layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1" convolution_param { num_output: 64 pad: 1 kernel_size: 3 } }
layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
layer { name: "conv1_2" type: "Convolution" bottom: "conv1_1" top: "conv1_2" convolution_param { num_output: 64 pad: 1 kernel_size: 3 } }
layer { name: "relu1_2" type: "ReLU" bottom: "conv1_2" top: "conv1_2" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_2" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2_1" type: "Convolution" bottom: "pool1" top: "conv2_1" convolution_param { num_output: 128 pad: 1 kernel_size: 3 } }
layer { name: "relu2_1" type: "ReLU" bottom: "conv2_1" top: "conv2_1" }
layer { name: "conv2_2" type: "Convolution" bottom: "conv2_1" top: "conv2_2" convolution_param { num_output: 128 pad: 1 kernel_size: 3 } }
layer { name: "relu2_2" type: "ReLU" bottom: "conv2_2" top: "conv2_2" }
layer { name: "pool2" type: "Pooling" bottom: "conv2_2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv3_1" type: "Convolution" bottom: "pool2" top: "conv3_1" convolution_param { num_output: 256 pad: 1 kernel_size: 3 } }
layer { name: "relu3_1" type: "ReLU" bottom: "conv3_1" top: "conv3_1" }
layer { name: "conv3_2" type: "Convolution" bottom: "conv3_1" top: "conv3_2" convolution_param { num_output: 256 pad: 1 kernel_size: 3 } }
layer { name: "relu3_2" type: "ReLU" bottom: "conv3_2" top: "conv3_2" }
layer { name: "conv3_3" type: "Convolution" bottom: "conv3_2" top: "conv3_3" convolution_param { num_output: 256 pad: 1 kernel_size: 3 } }
layer { name: "relu3_3" type: "ReLU" bottom: "conv3_3" top: "conv3_3" }
layer { name: "pool3" type: "Pooling" bottom: "conv3_3" top: "pool3" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv4_1" type: "Convolution" bottom: "pool3" top: "conv4_1" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu4_1" type: "ReLU" bottom: "conv4_1" top: "conv4_1" }
layer { name: "conv4_2" type: "Convolution" bottom: "conv4_1" top: "conv4_2" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu4_2" type: "ReLU" bottom: "conv4_2" top: "conv4_2" }
layer { name: "conv4_3" type: "Convolution" bottom: "conv4_2" top: "conv4_3" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu4_3" type: "ReLU" bottom: "conv4_3" top: "conv4_3" }
layer { name: "pool4" type: "Pooling" bottom: "conv4_3" top: "pool4" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv5_1" type: "Convolution" bottom: "pool4" top: "conv5_1" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu5_1" type: "ReLU" bottom: "conv5_1" top: "conv5_1" }
layer { name: "conv5_2" type: "Convolution" bottom: "conv5_1" top: "conv5_2" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu5_2" type: "ReLU" bottom: "conv5_2" top: "conv5_2" }
layer { name: "conv5_3" type: "Convolution" bottom: "conv5_2" top: "conv5_3" convolution_param { num_output: 512 pad: 1 kernel_size: 3 } }
layer { name: "relu5_3" type: "ReLU" bottom: "conv5_3" top: "conv5_3" }
layer { name: "pool5" type: "Pooling" bottom: "conv5_3" top: "pool5" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6" inner_product_param { num_output: 4096 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 4096 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: "Dropout" bottom: "fc7" top: "fc7" dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 1000 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""

# Reads the file and touches every blob without copying it: first and last value of each.
READ_SNIPPET = """\
import sys
from caffe2torch.caffe.caffemodel import read_caffemodel
w = read_caffemodel(sys.argv[1])
checksum = 0.0
for layer in w.layers.values():
    for blob in layer.blobs:
        flat = blob.data.reshape(-1)
        checksum += float(flat[0]) + float(flat[-1])
print(w.total_values, repr(checksum))
"""


@contextlib.contextmanager
def work_folder(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``--workdir`` (kept), or a temporary folder removed afterwards."""
    if workdir is not None:
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_measured(
    argv: list[str], workdir: Path, label: str, env: dict | None = None
) -> tuple[float, int, int, str]:
    """Run one child in ``workdir``; return (wall seconds, peak RSS bytes, exit code, stdout)."""
    out_path, err_path = workdir / f"{label}.out", workdir / f"{label}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=workdir, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, nothing else's
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # Linux gives KiB
    if code != 0:
        sys.stderr.write(f"{label} failed (exit {code}):\n{err_path.read_text()[-2000:]}\n")
    return wall, rss, code, out_path.read_text()


def prepare(workdir: Path, keep: bool, seed: int) -> tuple[Path, Path]:
    proto, model = workdir / "vgg16.prototxt", workdir / "vgg16.caffemodel"
    proto.write_text(VGG16_PROTOTXT)
    cli = [sys.executable, "-m", "caffe2torch"]
    summary = json.loads(subprocess.run(
        [*cli, "inspect", str(proto), "--json"], check=True, capture_output=True, text=True
    ).stdout)
    params = summary["totals"]["params"]
    if params != VGG16_PARAMS:
        sys.exit(f"the VGG16 prototxt has {params:,} parameters, expected {VGG16_PARAMS:,}")
    # float32 values plus a few KiB of protobuf framing (names, shapes, lengths)
    size_ok = model.exists() and 0 <= model.stat().st_size - 4 * VGG16_PARAMS < 64 * 1024
    if keep and size_ok:
        print(f"reusing {model}")
    else:
        print(f"writing {model} ...", flush=True)
        subprocess.run([*cli, "synth-weights", str(proto), "-o", str(model), "--seed", str(seed)],
                       check=True)
        os.sync()  # flush the new file now rather than while commands are being timed
    return proto, model


def benchmark(workdir: Path, proto: Path, model: Path, repeats: int) -> tuple[dict, bool, int]:
    copy = workdir / "copy.caffemodel"
    py = sys.executable
    # GNU cp would clone instead of copying on filesystems with reflinks (btrfs, xfs)
    gnu_cp = subprocess.run(["cp", "--version"], capture_output=True).returncode == 0
    commands = {
        "cp (baseline)": ["cp", *(["--reflink=never"] if gnu_cp else []), str(model), str(copy)],
        "read_caffemodel": [py, "-c", READ_SNIPPET, str(model)],
        "inspect --json": [py, "-m", "caffe2torch", "inspect", str(proto), str(model), "--json"],
        "python -c 'import numpy'": [py, "-c", "import numpy"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rsss: dict[str, list[int]] = {name: [] for name in commands}
    failed = False
    floor = run_measured(["true"], workdir, "floor")[1]
    run_measured(commands["cp (baseline)"], workdir, "warmup")  # puts the file in page cache
    copy.unlink(missing_ok=True)
    for _ in range(repeats):  # round-robin, so drift on the machine hits every command alike
        for i, (name, argv) in enumerate(commands.items()):
            wall, rss, code, stdout = run_measured(argv, workdir, f"cmd{i}")
            copy.unlink(missing_ok=True)
            failed |= code != 0
            if name == "read_caffemodel" and code == 0 and int(stdout.split()[0]) != VGG16_PARAMS:
                sys.stderr.write(f"read_caffemodel saw {stdout.split()[0]} values\n")
                failed = True
            walls[name].append(wall)
            rsss[name].append(rss)
    size = model.stat().st_size
    cp_wall = statistics.median(walls["cp (baseline)"])
    rows = {}
    for name in commands:
        wall, rss = statistics.median(walls[name]), max(rsss[name])
        rows[name] = {
            "argv": [Path(a).name if a == py else a for a in commands[name]],
            "wall_s_median": wall, "wall_s_all": walls[name], "peak_rss_bytes": rss,
            "rss_over_file": rss / size, "wall_over_cp": wall / cp_wall,
        }
    for name in ("read_caffemodel", "inspect --json"):
        row = rows[name]
        row["pass_wall"] = row["wall_s_median"] <= TARGET_WALL_S
        row["pass_rss"] = row["rss_over_file"] < TARGET_RSS_RATIO
    return rows, failed, floor


def report(rows: dict, size: int, floor: int) -> None:
    print(f"\nfile: {size:,} bytes ({size / 2**20:.1f} MiB), {VGG16_PARAMS:,} values\n")
    print(f"{'command':<26}{'wall s':>9}{'RSS MiB':>10}{'RSS/file':>10}{'wall/cp':>9}  targets")
    for name, row in rows.items():
        verdict = ""
        if "pass_wall" in row:
            verdict = (f"wall {'PASS' if row['pass_wall'] else 'FAIL'}, "
                       f"RSS {'PASS' if row['pass_rss'] else 'FAIL'}")
        print(f"{name:<26}{row['wall_s_median']:>9.3f}{row['peak_rss_bytes'] / 2**20:>10.1f}"
              f"{row['rss_over_file']:>10.2f}{row['wall_over_cp']:>9.1f}  {verdict}")
    print(f"\ntargets: wall <= {TARGET_WALL_S} s, peak RSS < {TARGET_RSS_RATIO}x the file size "
          "(medians of wall time, max of peak RSS)")
    print(f"RSS floor: any child shows at least {floor / 2**20:.1f} MiB (this script's own RSS)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--workdir", type=Path, help="folder for the files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="reuse an existing vgg16.caffemodel in --workdir")
    parser.add_argument("--seed", type=int, default=0, help="seed for synth-weights")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    with work_folder(args.workdir, "c2t-bench-") as workdir:
        proto, model = prepare(workdir, args.keep, args.seed)
        rows, failed, floor = benchmark(workdir, proto, model, args.repeats)
        size = model.stat().st_size

    report(rows, size, floor)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": importlib.metadata.version("numpy"),
        },
        "file_bytes": size, "values": VGG16_PARAMS, "repeats": args.repeats,
        "targets": {"wall_s": TARGET_WALL_S, "rss_over_file": TARGET_RSS_RATIO},
        "rss_floor_bytes": floor,
        "results": rows, "any_command_failed": failed,
    }, indent=2) + "\n")
    print(f"results written to {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
