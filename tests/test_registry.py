"""The layer registry and the layer tests agree: every type that converts is checked, by a
numpy formula test or by OpenCV where its family says OpenCV runs it, and every type a family
says OpenCV runs has a test comparing it with OpenCV. The markers are read statically from
tests/layers (``layer_checks.marked_tests``); the layer harness keeps them honest at run time.
"""
from __future__ import annotations

import pytest
from layer_checks import family, marked_tests

from caffe2torch import layers as registry

def _classes():
    return sorted({registry.layer_class(t) for t in registry.known_types()}, key=lambda c: c.__name__)


CONVERTING = [
    t for t in registry.known_types()
    if registry.emits(t) and not (registry.layer_class(t).SOURCE or registry.layer_class(t).TRAINING_ONLY)
]
OPENCV_RUNS = sorted(
    t for cls in _classes() if not cls.SOURCE for t in cls.OPENCV
)


@pytest.fixture(scope="module")
def marked():
    return marked_tests()


@pytest.mark.parametrize("type_", CONVERTING)
def test_every_converting_type_is_checked(marked, type_):
    cls = registry.layer_class(type_)
    by_formula = type_ in marked["formula"]
    by_opencv = type_ in cls.OPENCV and type_ in marked["opencv"]
    what = f"a @pytest.mark.formula({type_!r}) test (numpy, Caffe's formula)"
    if type_ in cls.OPENCV:
        what += f" or a @pytest.mark.opencv({type_!r}) test"
    assert by_formula or by_opencv, (
        f"{type_} ({cls.__name__}, layers/{family(type_)}.py) converts but no layer test checks it: "
        f"add {what} to tests/layers/test_{family(type_)}.py"
    )


@pytest.mark.parametrize("type_", OPENCV_RUNS)
def test_every_type_opencv_runs_is_compared_with_opencv(marked, type_):
    assert type_ in marked["opencv"], (
        f"{registry.layer_class(type_).__name__}.OPENCV says OpenCV runs {type_}, but no test compares "
        f"it: add a @pytest.mark.opencv({type_!r}) test to tests/layers/test_{family(type_)}.py "
        "(or take it out of OPENCV)"
    )


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_declared_types_are_the_familys_own(cls):
    assert cls.OPENCV <= set(cls.TYPES), f"{cls.__name__}.OPENCV: {sorted(cls.OPENCV - set(cls.TYPES))} not in TYPES"
    assert cls.FOLDS_INPUT <= set(cls.TYPES), (
        f"{cls.__name__}.FOLDS_INPUT: {sorted(cls.FOLDS_INPUT - set(cls.TYPES))} not in TYPES"
    )


def test_markers_name_registered_types(marked):
    known = set(registry.known_types())
    for kind, types in marked.items():
        unknown = sorted(set(types) - known)
        assert not unknown, f"@pytest.mark.{kind} names types nothing registers: {unknown} ({[types[t] for t in unknown]})"
