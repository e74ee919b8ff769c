"""Exactly as permissive as Caffe: what Caffe's LayerSetUp/Reshape accept is accepted, with its
shapes and blob shapes; what they refuse is refused with Caffe's reason.

Each test names the Caffe source it follows (BVLC master unless a fork is named). Expected
shapes are worked out by hand from that source; numbers come from numpy implementations of
Caffe's forward code written here.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import blob_bytes, ld, v2_layer, write

from caffe2torch.api import load_graph, load_weights
from caffe2torch.caffe.caffemodel import read_caffemodel
from caffe2torch.emit import convert
from caffe2torch.errors import CaffeError
from caffe2torch.synth import write_synth_weights
from caffe2torch.verify.parity import run_model


def net_text(inputs: dict, layers: str) -> str:
    text = ""
    for name, shape in inputs.items():
        text += f'input: "{name}" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'
    return text + layers


def layer(type_: str, param: str = "", bottoms=("x",), tops=("y",), name="l") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {param} }}\n'


def graph(tmp_path, inputs: dict, layers: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return load_graph(write(tmp_path / "n.prototxt", net_text(inputs, layers)))


def shapes(tmp_path, inputs: dict, layers: str):
    return [v.shape for v in graph(tmp_path, inputs, layers).nodes[-1].outputs]


def weights(tmp_path, inputs: dict, layers: str):
    return graph(tmp_path, inputs, layers).nodes[-1].weight_shapes


def refused(tmp_path, inputs: dict, layers: str) -> str:
    """The layer's own message (the graph adds file, line and layer around it)."""
    with pytest.raises(CaffeError) as e:
        graph(tmp_path, inputs, layers)
    return e.value.message


def outputs(tmp_path, inputs: dict, layers: str, feed: dict, blobs: dict | None = None):
    """Convert the net (with ``blobs``, {layer: (type, [BlobProto bytes])}, written to a
    caffemodel, or seeded random weights) and run it on ``feed``: the last layer's outputs."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write(tmp_path / "n.prototxt", net_text(inputs, layers))
    tops = [v.name for v in load_graph(path).layers[-1].outputs]
    if blobs is None:
        conv = convert(path, random_weights=True, outputs=tops)
    else:
        data = b"".join(v2_layer(name, type_, bs) for name, (type_, bs) in blobs.items())
        (tmp_path / "w.caffemodel").write_bytes(data)
        conv = convert(path, tmp_path / "w.caffemodel", outputs=tops)
    feed = {k: np.asarray(v, np.float32) for k, v in feed.items()}
    return run_model(conv.module(), conv.graph.inputs, feed)


def synth_blobs_of(tmp_path, inputs: dict, layers: str, name: str = "l"):
    g = graph(tmp_path, inputs, layers)
    write_synth_weights(g, tmp_path / "s.caffemodel", seed=0)
    return read_caffemodel(tmp_path / "s.caffemodel").layers[name].blobs


# -------------------------------------------------------------------------------- ArgMax
def caffe_argmax(x: np.ndarray, top_k: int, out_max_val: bool, axis: int | None = None):
    """ArgMaxLayer::Forward_cpu: (value, index) pairs, std::partial_sort with std::greater, so
    ties put the larger index first; Reshape pads the no-axis output to 3 axes."""
    if axis is None:
        n = x.shape[0]
        flat = x.reshape(n, -1)
        shape = [1] * max(x.ndim, 3)
        shape[0], shape[1], shape[2] = n, 2 if out_max_val else 1, top_k
        top = np.zeros((n, 2 * top_k if out_max_val else top_k), np.float32)
        for i in range(n):
            best = sorted(((float(v), j) for j, v in enumerate(flat[i])), reverse=True)[:top_k]
            top[i, :top_k] = [j for _, j in best]
            if out_max_val:
                top[i, top_k:] = [v for v, _ in best]
        return top.reshape(shape)
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1] + (top_k,), np.float32)
    for idx in np.ndindex(*moved.shape[:-1]):
        best = sorted(((float(v), j) for j, v in enumerate(moved[idx])), reverse=True)[:top_k]
        out[idx] = [v if out_max_val else j for v, j in best]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize(
    "inp,param,expected",
    [
        ((1, 10), "", (1, 1, 1)),
        ((1, 10), "argmax_param { out_max_val: true }", (1, 2, 1)),
        ((3, 10), "argmax_param { top_k: 4 out_max_val: true }", (3, 2, 4)),
        ((5,), "", (5, 1, 1)),  # count(1) of a 1-D blob is 1
        ((2, 3, 4, 5), "argmax_param { top_k: 3 }", (2, 1, 3, 1)),
        ((2, 10), "argmax_param { axis: 1 top_k: 2 }", (2, 2)),  # with axis: no padding
        ((2, 10), "argmax_param { axis: -1 out_max_val: true }", (2, 1)),
    ],
)
def test_argmax_output_has_at_least_three_axes(tmp_path, inp, param, expected):
    assert shapes(tmp_path, {"x": inp}, layer("ArgMax", param)) == [expected]


def test_argmax_top_k_limits(tmp_path):
    msg = refused(tmp_path, {"x": (2, 4)}, layer("ArgMax", "argmax_param { top_k: 5 }"))
    assert msg == "top_k 5 exceeds the 4 values per sample (Caffe: top_k must be <= count(1))"
    assert shapes(tmp_path, {"x": (2, 4)}, layer("ArgMax", "argmax_param { top_k: 4 }")) == [(2, 1, 4)]
    msg = refused(tmp_path, {"x": (2, 3, 5)}, layer("ArgMax", "argmax_param { axis: 1 top_k: 4 }"))
    assert msg == "top_k 4 exceeds axis 1 of size 3 (Caffe: top_k must be <= shape(axis))"
    msg = refused(tmp_path, {"x": (2, 3)}, layer("ArgMax", "argmax_param { axis: 2 }"))
    assert msg == "axis 2 is out of range for a 2-D input"


@pytest.mark.parametrize(
    "param,top_k,out_max_val,axis",
    [
        ("", 1, False, None),
        ("argmax_param { top_k: 3 }", 3, False, None),
        ("argmax_param { top_k: 4 out_max_val: true }", 4, True, None),
        ("argmax_param { axis: 1 top_k: 3 }", 3, False, 1),
        ("argmax_param { axis: 1 top_k: 2 out_max_val: true }", 2, True, 1),
    ],
)
def test_softmax_then_argmax_on_2d_blobs(tmp_path, param, top_k, out_max_val, axis):
    """Softmax -> ArgMax of a classifier's N x 10 output, with ties (equal logits give equal
    probabilities): Caffe's order puts the larger index first among equal values."""
    logits = np.array(
        [[0.5, 2.0, 2.0, -1.0, 2.0, 0.0, 1.0, 1.0, -3.0, 0.5],
         [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]], np.float32
    )
    layers = layer("Softmax", bottoms=("x",), tops=("p",), name="prob") + layer(
        "ArgMax", param, bottoms=("p",), tops=("y",)
    )
    (y,) = outputs(tmp_path, {"x": (2, 10)}, layers, {"x": logits})
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = (e / e.sum(1, keepdims=True)).astype(np.float32)
    # The ties are exact in float32, so Caffe's order is determined by the indices.
    assert prob[0, 1] == prob[0, 2] == prob[0, 4]
    expected = caffe_argmax(prob, top_k, out_max_val, axis)
    assert y.shape == expected.shape
    if not out_max_val:
        np.testing.assert_array_equal(y, expected)
    else:
        np.testing.assert_allclose(y, expected, rtol=1e-6)
        if axis is None:  # the positions, exactly
            np.testing.assert_array_equal(y[:, 0], expected[:, 0])


def test_argmax_ties_pick_the_larger_index_4d_and_1d(tmp_path):
    x = np.zeros((2, 3, 2, 2), np.float32)
    x[0, 0, 0, 1] = x[0, 2, 1, 0] = 5.0  # a tie between flat positions 1 and 10
    x[1] = 1.0  # everything tied
    (y,) = outputs(tmp_path, {"x": x.shape}, layer("ArgMax", "argmax_param { top_k: 3 }"), {"x": x})
    np.testing.assert_array_equal(y, caffe_argmax(x, 3, False))
    assert y.reshape(2, 3).tolist() == [[10, 1, 11], [11, 10, 9]]
    (y,) = outputs(tmp_path / "a", {"x": x.shape}, layer("ArgMax", "argmax_param { axis: 1 top_k: 2 }"),
                   {"x": x})
    np.testing.assert_array_equal(y, caffe_argmax(x, 2, False, 1))
    v = np.array([0.3, -1.0, 7.0], np.float32)
    (y,) = outputs(tmp_path / "b", {"x": (3,)}, layer("ArgMax"), {"x": v})
    assert y.shape == (3, 1, 1) and y.ravel().tolist() == [0, 0, 0]


# -------------------------------------------------------------------------------- PReLU
PRELU_SHARED = layer("PReLU", "prelu_param { channel_shared: true }")


def test_shared_prelu_slope_is_a_scalar_blob(tmp_path):
    """PReLULayer::LayerSetUp: Blob(vector<int>(0)) for a shared slope."""
    assert weights(tmp_path, {"x": (2, 3, 4, 4)}, PRELU_SHARED) == [()]
    assert weights(tmp_path, {"x": (2, 3, 4, 4)}, layer("PReLU")) == [(3,)]


@pytest.mark.parametrize(
    "stored",
    [
        ld(5, np.float32(0.3).tobytes()),  # as Caffe's Blob::ToProto writes it: no shape at all
        blob_bytes(np.array(0.3, np.float32)),  # an empty shape message
        blob_bytes(np.array(0.3, np.float32), legacy=True),  # legacy 1 x 1 x 1 x 1
    ],
    ids=["no_shape", "empty_shape", "legacy_1111"],
)
def test_caffe_saved_shared_prelu_converts(tmp_path, stored):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    (y,) = outputs(tmp_path, {"x": x.shape}, PRELU_SHARED, {"x": x}, blobs={"l": ("PReLU", [stored])})
    np.testing.assert_allclose(y, np.where(x > 0, x, np.float32(0.3) * x), rtol=1e-6)


def test_shared_prelu_slope_of_shape_1_is_refused_as_caffe_does(tmp_path):
    """Blob::ShapeEquals: a non-legacy (1,) is not the 0-axis shape."""
    path = write(tmp_path / "n.prototxt", net_text({"x": (2, 3, 4, 5)}, PRELU_SHARED))
    (tmp_path / "w.caffemodel").write_bytes(
        v2_layer("l", "PReLU", [blob_bytes(np.array([0.3], np.float32))])
    )
    with pytest.raises(CaffeError) as e:
        load_weights(load_graph(path), tmp_path / "w.caffemodel")
    assert e.value.message == "blob 0 is 1 in the file, the net needs scalar"


def test_synth_weights_writes_a_scalar_shared_prelu_slope(tmp_path):
    (blob,) = synth_blobs_of(tmp_path, {"x": (2, 3, 4, 4)}, PRELU_SHARED)
    assert blob.shape == () and not blob.legacy
    (blob,) = synth_blobs_of(tmp_path / "c", {"x": (2, 3, 4, 4)}, layer("PReLU"))
    assert blob.shape == (3,)


def test_shared_prelu_emits_a_one_weight_prelu(tmp_path):
    path = write(tmp_path / "n.prototxt", net_text({"x": (2, 3, 4, 5)}, PRELU_SHARED))
    conv = convert(path, random_weights=True)
    assert "nn.PReLU()" in conv.code
    assert conv.module().state_dict()["l.weight"].shape == (1,)


def test_prelu_axes(tmp_path):
    """PReLULayer: CHECK_GE(num_axes, 2) even when shared; channels() is a legacy accessor."""
    msg = refused(tmp_path, {"x": (6,)}, PRELU_SHARED)
    assert msg == ("needs an input with channels (at least 2-D), got 6 "
                   "(Caffe: number of axes of bottom blob must be >= 2)")
    msg = refused(tmp_path, {"x": (1, 2, 3, 4, 5)}, layer("PReLU"))
    assert msg == ("input 1x2x3x4x5 has 5 axes; Caffe reads it as num/channels/height/width, "
                   "which allows 4 at most")


# ------------------------------------------------------------------------- in-place rules
@pytest.mark.parametrize("type_", ["Reshape", "Flatten", "AbsVal", "Split"])
def test_layers_that_refuse_in_place(tmp_path, type_):
    """CHECK_NE(top[0], bottom[0]) in Reshape/Flatten/AbsVal LayerSetUp and SplitLayer::Reshape."""
    param = "reshape_param { shape { dim: 0 dim: -1 } }" if type_ == "Reshape" else ""
    msg = refused(tmp_path, {"x": (2, 3, 4)}, layer(type_, param, tops=("x",)))
    assert msg == f"{type_} does not allow in-place computation (top 'x' is its bottom)"


# ---------------------------------------------------------------------- shape arithmetic
def test_flatten_end_axis_just_before_axis_inserts_an_axis(tmp_path):
    """FlattenLayer::Reshape: count(axis, end_axis + 1) is 1 when end_axis = axis - 1."""
    p = layer("Flatten", "flatten_param { axis: 2 end_axis: 1 }")
    assert shapes(tmp_path, {"x": (2, 3, 4)}, p) == [(2, 3, 1, 4)]
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (y,) = outputs(tmp_path / "r", {"x": (2, 3, 4)}, p, {"x": x})
    np.testing.assert_array_equal(y, x.reshape(2, 3, 1, 4))
    msg = refused(tmp_path, {"x": (2, 3, 4)}, layer("Flatten", "flatten_param { axis: 2 end_axis: 0 }"))
    assert msg == "end_axis 0 comes before axis 2"


def test_crop_reference_may_have_more_axes(tmp_path):
    """CropLayer::Reshape reads bottom[1]->shape(i) only for the axes of bottom 0."""
    p = layer("Crop", "crop_param { axis: 2 offset: 1 }", bottoms=("x", "r"))
    assert shapes(tmp_path, {"x": (1, 3, 10, 12), "r": (1, 5, 6, 6, 7)}, p) == [(1, 3, 6, 6)]
    msg = refused(tmp_path, {"x": (1, 3, 10, 12), "r": (1, 5, 6)}, p)
    assert msg == "the reference bottom 1x5x6 has fewer axes than the cropped 1x3x10x12"


def test_shuffle_channel_output_is_4d(tmp_path):
    """farmingyard/ShuffleNet ShuffleChannelLayer::Reshape: top is num x channels x height x
    width (legacy accessors)."""
    p = layer("ShuffleChannel", "shuffle_channel_param { group: 2 }")
    assert shapes(tmp_path, {"x": (2, 6)}, p) == [(2, 6, 1, 1)]
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    (y,) = outputs(tmp_path / "r", {"x": (2, 6)}, p, {"x": x})
    np.testing.assert_array_equal(y, x.reshape(2, 2, 3).transpose(0, 2, 1).reshape(2, 6, 1, 1))
    assert refused(tmp_path, {"x": (1, 4, 2, 2, 2)}, p).startswith("input 1x4x2x2x2 has 5 axes")


def test_convolution_output_size_truncates_toward_zero(tmp_path):
    """ConvolutionLayer::compute_output_shape: (2 - 3) / 2 + 1 = 1 in C++; the overhanging
    kernel reads zeros (im2col)."""
    p = layer("Convolution", "convolution_param { num_output: 2 kernel_size: 3 stride: 2 }")
    assert shapes(tmp_path, {"x": (1, 3, 2, 2)}, p) == [(1, 2, 1, 1)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    (y,) = outputs(tmp_path / "r", {"x": x.shape}, p, {"x": x},
                   blobs={"l": ("Convolution", [blob_bytes(w), blob_bytes(b)])})
    expected = np.einsum("chw,ochw->o", x[0], w[:, :, :2, :2]) + b
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-5, atol=1e-6)
    msg = refused(tmp_path, {"x": (1, 3, 2, 2)},
                  layer("Convolution", "convolution_param { num_output: 2 kernel_size: 3 }"))
    # (2 - 3) / 1 + 1 = 0: Caffe would make an empty blob, which caffe2torch refuses.
    assert msg == "output size 0 is not positive (input 2, kernel 3, stride 1, pad 0, dilation 1)"


@pytest.mark.parametrize("type_", ["Convolution", "Deconvolution"])
def test_convolution_without_spatial_axes(tmp_path, type_):
    """BaseConvolutionLayer::LayerSetUp allows 0 spatial axes (no kernel size then)."""
    p = layer(type_, "convolution_param { num_output: 4 }")
    assert shapes(tmp_path, {"x": (2, 6)}, p) == [(2, 4)]
    w_shape = (4, 6) if type_ == "Convolution" else (6, 4)
    assert weights(tmp_path, {"x": (2, 6)}, p) == [w_shape, (4,)]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    (y,) = outputs(tmp_path / "r", {"x": x.shape}, p, {"x": x},
                   blobs={"l": (type_, [blob_bytes(w), blob_bytes(b)])})
    expected = (x @ w.T if type_ == "Convolution" else x @ w) + b
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_depthwise_fork_takes_one_bottom(tmp_path):
    """farmingyard's ConvolutionDepthwise: ExactNumBottomBlobs() and ExactNumTopBlobs() are 1."""
    p = layer("ConvolutionDepthwise", "convolution_param { num_output: 4 kernel_size: 3 }",
              bottoms=("x", "z"), tops=("y", "w"))
    assert refused(tmp_path, {"x": (1, 4, 5, 5), "z": (1, 4, 5, 5)}, p) == "takes 1 bottoms, has 2"


def test_pooling_rules(tmp_path):
    """PoolingLayer::LayerSetUp/Reshape."""
    # kernel_size next to a lone kernel_h: the kernel_h is ignored.
    p = layer("Pooling", "pooling_param { kernel_size: 2 kernel_h: 3 stride: 2 }")
    assert shapes(tmp_path, {"x": (1, 1, 6, 6)}, p) == [(1, 1, 3, 3)]
    msg = refused(tmp_path, {"x": (1, 1, 6, 6)},
                  layer("Pooling", "pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }"))
    assert msg == "padding is implemented only for MAX and AVE pooling, not STOCHASTIC"
    # With any padding, a last window starting in the padding is dropped on both axes:
    # width ceil((4 - 1) / 2) + 1 = 3, but (3 - 1) * 2 >= 4 + 0, so 2.
    p = layer("Pooling", "pooling_param { kernel_h: 2 kernel_w: 1 stride: 2 pad_h: 1 pad_w: 0 }")
    assert shapes(tmp_path, {"x": (1, 1, 4, 4)}, p) == [(1, 1, 3, 2)]
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    (y,) = outputs(tmp_path / "r", {"x": x.shape}, p, {"x": x})
    # rows: windows [-1, 0], [1, 2], [3, 4] (clipped); columns 0 and 2
    np.testing.assert_array_equal(y[0, 0], x[0, 0][[0, 2, 3]][:, [0, 2]])


def test_eltwise_coefficients(tmp_path):
    """EltwiseLayer::LayerSetUp refuses coefficients for PROD only (MAX ignores them)."""
    p = layer("Eltwise", "eltwise_param { operation: MAX coeff: 2 coeff: -1 }", bottoms=("a", "b"))
    a, b = np.float32([[1, -5, 3]]), np.float32([[2, -7, 0]])
    (y,) = outputs(tmp_path, {"a": (1, 3), "b": (1, 3)}, p, {"a": a, "b": b})
    np.testing.assert_array_equal(y, np.maximum(a, b))
    msg = refused(tmp_path, {"a": (1, 3), "b": (1, 3)},
                  layer("Eltwise", "eltwise_param { operation: PROD coeff: 1 coeff: 1 }", bottoms=("a", "b")))
    assert msg == "coeff applies to SUM only (Caffe: only takes coefficients for summation)"


def test_axpy_with_a_2d_scale(tmp_path):
    """hujie-frank/SENet AxpyLayer: the scale a is read as N*C values, whatever its trailing
    axes (checked to be 1 x 1 only when it is 4-D)."""
    p = layer("Axpy", bottoms=("a", "x", "z"))
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3)).astype(np.float32)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    z = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ins = {"a": a.shape, "x": x.shape, "z": z.shape}
    (y,) = outputs(tmp_path, ins, p, {"a": a, "x": x, "z": z})
    np.testing.assert_allclose(y, a[:, :, None, None] * x + z, rtol=1e-6, atol=1e-6)
    a3 = rng.standard_normal((2, 3, 2)).astype(np.float32)
    (y,) = outputs(tmp_path / "r", {**ins, "a": a3.shape}, p, {"a": a3, "x": x, "z": z})
    scale = a3.reshape(-1)[:6].reshape(2, 3)
    np.testing.assert_allclose(y, scale[:, :, None, None] * x + z, rtol=1e-6, atol=1e-6)
    msg = refused(tmp_path, {**ins, "a": (2, 3, 2, 1)}, p)
    assert msg == "scale 2x3x2x1 must be 2x3x1x1"


def test_scale_and_bias_axis_must_name_an_axis(tmp_path):
    """Scale/BiasLayer::LayerSetUp: CanonicalAxisIndex(axis) even for a scalar parameter."""
    for type_, param in (("Scale", "scale_param"), ("Bias", "bias_param")):
        msg = refused(tmp_path, {"x": (2, 3, 4, 5)}, layer(type_, f"{param} {{ axis: 4 num_axes: 0 }}"))
        assert msg == "axis 4 is out of range for a 4-D input"
        assert weights(tmp_path, {"x": (2, 3, 4, 5)}, layer(type_, f"{param} {{ axis: -1 num_axes: 0 }}")) == [()]
    msg = refused(tmp_path, {"x": (2, 3), "s": ()},
                  layer("Scale", "scale_param { axis: 2 bias_term: true }", bottoms=("x", "s")))
    assert msg == "axis 2 is out of range for a 2-D input"
    p = layer("Scale", "scale_param { axis: 2 }", bottoms=("x", "s"))
    assert shapes(tmp_path, {"x": (2, 3), "s": ()}, p) == [(2, 3)]


# -------------------------------------------------------------------- element-wise domains
@pytest.mark.parametrize(
    "type_,param,message",
    [
        ("Exp", "exp_param { base: -2 }",
         "base -2 must be strictly positive, or -1 for e (Caffe: base must be strictly positive)"),
        ("Exp", "exp_param { base: 0 }",
         "base 0 must be strictly positive, or -1 for e (Caffe: base must be strictly positive)"),
        ("Log", "log_param { base: -0.5 }",
         "base -0.5 must be strictly positive, or -1 for e (Caffe: base must be strictly positive)"),
        ("Log", "log_param { base: 1 }", "base 1: 1/log(base) is not finite (Caffe refuses base 1)"),
        ("Exp", "exp_param { base: inf }", "base inf: log(base) is not finite"),
    ],
)
def test_exp_and_log_bases(tmp_path, type_, param, message):
    """ExpLayer/LogLayer::LayerSetUp."""
    assert refused(tmp_path, {"x": (2, 3)}, layer(type_, param)) == message


def test_exp_base_1_is_valid(tmp_path):
    x = np.float32([[1, -2, 30]])
    (y,) = outputs(tmp_path, {"x": (1, 3)}, layer("Exp", "exp_param { base: 1 shift: 2 }"), {"x": x})
    np.testing.assert_array_equal(y, np.ones_like(x))


def test_clip_min_above_max_gives_min(tmp_path):
    """ClipLayer checks nothing; Forward_cpu is max(min, min(x, max))."""
    x = np.float32([[-3, 0, 0.5, 4]])
    (y,) = outputs(tmp_path, {"x": (1, 4)}, layer("Clip", "clip_param { min: 1 max: -1 }"), {"x": x})
    np.testing.assert_array_equal(y, np.maximum(1, np.minimum(x, -1)))


def test_power_without_input(tmp_path):
    """PowerLayer::Forward_cpu: power * scale == 0 sets every output to pow(shift, power)."""
    x = np.float32([[1, np.inf, -2]])
    p = layer("Power", "power_param { power: 2 scale: 0 shift: 3 }")
    (y,) = outputs(tmp_path, {"x": (1, 3)}, p, {"x": x})
    np.testing.assert_array_equal(y, np.full_like(x, 9))


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.5])
def test_dropout_ratio_is_only_a_debug_check(tmp_path, ratio):
    """DropoutLayer::LayerSetUp checks the ratio with DCHECK only; at test time the layer
    passes its input through."""
    x = np.float32([[1, -2, 3]])
    p = layer("Dropout", f"dropout_param {{ dropout_ratio: {ratio} }}")
    (y,) = outputs(tmp_path, {"x": (1, 3)}, p, {"x": x})
    np.testing.assert_array_equal(y, x)


# -------------------------------------------------------------------------- normalisation
def test_batch_norm_rules(tmp_path):
    """BatchNormLayer: shape(1) is read in Reshape; the statistics never learn."""
    assert refused(tmp_path, {"x": (5,)}, layer("BatchNorm")) == (
        "needs an input with channels (at least 2-D), got 5"
    )
    assert weights(tmp_path, {"x": (2, 5)}, layer("BatchNorm")) == [(5,), (5,), (1,)]
    msg = refused(tmp_path, {"x": (2, 5)}, layer("BatchNorm", "param { lr_mult: 0 } param { decay_mult: 0 }"))
    assert msg == ("param 1 has lr_mult 1: Caffe cannot configure batch normalization statistics "
                   "as layer parameters (lr_mult must be 0)")
    ok = "param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 }"
    assert weights(tmp_path, {"x": (2, 5)}, layer("BatchNorm", ok)) == [(5,), (5,), (1,)]


def test_fork_bn_reads_legacy_shapes(tmp_path):
    assert refused(tmp_path, {"x": (1, 2, 3, 4, 5)}, layer("BN", "bn_param { frozen: true }")).startswith(
        "input 1x2x3x4x5 has 5 axes"
    )


def test_mvn_output_is_4d(tmp_path):
    """MVNLayer::Reshape: top->Reshape(num, channels, height, width)."""
    p = layer("MVN", "mvn_param { across_channels: true }")
    assert shapes(tmp_path, {"x": (2, 6)}, p) == [(2, 6, 1, 1)]
    x = np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)
    (y,) = outputs(tmp_path / "r", {"x": x.shape}, p, {"x": x})
    d = x - x.mean(1, keepdims=True)
    expected = d / (np.sqrt((d * d).mean(1, keepdims=True)) + np.float32(1e-9))
    np.testing.assert_allclose(y, expected.reshape(2, 6, 1, 1), rtol=1e-5, atol=1e-5)
    assert refused(tmp_path, {"x": (1, 2, 3, 4, 5)}, p).startswith("input 1x2x3x4x5 has 5 axes")


def test_normalize_scale_follows_shape_equals(tmp_path):
    """SSD's NormalizeLayer makes a 0-axis scale when shared; a caffemodel's blob must match it
    by Blob::ShapeEquals (Net::CopyTrainedLayersFrom), not just by count."""
    text = net_text({"x": (1, 4, 2, 2)}, layer("Normalize"))
    path = write(tmp_path / "n.prototxt", text)
    (tmp_path / "w.caffemodel").write_bytes(
        v2_layer("l", "Normalize", [blob_bytes(np.array([20], np.float32))])
    )
    with pytest.raises(CaffeError) as e:
        load_weights(load_graph(path), tmp_path / "w.caffemodel")
    assert e.value.message == "blob 0 is 1 in the file, the net needs scalar"
    assert refused(tmp_path, {"x": (1, 2, 3, 4, 5)}, layer("Normalize")).startswith(
        "input 1x2x3x4x5 has 5 axes"
    )


# ------------------------------------------------------------------------ resizing forks
def test_interp_checks_factors_only_where_used(tmp_path):
    """hszhao/PSPNet InterpLayer::Reshape: the branch order decides which factor is read."""
    p = layer("Interp", "interp_param { height: 7 width: 5 zoom_factor: 0 shrink_factor: 0 }")
    assert shapes(tmp_path, {"x": (1, 3, 9, 9)}, p) == [(1, 3, 7, 5)]
    msg = refused(tmp_path, {"x": (1, 3, 9, 9)}, layer("Interp", "interp_param { shrink_factor: 0 }"))
    assert msg == "shrink_factor 0 must be at least 1 (Caffe: must be positive)"
    # legacy accessors: a 3-D input is N x C x H x 1, and the output is 4-D
    assert shapes(tmp_path, {"x": (1, 3, 5)}, layer("Interp", "interp_param { zoom_factor: 2 }")) == [
        (1, 3, 9, 1)
    ]


def test_upsample_parameters(tmp_path):
    """alexgkendall/caffe-segnet UpsampleLayer::LayerSetUp."""
    ins = {"x": (1, 2, 3, 4), "m": (1, 2, 3, 4)}

    def up(param):
        return layer("Upsample", f"upsample_param {{ {param} }}", bottoms=("x", "m"))

    assert shapes(tmp_path, ins, up("upsample_h: 5")) == [(1, 2, 6, 8)]  # a lone upsample_h: scale
    assert shapes(tmp_path, ins, up("upsample_h: 5 upsample_w: 7 scale: 3 pad_out_h: true")) == [(1, 2, 5, 7)]
    assert refused(tmp_path, ins, up("scale: 1")) == "scale 1x1 must be greater than 1"
    assert refused(tmp_path, ins, up("upsample_h: 1 upsample_w: 7")) == (
        "upsample_h 1 and upsample_w 7 must be greater than 1"
    )
    assert refused(tmp_path, ins, up("scale_h: 2")) == (
        "upsample_h and upsample_w are required, else scale or both scale_h and scale_w "
        "(not scale with them)"
    )


def test_upsample_to_a_size_pytorch_unpooling_refuses(tmp_path):
    """Caffe writes each value at its mask index in the upsample_h x upsample_w plane."""
    layers = (
        layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", tops=("p", "m"), name="pool")
        + layer("Upsample", "upsample_param { upsample_h: 9 upsample_w: 9 }", bottoms=("p", "m"))
    )
    x = np.random.default_rng(4).standard_normal((1, 2, 4, 4)).astype(np.float32)
    (y,) = outputs(tmp_path, {"x": x.shape}, layers, {"x": x})
    expected = np.zeros((1, 2, 81), np.float32)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                win = x[0, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                r, q = np.unravel_index(np.argmax(win), (2, 2))
                expected[0, c, (2 * i + r) * 4 + 2 * j + q] = win[r, q]
    np.testing.assert_array_equal(y, expected.reshape(1, 2, 9, 9))


def test_accum_sizes(tmp_path):
    """lmb-freiburg/flownet2 AccumLayer::Reshape: the rounded-up size is used only when it is
    larger than the largest bottom in both axes."""
    p = layer("Accum", "accum_param { size_divisible_by: 4 }", bottoms=("a", "b"))
    assert shapes(tmp_path, {"a": (1, 2, 8, 6), "b": (1, 3, 6, 5)}, p) == [(1, 5, 8, 6)]
    assert shapes(tmp_path, {"a": (1, 2, 7, 6), "b": (1, 3, 6, 5)}, p) == [(1, 5, 8, 8)]
    msg = refused(tmp_path, {"a": (1, 2, 8, 6), "b": (2, 3, 6, 5)}, p)
    assert msg == "all accumulated bottoms must have the same number of images (num): 1x2x8x6, 2x3x6x5"


# ------------------------------------------------------------------------------ detection
def test_prior_box_parameters(tmp_path):
    """weiliu89/caffe (ssd) PriorBoxLayer::LayerSetUp/Reshape."""
    ins = {"f": (1, 8, 3, 3), "i": (1, 3, 30, 30)}

    def prior(param):
        return layer("PriorBox", f"prior_box_param {{ min_size: 10 {param} }}", bottoms=("f", "i"))

    assert refused(tmp_path, ins, prior("variance: 0.1 variance: 0 variance: 0.2 variance: 0.2")) == (
        "variance 0.1, 0, 0.2, 0.2 must be positive"
    )
    assert refused(tmp_path, ins, prior("img_h: 300")) == "img_w must be larger than 0 (give both img_h and img_w)"
    assert refused(tmp_path, ins, prior("img_size: 300 img_h: 300 img_w: 300")) == (
        "give either img_size or img_h/img_w, not both"
    )
    assert refused(tmp_path, ins, prior("step: 0")) == "step must be larger than 0"
    # width() and height() of a 3-D feature map: H and 1
    assert shapes(tmp_path, {"f": (1, 8, 5), "i": (1, 3, 30, 30)}, prior("")) == [(1, 2, 5 * 1 * 4)]


def test_detection_output_parameters(tmp_path):
    """weiliu89/caffe (ssd) DetectionOutputLayer: nms checks; priors counted in channels()."""
    ins = {"l": (1, 8), "c": (1, 6), "p": (1, 2, 8)}

    def det(param="", shapes_=None):
        return layer("DetectionOutput", f"detection_output_param {{ num_classes: 3 {param} }}",
                     bottoms=("l", "c", "p"))

    assert shapes(tmp_path, ins, det()) == [(1, 1, -1, 7)]
    assert refused(tmp_path, ins, det("nms_param { eta: 0 }")) == "nms_param eta 0 must be in (0, 1]"
    assert refused(tmp_path, ins, det("nms_param { nms_threshold: -0.1 }")) == (
        "nms_threshold -0.1 must be non negative"
    )
    msg = refused(tmp_path, {**ins, "l": (1, 2, 4)}, det())
    assert msg == "loc 1x2x4 does not hold 2 priors x 1 x 4 in axis 1"


def test_roi_pooling_takes_any_rois_layout(tmp_path):
    """rbgirshick/caffe-fast-rcnn ROIPoolingLayer::Reshape reads only rois' num()."""
    p = layer("ROIPooling", "roi_pooling_param { pooled_h: 2 pooled_w: 3 }", bottoms=("f", "r"))
    assert shapes(tmp_path, {"f": (1, 16, 8, 8), "r": (7, 5, 1, 1)}, p) == [(7, 16, 2, 3)]


# ---------------------------------------------------------------------------- data layers
def test_data_layers_with_two_tops(tmp_path):
    """ImageData/MemoryData/WindowData (and SegNet's DenseImageData): ExactNumTopBlobs() is 2."""
    text = ('layer { name: "d" type: "MemoryData" top: "x" '
            "memory_data_param { batch_size: 1 channels: 3 height: 4 width: 4 } }\n"
            + layer("ReLU", bottoms=("x",)))
    with pytest.raises(CaffeError) as e:
        load_graph(write(tmp_path / "n.prototxt", text))
    assert e.value.message == "takes 2 tops, has 1"


def test_dummy_data_fillers(tmp_path):
    text = ('layer { name: "d" type: "DummyData" top: "x" top: "z" top: "w" dummy_data_param { '
            'shape { dim: 1 dim: 2 } data_filler { type: "constant" } data_filler { type: "constant" } } }\n'
            + layer("ReLU", bottoms=("x",)))
    with pytest.raises(CaffeError) as e:
        load_graph(write(tmp_path / "n.prototxt", text))
    assert e.value.message == "2 data_filler values for 3 tops (Caffe: 0, 1 or one per top)"
