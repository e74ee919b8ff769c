"""Every corpus net converts with seeded random weights and passes `verify`, layer by layer.

The same check as ``tools/convert_corpus.py`` (which prints the table; both run
``corpus_support.run_one``), one test per net:
every net that converts must pass the per-layer comparison that ``convert`` runs, with
``--reference auto`` (real Caffe where it is built, OpenCV for the layers it cannot run; every
value they can compute, within 1e-5 + 1e-4 * max|ref|; layers neither runs are skipped and the
layers after them still compared). The session ends with the per-engine totals. A net whose layer types are all in the
registry's convertible list (``caffe2torch.layers.convertible_types()``) must convert; any
other net must convert or be refused with one clear line, never crash.

Each net's conversion comes from the session's cache (``corpus_conversions``): the other tests
that use the same net (tests/test_export.py, tests/test_convert.py) get that conversion instead
of converting it again.
"""
from __future__ import annotations

import pytest
from corpus_support import CORPUS, PROMISED, net_files, rel_name, run_one

from caffe2torch.verify.engines import caffe_available

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

# Nets with nothing OpenCV can check, with the reason, where real Caffe is not built; they are
# checked against real Caffe output instead (tests/test_caffe_references.py).
UNCHECKED = {
    "ocv_layer_mvn/layer_mvn.prototxt": "OpenCV's MVN adds eps to the variance, Caffe to the "
    "standard deviation; the real Caffe output matches",
}

NETS = net_files(CORPUS) if CORPUS.is_dir() else []


@pytest.mark.parametrize(
    "path", [pytest.param(p, marks=pytest.mark.converts(rel_name(p))) for p in NETS],
    ids=[f"{p.parent.name}/{p.stem}" for p in NETS],
)
def test_corpus_net(path, corpus_conversions, corpus_rows):
    row = run_one(path, cache=corpus_conversions)
    corpus_rows.append({k: row.get(k) for k in ("net", "status", "compared_by", "skip_reasons", "reference_errors")})
    rel = row["net"]
    assert row["status"] != "CRASH", row.get("traceback")
    if rel in UNCHECKED and not caffe_available():
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


def test_promised_is_the_registrys_list():
    from caffe2torch.layers import convertible_types

    assert PROMISED == set(convertible_types()) and "Python" not in PROMISED


# --input-order rgb on real architectures: folded into the first layer, or an explicit flip
# where folding is not exact (a grouped first convolution, BatchNorm or Crop reading the input,
# weights shared by two bottoms). `tools/convert_corpus.py --input-order rgb` runs all of them.
RGB_NETS = {
    "bvlc_googlenet/deploy.prototxt": "folded",
    "resnet50/ResNet-50-deploy.prototxt": "folded",
    "squeezenet_v1.1/deploy.prototxt": "folded",
    "bvlc_reference_caffenet/deploy.prototxt": "folded",
    "soeaver_inception-v2/deploy_inception-v2.prototxt": "flip",
    "x2paddle_shufflenet_v2_x0.5/shufflenet_v2_x0.5.prototxt": "flip",
    "ocv_conv_2_inps/conv_2_inps.prototxt": "flip",
}


@pytest.mark.parametrize("rel", sorted(RGB_NETS))
def test_corpus_net_taking_rgb(corpus, rel):
    row = run_one(corpus / rel, input_order="rgb")
    assert row["status"] == "pass", row["detail"]
    assert row["detail"].startswith(RGB_NETS[rel] + "; ")
    assert row["compared"] > 0 and row["failed"] == 0
