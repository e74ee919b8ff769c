"""Run ``caffe2torch inspect`` on every net prototxt of the corpus in ../shared and count;
where a folder holds trained weights, also ``inspect NET WEIGHTS`` for each pair.

    .venv/bin/python tools/inspect_corpus.py [CORPUS_DIR]

Nets that do not declare their input shapes get them from INPUT_SHAPES in
tests/corpus_support.py (what a user would pass with --input-shape); solver files are
skipped. Each net either inspects (exit 0) or is refused with one line on stderr; the script
prints one line per net and the totals, and exits 1 if any net failed in another way (a
traceback, several lines, another exit code).
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# The corpus location, the input shapes and stages its nets need: shared with the tests.
from corpus_support import CORPUS, INPUT_SHAPES, STAGES, net_files, weight_files  # noqa: E402


def cli_args(path: Path, weights: Path | None = None) -> list[str]:
    rel = f"{path.parent.name}/{path.name}"
    args = ["inspect", str(path)] + ([str(weights)] if weights else [])
    for name, shape in INPUT_SHAPES.get(rel, {}).items():
        args += ["--input-shape", f"{name}={','.join(map(str, shape))}"]
    for stage in STAGES.get(rel, []):
        args += ["--stage", stage]
    return args


def main() -> int:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS
    nets = net_files(corpus)
    jobs = [(net, None) for net in nets]
    jobs += [(net, w) for net in nets for w in weight_files(net.parent)]
    exe = [sys.executable, "-m", "caffe2torch"]

    def run(job):
        r = subprocess.run(exe + cli_args(*job), capture_output=True, text=True)
        return job, r

    ok = refused = broken = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for (path, weights), r in pool.map(run, jobs):
            rel = f"{path.parent.name}/{path.name}" + (f" + {weights.name}" if weights else "")
            lines = r.stderr.strip().splitlines()
            if r.returncode == 0:
                ok += 1
                print(f"ok       {rel}")
            elif r.returncode == 2 and len(lines) == 1:
                refused += 1
                print(f"refused  {rel}\n         {lines[0]}")
            else:
                broken += 1
                print(f"BROKEN   {rel} (exit {r.returncode})\n{r.stderr}")
    print(
        f"\n{len(nets)} nets and {len(jobs) - len(nets)} net+weights pairs: {ok} inspected, "
        f"{refused} refused in one line, {broken} broken"
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
