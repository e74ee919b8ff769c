#!/usr/bin/env python3
"""Benchmark: does the converted VGG16 run as lean and as fast as a hand-written one (CPU)?

Three models, all with the same weights, on one seeded input batch (default 8x3x224x224):

- ``converted``: ``convert(VGG16, random_weights=True)`` written with ``.write()`` and loaded
  back with ``load_converted``, so it is the real generated ``model.py`` and ``model.pth``;
- ``hand-written``: the torchvision-style ``nn.Sequential`` below (Conv2d 3x3 pad 1 +
  ReLU(inplace=True), MaxPool2d(2, 2), Flatten, Linear/ReLU/Dropout, Softmax), its state
  copied from ``model.pth`` by position, shapes checked. This is the baseline;
- ``keep-alive (emulated)``: a class generated in this script in the style of MMdnn's
  ``KitModel``: every intermediate has its own local name and lives until ``return``
  (``F.pad`` before each convolution, out-of-place ``F.relu``, ``F.max_pool2d``, in-place
  ``F.dropout``, ``F.softmax``). It is an EMULATION of that code style, not MMdnn's output:
  no MMdnn engine exists in this project yet. It shows what "no dead tensors" is worth.

Every measurement runs in child processes, with ``torch.set_num_threads`` fixed (default 2),
the model in eval mode and under ``torch.no_grad()``:

- activation memory, one process per variant per round (``--rounds``, the order rotating:
  A B C, B C A, C A B), each holding only its own model: after loading the model, making the
  input and one warm-up forward, the child resets its peak RSS (writes ``5`` to
  ``/proc/self/clear_refs``, then checks that ``VmHWM`` dropped to ``VmRSS``), reads ``VmRSS``
  as the baseline, runs one forward and reads ``VmHWM``: activation memory = peak - baseline,
  median over rounds. If the kernel refuses the reset, a thread samples ``VmRSS`` every
  millisecond during the forward instead and the result says ``"sampled"`` (it can miss short
  peaks). These children run with glibc's mmap threshold fixed (``MALLOC_ENV`` below), else the
  warm-up's freed activations stay cached in the heap and the reading shows the allocator's
  cache instead of the forward's live tensors; ``--default-malloc`` turns that off.
- forward time, in ONE process holding all three models, alternating forward by forward:
  one warm-up each, then ``--forwards`` rounds of one timed forward per variant, the order
  rotating each round. Alternating inside one process was chosen over one process per variant
  because this machine is shared: other jobs come and go within seconds, and a process that
  runs all its forwards in a busy spell reads twice as slow (seen: 1.3 s and 2.9 s for the
  same forward). Adjacent forwards see the same load, so the time ratio is the median of the
  per-round ratios (each round's converted / hand-written), with the ratio of the medians
  beside it. This process uses the default allocator, as a user would. It also checks, on the
  warm-up outputs, that the three models agree (``allclose``; they are in fact bitwise equal),
  so the comparison is between equal computations; a mismatch makes the script exit 1.

Targets for ``converted`` against the hand-written baseline measured in the same run:
activation memory and forward time within 1.05x (PASS/FAIL). The load average before and
after is recorded: figures taken on a busy machine are noisier.

Caveats: RSS counts pages touched, so it includes oneDNN's buffers, not only the tensors: on
this CPU build a convolution peaks at twice its output (a lone 64->64 conv with a 98 MiB
output reads 196 MiB), so VGG16's floor at batch 8 is conv1_2's input + 2 x its output =
294 MiB for any model, not the arithmetic 196. The ``ideal`` line is that arithmetic: the
largest input + output of one layer, and the sum of all intermediates (what keeping
everything alive costs). The converted model pools with ``ceil_mode=True`` (Caffe's rounding)
where the Sequential uses the default; at 224x224 every pooled side is even, so the shapes
and outputs are the same. Times are whole-batch CPU forwards on this machine: compare the
ratios, not the absolute figures.

    .venv/bin/python benchmarks/vgg16_forward.py [--rounds 3] [--forwards 7] [--threads 2]
                                                  [--batch 8] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_caffemodel import VGG16_PARAMS, VGG16_PROTOTXT, run_measured, work_folder  # noqa: E402

TARGET_RATIO = 1.05  # converted / hand-written, for activation memory and for forward time
RESULTS = Path(__file__).resolve().parent / "results" / "vgg16_forward.json"
MIB = 2**20
# glibc raises its mmap threshold (up to 32 MiB) each time it frees an mmap'd block, after which
# freed activations stay in the heap and the next forward reuses them without touching new
# pages: the peak-RSS reading then shows the allocator's cache, not the forward's live tensors.
# A fixed threshold (the default value, but fixed) sends every block over 128 KiB to mmap and
# back to the kernel on free, in every variant alike. --default-malloc turns this off.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}

BASELINE = "hand-written"
VARIANTS = ("converted", BASELINE, "keep-alive (emulated)")

# torchvision's VGG16 ("D"): channels of each 3x3 convolution, "M" for a 2x2 max pool.
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Makes the converted folder in a child, so this script never imports torch itself.
PREPARE_SNIPPET = """\
import sys, time
from caffe2torch.emit import convert
start = time.perf_counter()
convert(sys.argv[1], random_weights=True, seed=int(sys.argv[3])).write(sys.argv[2], overwrite=True)
print(time.perf_counter() - start)
"""


# ----------------------------------------------------------------------------- the models
def hand_written(nn):
    """The baseline: VGG16 as one would write it by hand (torchvision's layout)."""
    layers, channels = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    layers += [
        nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 1000), nn.Softmax(dim=1),
    ]
    return nn.Sequential(*layers)


def keepalive_source() -> str:
    """``KitModel`` in MMdnn's style for VGG16: one local per intermediate, all kept to the end.

    Convolutions get their padding from a separate ``F.pad`` (a tensor of its own), ReLU is
    out of place, dropout is ``F.dropout(..., inplace=True)`` as MMdnn writes it."""
    init = ["super().__init__()"]
    body = []
    x, channels, block, conv = "x", 3, 1, 0
    for v in CFG:
        if v == "M":
            name = f"pool{block}"
            body.append(f"{name} = F.max_pool2d({x}, kernel_size=(2, 2), stride=(2, 2), "
                        "padding=0, ceil_mode=False)")
            x, block, conv = name, block + 1, 0
            continue
        conv += 1
        name = f"conv{block}_{conv}"
        init.append(f"self.{name} = nn.Conv2d({channels}, {v}, kernel_size=(3, 3), stride=(1, 1))")
        body.append(f"{name}_pad = F.pad({x}, (1, 1, 1, 1))")
        body.append(f"{name} = self.{name}({name}_pad)")
        body.append(f"relu{block}_{conv} = F.relu({name})")
        x, channels = f"relu{block}_{conv}", v
    body.append(f"fc6_0 = {x}.view({x}.size(0), -1)")
    x = "fc6_0"
    for fc, (n_in, n_out) in zip((6, 7, 8), ((25088, 4096), (4096, 4096), (4096, 1000))):
        init.append(f"self.fc{fc}_1 = nn.Linear({n_in}, {n_out})")
        body.append(f"fc{fc}_1 = self.fc{fc}_1({x})")
        x = f"fc{fc}_1"
        if fc < 8:
            body.append(f"relu{fc} = F.relu({x})")
            body.append(f"drop{fc} = F.dropout(input=relu{fc}, p=0.5, training=self.training, "
                        "inplace=True)")
            x = f"drop{fc}"
    body.append(f"prob = F.softmax({x}, dim=1)")
    body.append("return prob")
    return "\n".join([
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
        "",
        "class KitModel(nn.Module):",
        "    def __init__(self):",
        *(f"        {line}" for line in init),
        "",
        "    def forward(self, x):",
        *(f"        {line}" for line in body),
        "",
    ])


def load_by_position(model, state: dict) -> None:
    """Load ``state`` into ``model`` entry by entry in order, checking every shape."""
    keys = list(model.state_dict())
    values = list(state.values())
    if len(keys) != len(values):
        raise SystemExit(f"{len(values)} weights for {len(keys)} entries of {type(model).__name__}")
    ours = model.state_dict()
    for (key, value), src in zip(zip(keys, values), state):
        if tuple(ours[key].shape) != tuple(value.shape):
            raise SystemExit(f"{src} {tuple(value.shape)} does not fit "
                             f"{key} {tuple(ours[key].shape)}")
    model.load_state_dict(dict(zip(keys, values)))


def build(variant: str, model_dir: Path):
    """The model of ``variant`` in eval mode, with the converted folder's weights."""
    import torch
    from torch import nn

    if variant == "converted":
        from caffe2torch.emit import load_converted

        return load_converted(model_dir)
    if variant == BASELINE:
        model = hand_written(nn)
    else:
        namespace: dict = {}
        exec(compile(keepalive_source(), "<KitModel emulation>", "exec"), namespace)
        model = namespace["KitModel"]()
    manifest = json.loads((model_dir / "conversion.json").read_text())
    state = torch.load(model_dir / manifest["weights_file"], weights_only=True)
    load_by_position(model, state)
    del state
    return model.eval()


# ----------------------------------------------------------------------------- in a child
def read_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; True if the kernel did it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    status = read_status()
    return status["VmHWM"] - status["VmRSS"] <= MIB  # RSS may have grown a page or two since


def sampled_peak(fn) -> tuple[int, int]:
    """Fallback: (baseline, highest VmRSS seen) while ``fn`` runs, sampled every ms."""
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    peak, done = [rss()], threading.Event()
    baseline = peak[0]

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return baseline, max(peak[0], rss())


def make_input(torch, batch: int, seed: int):
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def child_memory(variant: str, model_dir: Path, args) -> dict:
    """Activation memory of one forward of ``variant`` (the only model in this process)."""
    import gc

    import torch

    torch.set_num_threads(args.threads)
    model = build(variant, model_dir)
    x = make_input(torch, args.batch, args.seed)
    with torch.no_grad():
        model(x)  # warm-up: oneDNN primitives, first touch of the allocator's pools
        gc.collect()
        if reset_peak():
            method = "clear_refs"
            baseline = read_status()["VmRSS"]
            out = model(x)
            peak = read_status()["VmHWM"]
            del out
        else:
            method = "sampled"
            baseline, peak = sampled_peak(lambda: model(x))
    return {"activation_bytes": peak - baseline, "baseline_rss_bytes": baseline,
            "peak_method": method}


def child_time(model_dir: Path, args) -> dict:
    """All three models in one process: check their outputs agree, then time forwards,
    alternating variants forward by forward."""
    import torch

    torch.set_num_threads(args.threads)
    models = {variant: build(variant, model_dir) for variant in VARIANTS}
    x = make_input(torch, args.batch, args.seed)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    with torch.no_grad():
        outs = {variant: model(x) for variant, model in models.items()}  # also the warm-up
        ref = outs[BASELINE]
        check = {
            variant: {
                "shape": list(out.shape),
                "max_abs_diff": float((out - ref).abs().max()),
                "bitwise_equal": bool(torch.equal(out, ref)),
                "allclose": bool(torch.allclose(out, ref, rtol=1e-4, atol=1e-6)),
            }
            for variant, out in outs.items()
        }
        check["_output"] = {"argmax": ref.argmax(1).tolist(), "max_prob": float(ref.max())}
        del outs, ref
        for r in range(args.forwards):
            for variant in VARIANTS[r % 3:] + VARIANTS[:r % 3]:
                start = time.perf_counter()
                models[variant](x)
                times[variant].append(time.perf_counter() - start)
    return {"check": check, "forward_s": times}


# ----------------------------------------------------------------------------- the parent
def run_child(argv: list[str], workdir: Path, label: str,
              env: dict | None = None) -> tuple[dict | None, int, float]:
    """Run one child; return (the JSON it printed last, its peak RSS, wall seconds)."""
    wall, rss, code, out = run_measured(argv, workdir, label, env)
    if code != 0:
        return None, rss, wall
    return json.loads(out.strip().splitlines()[-1]), rss, wall


def ideal_bytes(batch: int) -> tuple[int, int]:
    """(largest input + output of one layer, all intermediates together) for VGG16, float32.

    The net's input is not counted (it exists before the forward, in the baseline)."""
    channels, side, first = 3, 224, True
    floor = keep = 0
    for v in CFG:
        size_in = channels * side * side
        if v == "M":
            side //= 2
            size_out = channels * side * side
            keep += size_out
        else:
            size_out = v * side * side
            keep += channels * (side + 2) ** 2 + 2 * size_out  # F.pad, conv, relu
            channels = v
        floor = max(floor, (0 if first else size_in) + size_out)
        first = False
    keep += 2 * 4096 + 2 * 4096 + 2 * 1000  # fc6, relu6, fc7, relu7, fc8, prob
    return floor * batch * 4, keep * batch * 4


def prepare(workdir: Path, seed: int) -> tuple[Path, float]:
    proto, model_dir = workdir / "vgg16.prototxt", workdir / "vgg16_converted"
    proto.write_text(VGG16_PROTOTXT)
    print(f"converting {proto.name} with random weights (seed {seed}) into {model_dir} ...",
          flush=True)
    done = subprocess.run([sys.executable, "-c", PREPARE_SNIPPET, str(proto), str(model_dir),
                           str(seed)], check=True, capture_output=True, text=True)
    return model_dir, float(done.stdout.split()[-1])


def child_argv(mode: str, model_dir: Path, args, variant: str = "") -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--variant", variant,
            "--model-dir", str(model_dir), "--threads", str(args.threads), "--batch",
            str(args.batch), "--forwards", str(args.forwards), "--seed", str(args.seed)]


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def benchmark(workdir: Path, model_dir: Path, args) -> tuple[dict, dict, bool, dict]:
    failed = False
    log: dict = {"loadavg_before": loadavg(), "memory_round_orders": []}

    print(f"timing: all three models in one process, {args.forwards} alternating rounds ...",
          flush=True)
    timed, rss, wall = run_child(child_argv("time", model_dir, args), workdir, "time")
    check = {}
    if timed is None:
        failed = True
    else:
        check = timed["check"]
        log["timing_process"] = {"peak_rss_bytes": rss, "wall_s": wall}
        for variant in VARIANTS:
            if not check[variant]["allclose"]:
                sys.stderr.write(f"{variant} differs from {BASELINE}: {check[variant]}\n")
                failed = True

    env = None if args.default_malloc else {**os.environ, **MALLOC_ENV}
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        log["memory_round_orders"].append(list(order))
        for variant in order:
            print(f"memory, round {r + 1}/{args.rounds}: {variant} ...", flush=True)
            label = f"mem-r{r}-{VARIANTS.index(variant)}"
            result, rss, wall = run_child(
                child_argv("memory", model_dir, args, variant), workdir, label, env)
            if result is None:
                failed = True
                continue
            result.update(round=r, process_peak_rss_bytes=rss, process_wall_s=wall)
            runs[variant].append(result)
    log["loadavg_after"] = loadavg()

    rows = {}
    for variant in VARIANTS:
        row = rows[variant] = {}
        if runs[variant]:
            mems = [run["activation_bytes"] for run in runs[variant]]
            row.update({
                "activation_bytes_median": statistics.median(mems),
                "activation_bytes_all": mems,
                "peak_methods": sorted({run["peak_method"] for run in runs[variant]}),
                "process_peak_rss_bytes_max": max(run["process_peak_rss_bytes"]
                                                  for run in runs[variant]),
                "memory_runs": runs[variant],
            })
        if timed is not None:
            times = timed["forward_s"][variant]
            row.update({"forward_s_median": statistics.median(times), "forward_s_all": times})
    base = rows[BASELINE]
    for variant, row in rows.items():
        if "activation_bytes_median" in row and "activation_bytes_median" in base:
            row["memory_ratio"] = row["activation_bytes_median"] / base["activation_bytes_median"]
        if timed is not None:
            pairs = zip(row["forward_s_all"], base["forward_s_all"])
            row["time_ratio_per_round"] = [t / b for t, b in pairs]
            row["time_ratio"] = statistics.median(row["time_ratio_per_round"])
            row["time_ratio_of_medians"] = row["forward_s_median"] / base["forward_s_median"]
        if variant == "converted":
            if "memory_ratio" in row:
                row["pass_memory"] = row["memory_ratio"] <= TARGET_RATIO
            if "time_ratio" in row:
                row["pass_time"] = row["time_ratio"] <= TARGET_RATIO
    return rows, check, failed, log


def report(rows: dict, check: dict, log: dict, args) -> None:
    floor, keep = ideal_bytes(args.batch)
    nan = float("nan")
    print(f"\nVGG16, input {args.batch}x3x224x224, {args.threads} threads, no_grad, eval; memory: "
          f"median of {args.rounds} processes per variant; time: {args.forwards} alternating "
          "rounds in one process\n")
    print(f"{'variant':<23}{'act. MiB':>10}{'[min-max]':>13}{'fwd s':>8}{'[min-max]':>13}"
          f"{'mem x':>7}{'time x':>8}  target")
    for variant, row in rows.items():
        if variant == BASELINE:
            verdict = "(baseline)"
        elif variant != "converted":
            verdict = "(emulation, no target)"
        else:
            verdict = ", ".join(f"{what} {'PASS' if row[key] else 'FAIL'}" for what, key in
                                (("mem", "pass_memory"), ("time", "pass_time")) if key in row)
        mems, times = row.get("activation_bytes_all"), row.get("forward_s_all")
        mem_span = f"[{min(mems) / MIB:.0f}-{max(mems) / MIB:.0f}]" if mems else ""
        time_span = f"[{min(times):.2f}-{max(times):.2f}]" if times else ""
        print(f"{variant:<23}{row.get('activation_bytes_median', nan) / MIB:>10.1f}{mem_span:>13}"
              f"{row.get('forward_s_median', nan):>8.3f}{time_span:>13}"
              f"{row.get('memory_ratio', nan):>7.2f}{row.get('time_ratio', nan):>8.2f}  {verdict}")
    print(f"{'ideal (arithmetic)':<23}{floor / MIB:>10.1f}  largest input + output of one layer; "
          f"all intermediates kept alive: {keep / MIB:.1f} MiB")
    print(f"\ntarget for 'converted': activation memory and forward time within {TARGET_RATIO}x "
          f"of '{BASELINE}'")
    print("time x = median of the per-round ratios (adjacent forwards); ratio of the medians: "
          + ", ".join(f"{v} {row['time_ratio_of_medians']:.2f}" for v, row in rows.items()
                      if "time_ratio_of_medians" in row))
    methods = sorted({m for row in rows.values() for m in row.get("peak_methods", [])})
    if methods and methods != ["clear_refs"]:
        print("NOTE: the kernel refused to reset the peak RSS in some runs; those readings are "
              "SAMPLED every 1 ms (may miss short peaks): " + ", ".join(methods))
    if args.default_malloc:
        print("NOTE: --default-malloc: the memory readings include glibc's caching of freed blocks")
    if check:
        diffs = ", ".join(f"{v}: max |diff| {check[v]['max_abs_diff']:.2e}"
                          f"{' (bitwise equal)' if check[v]['bitwise_equal'] else ''}"
                          for v in VARIANTS if v != BASELINE)
        print(f"outputs vs {BASELINE}: {diffs}")
    print("memory processes' peak RSS (wait4, includes loading the weights): " + ", ".join(
        f"{v} {row['process_peak_rss_bytes_max'] / MIB:.0f} MiB" for v, row in rows.items()
        if "process_peak_rss_bytes_max" in row))
    before, after = log["loadavg_before"], log["loadavg_after"]
    print(f"load average before {before[0]:.2f}, after {after[0]:.2f} ({os.cpu_count()} CPUs)"
          + ("  <- the machine was busy: expect noisier times" if max(before[0], after[0])
             > 0.5 * (os.cpu_count() or 1) else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3,
                        help="memory: processes per variant, interleaved (default 3)")
    parser.add_argument("--forwards", type=int, default=7,
                        help="time: timed forwards per variant, alternating (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the input")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the converted model and logs, kept (default: a temp dir)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="memory runs: keep glibc's dynamic mmap threshold (see MALLOC_ENV)")
    parser.add_argument("--child", choices=("time", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1 or args.forwards < 1 or args.threads < 1 or args.batch < 1:
        parser.error("--rounds, --forwards, --threads and --batch must be at least 1")

    if args.child == "time":
        print(json.dumps(child_time(args.model_dir, args)))
        return 0
    if args.child == "memory":
        print(json.dumps(child_memory(args.variant, args.model_dir, args)))
        return 0
    if not Path("/proc/self/status").exists():
        sys.exit("this benchmark reads /proc/self/status: it runs on Linux only")

    start = time.perf_counter()
    with work_folder(args.workdir, "c2t-fwd-") as workdir:
        model_dir, convert_s = prepare(workdir, args.seed)
        rows, check, failed, log = benchmark(workdir, model_dir, args)
    total_s = time.perf_counter() - start

    report(rows, check, log, args)
    import importlib.metadata

    floor, keep = ideal_bytes(args.batch)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": importlib.metadata.version("torch"),
        },
        "net": {"name": "VGG16", "params": VGG16_PARAMS, "input": [args.batch, 3, 224, 224]},
        "settings": {"threads": args.threads, "rounds": args.rounds, "forwards": args.forwards,
                     "seed": args.seed, "malloc_env": None if args.default_malloc else MALLOC_ENV},
        "targets": {"memory_ratio": TARGET_RATIO, "time_ratio": TARGET_RATIO,
                    "baseline": BASELINE},
        "ideal_bytes": {"largest_layer_in_plus_out": floor, "all_intermediates": keep},
        "convert_and_write_s": convert_s,
        "output_check": check,
        "log": log,
        "results": rows,
        "total_s": total_s,
        "any_command_failed": failed,
    }, indent=2) + "\n")
    print(f"results written to {RESULTS} (took {total_s:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
