"""The whole corpus in ../shared: every net inspects, or is refused in one line naming why."""
from __future__ import annotations

import numpy as np
import pytest
from corpus_support import INPUT_SHAPES, STAGES, net_files

from caffe2torch.api import load_graph
from caffe2torch.errors import CaffeError

pytestmark = pytest.mark.corpus



def test_every_corpus_net_inspects(corpus):
    nets = net_files(corpus)
    assert len(nets) >= 140
    ok, refused = [], {}  # py-faster-rcnn's Python proposal layers included: recognised by name
    for path in nets:
        rel = f"{path.parent.name}/{path.name}"
        try:
            graph = load_graph(path, input_shapes=INPUT_SHAPES.get(rel), stages=STAGES.get(rel, ()))
        except CaffeError as e:
            refused[rel] = e
            continue
        assert graph.outputs and all(v.shape for v in graph.outputs), rel
        ok.append(rel)
    assert not refused, {k: str(e) for k, e in refused.items()}
    assert len(ok) == len(nets)


@pytest.mark.parametrize(
    "folder,inp,out",
    [
        ("ocv_layer_batch_norm", "blob.npy", "layer_batch_norm.npy"),
        ("ocv_layer_concat", "blob.npy", "layer_concat.npy"),
        ("ocv_layer_convolution", "blob.npy", "layer_convolution_caffe2015.npy"),
        ("ocv_layer_deconvolution", "layer_deconvolution.input.npy", "layer_deconvolution.npy"),
        ("ocv_layer_dropout", "blob.npy", "layer_dropout.npy"),
        ("ocv_layer_inner_product", "blob.npy", "layer_inner_product_caffe2015.npy"),
        ("ocv_layer_lrn_channels", "blob.npy", "layer_lrn_channels.npy"),
        ("ocv_layer_lrn_spatial", "blob.npy", "layer_lrn_spatial.npy"),
        ("ocv_layer_mvn", "blob.npy", "layer_mvn.npy"),
        ("ocv_layer_pooling_ave", "blob.npy", "layer_pooling_ave.npy"),
        ("ocv_layer_pooling_max", "blob.npy", "layer_pooling_max.npy"),
        ("ocv_layer_relu", "blob.npy", "layer_relu.npy"),
        ("ocv_layer_softmax", "blob.npy", "layer_softmax.npy"),
    ],
)
def test_shapes_match_real_caffe_outputs(corpus, folder, inp, out):
    """The output blobs pycaffe computed for these one-layer nets have our inferred shapes."""
    (proto,) = (corpus / folder).glob("*.prototxt")
    x = np.load(corpus / folder / inp)
    graph = load_graph(proto, input_shapes={None: x.shape})
    assert [v.shape for v in graph.outputs] == [np.load(corpus / folder / out).shape]


def test_trained_triplet_net_output_shape(corpus):
    graph = load_graph(corpus / "cnn3dobj_triplet" / "3d_triplet_testIMG.prototxt")
    x = np.load(corpus / "cnn3dobj_triplet" / "input_1x1x64x64.npy")
    assert graph.inputs[0].shape == x.shape
    assert [(v.name, v.shape) for v in graph.outputs] == [("feat", (1, 3))]
