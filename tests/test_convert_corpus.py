"""Every corpus net converts with seeded random weights and passes `verify`, layer by layer.

The same check as ``tools/convert_corpus.py`` (which prints the table), one test per net:
every net that converts must pass the per-layer comparison with OpenCV that ``convert`` runs
(every value OpenCV can compute, within 1e-5 + 1e-4 * max|ref|; layers OpenCV lacks are
skipped and the layers after them still compared). A net whose layer types are all in the
emitter's promised list must convert; any other net must convert or be refused with one clear
line, never crash.
"""
from __future__ import annotations

import pytest
from convert_corpus import PROMISED, run_one  # tools/, on sys.path via conftest
from inspect_corpus import CORPUS, net_files

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# Nets with nothing OpenCV can check, with the reason; they are checked against real Caffe
# output instead (tests/test_caffe_references.py).
UNCHECKED = {
    "ocv_layer_mvn/layer_mvn.prototxt": "OpenCV's MVN adds eps to the variance, Caffe to the "
    "standard deviation; the real Caffe output matches",
}

NETS = net_files(CORPUS) if CORPUS.is_dir() else []


@pytest.mark.parametrize("path", NETS, ids=[f"{p.parent.name}/{p.stem}" for p in NETS])
def test_corpus_net(path):
    row = run_one(path)
    rel = row["net"]
    assert row["status"] != "CRASH", row.get("traceback")
    if rel in UNCHECKED:
        assert row["status"] == "unchecked", row["detail"]
        pytest.skip(UNCHECKED[rel])
    if row["promised"]:
        assert row["status"] == "pass", row["detail"]
    else:
        assert row["status"] in ("pass", "refused"), row["detail"]
        if row["status"] == "refused":
            assert row["detail"].count("\n") == 0
            assert not set(row["types"]) <= PROMISED
    if row["status"] == "pass":
        assert row["compared"] > 0 and row["failed"] == 0


def test_corpus_is_here(corpus):
    assert len(NETS) > 100
