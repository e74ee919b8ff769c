"""Reading weights: binary V2/V1/V0 caffemodels, legacy dims, double and non-packed data, HDF5;
matching them to the net."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from helpers import (
    TINY_V2,
    blob_bytes,
    tiny_arrays,
    v0_layer,
    v1_layer,
    v2_layer,
    write,
)

from caffe2torch.api import load_graph, load_weights
from caffe2torch.caffe.caffemodel import read_caffemodel
from caffe2torch.caffe.schema import pb
from caffe2torch.errors import WeightsError

CONVOLUTION, INNER_PRODUCT, RELU = 4, 14, 18  # V1 enum values


def assert_same(weights, arrays):
    for name, expected in arrays.items():
        got = weights.layers[name].blobs
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g.data.reshape(e.shape), e)


def test_v2_packed_float(tmp_path):
    arrays = tiny_arrays()
    data = b"".join(v2_layer(n, t, [blob_bytes(a) for a in arrays[n]])
                    for n, t in (("conv1", "Convolution"), ("fc", "InnerProduct")))
    (tmp_path / "w.caffemodel").write_bytes(data)
    w = read_caffemodel(tmp_path / "w.caffemodel")
    assert w.format == "V2"
    assert w.layers["conv1"].type == "Convolution"
    assert [b.shape for b in w.layers["conv1"].blobs] == [(4, 3, 3, 3), (4,)]
    assert all(not b.legacy for b in w.layers["conv1"].blobs)
    assert_same(w, arrays)
    # Zero-copy: the arrays are read-only views of the file's bytes.
    assert not w.layers["fc"].blobs[0].data.flags.owndata
    assert not w.layers["fc"].blobs[0].data.flags.writeable


def test_v1_net_with_legacy_dims(tmp_path):
    arrays = tiny_arrays(1)
    data = (
        v1_layer("conv1", CONVOLUTION, [blob_bytes(a, legacy=True) for a in arrays["conv1"]])
        + v1_layer("relu1", RELU, [])
        + v1_layer("fc", INNER_PRODUCT, [blob_bytes(a, legacy=True) for a in arrays["fc"]])
    )
    (tmp_path / "w.caffemodel").write_bytes(data)
    w = read_caffemodel(tmp_path / "w.caffemodel")
    assert w.format == "V1"
    assert w.layers["fc"].type == "InnerProduct"
    # Legacy shapes are kept exactly as stored: 4-D, leading 1s, never squeezed further.
    assert [b.shape for b in w.layers["fc"].blobs] == [(1, 1, 5, 64), (1, 1, 1, 5)]
    assert all(b.legacy for b in w.layers["fc"].blobs)
    assert_same(w, arrays)
    # ... and they match the net by Caffe's legacy rule.
    graph = load_graph(write(tmp_path / "n.prototxt", TINY_V2))
    _, check = load_weights(graph, tmp_path / "w.caffemodel")
    assert [b.shape for b in check.matched["conv1"]] == [(4, 3, 3, 3), (1, 1, 1, 4)]


def test_legacy_dims_keep_a_1x1_kernel(tmp_path):
    kernel = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    (tmp_path / "w.caffemodel").write_bytes(v2_layer("c", "Convolution", [blob_bytes(kernel, legacy=True)]))
    blob = read_caffemodel(tmp_path / "w.caffemodel").layers["c"].blobs[0]
    assert blob.shape == (6, 1, 1, 1)
    np.testing.assert_array_equal(blob.data, kernel)


def test_blob_without_shape_is_a_scalar(tmp_path):
    """Caffe writes no shape for a 0-axis blob (SSD's shared Normalize scale)."""
    from helpers import ld

    (tmp_path / "w.caffemodel").write_bytes(
        v2_layer("norm", "Normalize", [ld(5, np.float32(20).tobytes())])
    )
    blob = read_caffemodel(tmp_path / "w.caffemodel").layers["norm"].blobs[0]
    assert blob.shape == () and float(blob.data) == 20.0
    net = write(tmp_path / "n.prototxt", 'input: "x" input_shape { dim: 1 dim: 4 dim: 2 dim: 2 }\n'
                'layer { name: "norm" type: "Normalize" bottom: "x" top: "y" }')
    _, check = load_weights(load_graph(net), tmp_path / "w.caffemodel")
    assert check.matched["norm"][0].shape == ()


def test_v0_net(tmp_path):
    arrays = tiny_arrays(2)
    data = v0_layer("conv1", "conv", [blob_bytes(a, legacy=True) for a in arrays["conv1"]]) + v0_layer(
        "fc", "innerproduct", [blob_bytes(a, legacy=True) for a in arrays["fc"]]
    )
    (tmp_path / "w.caffemodel").write_bytes(data)
    w = read_caffemodel(tmp_path / "w.caffemodel")
    assert w.format == "V0"
    assert_same(w, arrays)


@pytest.mark.parametrize("packed", [True, False])
def test_double_data(tmp_path, packed):
    a = np.random.default_rng(3).standard_normal((3, 2, 2)).astype(np.float64) * 1e-3
    (tmp_path / "w.caffemodel").write_bytes(v2_layer("x", "Scale", [blob_bytes(a, double=True, packed=packed)]))
    blob = read_caffemodel(tmp_path / "w.caffemodel").layers["x"].blobs[0]
    assert blob.data.dtype == np.float64
    np.testing.assert_array_equal(blob.data, a)


def test_non_packed_float_data(tmp_path):
    arrays = tiny_arrays(4)
    blobs = [blob_bytes(a, packed=False) for a in arrays["fc"]]
    (tmp_path / "w.caffemodel").write_bytes(v2_layer("fc", "InnerProduct", blobs))
    w = read_caffemodel(tmp_path / "w.caffemodel")
    assert_same(w, {"fc": arrays["fc"]})


def test_protobuf_serialised_file_matches_protobufs_own_parse(tmp_path):
    """Write with protobuf's serializer, read with ours: the same numbers."""
    net = pb.NetParameter(name="n")
    rng = np.random.default_rng(5)
    expected = {}
    for name, shape in (("a", (3, 4)), ("b", (2, 1, 1, 1)), ("c", (7,))):
        layer = net.layer.add(name=name, type="InnerProduct")
        blob = layer.blobs.add()
        blob.shape.dim.extend(shape)
        values = rng.standard_normal(shape).astype(np.float32)
        blob.data.extend(values.ravel().tolist())
        expected[name] = [values]
    (tmp_path / "w.caffemodel").write_bytes(net.SerializeToString())
    w = read_caffemodel(tmp_path / "w.caffemodel")
    assert w.net_name == "n"
    assert_same(w, expected)


def test_hdf5_weights(tmp_path):
    arrays = tiny_arrays(6)
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:  # Caffe's layout: data/<layer>/<index>
        for name, blobs in arrays.items():
            g = f.create_group(f"data/{name}")
            for i, a in enumerate(blobs):
                g.create_dataset(str(i), data=a)
        f.create_group("data/relu1")
    w = read_caffemodel(path)
    assert w.format == "HDF5"
    assert_same(w, arrays)
    graph = load_graph(write(tmp_path / "n.prototxt", TINY_V2))
    _, check = load_weights(graph, path)
    assert set(check.matched) == {"conv1", "fc"}


def test_corpus_caffemodels_match_protobuf(corpus):
    """Our wire reader against protobuf's parser on real trained files (an independent reader)."""
    files = sorted(corpus.glob("*/*.caffemodel"))
    assert len(files) >= 8
    for path in files:
        ours = read_caffemodel(path)
        ref = pb.NetParameter.FromString(path.read_bytes())
        ref_layers = {layer.name: layer for layer in ref.layer if len(layer.blobs)}
        assert set(ref_layers) == {n for n, lw in ours.layers.items() if lw.blobs}, path
        for name, layer in ref_layers.items():
            for blob, mine in zip(layer.blobs, ours.layers[name].blobs):
                assert mine.shape == tuple(blob.shape.dim)
                np.testing.assert_array_equal(mine.data.ravel(), np.array(blob.data, np.float32))


@pytest.mark.parametrize(
    "folder,net,weights",
    [
        ("lenet_mnist_weights_ethereon", "lenet.prototxt", "lenet_iter_10000.caffemodel"),
        ("lenet_mnist_weights_yuvval", "lenet.prototxt", "lenet_iter_5000.caffemodel"),
        ("cifar10_quick_weights_bxuan", "cifar10_quick.prototxt", "cifar10_quick_iter_4000.caffemodel"),
        ("cifar10_quick_weights_bxuan", "cifar10_quick.prototxt", "cifar10_quick_iter_5000.caffemodel.h5"),
        ("cifar10_full_weights_hdf5_bxuan", "cifar10_full.prototxt", "cifar10_full_iter_60000.caffemodel.h5"),
        ("cifar10_full_weights_yuvval", "cifar10_full.prototxt", "cifar10_full_iter_70000.caffemodel"),
        ("cnn3dobj_triplet", "3d_triplet_testIMG.prototxt", "3d_triplet_iter_30000.caffemodel"),
        ("resnet50_head_caffe2onnx_test", "test.prototxt", "test.caffemodel"),
    ],
)
def test_corpus_weights_fit_their_nets(corpus, folder, net, weights):
    graph = load_graph(corpus / folder / net)
    w, check = load_weights(graph, corpus / folder / weights)
    learnable = [n.id for n in graph.nodes if n.weight_shapes]
    assert learnable and set(check.matched) == set(learnable)
    for node in graph.nodes:
        for blob, shape in zip(check.matched.get(node.id, []), node.weight_shapes):
            assert blob.shape == shape


def test_mismatched_weights_name_the_layer(tmp_path):
    graph = load_graph(write(tmp_path / "n.prototxt", TINY_V2))
    arrays = tiny_arrays()
    path = tmp_path / "w.caffemodel"
    cases = {
        "missing": [v2_layer("conv1", "Convolution", [blob_bytes(a) for a in arrays["conv1"]])],
        "extra": [
            v2_layer("conv1", "Convolution", [blob_bytes(a) for a in arrays["conv1"] + arrays["conv1"][:1]]),
        ],
        "shape": [
            v2_layer("conv1", "Convolution", [blob_bytes(a.reshape(4, 27)) if a.ndim == 4 else blob_bytes(a)
                                              for a in arrays["conv1"]]),
        ],
    }
    messages = {
        "missing": f"{path}: layer 'fc' (InnerProduct): no weights for this layer (the net needs 2 blob(s): 5x64, 5)",
        "extra": f"{path}: layer 'conv1' (Convolution): extra blob(s): the file has 3 (4x3x3x3, 4, 4x3x3x3), the net needs 2 (4x3x3x3, 4)",
        "shape": f"{path}: layer 'conv1' (Convolution): blob 0 is 4x27 in the file, the net needs 4x3x3x3",
    }
    for case, layers in cases.items():
        path.write_bytes(b"".join(layers) + v2_layer("fc", "InnerProduct", [blob_bytes(a) for a in arrays["fc"]])
                         if case != "missing" else b"".join(layers))
        with pytest.raises(WeightsError) as e:
            load_weights(graph, path)
        assert str(e.value) == messages[case]


def test_unused_weights_are_noted(tmp_path):
    graph = load_graph(write(tmp_path / "n.prototxt", TINY_V2))
    arrays = tiny_arrays()
    data = b"".join(v2_layer(n, "X", [blob_bytes(a) for a in arrays[n]]) for n in arrays)
    data += v2_layer("fc8_old", "InnerProduct", [blob_bytes(np.zeros((2, 2), np.float32))])
    (tmp_path / "w.caffemodel").write_bytes(data)
    _, check = load_weights(graph, tmp_path / "w.caffemodel")
    assert check.notes == ["1 layer(s) in w.caffemodel have weights the net does not use: fc8_old"]
