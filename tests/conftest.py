from __future__ import annotations

import json
import sys
from collections import Counter

import pytest
from helpers import CORPUS
from typer.testing import CliRunner

# How many of the session's tests use each shared corpus conversion (@pytest.mark.converts).
CONVERSION_USES = pytest.StashKey[Counter]()
CONVERSIONS = pytest.StashKey[object]()
# The corpus sweep's rows (tests/test_convert_corpus.py), for its per-engine totals at the end.
CORPUS_ROWS = pytest.StashKey[list]()


@pytest.fixture
def corpus_rows(request) -> list:
    return request.config.stash.setdefault(CORPUS_ROWS, [])


def pytest_sessionfinish(session):
    rows = session.config.stash.get(CORPUS_ROWS, [])
    if hasattr(session.config, "workeroutput"):  # an xdist worker: its rows go to the controller
        session.config.workeroutput["corpus_rows"] = json.dumps(rows)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: only called with -n
def pytest_testnodedown(node, error):
    rows = json.loads(getattr(node, "workeroutput", {}).get("corpus_rows", "[]"))
    node.config.stash.setdefault(CORPUS_ROWS, []).extend(rows)


def pytest_terminal_summary(terminalreporter, config):
    rows = config.stash.get(CORPUS_ROWS, [])
    if rows and not hasattr(config, "workeroutput"):
        from corpus_support import engine_totals

        terminalreporter.section("corpus sweep: which engine checked what")
        for line in engine_totals(rows):
            terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # The tests that share a corpus net's conversion run on one xdist worker (--dist
    # loadgroup), so that the conversion is made once.
    for item in items:
        if "corpus" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("corpus"):
            item.add_marker(pytest.mark.corpus)  # it reads ../shared: the corpus tier
        for mark in item.iter_markers("converts"):
            item.add_marker(pytest.mark.xdist_group(mark.args[0]))


def pytest_collection_finish(session):
    session.config.stash[CONVERSION_USES] = Counter(
        mark.args[0] for item in session.items for mark in item.iter_markers("converts")
    )


def pytest_runtest_teardown(item):
    cache = item.config.stash.get(CONVERSIONS, None)
    if cache is not None:
        for mark in item.iter_markers("converts"):
            cache.done(mark.args[0])


@pytest.fixture(scope="session")
def corpus_conversions(request, tmp_path_factory):
    """The session's :class:`corpus_support.ConversionCache`: a test marked
    ``@pytest.mark.converts(rel)`` gets the conversion of corpus net ``rel`` with
    ``corpus_conversions.get(CORPUS / rel)``, made by the first such test and dropped after the
    last."""
    from corpus_support import ConversionCache

    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not here")
    cache = ConversionCache(
        tmp_path_factory.mktemp("corpus-conversions"), request.config.stash.get(CONVERSION_USES, Counter())
    )
    request.config.stash[CONVERSIONS] = cache
    yield cache
    del request.config.stash[CONVERSIONS]
    repeated = sorted(rel for rel, n in cache.made.items() if n > 1)
    assert not repeated, f"corpus nets converted more than once in this session: {repeated}"


@pytest.fixture
def corpus():
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not here")
    return CORPUS


@pytest.fixture
def cli():
    """Run the CLI in-process, exactly as the ``caffe2torch`` command does (one line on
    stderr for every error, its exit code): returns (exit_code, stdout, stderr). A test
    fails on an unexpected exception (exit code 3, "this is a bug")."""
    runner = CliRunner()
    try:
        from caffe2torch.cli.app import EXIT_BUG, run
    except ImportError:  # an older caffe2torch (the tests run against a baseline checkout)
        from caffe2torch.cli import app

        def invoke(*args):
            result = runner.invoke(app, [str(a) for a in args])
            return result.exit_code, result.stdout, result.stderr

        return invoke

    def invoke(*args):
        with runner.isolation() as (out, err, _):
            code = run([str(a) for a in args])
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
        assert code != EXIT_BUG, stderr
        return code, stdout, stderr

    return invoke
