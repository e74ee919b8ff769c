"""Convert every net of the corpus in ../shared with seeded random weights and verify it layer
by layer against the reference (``--reference auto``: real Caffe where it is built, OpenCV's
dnn module for the layers it cannot run).

    .venv/bin/python tools/convert_corpus.py [--json FILE] [--markdown FILE] [NAME-FILTER ...]

Each net gets synth-weights (seed 1), a seeded random input, one conversion and the same
check ``convert`` runs (every value within ``1e-5 + 1e-4 * max|ref|``). The script prints one
line per net and the totals, and exits 1 when a net that converts fails verification, a net
crashes, the reference cannot run a net that converts, or a net whose layer types are all
convertible (``caffe2torch.layers.convertible_types()``) is refused.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# One net converted and verified, the table, the corpus and its tables: shared with the tests
# (tests/test_convert_corpus.py runs the same check, one test per net).
from corpus_support import CORPUS, engine_totals, markdown, net_files, run_one  # noqa: E402


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
        f"{sum(r['status'] == 'unchecked' for r in done)} have nothing the reference can check; "
        f"{sum(r['status'] == 'refused' for r in rows)} refused; "
        f"{sum(r['status'] == 'n/a' for r in rows)} without a 3-channel input (--input-order); "
        f"{len(bad)} problems"
    )
    print("\n".join(engine_totals(rows)))
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
