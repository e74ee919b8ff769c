"""Convert a whole model zoo: every net under a folder, each into a folder of its own, checked
in parallel processes, with one summary (``caffe2torch convert-all``).

:func:`discover` finds the nets: every ``.prototxt`` under the folder, paired with the
``.caffemodel`` (or ``.caffemodel.h5``) of its folder whose name fits it best; solver files
(our reader says so) and train/val nets of a model whose deploy net is beside them are listed
as skipped. Each net gets a stable name, its folder and stem made safe for a file name
(``bvlc_alexnet/deploy.prototxt`` is ``bvlc_alexnet__deploy``), and is written to
``OUTDIR/<name>/`` exactly as ``caffe2torch convert`` writes it.

:func:`run` converts and checks them in worker processes (spawned; each runs a few models and
is replaced, so memory stays bounded; a worker that dies or runs past ``timeout`` costs only
its model, recorded as crashed), then writes ``summary.json`` and ``index.html``. A model whose
inputs (the sha256 of its prototxt and weights), options and caffe2torch version are those of
its last conversion is not converted again: a converted model is compared with its folder's
``conversion.json``, a refused one with the previous summary. Nothing in this module imports
torch: the parent process never does, only the workers.

``shard=(K, N)`` takes a fixed share of the zoo (by a hash of each name), writes
``summary-K-of-N.json`` and ``index-K-of-N.html``, and merges all N into ``summary.json``
once they are all there (:func:`merge`), so N machines can share one OUTDIR.

Progress is reported through a callback (:class:`Event`); this module never prints.
"""
from __future__ import annotations

import contextlib
import hashlib
import html
import json
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import __version__
from .errors import TEXT_LIMIT, CaffeError, PrototxtError, bug_line, printable
from .caffe.prototxt import read_prototxt
from .memory import CheckOptions
from .progress import reporting
from .folder import (
    MANIFEST,
    Destination,
    REPORT_FILE,
    atomic_file,
    dump_json,
    read_manifest,
    sha256_file,
    written_by_us,
)

FORMAT = "caffe2torch-zoo/1"
SUMMARY = "summary.json"
INDEX = "index.html"
REPORT_HTML = "report.html"
GENERATOR = '<meta name="generator" content="caffe2torch convert-all">'

CONVERTED = ("converted-passed", "converted-failed", "converted-unchecked")
STATUSES = (*CONVERTED, "refused", "crashed", "no-weights", "skipped-solver", "skipped-trainval")
PENDING = "pending"  # in a summary written before the run ended (interrupted)

# A worker runs at most this many models, or stops after one that took it past this much
# memory (its peak), and a fresh one takes over: memory stays bounded.
TASKS_PER_WORKER = 8
WORKER_PEAK_LIMIT = 3 << 30
# Refusals that say something about this machine or this run, not about the net: tried again.
TRANSIENT_ERRORS = frozenset({"MemoryLimitError", "MemoryError", "OutputError"})

WEIGHT_SUFFIXES = (".caffemodel.h5", ".caffemodel")
_OWN_NAMES = re.compile(r"(summary(-\d+-of-\d+)?\.json|index(-\d+-of-\d+)?\.html)", re.I)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_LIMIT = 120


class ZooError(CaffeError):
    """The zoo, the output folder or the options of ``convert-all`` cannot be used as given."""


# ---------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Net:
    """One prototxt of the zoo: converted (``skip`` empty) or listed as skipped, and why."""

    name: str
    rel: str  # the prototxt, relative to the zoo (posix)
    prototxt: Path
    weights_rel: str | None = None
    weights: Path | None = None
    skip: str = ""  # "skipped-solver" or "skipped-trainval"
    reason: str = ""


@dataclass
class Zoo:
    """What :func:`discover` found: every prototxt once, sorted by name."""

    root: Path
    nets: list[Net]
    notes: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        """The set of nets and their pairings (shards of one zoo agree on it)."""
        text = "\n".join(f"{n.name}\t{n.rel}\t{n.weights_rel or ''}\t{n.skip}" for n in self.nets)
        return hashlib.sha256(text.encode()).hexdigest()

    def shard(self, shard: tuple[int, int] | None) -> list[Net]:
        return [n for n in self.nets if in_shard(n.name, shard)]


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) as ``(K, N)``."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
    if not m:
        raise ZooError(f"--shard '{printable(text, 40)}': give K/N, like 1/4 (the first of four shares)")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ZooError(f"--shard {k}/{n}: K must be from 1 to N, and N at least 1")
    return k, n


def in_shard(name: str, shard: tuple[int, int] | None) -> bool:
    """Whether the model ``name`` is in share K of N: a hash of its name, so each model is in
    exactly one share whatever else the zoo holds."""
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16) % n == k - 1


_NET_WORDS = frozenset(
    {"deploy", "train", "val", "trainval", "test", "testing", "training", "inference", "solver",
     "v0", "v1", "v2"}
)
_TRAINVAL_WORDS = frozenset({"train", "val", "trainval", "training", "test", "testing"})
_WEIGHT_WORDS = frozenset(
    {"caffemodel", "h5", "weights", "pretrained", "trained", "model", "final", "snapshot"}
)
_ITER = re.compile(r"(?:^|[_.\-])iter[_.\-]?(\d+)$", re.I)
_SOLVER_HINT = re.compile(
    r"^[ \t]*(?:net|net_param|train_net|test_net|base_lr|lr_policy|max_iter|solver_mode|"
    r"snapshot_prefix|test_iter|test_interval|solver_type)[ \t]*[:{]",
    re.M,
)
_LAYER_BLOCK = re.compile(r"^[ \t]*layers?[ \t]*\{", re.M)


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _stem(name: str) -> str:
    for suffix in (*WEIGHT_SUFFIXES, ".prototxt"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _net_key(stem: str) -> list[str]:
    return [t for t in _tokens(stem) if t not in _NET_WORDS]


def _is_trainval(stem: str) -> bool:
    return any(t in _TRAINVAL_WORDS for t in _tokens(stem))


def _weights_key(name: str) -> tuple[list[str], int]:
    stem = _stem(name)
    m = _ITER.search(stem)
    iteration = int(m.group(1)) if m else -1
    if m:
        stem = stem[: m.start()]
    return [t for t in _tokens(stem) if t not in _WEIGHT_WORDS], iteration


def _related(a: list[str], b: list[str]) -> bool:
    """Two name keys of one model: equal, one empty (deploy.prototxt), or one a prefix."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _score(net: list[str], weights: list[str]) -> tuple[int, int]:
    """How well a weights file's name fits a net's: 3 the same words, 2 one a prefix of the
    other (or a generic name: deploy.prototxt), 1 some words in common, 0 none; then how many."""
    common = len(set(net) & set(weights))
    if net == weights:
        return 3, common
    if _related(net, weights):
        return 2, common
    return (1 if common else 0), common


def is_solver(path: Path) -> bool:
    """Whether ``path`` is a solver file: our reader says so (it sets a SolverParameter field
    where a net has none); a file it cannot read at all that sets two solver fields and no
    layer counts too."""
    try:
        with open(path, "rb") as f:
            text = f.read(TEXT_LIMIT).decode("utf-8", "replace")
    except OSError:
        return False
    hints = {m.group().split(":")[0].split("{")[0].strip() for m in _SOLVER_HINT.finditer(text)}
    if not hints:
        return False
    try:
        read_prototxt(path)
    except PrototxtError as e:
        if e.message.startswith("this is a solver file"):
            return True
        return len(hints) >= 2 and not _LAYER_BLOCK.search(text)
    return False


def model_name(rel: str) -> str:
    """The folder name of the net at ``rel`` (relative to the zoo): its folders and stem,
    joined by ``__``, with anything but letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    parts = rel.split("/")
    parts[-1] = _stem(parts[-1])
    name = "__".join(_UNSAFE.sub("_", p) for p in parts if p)
    name = re.sub(r"^\.+", lambda m: "_" * len(m.group()), name) or "_"
    if len(name) > NAME_LIMIT:
        name = name[: NAME_LIMIT - 9] + "-" + hashlib.sha256(rel.encode()).hexdigest()[:8]
    return name


def _unique_names(rels: Sequence[str]) -> dict[str, str]:
    """Each prototxt's model name; names that clash (ignoring case) or that are the names of
    convert-all's own files get a hash of the path."""
    names = {rel: model_name(rel) for rel in rels}
    seen = Counter(n.lower() for n in names.values())
    for rel, name in names.items():
        if seen[name.lower()] > 1 or _OWN_NAMES.fullmatch(name):
            names[rel] = name[: NAME_LIMIT - 9] + "-" + hashlib.sha256(rel.encode()).hexdigest()[:8]
    return names


def discover(root: str | Path, *, exclude: Iterable[str | Path] = ()) -> Zoo:
    """Every net under ``root`` (recursively; hidden folders and ``exclude`` left out),
    paired with its weights. See the module docstring for the rules."""
    root = Path(root)
    if not root.exists():
        raise ZooError("no such folder", file=root)
    if not root.is_dir():
        raise ZooError("is not a folder: give the folder that holds the nets", file=root)
    skip_dirs = {os.path.realpath(p) for p in exclude}
    found: list[tuple[str, Path, str | None, Path | None, str, str]] = []
    notes: list[str] = []

    def onerror(e: OSError) -> None:
        notes.append(f"{e.filename}: cannot be listed ({e.strerror or e})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d != "__pycache__"
            and os.path.realpath(here / d) not in skip_dirs
        )
        files = sorted(f for f in filenames if not f.startswith(".") and (here / f).is_file())
        nets = [f for f in files if f.lower().endswith(".prototxt")]
        weights = [f for f in files if f.lower().endswith(WEIGHT_SUFFIXES)]
        if nets or weights:
            found.extend(_folder(root, here, nets, weights, notes))
    names = _unique_names([f[0] for f in found])
    out = [
        Net(names[rel], rel, path, wrel, wpath, skip, reason)
        for rel, path, wrel, wpath, skip, reason in found
    ]
    out.sort(key=lambda n: n.name)
    return Zoo(root, out, notes)


def _folder(root: Path, here: Path, nets: list[str], weights: list[str], notes: list[str]):
    """The nets of one folder, each with its weights or the reason it is skipped."""
    prefix = here.relative_to(root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    solvers = {f for f in nets if is_solver(here / f)}
    plain = [f for f in nets if f not in solvers]
    deploys = [f for f in plain if not _is_trainval(_stem(f))]
    keys = {f: _net_key(_stem(f)) for f in plain}
    wkeys = {w: _weights_key(w) for w in weights}
    used: set[str] = set()
    rows = []
    for f in nets:
        rel = prefix + f
        if f in solvers:
            rows.append((rel, here / f, None, None, "skipped-solver",
                         "a solver file (training settings), not a net"))
            continue
        if f not in deploys:
            same = [d for d in deploys if _related(keys[f], keys[d])]
            if same:
                best = min(same, key=lambda d: (keys[d] != keys[f], len(d), d))
                rows.append((rel, here / f, None, None, "skipped-trainval",
                             f"a train/val net of the model whose deploy net {prefix + best} is "
                             "converted instead"))
                continue
        ranked = sorted(
            weights,
            key=lambda w: (*(-s for s in _score(keys[f], wkeys[w][0])), -wkeys[w][1],
                           w.lower().endswith(".h5"), w),
        )
        pick = None
        if ranked and (_score(keys[f], wkeys[ranked[0]][0])[0] > 0 or len(weights) == 1):
            pick = ranked[0]
            others = [w for w in ranked[1:] if _score(keys[f], wkeys[w][0])[0] == _score(keys[f], wkeys[pick][0])[0]]
            if others:
                notes.append(
                    f"{rel}: paired with {pick} (the latest of {len(others) + 1} weights files "
                    f"that fit its name equally: also {', '.join(others)})"
                )
            used.add(pick)
        rows.append((rel, here / f, prefix + pick if pick else None, here / pick if pick else None, "", ""))
    for w in weights:
        if w not in used:
            notes.append(f"{prefix + w}: no net in its folder pairs with it; not used")
    return rows


# ------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Event:
    """What :func:`run` reports as it goes.

    ``plan``: ``total`` models to convert this run (``rows``: the others, which need no
    work; ``notes``: what discovery noted);
    ``start`` / ``stage``: model ``name`` is at ``text``; ``done``: it finished (``row``),
    ``done`` of ``total``."""

    kind: str
    name: str = ""
    text: str = ""
    row: dict | None = None
    done: int = 0
    total: int = 0
    rows: tuple = ()
    notes: tuple = ()


Progress = Callable[[Event], None]


@dataclass
class Outcome:
    """The result of :func:`run` (or :func:`merge`): the summary and the files written."""

    summary: dict
    written: list[Path]
    ran: int = 0  # models converted (or tried) in this run
    merged: dict | None = None  # the merged summary, when this shard completed the set
    merge_note: str = ""  # why the shards were not merged yet
    interrupted: bool = False

    @property
    def rows(self) -> list[dict]:
        return self.summary["rows"]

    @property
    def failed(self) -> bool:
        """A model failed its check or crashed."""
        return any(r["status"] in ("converted-failed", "crashed") for r in self.rows)


# -------------------------------------------------------------------------------- rows
def _row(net: Net, *, status: str, random: bool = False, seed: int | None = None, **kw) -> dict:
    row = {
        "name": net.name,
        "prototxt": net.rel,
        "weights": net.weights_rel,
        "random_weights": random,
        "seed": seed,
        "status": status,
        "converted": status in CONVERTED,
        "check": None,
        "worst_rel": None,
        "compared": None,
        "reference": None,
        "seconds": None,
        "reason": None,
        "error": None,
        "folder": None,
        "sha256": None,
        "version": __version__,
        "unchanged": False,
    }
    row.update(kw)
    return row


def check_of(verification: dict | None) -> tuple[str, str | None]:
    """(passed | failed | unchecked, why) from conversion.json's ``verification``."""
    v = verification or {}
    status = v.get("status")
    if status == "passed":
        return "passed", None
    if status == "failed":
        return "failed", (
            f"failed verification: first divergence at layer '{v.get('first_divergence')}' "
            f"({v.get('failed')} value(s) failed); see report.md"
        )
    if status == "unchecked":
        return "unchecked", "not verified: the reference can check none of its values"
    why = v.get("skipped") if isinstance(v.get("skipped"), str) else "no check recorded"
    return "unchecked", f"not verified: {why}"


def converted_row(net: Net, outdir: Path, *, random: bool, seed: int | None, digest: dict,
                  seconds: float | None, unchanged: bool) -> dict:
    """The row of a converted model, from its folder's conversion.json (what ``verify``
    reads), so that the summary says what the folder says."""
    manifest = read_manifest(outdir / net.name)
    v = manifest.verification or {}
    check, why = check_of(v)
    return _row(
        net, status=f"converted-{check}", random=random, seed=seed, check=check,
        worst_rel=v.get("worst_rel"), compared=v.get("compared"),
        reference=v.get("reference"), seconds=seconds, reason=why, folder=net.name,
        sha256=digest, unchanged=unchanged,
        version=str(manifest.versions.get("caffe2torch", __version__)),
    )


def _fresh_folder(net: Net, outdir: Path, digest: dict, random: bool, seed: int | None) -> bool:
    """Whether ``OUTDIR/<name>`` is a complete conversion of these very inputs."""
    folder = outdir / net.name
    if not (folder / MANIFEST).is_file() or written_by_us(folder):
        return False
    try:
        m = read_manifest(folder)
    except CaffeError:
        return False
    if m.versions.get("caffe2torch") != __version__ or not (folder / m.weights_file).is_file():
        return False
    if m.source("prototxt").get("sha256") != digest["prototxt"]:
        return False
    w = m.source("weights")
    if random:
        return w.get("random") is True and w.get("seed") == seed
    return w.get("sha256") == digest["weights"] and not w.get("random")


def _may_replace(net: Net, outdir: Path, previous: dict[str, list[dict]]) -> tuple[bool, str]:
    """Whether ``OUTDIR/<name>`` may be written: it is absent or empty, or it is a folder
    caffe2torch wrote that a summary of ours lists, or that converted this same prototxt."""
    folder = outdir / net.name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        return False, "exists and is not a folder convert-all wrote"
    if not folder.exists() or not any(folder.iterdir()):
        return True, ""
    why = written_by_us(folder)
    if why:
        return False, f"exists and {why}: move it away or give another -o"
    if any(r.get("folder") == net.name for r in previous.get(net.name, ())):
        return True, ""
    try:
        if read_manifest(folder).source("prototxt").get("file") == net.prototxt.name:
            return True, ""
    except CaffeError:
        pass
    return False, "exists and holds a conversion of another net: move it away or give another -o"


def _reusable(row: dict, net: Net, digest: dict, random: bool, seed: int | None) -> bool:
    return (
        row.get("status") == "refused"
        and row.get("error") not in TRANSIENT_ERRORS
        and row.get("prototxt") == net.rel
        and row.get("weights") == net.weights_rel
        and row.get("sha256") == digest
        and row.get("version") == __version__
        and row.get("random_weights") == random
        and row.get("seed") == seed
    )


# -------------------------------------------------------------------------- summaries
def summary_name(shard: tuple[int, int] | None) -> str:
    return SUMMARY if shard is None else f"summary-{shard[0]}-of-{shard[1]}.json"


def index_name(shard: tuple[int, int] | None) -> str:
    return INDEX if shard is None else f"index-{shard[0]}-of-{shard[1]}.html"


def _counts(rows: Iterable[dict]) -> dict[str, int]:
    c = Counter(r["status"] for r in rows)
    out = {s: c.get(s, 0) for s in STATUSES}
    if c.get(PENDING):
        out[PENDING] = c[PENDING]
    return out


def _read_summary(path: Path) -> dict | None:
    """A summary of ours at ``path``, None when there is none (or it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read(TEXT_LIMIT))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("caffe2torch-zoo/"):
        return None
    if not isinstance(data.get("rows"), list):
        return None
    return data


def _check_own_files(outdir: Path, names: Iterable[str]) -> None:
    """Refuse to run when a file convert-all would replace is not one it wrote."""
    for name in names:
        path = outdir / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ZooError("exists and is not a file convert-all wrote; give another -o", file=path)
        if not path.exists():
            continue
        if name.endswith(".json"):
            ours = _read_summary(path) is not None
        else:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    ours = GENERATOR in f.read(4096)
            except OSError:
                ours = False
        if not ours:
            raise ZooError(
                "exists and convert-all did not write it: it never replaces it; give another -o",
                file=path,
            )


def _previous(outdir: Path) -> dict[str, list[dict]]:
    """The rows of every summary of ours in ``outdir``, by model name."""
    rows: dict[str, list[dict]] = {}
    if not outdir.is_dir():
        return rows
    for path in sorted(outdir.iterdir()):
        if path.is_file() and re.fullmatch(r"summary(-\d+-of-\d+)?\.json", path.name):
            data = _read_summary(path)
            for row in (data or {}).get("rows", []):
                if isinstance(row, dict) and isinstance(row.get("name"), str):
                    rows.setdefault(row["name"], []).append(row)
    return rows


def _write_text(path: Path, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))
    return path


def _summary(zoo: Zoo, rows: list[dict], *, shard, random_weights: bool, seed: int,
             seconds: float, complete: bool, notes: list[str]) -> dict:
    return {
        "format": FORMAT,
        "version": __version__,
        "root": str(zoo.root),
        "options": {"random_weights": random_weights, "seed": seed},
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "zoo": {"nets": len(zoo.nets), "digest": zoo.digest},
        "complete": complete,
        "seconds": round(seconds, 1),
        "counts": _counts(rows),
        "unchanged": sum(1 for r in rows if r.get("unchanged")),
        "notes": notes,
        "rows": sorted(rows, key=lambda r: r["name"]),
    }


def write_summary(outdir: Path, summary: dict, shard: tuple[int, int] | None) -> list[Path]:
    """``summary.json`` (or this shard's) and its ``index.html``, each written atomically."""
    return [
        _write_text(outdir / summary_name(shard), dump_json(summary)),
        _write_text(outdir / index_name(shard), render_index(summary, outdir)),
    ]


def merge(outdir: str | Path, shards: int | None = None) -> Outcome:
    """Merge the shard summaries ``summary-K-of-N.json`` of ``outdir`` (all N of them, from
    one zoo, one caffe2torch version and the same options) into ``summary.json`` and
    ``index.html``. ``shards``: that N (default: the N whose summaries are all there; the
    newest set when several are)."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise ZooError("no such folder (give the output folder of the shards)", file=outdir)
    sets: dict[int, dict[int, Path]] = {}
    for path in outdir.iterdir():
        m = re.fullmatch(r"summary-(\d+)-of-(\d+)\.json", path.name)
        if m and path.is_file():
            sets.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    if shards is None:
        full = [n for n, got in sets.items() if set(got) == set(range(1, n + 1))]
        if not full:
            if not sets:
                raise ZooError("holds no shard summaries (summary-K-of-N.json)", file=outdir)
            n = max(sets, key=lambda n: len(sets[n]) / n)
            missing = sorted(set(range(1, n + 1)) - set(sets[n]))
            raise ZooError(
                f"the shards {', '.join(f'{k}/{n}' for k in missing)} have not written their "
                f"summaries yet (summary-{missing[0]}-of-{n}.json...)", file=outdir,
            )
        shards = max(full, key=lambda n: max(os.stat(p).st_mtime for p in sets[n].values()))
    got = sets.get(shards, {})
    missing = sorted(set(range(1, shards + 1)) - set(got))
    if missing:
        raise ZooError(
            f"shards {', '.join(f'{k}/{shards}' for k in missing)} have not written their "
            "summaries yet", file=outdir,
        )
    parts = []
    for k in range(1, shards + 1):
        data = _read_summary(got[k])
        if data is None:
            raise ZooError("is not a summary convert-all wrote", file=got[k])
        if not data.get("complete"):
            raise ZooError("is the summary of a run that did not finish: run that shard again", file=got[k])
        parts.append(data)
    first = parts[0]
    for k, data in enumerate(parts[1:], 2):
        for key in ("version", "options", "zoo"):
            if data.get(key) != first.get(key):
                raise ZooError(
                    f"shard {k}/{shards} ran with another {key} than shard 1/{shards} "
                    f"({json.dumps(data.get(key))} against {json.dumps(first.get(key))}): run the "
                    "stale shards again", file=got[k],
                )
    rows: dict[str, dict] = {}
    for data in parts:
        for row in data["rows"]:
            if row["name"] in rows:
                raise ZooError(f"model {row['name']} is in two shards", file=outdir)
            rows[row["name"]] = row
    notes = sorted({n for d in parts for n in d.get("notes", [])})
    merged = {
        **{k: v for k, v in first.items() if k not in ("rows", "counts", "notes", "shard")},
        "shard": None,
        "merged_from": [got[k].name for k in range(1, shards + 1)],
        "seconds": round(sum(d.get("seconds", 0) for d in parts), 1),
        "counts": _counts(rows.values()),
        "unchanged": sum(1 for r in rows.values() if r.get("unchanged")),
        "notes": notes,
        "rows": sorted(rows.values(), key=lambda r: r["name"]),
    }
    _check_own_files(outdir, (SUMMARY, INDEX))
    return Outcome(merged, write_summary(outdir, merged, None))


# --------------------------------------------------------------------------------- run
@dataclass
class _Task:
    net: Net
    random: bool
    seed: int | None
    digest: dict
    overwrite: bool


def run(
    zoo_dir: str | Path,
    outdir: str | Path,
    *,
    jobs: int | None = None,
    random_weights: bool = False,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    force: bool = False,
    timeout: float | None = None,
    max_memory: int | None = None,
    progress: Progress | None = None,
    converter: Callable[[dict, Callable[[str], None]], dict] | None = None,
) -> Outcome:
    """Convert and check every net of the zoo at ``zoo_dir`` into ``outdir`` (see the module).

    ``jobs``: worker processes (default: one per CPU); ``force``: convert again what is
    unchanged; ``timeout``: seconds a model may take (its worker is stopped after, and the
    model recorded as crashed); ``max_memory``: the check's memory limit per model (default:
    half the memory available when it starts). ``converter`` replaces :func:`convert_task`
    in the workers (a module-level function: the tests make a worker crash with it)."""
    started = time.monotonic()
    report = progress or (lambda event: None)
    if jobs is not None and jobs < 1:
        raise ZooError(f"--jobs {jobs}: give at least 1")
    if timeout is not None and not timeout > 0:
        raise ZooError("--timeout: give a positive number of seconds")
    outdir = Path(outdir)
    zoo_root = Path(zoo_dir)
    if zoo_root.is_dir() and outdir.exists() and os.path.realpath(outdir) == os.path.realpath(zoo_root):
        raise ZooError("is the zoo itself: give an output folder of its own with -o", file=outdir)
    zoo = discover(zoo_root, exclude=[outdir])
    _prepare_outdir(outdir)
    own = [summary_name(shard), index_name(shard)]
    _check_own_files(outdir, own)
    previous = {} if force else _previous(outdir)
    nets = zoo.shard(shard)
    notes = list(zoo.notes)

    rows: dict[str, dict] = {}
    tasks: list[_Task] = []
    candidates = [n for n in nets if not n.skip and (n.weights is not None or random_weights)]
    digests = _hash_all(candidates)
    for net in nets:
        if net.skip:
            rows[net.name] = _row(net, status=net.skip, reason=net.reason)
            continue
        if net.weights is None and not random_weights:
            rows[net.name] = _row(
                net, status="no-weights",
                reason="no .caffemodel or .caffemodel.h5 in its folder fits it: pass "
                "--random-weights to convert the architecture with seeded random weights",
            )
            continue
        random = net.weights is None
        nseed = seed if random else None
        digest = digests[net.name]
        if isinstance(digest, str):  # a file that cannot be read
            rows[net.name] = _row(net, status="refused", random=random, seed=nseed,
                                  reason=digest, error="WeightsError")
            continue
        before = previous.get(net.name, [])
        if not force and _fresh_folder(net, outdir, digest, random, nseed):
            seconds = next((r.get("seconds") for r in before if r.get("folder") == net.name), None)
            try:
                rows[net.name] = converted_row(net, outdir, random=random, seed=nseed, digest=digest,
                                               seconds=seconds, unchanged=True)
                continue
            except CaffeError:
                pass
        old = next((r for r in before if _reusable(r, net, digest, random, nseed)), None)
        if not force and old is not None:
            rows[net.name] = {**old, "unchanged": True}
            continue
        ok, why = _may_replace(net, outdir, previous)
        if not ok:
            rows[net.name] = _row(net, status="refused", random=random, seed=nseed, sha256=digest,
                                  reason=printable(f"{outdir / net.name}: {why}"), error="OutputError")
            continue
        tasks.append(_Task(net, random, nseed, digest, overwrite=True))

    def summary(complete: bool) -> dict:
        pending = [
            _row(t.net, status=PENDING, random=t.random, seed=t.seed, sha256=t.digest)
            for t in tasks if t.net.name not in rows
        ]
        return _summary(zoo, [*rows.values(), *pending], shard=shard, random_weights=random_weights,
                        seed=seed, seconds=time.monotonic() - started, complete=complete, notes=notes)

    report(Event("plan", total=len(tasks), rows=tuple(sorted(rows.values(), key=lambda r: r["name"])),
                 notes=tuple(notes)))
    interrupted = False
    ran = 0
    try:
        if tasks:
            pool = _Pool(jobs or os.cpu_count() or 1, len(tasks), timeout, converter or convert_task)
            with contextlib.closing(pool.results(tasks, outdir, max_memory, report)) as results:
                for task, result in results:
                    ran += 1
                    rows[task.net.name] = _result_row(task, result, outdir)
                    report(Event("done", task.net.name, row=rows[task.net.name], done=ran,
                                 total=len(tasks)))
    except KeyboardInterrupt:
        interrupted = True
    final = summary(complete=not interrupted)
    written = write_summary(outdir, final, shard)
    outcome = Outcome(final, written, ran=ran, interrupted=interrupted)
    if interrupted:
        raise Interrupted(outcome)
    if shard is not None:
        try:
            outcome.merged = merge(outdir, shard[1]).summary
            outcome.written += [outdir / SUMMARY, outdir / INDEX]
        except ZooError as e:  # the other shards have not finished, or ran otherwise
            outcome.merge_note = str(e)
    return outcome


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`, after the summary of what was done was written."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__()
        self.outcome = outcome


def _prepare_outdir(outdir: Path) -> None:
    if outdir.is_symlink() and not outdir.is_dir():
        raise ZooError("is a symbolic link to nothing: give a folder", file=outdir)
    if outdir.exists():
        if not outdir.is_dir():
            raise ZooError("exists and is not a folder", file=outdir)
        return
    parent = Path(os.path.abspath(outdir)).parent
    if not parent.is_dir():
        raise ZooError("the folder to write into does not exist", file=outdir)
    try:
        os.mkdir(outdir)
    except OSError as e:
        raise ZooError(f"cannot be created: {e.strerror or e}", file=outdir) from None


def _hash_all(nets: list[Net]) -> dict[str, dict | str]:
    """sha256 of each net's prototxt and weights (each file once, in threads), or the one
    line saying why a file cannot be read."""
    files = sorted({str(n.prototxt) for n in nets} | {str(n.weights) for n in nets if n.weights})

    def one(path: str):
        try:
            return sha256_file(Path(path))
        except OSError as e:
            return CaffeError(f"cannot read: {e.strerror or e}", file=path)

    with ThreadPoolExecutor(max_workers=4) as ex:
        sums = dict(zip(files, ex.map(one, files)))
    out: dict[str, dict | str] = {}
    for n in nets:
        p = sums[str(n.prototxt)]
        w = sums[str(n.weights)] if n.weights else None
        bad = next((x for x in (p, w) if isinstance(x, CaffeError)), None)
        out[n.name] = str(bad) if bad is not None else {"prototxt": p, "weights": w}
    return out


def _result_row(task: _Task, result: dict, outdir: Path) -> dict:
    net = task.net
    seconds = round(float(result.get("seconds") or 0.0), 2)
    if result.get("ok"):
        try:
            return converted_row(net, outdir, random=task.random, seed=task.seed,
                                 digest=task.digest, seconds=seconds, unchanged=False)
        except CaffeError as e:
            result = {"status": "crashed", "reason": f"the folder it wrote cannot be read: {e}",
                      "error": type(e).__name__}
    return _row(net, status=result.get("status", "crashed"), random=task.random, seed=task.seed,
                sha256=task.digest, seconds=seconds, reason=result.get("reason"),
                error=result.get("error"))


# ----------------------------------------------------------------------- the workers
class _Worker:
    """One spawned worker process: its pipe, the task it runs and since when."""

    def __init__(self, ctx, threads: int, converter: Callable) -> None:
        fd, self.log = tempfile.mkstemp(prefix="caffe2torch-zoo-", suffix=".log")
        os.close(fd)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker_main, args=(child, self.log, threads, converter), name="caffe2torch-zoo"
        )
        self.proc.start()
        child.close()
        self.task: _Task | None = None
        self.since = 0.0
        self.retiring = False  # it said it stops after its task: send it no other
        self.used = False  # it was sent a task
        self.begun = False  # it started the task it was sent (its imports done): timed from then
        self.stopped = ""  # why the parent stopped it (--timeout)

    def send(self, task: _Task, outdir: Path, max_memory: int | None) -> bool:
        net = task.net
        try:
            self.conn.send({
                "name": net.name,
                "prototxt": str(net.prototxt),
                "weights": str(net.weights) if net.weights else None,
                "random": task.random,
                "seed": task.seed or 0,
                "folder": str(outdir / net.name),
                "overwrite": task.overwrite,
                "max_memory": max_memory,
            })
        except (OSError, ValueError):
            self.retiring = True
            return False
        self.task, self.since, self.used, self.begun = task, time.monotonic(), True, False
        return True

    def drain(self, report: Progress):
        """Its messages so far; (task, result) when its task finished."""
        try:
            while self.conn.poll():
                kind, name, payload, retiring = self.conn.recv()
                self.retiring = self.retiring or retiring
                if self.task is None or name != self.task.net.name:
                    continue
                if kind == "begin":
                    self.since, self.begun = time.monotonic(), True
                elif kind == "stage":
                    report(Event("stage", name, text=payload))
                elif kind == "done":
                    task, self.task = self.task, None
                    return task, payload
        except (EOFError, OSError):
            pass
        return None

    def tail(self) -> str:
        """The last line the worker printed (a crash's own message, often)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log) - 4096))
                lines = [x.strip() for x in f.read().decode("utf-8", "replace").splitlines()]
        except OSError:
            return ""
        lines = [x for x in lines if x]
        return lines[-1] if lines else ""

    def died(self, outdir: Path) -> dict:
        """The result of the task it was running when it ended without finishing it."""
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        if self.stopped:
            reason = self.stopped
        elif code == EXIT_INTERRUPTED:
            reason = "interrupted (Ctrl-C)"
        else:
            reason = f"the worker process died ({how}) while converting it"
            last = self.tail()
            if last:
                reason += f"; its last output: {last}"
        _tidy(outdir, self.task.net.name)
        return {"status": "crashed", "reason": printable(reason), "error": "crash",
                "seconds": time.monotonic() - self.since}

    def close(self, wait: float = 5.0) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.proc.join(wait)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()
        try:
            os.unlink(self.log)
        except OSError:
            pass


EXIT_INTERRUPTED = 130


class _Pool:
    """Workers for the tasks: at most ``jobs`` at once, each replaced when it retires or dies."""

    def __init__(self, jobs: int, n_tasks: int, timeout: float | None, converter: Callable) -> None:
        self.size = max(1, min(jobs, n_tasks))
        self.threads = max(1, (os.cpu_count() or 1) // self.size)
        self.timeout = timeout
        self.converter = converter
        self.ctx = multiprocessing.get_context("spawn")

    def results(self, tasks: list[_Task], outdir: Path, max_memory: int | None, report: Progress):
        """Run every task; yields (task, result) as each finishes, in no fixed order. Closing
        the generator early (Ctrl-C) stops the workers, each cleaning up what it was writing."""
        queue = list(tasks)
        workers: list[_Worker] = []
        failed_starts = 0
        try:
            while queue or any(w.task is not None for w in workers):
                while queue and sum(not w.retiring for w in workers) < self.size:
                    workers.append(_Worker(self.ctx, self.threads, self.converter))
                for w in workers:
                    if w.task is None and queue and not w.retiring and w.proc.is_alive():
                        _tidy(outdir, queue[0].net.name)  # what a run killed earlier left
                        if w.send(queue[0], outdir, max_memory):
                            report(Event("start", queue.pop(0).net.name, text="starting"))
                wait_for([w.conn for w in workers] + [w.proc.sentinel for w in workers], 0.5)
                for w in list(workers):
                    finished = w.drain(report)
                    if finished is not None:
                        yield finished
                    if not w.proc.is_alive():  # retired, or died
                        finished = w.drain(report)  # what it sent just before
                        if finished is not None:
                            yield finished
                        if w.task is not None:
                            yield w.task, w.died(outdir)
                            w.task = None
                        failed_starts = 0 if w.used else failed_starts + 1
                        if failed_starts >= 3:  # workers die before any work: none will do
                            why = printable(f"no worker process starts ({w.tail() or 'no output'})")
                            while queue:
                                yield queue.pop(0), {"status": "crashed", "reason": why, "error": "crash"}
                        w.close()
                        workers.remove(w)
                    elif w.task is not None and w.begun and self.timeout and time.monotonic() - w.since > self.timeout:
                        w.stopped = f"stopped after {self.timeout:g} s (--timeout)"
                        _stop(w.proc)
        finally:
            busy = [w for w in workers if w.task is not None and w.proc.is_alive()]
            for w in busy:
                try:
                    os.kill(w.proc.pid, signal.SIGINT)
                except OSError:
                    pass
            deadline = time.monotonic() + 10
            for w in busy:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(5)
                _tidy(outdir, w.task.net.name)
            for w in workers:
                w.close()


def _stop(proc) -> None:
    """SIGINT (the conversion cleans up its temporary folder), then SIGKILL a moment later."""
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGINT)
        proc.join(3)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def _tidy(outdir: Path, name: str) -> None:
    """What a worker killed while writing ``OUTDIR/<name>`` left: its temporary folders
    (``Destination`` names them ``.<name>.XXXXXXXX.tmp|.old|.probe``); a folder moved aside
    for replacing is put back when the new one is not in place."""
    pattern = re.compile(re.escape(f".{name}.") + r"[A-Za-z0-9_]{8}\.(tmp|old|probe)")
    try:
        entries = [e for e in outdir.iterdir() if pattern.fullmatch(e.name) and e.is_dir()]
    except OSError:
        return
    for e in sorted(entries, key=lambda e: e.name.endswith(".tmp")):
        if e.name.endswith(".old") and (e / "x").is_dir() and not (outdir / name).exists():
            try:
                os.rename(e / "x", outdir / name)
            except OSError:
                continue
        shutil.rmtree(e, ignore_errors=True)


# ---------------------------------------------------------------- in the worker process
def worker_main(conn, log: str, threads: int, converter: Callable) -> None:
    """A worker: its output goes to ``log``; it converts the tasks it is sent, one at a time,
    until told to stop, or until it has run enough (then the parent starts a fresh one)."""
    import resource

    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
        from . import emit  # noqa: F401 - the imports every task needs, before the first
    except Exception:  # noqa: BLE001 - the task says so, with the error
        pass
    done = 0
    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            conn.send(("begin", task["name"], None, False))
            def stage(text: str, name=task["name"], last=[0.0, ""]) -> None:  # noqa: B006 - per task
                now = time.monotonic()
                if text != last[1] and now - last[0] > 0.2:
                    last[:] = [now, text]
                    conn.send(("stage", name, text, False))

            result = converter(task, stage)
            done += 1
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            retire = done >= TASKS_PER_WORKER or peak > WORKER_PEAK_LIMIT
            conn.send(("done", task["name"], result, retire))
            if retire:
                return
    except KeyboardInterrupt:
        os._exit(EXIT_INTERRUPTED)
    except (EOFError, BrokenPipeError):
        return


def convert_task(task: dict, stage: Callable[[str], None]) -> dict:
    """One model, as ``caffe2torch convert PROTOTXT [WEIGHTS] -o FOLDER`` does it (the check
    against real Caffe where it is built, else OpenCV); returns ``{"ok": True, "seconds"}``,
    or the status, the one-line reason and the error's class."""
    started = time.monotonic()
    try:
        from .emit import ConvertOptions, convert  # the worker imports torch; the parent never

        prototxt = Path(task["prototxt"])
        weights = Path(task["weights"]) if task["weights"] else None
        check = _staged_check(task.get("max_memory"), stage)
        options = ConvertOptions(
            random_weights=task["random"], seed=task["seed"], check=check, unchecked="--no-verify",
        )
        dest = Destination.folder(task["folder"], inputs=[prototxt, weights], overwrite=task["overwrite"])
        stage("reading the net")
        with _library_stages(stage):
            conversion = convert(prototxt, weights, options)
            stage("writing the folder")
            conversion.write(dest)
        return {"ok": True, "seconds": time.monotonic() - started}
    except CaffeError as e:
        return {"ok": False, "status": "refused", "reason": str(e), "error": type(e).__name__,
                "seconds": time.monotonic() - started}
    except MemoryError:
        return {
            "ok": False, "status": "refused", "error": "MemoryError",
            "reason": "ran out of memory: the net (its weights or its activations at this input "
            "shape) does not fit", "seconds": time.monotonic() - started,
        }
    except Exception as e:  # noqa: BLE001 - a bug in caffe2torch: this model's row says so
        return {"ok": False, "status": "crashed", "reason": bug_line(e), "error": type(e).__name__,
                "seconds": time.monotonic() - started}




def _library_stages(stage: Callable[[str], None]):
    """The library's own progress reports (:mod:`caffe2torch.progress`, where it has them)."""

    def callback(name: str, done=None, total=None) -> None:
        stage(f"{name} {done}/{total}" if total else str(name))

    return reporting(callback)


def _staged_check(max_memory: int | None, stage: Callable[[str], None]):
    """The check's options (as ``convert`` makes them by default), telling ``stage`` when the
    conversion reads the weights and when the check starts: the check's memory estimate runs
    once before the weights are read and once before the check."""
    @dataclass
    class Staged(CheckOptions):
        calls: list = field(default_factory=list, repr=False, compare=False)

        def enforce(self, graph, weight_bytes=None):
            est = super().enforce(graph, weight_bytes)
            self.calls.append(1)
            stage("reading the weights, writing the code" if len(self.calls) == 1 else "checking layer by layer")
            return est

    return Staged(max_memory=max_memory, reference="auto")


# ------------------------------------------------------------------------------- index
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;cursor:pointer;user-select:none;position:sticky;top:0}
th:after{content:" \\2195";color:#aaa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.counts span{display:inline-block;margin:0 1em .5em 0;padding:.15em .6em;border-radius:1em;background:#eee}
.converted-passed{background:#e5f6e5}.converted-failed,.crashed{background:#fbe3e3}
.converted-unchecked{background:#fff6da}.refused{background:#f3f3f3}
td.reason{font-size:12px;color:#555;max-width:50em;word-break:break-word}
"""

_SCRIPT = """
document.querySelectorAll("th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], rows = Array.from(body.rows);
    var dir = th.dataset.dir === "1" ? -1 : 1; th.dataset.dir = dir === 1 ? "1" : "-1";
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (!isNaN(nx) && !isNaN(ny)) return (nx - ny) * dir;
      return x.localeCompare(y) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def _num(x, fmt: str) -> tuple[str, str]:
    if x is None:
        return "", ""
    return format(x, fmt), repr(float(x))


def render_index(summary: dict, outdir: Path) -> str:
    """``index.html``: self-contained (no external file), one row per model, counts on top."""
    e = html.escape
    rows = summary["rows"]
    title = "caffe2torch convert-all"
    where = summary.get("root", "")
    shard = f", shard {summary['shard']}" if summary.get("shard") else ""
    counts = " ".join(
        f'<span class="{e(s)}">{e(s)}: {n}</span>' for s, n in summary["counts"].items() if n
    )
    head = (
        f"<p>{len(rows)} models from <code>{e(where)}</code>{e(shard)}; caffe2torch "
        f"{e(summary.get('version', ''))}; random weights: "
        f"{'seed ' + str(summary['options']['seed']) if summary['options']['random_weights'] else 'no'}; "
        f"{summary.get('unchanged', 0)} unchanged since the last run"
        f"{'' if summary.get('complete', True) else '; <b>the run did not finish</b>'}.</p>"
    )
    body = []
    for r in rows:
        links = []
        if r.get("folder"):
            for f in (REPORT_FILE, REPORT_HTML):
                if (outdir / r["folder"] / f).is_file():
                    links.append(f'<a href="{e(r["folder"])}/{e(f)}">{e(f)}</a>')
        worst, worst_v = _num(r.get("worst_rel"), ".2e")
        secs, secs_v = _num(r.get("seconds"), ".1f")
        weights = r.get("weights") or (f"random (seed {r.get('seed')})" if r.get("random_weights") else "")
        cells = [
            f"<td>{e(r['name'])}</td>",
            f'<td class="{e(r["status"])}">{e(r["status"])}</td>',
            f"<td>{'yes' if r.get('converted') else 'no'}</td>",
            f"<td>{e(r.get('check') or '')}</td>",
            f'<td class="num" data-v="{worst_v}">{worst}</td>',
            f'<td class="num">{"" if r.get("compared") is None else r["compared"]}</td>',
            f'<td class="num" data-v="{secs_v}">{secs}</td>',
            f"<td><code>{e(r.get('prototxt') or '')}</code><br><small>{e(weights)}</small></td>",
            f'<td class="reason">{e(r.get("reason") or "")}</td>',
            f"<td>{' '.join(links)}</td>",
        ]
        body.append(f'<tr id="{e(r["name"])}">' + "".join(cells) + "</tr>")
    columns = ["model", "status", "converted", "checked", "worst rel. error", "values compared",
               "seconds", "net / weights", "reason", "report"]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f"{GENERATOR}\n<title>{e(title)}</title>\n<style>{_STYLE}</style></head><body>\n"
        f"<h1>{e(title)}</h1>\n{head}\n<p class=\"counts\">{counts}</p>\n"
        "<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + f"\n</tbody></table>\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )
