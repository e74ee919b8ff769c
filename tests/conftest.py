from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from helpers import CORPUS
from typer.testing import CliRunner


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
