"""``make fuzz``: the properties of tests/test_fuzz.py run for minutes, in worker processes.

    python tools/fuzz.py [--seconds 300] [--workers 2] [--targets prototxt,cli] [--out fuzz-findings]

(``FUZZ_SECONDS``, ``FUZZ_WORKERS`` and ``FUZZ_TARGETS`` set the same.) Each worker draws new
random cases from every target in turn (tests/fuzz_support.py) and checks every command
against the CLI's contract. Each distinct finding (deduplicated by class and, for tracebacks,
the exception type and its innermost caffe2torch frame) is saved once, with its reproducer:

    fuzz-findings/<class>-<hash>/files/      the inputs
    fuzz-findings/<class>-<hash>/repro.sh    the command lines (run from anywhere)
    fuzz-findings/<class>-<hash>/report.txt  stderr, the traceback

A worker that dies (a segfault in native code, a hang that faulthandler ended) is a "crash"
finding, saved with the case it was running, and is replaced. At the end: the number of inputs
tried, the findings by class, and exit status 1 if there was any.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

RESTART = 75  # a worker's exit status asking to be replaced (after a hang)


class TimeUp(BaseException):
    pass


# ------------------------------------------------------------------------------- worker
def worker(index: int, until: float, out: Path, targets: list[str]) -> int:
    import fuzz_support as fs
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    state_dir = out / ".state"
    state_path = state_dir / f"worker-{index}.json"
    inflight = state_dir / f"worker-{index}.inflight.pkl"
    beat = state_dir / f"worker-{index}.beat"
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent's watchdog asks for stacks
    scratch = Path(tempfile.mkdtemp(prefix=f"c2t-fuzz-{index}-"))
    state = {"cases": {}, "commands": 0, "findings": {}, "done": False}
    last_write = [0.0]

    def save_state(force=False):
        now = time.monotonic()
        if force or now - last_write[0] > 2:
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(state_path)
            last_write[0] = now

    restart = [False]

    def record(case, result):
        state["cases"][case.target] = state["cases"].get(case.target, 0) + 1
        state["commands"] += result.commands
        for f in result.findings:
            rec = state["findings"].get(f.signature)
            if rec is None:
                folder = fs.save_finding(f, out)
                state["findings"][f.signature] = {
                    "cls": f.cls, "summary": f.summary, "count": 1, "folder": str(folder), "target": case.target,
                }
                print(f"[worker {index}] {f.cls}: {f.summary[:300]}", flush=True)
                save_state(force=True)
            else:
                rec["count"] += 1
            if f.cls == "hang":
                restart[0] = True
        save_state()

    def make(target):
        strategy = fs.TARGETS[target](scratch)

        @settings(max_examples=20, derandomize=False, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @given(data=st.data())
        def prop(data):
            if time.time() > until:
                raise TimeUp
            beat.write_text(json.dumps({"phase": "draw", "t": time.time()}))
            case = data.draw(strategy)
            with open(inflight, "wb") as fh:
                pickle.dump(case, fh)
            beat.write_text(json.dumps({"phase": "run", "t": time.time(), "commands": len(case.argvs) + len(case.lib)}))
            result = fs.run_case(case, scratch)
            record(case, result)
            if restart[0]:
                raise TimeUp

        return prop

    props = {t: make(t) for t in targets}
    try:
        while time.time() < until and not restart[0]:
            for t in targets:
                try:
                    props[t]()
                except TimeUp:
                    break
                except Exception as e:  # noqa: BLE001 - the harness's own failure: say so, go on
                    if time.time() > until or restart[0]:
                        break  # hypothesis's complaint about the case TimeUp cut short
                    print(f"[worker {index}] harness error in {t}: {type(e).__name__}: {e}", flush=True)
                    import traceback

                    traceback.print_exc()
                if time.time() > until or restart[0]:
                    break
    finally:
        inflight.unlink(missing_ok=True)
        state["done"] = not restart[0]
        save_state(force=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return RESTART if restart[0] else 0


# ------------------------------------------------------------------------------- parent
def _crash(out: Path, index: int, rc: int, log: Path) -> dict | None:
    """A worker died: its in-flight case is the reproducer."""
    import fuzz_support as fs

    inflight = out / ".state" / f"worker-{index}.inflight.pkl"
    tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    case = None
    if inflight.exists():
        try:
            case = pickle.loads(inflight.read_bytes())
        except Exception:  # noqa: BLE001
            case = None
        inflight.unlink()
    target = case.target if case else "?"
    why = "hang in native code (faulthandler)" if "Timeout (" in tail or rc == "hang" else f"exit status {rc}"
    cls = "hang" if rc == "hang" or "Timeout (" in tail else "crash"
    f = fs.Finding(cls, f"crash|{target}|{why}", f"worker died ({why}) on a {target} case", tail, case=case,
                   argv=case.argvs[0] if case and case.argvs else None)
    folder = fs.save_finding(f, out)
    return {"cls": f.cls, "summary": f.summary, "count": 1, "folder": str(folder), "target": target}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 300)))
    p.add_argument("--workers", type=int, default=int(os.environ.get("FUZZ_WORKERS", min(2, os.cpu_count() or 1))))
    p.add_argument("--targets", default=os.environ.get("FUZZ_TARGETS", ""))
    p.add_argument("--out", type=Path, default=ROOT / "fuzz-findings")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--until", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()

    import fuzz_support as fs

    targets = [t for t in args.targets.split(",") if t] or list(fs.TARGETS)
    unknown = set(targets) - set(fs.TARGETS)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}; the targets are {', '.join(fs.TARGETS)}")
    out = args.out.resolve()
    if args.worker is not None:
        return worker(args.worker, args.until, out, targets)

    state = out / ".state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    start = time.time()
    until = start + args.seconds
    print(f"fuzzing {', '.join(targets)} for {args.seconds:.0f} s with {args.workers} worker(s); findings in {out}/",
          flush=True)
    procs: dict[int, tuple[subprocess.Popen, Path]] = {}
    crashes: list[dict] = []
    next_index = 0

    def spawn():
        nonlocal next_index
        i = next_index
        next_index += 1
        log = state / f"worker-{i}.log"
        cmd = [sys.executable, __file__, "--worker", str(i), "--until", str(until), "--out", str(out),
               "--targets", ",".join(targets)]
        with open(log, "wb") as fh:
            procs[i] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT), log)

    for _ in range(max(1, args.workers)):
        spawn()
    last_report = time.time()
    try:
        while procs:
            time.sleep(1)
            for i, (proc, log) in list(procs.items()):
                rc = proc.poll()
                if rc is None:
                    stuck = _stuck(state, i, fs.CASE_TIMEOUT)
                    if stuck or time.time() > until + 3 * fs.CASE_TIMEOUT + 180:
                        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack into the log
                        time.sleep(3)
                        proc.kill()
                        proc.wait()
                        if stuck == "draw":
                            print(f"[worker {i}] harness error: a strategy ran for minutes (see {log})", flush=True)
                            (state / f"worker-{i}.inflight.pkl").unlink(missing_ok=True)
                        else:
                            rec = _crash(out, i, "hang", log)
                            crashes.append(rec)
                            print(f"[worker {i}] hang: {rec['summary']}", flush=True)
                        if time.time() < until - 20:
                            spawn()
                        del procs[i]
                    continue
                del procs[i]
                _echo(log)
                if rc not in (0, RESTART):
                    rec = _crash(out, i, rc, log)
                    if rec:
                        crashes.append(rec)
                        print(f"[worker {i}] crash: {rec['summary']}", flush=True)
                if time.time() < until - 20:
                    spawn()
            if time.time() - last_report > 60:
                last_report = time.time()
                cases, _, found = _totals(state, crashes)
                print(f"  {time.time() - start:.0f} s: {cases} inputs, {len(found)} distinct finding(s)", flush=True)
    except KeyboardInterrupt:
        for proc, _ in procs.values():
            proc.terminate()
        print("interrupted", flush=True)
    return _summary(out, state, crashes, time.time() - start)


def _stuck(state: Path, index: int, timeout: float) -> str | None:
    """"draw" or "run" when the worker's current step has run far past every limit (a hang
    that neither the alarm nor faulthandler ended: in native code holding the GIL, or in a
    strategy)."""
    try:
        b = json.loads((state / f"worker-{index}.beat").read_text())
    except (OSError, ValueError):
        return None
    limit = 120 if b["phase"] == "draw" else (timeout + 30) * (b.get("commands", 1) + 2) + 200
    return b["phase"] if time.time() - b["t"] > limit else None


def _echo(log: Path) -> None:
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("[worker") and ("harness error" in line):
                print(line, flush=True)


def _totals(state: Path, crashes: list[dict]):
    cases: dict[str, int] = {}
    commands = 0
    found: dict[str, dict] = {}
    for path in state.glob("worker-*.json"):
        try:
            s = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for t, n in s["cases"].items():
            cases[t] = cases.get(t, 0) + n
        commands += s["commands"]
        for sig, rec in s["findings"].items():
            if sig in found:
                found[sig]["count"] += rec["count"]
            else:
                found[sig] = dict(rec)
    for rec in crashes:
        sig = f"crash|{rec['summary']}"
        if sig in found:
            found[sig]["count"] += 1
        else:
            found[sig] = dict(rec)
    return sum(cases.values()), (cases, commands), found


def _summary(out: Path, state: Path, crashes: list[dict], elapsed: float) -> int:
    import fuzz_support as fs

    total, (cases, commands), found = _totals(state, crashes)
    (out / "summary.json").write_text(json.dumps(
        {"seconds": round(elapsed), "inputs": total, "commands": commands, "by_target": cases,
         "findings": list(found.values())}, indent=1))
    print()
    print(f"fuzzed for {elapsed:.0f} s: {total} inputs tried ({commands} commands and library calls)")
    print("  " + ", ".join(f"{t}: {n}" for t, n in sorted(cases.items())))
    print(f"findings: {len(found)} distinct, {sum(r['count'] for r in found.values())} hits")
    for cls in fs.CLASSES:
        recs = [r for r in found.values() if r["cls"] == cls]
        print(f"  {fs.CLASS_TEXT[cls]}: {len(recs)} distinct, {sum(r['count'] for r in recs)} hits")
        for r in sorted(recs, key=lambda r: -r["count"]):
            print(f"    x{r['count']:<5} {r['summary'][:220]}")
            folder = Path(r["folder"])
            print(f"           {folder.relative_to(out.parent) if out.parent in folder.parents else folder}/")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
