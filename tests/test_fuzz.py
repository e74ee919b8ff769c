"""Property-based fuzzing of every input caffe2torch reads (tests/fuzz_support.py has the
generators and the contract; ``make fuzz`` runs the same properties for minutes).

In the suite each property runs a fixed, derandomized set of examples (the same on every run,
so CI is reproducible), about a minute in all. ``FUZZ_EXAMPLES=N`` multiplies the number of
examples; ``FUZZ_PROFILE=random`` draws new ones on each run.

Every command runs in-process through ``caffe2torch.cli.app.run`` in a fresh folder and must
end as the CLI promises: 0, 1 (a failed check, convert/verify only) or 2 with exactly one
``error: `` line and no file left behind; never exit 3 (an uncaught exception), a hang, a
MemoryError. Library entry points raise only CaffeError.
"""
from __future__ import annotations

import os

import pytest
from fuzz_support import TARGETS, format_findings, run_case
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
settings.register_profile(
    "random",
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))

# Examples per target: sized so the whole file takes about a minute on two cores.
EXAMPLES = {
    "prototxt": 100,
    "generated": 100,
    "caffemodel": 100,
    "hdf5": 50,
    "mean": 40,
    "folder": 90,
    "cli": 150,
    "interrupt": 20,
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _check(scratch, case):
    result = run_case(case, scratch)
    assert not result.findings, "\n" + format_findings(result.findings)


def _property(target: str):
    @settings(settings.get_profile(PROFILE), max_examples=max(1, int(EXAMPLES[target] * SCALE)))
    @given(data=st.data())
    def prop(scratch, data):
        _check(scratch, data.draw(TARGETS[target](scratch), label=target))

    prop.__name__ = f"test_fuzz_{target}"
    return pytest.mark.slow(prop)  # seconds each: the corpus/slow tier (make test runs it)


test_fuzz_prototxt = _property("prototxt")
test_fuzz_generated_nets = _property("generated")
test_fuzz_caffemodel = _property("caffemodel")
test_fuzz_hdf5 = _property("hdf5")
test_fuzz_mean_files = _property("mean")
test_fuzz_converted_folders = _property("folder")
test_fuzz_cli_arguments = _property("cli")
test_fuzz_interrupts = _property("interrupt")


def test_the_cli_vocabulary_names_every_real_flag():
    """The argv generator knows every option of every command (a new flag gets fuzzed too)."""
    import typer
    from fuzz_support import OPTIONS

    from caffe2torch.cli.app import app

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert name in OPTIONS, f"the fuzzer does not know the command {name}"
        flags = {o for p in command.params if p.param_type_name == "option" for o in (*p.opts, *p.secondary_opts)}
        missing = flags - set(OPTIONS[name]["opts"]) - {"--help"}
        assert not missing, f"{name}: the fuzzer does not know {sorted(missing)}"


def test_the_harness_catches_what_it_must(scratch, monkeypatch):
    """The contract checker itself: a planted bug, a two-line error and a left-behind file are
    each reported."""
    import caffe2torch.api as api
    from fuzz_support import Case, run_case

    from caffe2torch.errors import PrototxtError

    net = {"net.prototxt": b'layer { name: "a" type: "ReLU" bottom: "x" top: "x" }\n'}

    def boom(*a, **k):
        raise KeyError("planted")

    monkeypatch.setattr(api, "build_graph", boom)
    r = run_case(Case("self-test", dict(net), [["inspect", "net.prototxt"]]), scratch)
    assert [f.cls for f in r.findings] == ["traceback"] and "KeyError" in r.findings[0].summary
    assert "api.py" in r.findings[0].summary

    def two_lines(*a, **k):
        raise PrototxtError("one\ntwo")  # printable() keeps it on one line

    monkeypatch.setattr(api, "build_graph", two_lines)
    r = run_case(Case("self-test", dict(net), [["inspect", "net.prototxt"]]), scratch)
    assert r.findings == [] and r.outcomes[0].code == 2

    def leaves_a_file(*a, **k):
        open("half-written.pth", "wb").close()
        raise PrototxtError("bad")

    monkeypatch.setattr(api, "build_graph", leaves_a_file)
    r = run_case(Case("self-test", dict(net), [["inspect", "net.prototxt"]]), scratch)
    assert [f.cls for f in r.findings] == ["files"] and "half-written.pth" in r.findings[0].summary
