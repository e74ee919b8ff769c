"""convert-all: discovery and pairing, the parallel run and its summary, skipping what did not
change, shards, and the corpus's discovery (without converting it)."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_V1, TINY_V2, write

from caffe2torch import __version__, zoo
from caffe2torch.api import load_graph
from caffe2torch.folder import sha256_file
from caffe2torch.synth import write_synth_weights

NO_SHAPE = TINY_V2.replace("input_dim: 2\ninput_dim: 3\ninput_dim: 17\ninput_dim: 17\n", "")
WIDER = TINY_V2.replace("num_output: 5", "num_output: 6")  # the other VGG: its fc has 6 outputs
SOLVER = 'net: "train_val.prototxt"\ntest_iter: 10\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 100\n'


def _weights(net: Path, out: Path, seed: int, shapes=None) -> Path:
    write_synth_weights(load_graph(net, input_shapes=shapes), out, seed=seed)
    return out


def make_zoo(root: Path) -> Path:
    """A small zoo with every pairing rule in it (see test_discovery)."""
    for d in ("alex", "vgg", "snap", "arch", "noshape"):
        (root / d).mkdir(parents=True)
    alex = write(root / "alex/deploy.prototxt", TINY_V2)
    _weights(alex, root / "alex/bvlc_alex.caffemodel", 1)
    write(root / "alex/train_val.prototxt", TINY_V2)
    write(root / "alex/solver.prototxt", SOLVER)
    v16 = write(root / "vgg/VGG_16_deploy.prototxt", TINY_V2)
    v19 = write(root / "vgg/VGG_19_deploy.prototxt", WIDER)
    _weights(v16, root / "vgg/VGG_16.caffemodel", 2)
    _weights(v19, root / "vgg/VGG_19.caffemodel", 3)
    snap = write(root / "snap/lenet.prototxt", TINY_V2)
    _weights(snap, root / "snap/lenet_iter_100.caffemodel", 4)
    _weights(snap, root / "snap/lenet_iter_200.caffemodel", 5)
    write(root / "arch/net_V1.prototxt", TINY_V1)
    ns = write(root / "noshape/deploy.prototxt", NO_SHAPE)
    _weights(ns, root / "noshape/weights.caffemodel", 6, shapes={"data": (2, 3, 17, 17)})
    return root


EXPECTED = {
    "alex__deploy": "converted-passed",
    "alex__solver": "skipped-solver",
    "alex__train_val": "skipped-trainval",
    "arch__net_V1": "no-weights",
    "noshape__deploy": "refused",
    "snap__lenet": "converted-passed",
    "vgg__VGG_16_deploy": "converted-passed",
    "vgg__VGG_19_deploy": "converted-passed",
}


# The tests that convert (in spawned workers, seconds each): the slow tier (`make test` runs it).
RUNS = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    return make_zoo(tmp_path_factory.mktemp("zoo") / "zoo")


@pytest.fixture(scope="module")
def first(zoo_dir, tmp_path_factory):
    """The zoo converted once (two workers); its output folder is not changed by the tests
    (those that run again work on a copy)."""
    out = tmp_path_factory.mktemp("out") / "out"
    events = []
    outcome = zoo.run(zoo_dir, out, jobs=2, progress=events.append)
    return outcome, out, events


def _copy(out: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(out, tmp_path / "out"))


def _by_name(summary: dict) -> dict[str, dict]:
    return {r["name"]: r for r in summary["rows"]}


# ---------------------------------------------------------------------------- discovery
def test_discovery(zoo_dir):
    found = zoo.discover(zoo_dir)
    nets = {n.name: n for n in found.nets}
    assert list(nets) == sorted(EXPECTED)  # every prototxt once, sorted by name
    assert nets["alex__deploy"].weights_rel == "alex/bvlc_alex.caffemodel"  # the one in its folder
    assert nets["alex__solver"].skip == "skipped-solver"
    assert nets["alex__train_val"].skip == "skipped-trainval"
    assert "alex/deploy.prototxt" in nets["alex__train_val"].reason
    assert nets["vgg__VGG_16_deploy"].weights_rel == "vgg/VGG_16.caffemodel"  # by name
    assert nets["vgg__VGG_19_deploy"].weights_rel == "vgg/VGG_19.caffemodel"
    assert nets["snap__lenet"].weights_rel == "snap/lenet_iter_200.caffemodel"  # the latest snapshot
    assert nets["arch__net_V1"].weights is None
    assert nets["noshape__deploy"].weights_rel == "noshape/weights.caffemodel"
    assert all(n.prototxt == zoo_dir / n.rel for n in found.nets)
    assert any("snap/lenet_iter_100.caffemodel" in n and "not used" in n for n in found.notes)


def test_solver_is_decided_by_the_reader(tmp_path):
    # A prototxt that sets solver fields is a solver only when the reader says the net is one.
    assert zoo.is_solver(write(tmp_path / "s.prototxt", SOLVER))
    assert zoo.is_solver(write(tmp_path / "t.prototxt", 'type: "Adam"\nbase_lr: 0.1\nmax_iter: 5\n'))
    assert not zoo.is_solver(write(tmp_path / "n.prototxt", TINY_V2))
    assert not zoo.is_solver(write(tmp_path / "b.prototxt", "layer { name: \n"))


def test_names_are_safe_and_unique(tmp_path):
    assert zoo.model_name("bvlc_alexnet/deploy.prototxt") == "bvlc_alexnet__deploy"
    assert zoo.model_name("a b/c.d.prototxt") == "a_b__c.d"
    assert zoo.model_name(".hidden.prototxt") == "_hidden"
    long = zoo.model_name("x" * 300 + ".prototxt")
    assert len(long) == zoo.NAME_LIMIT and re.fullmatch(r"x+-[0-9a-f]{8}", long)
    for rel in ("a b/x.prototxt", "a_b/x.prototxt", "summary.json.prototxt", ".git/x.prototxt",
                "out/y.prototxt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        write(tmp_path / rel, TINY_V2)
    found = zoo.discover(tmp_path, exclude=[tmp_path / "out"])
    names = {n.rel: n.name for n in found.nets}
    assert set(names) == {"a b/x.prototxt", "a_b/x.prototxt", "summary.json.prototxt"}  # no hidden, no OUTDIR
    assert names["a b/x.prototxt"] != names["a_b/x.prototxt"]
    assert all(re.fullmatch(r"a_b__x-[0-9a-f]{8}", names[r]) for r in ("a b/x.prototxt", "a_b/x.prototxt"))
    assert re.fullmatch(r"summary\.json-[0-9a-f]{8}", names["summary.json.prototxt"])


def test_shards_partition(zoo_dir):
    found = zoo.discover(zoo_dir)
    for n in (1, 2, 3, 5):
        shares = [found.shard((k, n)) for k in range(1, n + 1)]
        names = [x.name for share in shares for x in share]
        assert sorted(names) == sorted(x.name for x in found.nets)  # each model exactly once
    assert zoo.parse_shard(" 2/5 ") == (2, 5)
    for bad in ("0/2", "3/2", "1/0", "a/b", "1", "-1/2"):
        with pytest.raises(zoo.ZooError):
            zoo.parse_shard(bad)


# ------------------------------------------------------------------------------ the run
@RUNS
def test_first_run_rows(first, zoo_dir):
    outcome, out, events = first
    rows = _by_name(json.loads((out / zoo.SUMMARY).read_text()))
    assert rows == _by_name(outcome.summary)
    assert {k: r["status"] for k, r in rows.items()} == EXPECTED
    assert outcome.ran == 5 and not outcome.failed and outcome.summary["complete"]
    assert outcome.summary["counts"]["converted-passed"] == 4
    assert outcome.summary["counts"]["refused"] == 1
    for name, r in rows.items():
        assert r["unchanged"] is False and r["version"] == __version__
        if not r["converted"]:
            assert not (out / name).exists() and r["folder"] is None
            continue
        manifest = json.loads((out / name / "conversion.json").read_text())
        v = manifest["verification"]
        # The summary says what the folder's conversion.json says.
        assert (r["worst_rel"], r["compared"], r["check"]) == (v["worst_rel"], v["compared"], "passed")
        assert r["compared"] == 5 and 0 <= r["worst_rel"] < 1e-4
        assert r["folder"] == name and r["seconds"] > 0
        assert r["sha256"] == {
            "prototxt": sha256_file(zoo_dir / r["prototxt"]),
            "weights": sha256_file(zoo_dir / r["weights"]),
        }
        assert manifest["sources"]["weights"]["sha256"] == r["sha256"]["weights"]
    # progress: the plan, then a done event per model converted, counting up to 5
    assert events[0].kind == "plan" and events[0].total == 5
    done = [e for e in events if e.kind == "done"]
    assert [e.done for e in done] == [1, 2, 3, 4, 5] and {e.name for e in done} == {
        k for k, s in EXPECTED.items() if s in ("converted-passed", "refused")
    }
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left


@RUNS
def test_summary_agrees_with_verify(first, zoo_dir, cli):
    outcome, out, _ = first
    row = _by_name(outcome.summary)["vgg__VGG_19_deploy"]
    code, text, err = cli(
        "verify", out / row["name"], "--net", zoo_dir / row["prototxt"],
        "--weights", zoo_dir / row["weights"], "--json",
    )
    assert code == 0, err
    result = json.loads(text)
    assert (result["compared"], result["status"], result["failed"]) == (row["compared"], "passed", 0)
    # The same check on the written folder: the same worst error, but for float rounding (the
    # workers run torch on fewer threads, which sums in another order).
    assert math.isclose(result["worst_rel"], row["worst_rel"], rel_tol=0.25)


@RUNS
def test_refused_reason_is_the_convert_line(first, zoo_dir, cli, tmp_path):
    outcome, _, _ = first
    row = _by_name(outcome.summary)["noshape__deploy"]
    assert row["error"] == "InputShapeError"
    code, _, err = cli("convert", zoo_dir / row["prototxt"], zoo_dir / row["weights"], "-o", tmp_path / "x")
    assert code == 2
    assert err.strip() == f"error: {row['reason']}"
    assert "input 'data' has no declared shape" in row["reason"]
    no = _by_name(outcome.summary)["arch__net_V1"]
    assert "--random-weights" in no["reason"] and no["weights"] is None


@RUNS
def test_index_lists_every_model(first):
    outcome, out, _ = first
    page = (out / zoo.INDEX).read_text()
    assert zoo.GENERATOR in page and "http" not in page.replace('lang="en"', "")  # self-contained
    for r in outcome.rows:
        assert f'<tr id="{r["name"]}">' in page
        assert f'class="{r["status"]}">{r["status"]}</td>' in page
    assert '<a href="alex__deploy/report.md">report.md</a>' in page
    assert "converted-passed: 4" in page and "refused: 1" in page and "skipped-solver: 1" in page
    alex = _by_name(outcome.summary)["alex__deploy"]
    assert f'data-v="{float(alex["worst_rel"])!r}">{alex["worst_rel"]:.2e}</td>' in page


@RUNS
def test_second_run_converts_nothing(first, zoo_dir, tmp_path):
    outcome, out, _ = first
    out = _copy(out, tmp_path)
    again = zoo.run(zoo_dir, out, jobs=2)
    assert again.ran == 0
    rows, before = _by_name(again.summary), _by_name(outcome.summary)
    assert {k: r["status"] for k, r in rows.items()} == EXPECTED
    for name, r in rows.items():
        assert r["unchanged"] is (r["status"] in ("converted-passed", "refused")), name
        assert {k: v for k, v in r.items() if k != "unchanged"} == {
            k: v for k, v in before[name].items() if k != "unchanged"
        }
    assert again.summary["unchanged"] == 5


@RUNS
def test_changes_are_converted_again(first, zoo_dir, tmp_path):
    outcome, out, _ = first
    zoo_copy = Path(shutil.copytree(zoo_dir, tmp_path / "zoo"))
    out = _copy(out, tmp_path)
    net = zoo_copy / "vgg/VGG_16_deploy.prototxt"
    net.write_text("# edited\n" + net.read_text())
    again = zoo.run(zoo_copy, out, jobs=1)
    rows = _by_name(again.summary)
    assert again.ran == 1 and rows["vgg__VGG_16_deploy"]["unchanged"] is False
    assert rows["vgg__VGG_16_deploy"]["status"] == "converted-passed"
    manifest = json.loads((out / "vgg__VGG_16_deploy/conversion.json").read_text())
    assert manifest["sources"]["prototxt"]["sha256"] == sha256_file(net)
    assert all(r["unchanged"] for k, r in rows.items() if k != "vgg__VGG_16_deploy" and r["sha256"])
    # --random-weights converts the net without weights; the others' inputs did not change.
    third = zoo.run(zoo_copy, out, jobs=1, random_weights=True, seed=3)
    rows = _by_name(third.summary)
    assert third.ran == 1 and rows["arch__net_V1"]["status"] == "converted-passed"
    assert (rows["arch__net_V1"]["random_weights"], rows["arch__net_V1"]["seed"]) == (True, 3)
    w = json.loads((out / "arch__net_V1/conversion.json").read_text())["sources"]["weights"]
    assert w == {"random": True, "seed": 3}


@RUNS
def test_shards_cover_the_zoo_once_and_merge(first, zoo_dir, tmp_path, cli):
    outcome, out, _ = first
    out = _copy(out, tmp_path)
    (out / zoo.SUMMARY).unlink()
    code, _, err = cli("convert-all", zoo_dir, "-o", out, "--shard", "1/2", "-j", "1")
    assert code == 0, err
    assert not (out / zoo.SUMMARY).exists()  # shard 2/2 is not there yet
    code, _, err = cli("convert-all", "--merge", out)
    assert code == 2 and err.count("\n") == 1 and "2/2" in err
    code, _, err = cli("convert-all", zoo_dir, "-o", out, "--shard", "2/2", "-j", "1")
    assert code == 0, err
    one, two = (json.loads((out / f"summary-{k}-of-2.json").read_text()) for k in (1, 2))
    names = [r["name"] for r in one["rows"]] + [r["name"] for r in two["rows"]]
    assert sorted(names) == sorted(EXPECTED) and one["rows"] and two["rows"]
    assert (out / "index-1-of-2.html").is_file() and (out / "index-2-of-2.html").is_file()
    merged = json.loads((out / zoo.SUMMARY).read_text())  # merged by the last shard
    assert merged["merged_from"] == ["summary-1-of-2.json", "summary-2-of-2.json"]
    assert {k: r["status"] for k, r in _by_name(merged).items()} == EXPECTED
    assert merged["counts"] == outcome.summary["counts"]
    code, text, err = cli("convert-all", "--merge", out)
    assert code == 0, err
    assert json.loads((out / zoo.SUMMARY).read_text())["rows"] == merged["rows"]


@RUNS
def test_cli_json_and_bad_flags(first, zoo_dir, tmp_path, cli):
    _, out, _ = first
    out = _copy(out, tmp_path)
    code, text, err = cli("convert-all", zoo_dir, "-o", out, "--json", "-q")
    assert code == 0 and err == ""
    assert json.loads(text) == json.loads((out / zoo.SUMMARY).read_text())
    for args in (["--shard", "3/2"], ["--shard", "x"], ["--jobs", "0"], ["--timeout", "-1"]):
        code, _, err = cli("convert-all", zoo_dir, "-o", out, *args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error:"), (args, err)
    code, _, err = cli("convert-all", tmp_path / "missing", "-o", out)
    assert code == 2 and "no such folder" in err
    code, _, err = cli("convert-all", zoo_dir, "-o", zoo_dir)
    assert code == 2 and "the zoo itself" in err


@RUNS
def test_a_run_with_nothing_to_do_never_imports_torch(first, zoo_dir, tmp_path):
    _, out, _ = first
    out = _copy(out, tmp_path)
    code = (
        "import sys\nfrom caffe2torch.cli.app import run\n"
        f"rc = run(['convert-all', {str(zoo_dir)!r}, '-o', {str(out)!r}, '-q'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert json.loads((out / zoo.SUMMARY).read_text())["unchanged"] == 5


def test_never_replaces_what_it_did_not_write(zoo_dir, tmp_path, cli):
    small = tmp_path / "zoo"
    shutil.copytree(zoo_dir / "alex", small / "alex")
    out = tmp_path / "out"
    (out / "alex__deploy").mkdir(parents=True)
    write(out / "alex__deploy/mine.txt", "keep")
    outcome = zoo.run(small, out, jobs=1)
    row = _by_name(outcome.summary)["alex__deploy"]
    assert outcome.ran == 0 and row["status"] == "refused" and row["error"] == "OutputError"
    assert "move it away" in row["reason"]
    assert (out / "alex__deploy/mine.txt").read_text() == "keep"
    write(out / zoo.SUMMARY, '{"mine": 1}')
    code, _, err = cli("convert-all", small, "-o", out)
    assert code == 2 and "convert-all did not write it" in err
    assert (out / zoo.SUMMARY).read_text() == '{"mine": 1}'


# A worker's conversion for the tests (a module-level function: the spawned worker imports it).
def crashing_converter(task: dict, stage) -> dict:
    if task["name"].endswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if task["name"].endswith("slow"):
        stage("sleeping")
        time.sleep(120)
    return zoo.convert_task(task, stage)


@pytest.mark.slow
def test_a_crash_or_a_hang_costs_only_its_model(zoo_dir, tmp_path):
    small = tmp_path / "zoo"
    small.mkdir()
    for name in ("ok", "crash", "slow"):
        shutil.copy(zoo_dir / "arch/net_V1.prototxt", small / f"{name}.prototxt")
    out = tmp_path / "out"
    outcome = zoo.run(small, out, jobs=2, random_weights=True, timeout=15, converter=crashing_converter)
    rows = _by_name(outcome.summary)
    assert rows["ok"]["status"] == "converted-passed", rows["ok"]["reason"]
    assert rows["crash"]["status"] == "crashed" and "killed by SIGSEGV" in rows["crash"]["reason"]
    assert rows["slow"]["status"] == "crashed" and rows["slow"]["reason"] == "stopped after 15 s (--timeout)"
    assert rows["slow"]["seconds"] >= 15
    assert outcome.failed and outcome.ran == 3
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "ok", "summary.json"]
    # a crash is tried again (it says nothing about the net); the conversion is not
    (small / "slow.prototxt").unlink()
    again = zoo.run(small, out, jobs=1, random_weights=True, converter=crashing_converter)
    assert again.ran == 1 and _by_name(again.summary)["ok"]["unchanged"]
    assert set(_by_name(again.summary)) == {"ok", "crash"}


# ------------------------------------------------------------------------------ corpus
@pytest.mark.corpus
def test_corpus_discovery(corpus):
    started = time.monotonic()
    found = zoo.discover(corpus)
    seconds = time.monotonic() - started
    rels = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*.prototxt"))
    assert sorted(n.rel for n in found.nets) == rels  # every net exactly once
    names = [n.name for n in found.nets]
    assert len(set(n.lower() for n in names)) == len(names) == len(rels)
    for n in (2, 3, 7):
        shares = [{x.name for x in found.shard((k, n))} for k in range(1, n + 1)]
        assert sum(len(s) for s in shares) == len(names) and set().union(*shares) == set(names)
    nets = {n.rel: n for n in found.nets}
    assert nets["cifar10_full_weights_hdf5_bxuan/cifar10_full_solver.prototxt"].skip == "skipped-solver"
    assert nets["cifar10_full_weights_yuvval/cifar10_full_train_test.prototxt"].skip == "skipped-trainval"
    assert nets["cnn3dobj_triplet/3d_triplet_testIMG.prototxt"].weights_rel == (
        "cnn3dobj_triplet/3d_triplet_iter_30000.caffemodel"
    )
    assert nets["cifar10_full_weights_hdf5_bxuan/cifar10_full.prototxt"].weights_rel == (
        "cifar10_full_weights_hdf5_bxuan/cifar10_full_iter_60000.caffemodel.h5"
    )
    assert sum(1 for n in found.nets if n.skip) == 2
    assert seconds < 10
