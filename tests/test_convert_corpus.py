"""Every corpus net converts with seeded random weights and matches OpenCV at its outputs.

The same check as ``tools/convert_corpus.py`` (which prints the table), one test per net: a
net whose layer types are all in the emitter's promised list must match OpenCV (the logits
under a final Softmax are compared too); any other net must either match or be refused with
one clear line, never crash. A fork net OpenCV cannot load has no reference here (its layers
are checked against Caffe's formulas in test_layers.py); where OpenCV and a fork net disagree,
a float64 run of the same model decides which float32 result is off.
"""
from __future__ import annotations

import pytest
from convert_corpus import PROMISED, run_one  # tools/, on sys.path via conftest
from inspect_corpus import CORPUS, net_files

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# Nets where OpenCV is not a faithful reference, with the reason; they are checked against
# real Caffe output instead (tests/test_caffe_references.py).
OPENCV_DIFFERS = {
    "ocv_layer_mvn/layer_mvn.prototxt": "OpenCV's MVN adds eps (0.1 here) to the variance, "
    "Caffe to the standard deviation; the real Caffe output matches",
}

NETS = net_files(CORPUS) if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", NETS, ids=[f"{p.parent.name}/{p.stem}" for p in NETS])
def test_corpus_net(path):
    row = run_one(path)
    rel = row["net"]
    assert row["status"] != "CRASH", row.get("traceback")
    if rel in OPENCV_DIFFERS:
        assert row["status"] == "MISMATCH"
        pytest.skip(OPENCV_DIFFERS[rel])
    if row["promised"]:
        assert row["status"] == "match", row["detail"]
    else:
        assert row["status"] in ("match", "refused", "no reference", "MISMATCH"), row["detail"]
        if row["status"] == "refused":
            assert row["detail"].count("\n") == 0
            assert not set(row["types"]) <= PROMISED
        if row["status"] == "MISMATCH":
            # Rounding amplified through a deep random net: OpenCV's float32 result must be
            # far further from the float64 run than ours.
            f64 = row["float64"]
            assert f64["opencv"] > 5 * f64["ours"], row["detail"]


def test_corpus_is_here(corpus):
    assert len(NETS) > 100
