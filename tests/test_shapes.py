"""Shape inference follows Caffe's arithmetic; expected sizes are worked out by hand."""
from __future__ import annotations

import pytest
from helpers import write

from caffe2torch.api import load_graph
from caffe2torch.errors import CaffeError
from caffe2torch.layers import DYNAMIC, known_types, layer_class


def net(tmp_path, layer: str, *shapes):
    """A net whose inputs in0, in1, ... have ``shapes`` and whose last layer is ``layer``."""
    text = ""
    for i, s in enumerate(shapes):
        text += f'input: "in{i}" input_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n'
    return load_graph(write(tmp_path / "n.prototxt", text + layer))


def out(tmp_path, layer, *shapes):
    g = net(tmp_path, layer, *shapes)
    return [v.shape for v in g.nodes[-1].outputs]


def weights(tmp_path, layer, *shapes):
    return net(tmp_path, layer, *shapes).nodes[-1].weight_shapes


CONV = 'layer {{ name: "l" type: "{t}" bottom: "in0" top: "o" convolution_param {{ {p} }} }}'
POOL = 'layer {{ name: "l" type: "Pooling" bottom: "in0" top: "o" pooling_param {{ {p} }} }}'


@pytest.mark.parametrize(
    "params,size,expected",
    [
        ("kernel_size: 3 stride: 2", 9, 4),  # ceil(6/2)+1
        ("kernel_size: 3 stride: 2", 10, 5),  # ceil(7/2)+1
        ("kernel_size: 3 stride: 2 round_mode: FLOOR", 10, 4),  # floor(7/2)+1
        ("kernel_size: 3 stride: 2 ceil_mode: false", 10, 4),  # the forks' flag
        ("kernel_size: 3 stride: 2 pad: 1", 6, 4),  # ceil(5/2)+1; last window starts at 6 < 7
        ("kernel_size: 2 stride: 2 pad: 1", 5, 3),  # ceil(5/2)+1 = 4, clipped: 3*2 >= 5+1
        ("kernel_size: 3 stride: 1 pad: 1", 7, 7),
        ("kernel_size: 3 stride: 2", 2, 1),  # window larger than the input: Caffe gives 1
    ],
)
def test_pooling_output_size(tmp_path, params, size, expected):
    assert out(tmp_path, POOL.format(p=params), (1, 2, size, size)) == [(1, 2, expected, expected)]


def test_pooling_rectangular_global_and_mask(tmp_path):
    p = "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0"
    assert out(tmp_path, POOL.format(p=p), (1, 2, 8, 8)) == [(1, 2, 5, 7)]
    assert out(tmp_path, POOL.format(p="pool: AVE global_pooling: true"), (2, 5, 7, 9)) == [(2, 5, 1, 1)]
    two_tops = 'layer { name: "l" type: "Pooling" bottom: "in0" top: "o" top: "mask" pooling_param { kernel_size: 2 stride: 2 } }'
    assert out(tmp_path, two_tops, (1, 3, 6, 6)) == [(1, 3, 3, 3)] * 2


@pytest.mark.parametrize(
    "type_,params,inp,out_shape,w_shapes",
    [
        ("Convolution", "num_output: 8 kernel_size: 3", (1, 3, 10, 10), (1, 8, 8, 8), [(8, 3, 3, 3), (8,)]),
        ("Convolution", "num_output: 8 kernel_size: 3 dilation: 2", (1, 3, 10, 10), (1, 8, 6, 6), [(8, 3, 3, 3), (8,)]),
        ("Convolution", "num_output: 6 kernel_h: 1 kernel_w: 5 stride_h: 1 stride_w: 2 pad_w: 2 group: 3 bias_term: false",
         (2, 9, 7, 11), (2, 6, 7, 6), [(6, 3, 1, 5)]),
        ("Convolution", "num_output: 4 kernel_size: 3 kernel_size: 3 kernel_size: 1", (1, 2, 5, 6, 7),
         (1, 4, 3, 4, 7), [(4, 2, 3, 3, 1), (4,)]),
        ("Deconvolution", "num_output: 5 kernel_size: 4 stride: 2 pad: 1", (1, 3, 4, 4), (1, 5, 8, 8),
         [(3, 5, 4, 4), (5,)]),
        ("Deconvolution", "num_output: 21 kernel_size: 64 stride: 32 bias_term: false group: 21",
         (1, 21, 16, 16), (1, 21, 544, 544), [(21, 1, 64, 64)]),
        ("ConvolutionDepthwise", "num_output: 6 kernel_size: 3 pad: 1", (1, 6, 5, 5), (1, 6, 5, 5),
         [(6, 1, 3, 3), (6,)]),
        ("DepthwiseConvolution", "num_output: 6 kernel_size: 3 pad: 1 group: 6", (1, 6, 5, 5), (1, 6, 5, 5),
         [(6, 1, 3, 3), (6,)]),
    ],
)
def test_convolution_family(tmp_path, type_, params, inp, out_shape, w_shapes):
    layer = CONV.format(t=type_, p=params)
    assert out(tmp_path, layer, inp) == [out_shape]
    assert weights(tmp_path, layer, inp) == w_shapes


def test_inner_product_axis_and_transpose(tmp_path):
    ip = 'layer {{ name: "l" type: "InnerProduct" bottom: "in0" top: "o" inner_product_param {{ {p} }} }}'
    assert out(tmp_path, ip.format(p="num_output: 7"), (2, 3, 4, 5)) == [(2, 7)]
    assert weights(tmp_path, ip.format(p="num_output: 7"), (2, 3, 4, 5)) == [(7, 60), (7,)]
    assert out(tmp_path, ip.format(p="num_output: 7 axis: 2"), (2, 3, 4, 5)) == [(2, 3, 7)]
    assert weights(tmp_path, ip.format(p="num_output: 7 axis: -1 transpose: true bias_term: false"),
                   (2, 3, 4, 5)) == [(5, 7)]


@pytest.mark.parametrize(
    "params,inp,expected",
    [
        ("shape { dim: 0 dim: -1 }", (2, 3, 4, 5), (2, 60)),
        ("shape { dim: 12 } axis: 1 num_axes: 2", (2, 3, 4, 5), (2, 12, 5)),
        ("shape { dim: 0 dim: 0 dim: 2 dim: -1 }", (2, 3, 4, 5), (2, 3, 2, 10)),
        ("shape { dim: 1 dim: 1 } axis: -1 num_axes: 0", (2, 3), (2, 3, 1, 1)),
        ("shape { dim: -1 dim: 2 } axis: 1", (4, 6, 5), (4, 15, 2)),
    ],
)
def test_reshape(tmp_path, params, inp, expected):
    layer = f'layer {{ name: "l" type: "Reshape" bottom: "in0" top: "o" reshape_param {{ {params} }} }}'
    assert out(tmp_path, layer, inp) == [expected]


def test_flatten_permute_slice_concat_crop(tmp_path):
    flat = 'layer { name: "l" type: "Flatten" bottom: "in0" top: "o" flatten_param { axis: 1 end_axis: 2 } }'
    assert out(tmp_path, flat, (2, 3, 4, 5)) == [(2, 12, 5)]
    perm = 'layer { name: "l" type: "Permute" bottom: "in0" top: "o" permute_param { order: 0 order: 2 order: 3 order: 1 } }'
    assert out(tmp_path, perm, (1, 2, 3, 4)) == [(1, 3, 4, 2)]
    perm2 = 'layer { name: "l" type: "Permute" bottom: "in0" top: "o" permute_param { order: 0 order: 2 } }'
    assert out(tmp_path, perm2, (1, 2, 3, 4)) == [(1, 3, 2, 4)]
    sl = 'layer { name: "l" type: "Slice" bottom: "in0" top: "a" top: "b" top: "c" slice_param { slice_point: 2 slice_point: 5 } }'
    assert out(tmp_path, sl, (2, 10, 3, 3)) == [(2, 2, 3, 3), (2, 3, 3, 3), (2, 5, 3, 3)]
    sl_eq = 'layer { name: "l" type: "Slice" bottom: "in0" top: "a" top: "b" slice_param { axis: -1 } }'
    assert out(tmp_path, sl_eq, (2, 3, 8)) == [(2, 3, 4), (2, 3, 4)]
    cat = 'layer { name: "l" type: "Concat" bottom: "in0" bottom: "in1" top: "o" concat_param { axis: 2 } }'
    assert out(tmp_path, cat, (1, 2, 3, 4), (1, 2, 5, 4)) == [(1, 2, 8, 4)]
    crop = 'layer { name: "l" type: "Crop" bottom: "in0" bottom: "in1" top: "o" crop_param { axis: 2 offset: 1 offset: 2 } }'
    assert out(tmp_path, crop, (1, 3, 10, 12), (1, 5, 6, 6)) == [(1, 3, 6, 6)]


def test_broadcasting_and_normalisation_blobs(tmp_path):
    scale = 'layer { name: "l" type: "Scale" bottom: "in0" top: "o" scale_param { axis: 1 num_axes: 2 bias_term: true } }'
    assert weights(tmp_path, scale, (2, 3, 4, 5)) == [(3, 4), (3, 4)]
    scale2 = 'layer { name: "l" type: "Scale" bottom: "in0" bottom: "in1" top: "o" scale_param { bias_term: true } }'
    assert weights(tmp_path, scale2, (2, 3, 4, 5), (3,)) == [(3,)]
    bn = 'layer { name: "l" type: "BatchNorm" bottom: "in0" top: "o" }'
    assert weights(tmp_path, bn, (2, 5)) == [(5,), (5,), (1,)]
    prelu = 'layer { name: "l" type: "PReLU" bottom: "in0" top: "o" }'
    assert weights(tmp_path, prelu, (2, 7, 3, 3)) == [(7,)]
    norm = 'layer { name: "l" type: "Normalize" bottom: "in0" top: "o" norm_param { channel_shared: false } }'
    assert weights(tmp_path, norm, (1, 512, 38, 38)) == [(512,)]
    segnet_bn = 'layer { name: "l" type: "BN" bottom: "in0" top: "o" bn_param { bn_mode: INFERENCE } }'
    assert weights(tmp_path, segnet_bn, (1, 64, 8, 8)) == [(1, 64, 1, 1)] * 2
    psp_bn = 'layer { name: "l" type: "BN" bottom: "in0" top: "o" bn_param { frozen: true momentum: 0.95 } }'
    assert weights(tmp_path, psp_bn, (1, 64, 8, 8)) == [(1, 64, 1, 1)] * 4


def test_fork_resizing_layers(tmp_path):
    interp = 'layer {{ name: "l" type: "Interp" bottom: "in0" top: "o" interp_param {{ {p} }} }}'
    assert out(tmp_path, interp.format(p="zoom_factor: 8"), (1, 21, 60, 60)) == [(1, 21, 473, 473)]
    assert out(tmp_path, interp.format(p="shrink_factor: 2"), (1, 3, 473, 473)) == [(1, 3, 237, 237)]
    assert out(tmp_path, interp.format(p="height: 64 width: 32"), (1, 3, 9, 9)) == [(1, 3, 64, 32)]
    # Caffe's order: shrink only, zoom only, height and width, then shrink and zoom.
    assert out(tmp_path, interp.format(p="shrink_factor: 2 zoom_factor: 3"),
               (1, 3, 9, 9)) == [(1, 3, 13, 13)]
    assert out(tmp_path, interp.format(p="shrink_factor: 2 zoom_factor: 3 height: 5 width: 5"),
               (1, 3, 9, 9)) == [(1, 3, 5, 5)]
    up = 'layer {{ name: "l" type: "Upsample" bottom: "in0" bottom: "in1" top: "o" upsample_param {{ {p} }} }}'
    assert out(tmp_path, up.format(p="scale: 2"), (1, 4, 5, 6), (1, 4, 5, 6)) == [(1, 4, 10, 12)]
    assert out(tmp_path, up.format(p="scale: 2 pad_out_h: true"), (1, 4, 5, 6), (1, 4, 5, 6)) == [(1, 4, 9, 12)]
    assert out(tmp_path, up.format(p="scale: 2 upsample_h: 23 upsample_w: 30"), (1, 4, 12, 15),
               (1, 4, 12, 15)) == [(1, 4, 23, 30)]


def test_detection_layers(tmp_path):
    prior = ('layer {{ name: "l" type: "PriorBox" bottom: "in0" bottom: "in1" top: "o" '
             'prior_box_param {{ {p} }} }}')
    assert out(tmp_path, prior.format(p="min_size: 30 aspect_ratio: 2 flip: true"),
               (1, 512, 38, 38), (1, 3, 300, 300)) == [(1, 2, 38 * 38 * 3 * 4)]
    p2 = "min_size: 2 min_size: 3 max_size: 6 max_size: 7 aspect_ratio: 2 aspect_ratio: 0.5 flip: true"
    assert out(tmp_path, prior.format(p=p2), (1, 2, 3, 4), (1, 3, 30, 40)) == [(1, 2, 3 * 4 * 8 * 4)]
    det = ('layer { name: "l" type: "DetectionOutput" bottom: "in0" bottom: "in1" bottom: "in2" top: "o" '
           'detection_output_param { num_classes: 3 } }')
    assert out(tmp_path, det, (1, 8 * 4), (1, 8 * 3), (1, 2, 32)) == [(1, 1, DYNAMIC, 7)]
    roi = ('layer { name: "l" type: "ROIPooling" bottom: "in0" bottom: "in1" top: "o" '
           'roi_pooling_param { pooled_h: 6 pooled_w: 7 spatial_scale: 0.0625 } }')
    assert out(tmp_path, roi, (1, 256, 30, 40), (128, 5)) == [(128, 256, 6, 7)]
    ps = ('layer { name: "l" type: "PSROIPooling" bottom: "in0" bottom: "in1" top: "o" '
          'psroi_pooling_param { spatial_scale: 0.0625 output_dim: 21 group_size: 7 } }')
    assert out(tmp_path, ps, (1, 21 * 49, 30, 40), (300, 5)) == [(300, 21, 7, 7)]


def test_argmax_and_axpy(tmp_path):
    am = 'layer { name: "l" type: "ArgMax" bottom: "in0" top: "o" argmax_param { top_k: 3 } }'
    assert out(tmp_path, am, (2, 10, 1, 1)) == [(2, 1, 3, 1)]
    am2 = 'layer { name: "l" type: "ArgMax" bottom: "in0" top: "o" argmax_param { axis: 1 } }'
    assert out(tmp_path, am2, (2, 10, 4, 4)) == [(2, 1, 4, 4)]
    axpy = 'layer { name: "l" type: "Axpy" bottom: "in0" bottom: "in1" bottom: "in2" top: "o" }'
    assert out(tmp_path, axpy, (1, 8, 1, 1), (1, 8, 5, 5), (1, 8, 5, 5)) == [(1, 8, 5, 5)]


def test_every_corpus_layer_type_is_registered(corpus):
    import re

    types = set()
    for path in corpus.glob("*/*.prototxt"):
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0]
            m = re.match(r"\s*type:\s*[\"']([A-Za-z0-9_]+)[\"']", line)
            if m:
                types.add(m.group(1))
    fillers = {"constant", "xavier", "msra", "gaussian", "bilinear", "uniform"}
    v0 = {"conv", "relu", "pool", "innerproduct", "lrn", "softmax", "dropout"}
    missing = sorted(t for t in types - fillers - v0 if layer_class(t) is None)
    # DenseCRF appears only in commented-out layers; ImageDistort likewise.
    assert missing == [], missing
    assert len(known_types()) >= 60


def test_a_layer_type_the_graph_does_not_know(tmp_path):
    with pytest.raises(CaffeError, match=r"layer 'l': unknown layer type 'Frobnicate'$"):
        net(tmp_path, 'layer { name: "l" type: "Frobnicate" bottom: "in0" top: "o" }', (1, 2))
