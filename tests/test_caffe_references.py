"""Converted models against outputs real Caffe computed (in ../shared/corpus).

- ``ocv_layer_*``: one layer each, input and output written by pycaffe (``run.py`` in
  opencv_extra); where a ``*_caffe2015.npy`` exists it is the pure-Caffe output and is used.
- ``cnn3dobj_triplet``: a whole trained net; Caffe's ``extract_features`` gave the feature
  [-312.4805, 8.4768486, -224.98953] for the image 4_78.png.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from caffe2torch.emit import convert

pytestmark = pytest.mark.corpus

ATOL, RTOL = 1e-5, 1e-4

LAYERS = [
    "batch_norm", "concat", "convolution", "deconvolution", "dropout", "inner_product",
    "lrn_channels", "lrn_spatial", "mvn", "pooling_ave", "pooling_max", "relu", "softmax",
]


def _files(folder, name):
    proto = folder / f"layer_{name}.prototxt"
    weights = folder / f"layer_{name}.caffemodel"
    inp = folder / f"layer_{name}.input.npy"
    if not inp.exists():
        inp = folder / "blob.npy"
    out = folder / f"layer_{name}_caffe2015.npy"
    if not out.exists():
        out = folder / f"layer_{name}.npy"
    return proto, (weights if weights.exists() else None), inp, out


@pytest.mark.parametrize("name", LAYERS)
def test_single_layer_matches_caffe(corpus, name):
    proto, weights, inp, out = _files(corpus / f"ocv_layer_{name}", name)
    x = np.load(inp)
    ref = np.load(out)
    conversion = convert(proto, weights)
    model = conversion.module()
    names = [v.name for v in conversion.graph.inputs]
    feed = [torch.from_numpy(x)] * len(names)  # concat reads the same blob twice
    with torch.no_grad():
        y = model(*feed).numpy()
    assert y.size == ref.size
    if y.shape != ref.shape:  # the 2017 files hold OpenCV's 2-D layout of InnerProduct
        assert name == "inner_product" and out.name.endswith(".npy")
        ref = ref.reshape(y.shape)
    err = np.abs(y - ref).max()
    assert err <= ATOL + RTOL * np.abs(ref).max(), (name, err, np.abs(ref).max())


def test_cnn3dobj_triplet_feature(corpus):
    folder = corpus / "cnn3dobj_triplet"
    conversion = convert(folder / "3d_triplet_testIMG.prototxt", folder / "3d_triplet_iter_30000.caffemodel")
    x = np.load(folder / "input_1x1x64x64.npy")
    with torch.no_grad():
        feat = conversion.module()(torch.from_numpy(x)).numpy().ravel()
    expected = np.array([-312.4805, 8.4768486, -224.98953])
    # Caffe printed the feature with 8 significant digits.
    np.testing.assert_allclose(feat, expected, rtol=2e-6, atol=1e-4)


@pytest.mark.parametrize(
    "folder,net,weights,shape",
    [
        ("lenet_mnist_weights_ethereon", "lenet.prototxt", "lenet_iter_10000.caffemodel", None),
        ("cifar10_quick_weights_bxuan", "cifar10_quick.prototxt", "cifar10_quick_iter_5000.caffemodel.h5", None),
        ("cifar10_full_weights_hdf5_bxuan", "cifar10_full.prototxt", "cifar10_full_iter_60000.caffemodel.h5", None),
        ("resnet50_head_caffe2onnx_test", "test.prototxt", "test.caffemodel", None),
    ],
    ids=["lenet", "cifar10_quick_hdf5", "cifar10_full_hdf5", "resnet50_head"],
)
def test_trained_weights_match_opencv(corpus, tmp_path, folder, net, weights, shape):
    """Trained weights (V2 and HDF5 files) converted, against OpenCV on real-scale inputs."""
    pytest.importorskip("cv2")
    from caffe2torch.caffe.caffemodel import binary_caffemodel
    from caffe2torch.verify.parity import compare_outputs, random_inputs

    proto, w = corpus / folder / net, corpus / folder / weights
    conversion = convert(proto, w)
    arrays = {k: v * 50 for k, v in random_inputs(conversion.graph.inputs, seed=3).items()}
    with binary_caffemodel(w) as binary:  # OpenCV reads only binary caffemodels: same blobs
        results = compare_outputs(conversion, proto, binary, arrays)
    assert results
    for c in results:
        assert c.ok, (c.blob, c.max_abs, c.bound)
