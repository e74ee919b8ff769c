"""Nets of the kinds real users bring, written by the tests themselves as prototxt text (no file
of ../shared is copied): the held-out trial of the trust issue, the memory benchmarks and the
MMdnn engine's tests build them here.

Each function returns the text of a deploy prototxt; the shapes follow the published nets
(MTCNN's P-Net, VanillaCNN, VDSR, an SSDLite-style detector head on a 1x1 feature map, the
colorization net's Silence ending, a U-Net, a TSM-style Slice), the channel counts and depths
are the published ones unless a test asks for a smaller one.
"""
from __future__ import annotations


def _input(name: str, shape) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'input: "{name}"\ninput_shape {{ {dims} }}\n'


def _conv(name, bottom, top, n, k, *, stride=1, pad=0, group=1, dilation=1, bias=True) -> str:
    extra = f" stride: {stride}" if stride != 1 else ""
    extra += f" pad: {pad}" if pad else ""
    extra += f" group: {group}" if group != 1 else ""
    extra += f" dilation: {dilation}" if dilation != 1 else ""
    extra += "" if bias else " bias_term: false"
    return (
        f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"\n'
        f"  convolution_param {{ num_output: {n} kernel_size: {k}{extra} }} }}\n"
    )


def _act(name, kind, blob) -> str:
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" }}\n'


def _pool(name, bottom, top, k, s, kind="MAX") -> str:
    return (
        f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{top}"\n'
        f"  pooling_param {{ pool: {kind} kernel_size: {k} stride: {s} }} }}\n"
    )


def _ip(name, bottom, top, n) -> str:
    return (
        f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}"\n'
        f"  inner_product_param {{ num_output: {n} }} }}\n"
    )


def mtcnn_pnet() -> str:
    """MTCNN's det1 (P-Net): conv -> PReLU -> pool, two heads (face probability, box)."""
    t = 'name: "PNet"\n' + _input("data", (1, 3, 12, 12))
    t += _conv("conv1", "data", "conv1", 10, 3) + _act("PReLU1", "PReLU", "conv1")
    t += _pool("pool1", "conv1", "pool1", 2, 2)
    t += _conv("conv2", "pool1", "conv2", 16, 3) + _act("PReLU2", "PReLU", "conv2")
    t += _conv("conv3", "conv2", "conv3", 32, 3) + _act("PReLU3", "PReLU", "conv3")
    t += _conv("conv4-1", "conv3", "conv4-1", 2, 1) + _conv("conv4-2", "conv3", "conv4-2", 4, 1)
    t += 'layer { name: "prob1" type: "Softmax" bottom: "conv4-1" top: "prob1" }\n'
    return t


def vanilla_cnn() -> str:
    """VanillaCNN (facial landmarks): conv -> TanH -> AbsVal -> pool, then InnerProducts."""
    t = 'name: "vanila"\n' + _input("data", (1, 3, 40, 40))
    # Caffe's AbsVal refuses to run in place: its top is a blob of its own.
    def abs_(i, bottom):
        return f'layer {{ name: "ActivationAbs{i}" type: "AbsVal" bottom: "{bottom}" top: "Abs{i}" }}\n'

    bottom = "data"
    for i, (n, k) in enumerate([(16, 5), (48, 3), (64, 3)], 1):
        t += _conv(f"Conv{i}", bottom, f"Conv{i}", n, k)
        t += _act(f"ActivationTangH{i}", "TanH", f"Conv{i}") + abs_(i, f"Conv{i}")
        t += _pool(f"Pool{i}", f"Abs{i}", f"Pool{i}", 2, 2)
        bottom = f"Pool{i}"
    t += _conv("Conv4", bottom, "Conv4", 64, 2)
    t += _act("ActivationTangH4", "TanH", "Conv4") + abs_(4, "Conv4")
    t += _ip("Dense1", "Abs4", "Dense1", 100)
    t += _act("ActivationTangH5", "TanH", "Dense1") + abs_(5, "Dense1")
    t += _ip("Dense2", "Abs5", "Dense2", 10)
    return t


def vdsr(size: int = 256, depth: int = 20) -> str:
    """VDSR (super-resolution): 20 3x3 convolutions of 64 channels with ReLU, and the input
    added back."""
    t = 'name: "VDSR"\n' + _input("data", (1, 1, size, size))
    bottom = "data"
    for i in range(1, depth):
        t += _conv(f"conv{i}", bottom, f"conv{i}", 64, 3, pad=1) + _act(f"relu{i}", "ReLU", f"conv{i}")
        bottom = f"conv{i}"
    t += _conv(f"conv{depth}", bottom, f"conv{depth}", 1, 3, pad=1)
    t += (
        f'layer {{ name: "sum" type: "Eltwise" bottom: "data" bottom: "conv{depth}" top: "sum"\n'
        "  eltwise_param { operation: SUM } }\n"
    )
    return t


def ssdlite_head(size: int = 64) -> str:
    """An SSDLite-style detector down to a 1x1 feature map, with MobileNetV2's depthwise 3x3
    (pad 1) box predictors on each map, the last of them on the 1x1 map, the heads permuted,
    flattened and concatenated as SSD does before its PriorBox/DetectionOutput."""
    t = 'name: "SSDLite"\n' + _input("data", (1, 3, size, size))
    t += _conv("conv0", "data", "conv0", 16, 3, stride=2, pad=1) + _act("conv0/relu", "ReLU6", "conv0")
    bottom, c, n, maps = "conv0", 16, size // 2, []
    i = 0
    while n > 1:
        i += 1
        t += _conv(f"dw{i}", bottom, f"dw{i}", c, 3, stride=2, pad=1, group=c, bias=False)
        t += _act(f"dw{i}/relu", "ReLU6", f"dw{i}")
        t += _conv(f"pw{i}", f"dw{i}", f"pw{i}", 2 * c, 1)
        t += _act(f"pw{i}/relu", "ReLU6", f"pw{i}")
        bottom, c, n = f"pw{i}", 2 * c, (n + 1) // 2
        if n <= 4:
            maps.append((bottom, c))
    locs, confs = [], []
    for blob, ch in maps:
        for head, out in (("loc", 12), ("conf", 9)):
            name = f"{blob}_mbox_{head}"
            t += _conv(f"{name}/dw", blob, f"{name}/dw", ch, 3, pad=1, group=ch, bias=False)
            t += _act(f"{name}/dw/relu", "ReLU6", f"{name}/dw")
            t += _conv(name, f"{name}/dw", name, out, 1)
            t += (
                f'layer {{ name: "{name}_perm" type: "Permute" bottom: "{name}" top: "{name}_perm"\n'
                "  permute_param { order: 0 order: 2 order: 3 order: 1 } }\n"
                f'layer {{ name: "{name}_flat" type: "Flatten" bottom: "{name}_perm" top: "{name}_flat" }}\n'
            )
            (locs if head == "loc" else confs).append(f"{name}_flat")
    for head, parts in (("loc", locs), ("conf", confs)):
        bottoms = " ".join(f'bottom: "{p}"' for p in parts)
        t += f'layer {{ name: "mbox_{head}" type: "Concat" {bottoms} top: "mbox_{head}" }}\n'
    return t


def colorization(size: int = 64) -> str:
    """The colorization net's shape: a grey L channel in, dilated convolutions with BatchNorm
    (no Scale), a deconvolution, a softmax over colour bins scaled, and a 1x1 convolution to
    the ab channels, which a Silence layer ends (the deploy net's last layer)."""
    t = 'name: "LtoAB"\n' + _input("data_l", (1, 1, size, size))
    t += _conv("bw_conv1_1", "data_l", "conv1_1", 16, 3, pad=1) + _act("relu1_1", "ReLU", "conv1_1")
    t += _conv("conv1_2", "conv1_1", "conv1_2", 16, 3, stride=2, pad=1) + _act("relu1_2", "ReLU", "conv1_2")
    t += 'layer { name: "conv1_2norm" type: "BatchNorm" bottom: "conv1_2" top: "conv1_2norm" }\n'
    t += _conv("conv5_1", "conv1_2norm", "conv5_1", 32, 3, pad=2, dilation=2) + _act("relu5_1", "ReLU", "conv5_1")
    t += 'layer { name: "conv5_3norm" type: "BatchNorm" bottom: "conv5_1" top: "conv5_3norm" }\n'
    t += (
        'layer { name: "conv8_1" type: "Deconvolution" bottom: "conv5_3norm" top: "conv8_1"\n'
        "  convolution_param { num_output: 16 kernel_size: 4 stride: 2 pad: 1 } }\n"
    )
    t += _act("relu8_1", "ReLU", "conv8_1")
    t += _conv("conv8_313", "conv8_1", "conv8_313", 31, 1)
    t += (
        'layer { name: "conv8_313_rh" type: "Scale" bottom: "conv8_313" top: "conv8_313_rh"\n'
        "  scale_param { bias_term: false filler { type: \"constant\" value: 2.606 } } }\n"
        'layer { name: "class8_313_rh" type: "Softmax" bottom: "conv8_313_rh" top: "class8_313_rh" }\n'
    )
    t += _conv("class8_ab", "class8_313_rh", "class8_ab", 2, 1, bias=False)
    t += 'layer { name: "Silence" type: "Silence" bottom: "class8_ab" }\n'
    return t


def unet(batch: int = 10, size: int = 480, base: int = 64, levels: int = 4) -> str:
    """A U-Net as its Caffe release shapes it (3x3 convolutions with ReLU, 2x2 max pooling,
    2x2 stride-2 deconvolutions, skip concatenations, a 1x1 classifier and softmax), padded so
    that the sizes match, declaring a batch of ``batch``."""
    t = 'name: "unet"\n' + _input("data", (batch, 3, size, size))
    bottom, skips = "data", []
    c = base
    for lvl in range(levels + 1):
        for j in (1, 2):
            name = f"conv_d{lvl}{'ab'[j - 1]}"
            t += _conv(name, bottom, name, c, 3, pad=1) + _act(f"relu_d{lvl}{'ab'[j - 1]}", "ReLU", name)
            bottom = name
        if lvl < levels:
            skips.append((bottom, c))
            t += _pool(f"pool_d{lvl}", bottom, f"pool_d{lvl}", 2, 2)
            bottom = f"pool_d{lvl}"
            c *= 2
    for lvl in reversed(range(levels)):
        skip, sc = skips[lvl]
        up = f"upconv_d{lvl + 1}c_u{lvl}a"
        t += (
            f'layer {{ name: "{up}" type: "Deconvolution" bottom: "{bottom}" top: "{up}"\n'
            f"  convolution_param {{ num_output: {sc} kernel_size: 2 stride: 2 }} }}\n"
        )
        t += _act(f"relu_u{lvl}a", "ReLU", up)
        t += f'layer {{ name: "concat_d{lvl}_u{lvl}b" type: "Concat" bottom: "{skip}" bottom: "{up}" top: "d{lvl}cc" }}\n'
        bottom = f"d{lvl}cc"
        for j in ("c", "d"):
            name = f"conv_u{lvl}{j}"
            t += _conv(name, bottom, name, sc, 3, pad=1) + _act(f"relu_u{lvl}{j}", "ReLU", name)
            bottom = name
    t += _conv("conv_u0score", bottom, "score", 2, 1)
    t += 'layer { name: "prob" type: "Softmax" bottom: "score" top: "prob" }\n'
    return t


def tsm_slice(tops: int = 64) -> str:
    """A TSM-style shift: a Slice into many parts of which only the first is used."""
    t = 'name: "tsm"\n' + _input("data", (1, tops, 8, 8))
    names = " ".join(f'top: "part{i}"' for i in range(tops))
    t += f'layer {{ name: "slice" type: "Slice" bottom: "data" {names} slice_param {{ axis: 1 }} }}\n'
    t += _conv("head", "part0", "head", 4, 3, pad=1)
    return t
