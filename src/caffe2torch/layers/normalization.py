"""Normalisation layers: BatchNorm, the forks' BN, LRN, MVN and SSD's Normalize."""
from __future__ import annotations

import numpy as np

from . import register
from .base import Emission, Helper, Layer, LayerError, NotConvertible, SameShape, Schema, fmt_shape, num
from .reshape import as_4d, legacy_4d
from .scale import SCALE, Scale

_BATCHNORM = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}
TORCH_BN_EPS = np.float32(1e-5)

# A realistic BatchNorm moving-average scale factor: Caffe stores running sums divided by this
# third blob, which approaches 1 / (1 - moving_average_fraction) = 1000 during training.
MOVING_AVERAGE_FACTOR = np.float32(999.982)


def _channels(shape) -> int:
    if len(shape) < 2:
        return 1
    return shape[1]


@register
class BatchNorm(SameShape):
    """Caffe's BatchNorm (statistics only: the Scale after it is its affine part), and the
    forks' with their own scale and bias, as blobs 3 and 4: NVCaffe's ``scale_bias`` (also
    set by ``scale_filler``/``bias_filler``; eps at least 1e-5), Intel Caffe's
    ``use_weight_bias``/``bias_term`` (its MKL engines' blobs, given when the prototxt sets
    one of its fields)."""

    TYPES = ("BatchNorm",)
    OPENCV = frozenset({"BatchNorm"})
    SCHEMA = Schema(
        fields={
            "BatchNormParameter": (
                ("optional", "FillerParameter", "scale_filler", 5, None, False),  # NVCaffe
                ("optional", "FillerParameter", "bias_filler", 6, None, False),  # both (Intel: 8)
                ("optional", "bool", "scale_bias", 7, "false", False),  # NVCaffe
                ("optional", "bool", "use_weight_bias", 1005, "true", False),  # Intel: 5
                ("optional", "bool", "bias_term", 1006, "true", False),  # Intel: 6
                ("optional", "FillerParameter", "filler", 1007, None, False),  # Intel: 7
            ),
        },
    )

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.batch_norm_param
        self.eps = p.eps
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else None
        intel = any(p.HasField(f) for f in ("use_weight_bias", "bias_term", "filler"))
        if intel:  # MKLDNNBatchNormLayer::LayerSetUp: 3 + weight + (weight and bias) blobs
            self.affine = (p.use_weight_bias, p.use_weight_bias and p.bias_term)
        elif p.scale_bias or p.HasField("scale_filler") or p.HasField("bias_filler"):
            self.affine = (True, True)  # NVCaffe's scale_bias, set by either filler too
            self.eps = max(np.float32(p.eps), np.float32(1e-5))  # NVCaffe: eps at least 1e-5
        else:
            self.affine = (False, False)
        # BatchNormLayer::LayerSetUp: the three blobs are statistics, never learned.
        for i, spec in enumerate(list(proto.param)[:3]):
            if spec.lr_mult != 0:
                raise LayerError(
                    f"param {i} has lr_mult {spec.lr_mult:g}: Caffe cannot configure batch "
                    "normalization statistics as layer parameters (lr_mult must be 0)"
                )

    FORK_FIELDS = ("scale_filler", "bias_filler", "scale_bias", "use_weight_bias", "bias_term", "filler")

    def opencv_gap(self, node):
        if self.affine[0]:
            return "OpenCV's BatchNorm takes 3 blobs (no scale and bias of its own)"
        return super().opencv_gap(node)

    def opencv_layer(self, layer):
        # Without a scale of its own, the forks' fields change nothing: OpenCV reads it as is.
        p = layer.batch_norm_param
        given = [f for f in self.FORK_FIELDS if p.HasField(f)]
        for f in given:
            p.ClearField(f)
        return bool(given)

    def infer(self, inputs):
        # Caffe reads shape(1) in Reshape: a 1-D (or scalar) input has no channel axis.
        if len(inputs[0]) < 2:
            raise LayerError(
                f"needs an input with channels (at least 2-D), got {fmt_shape(inputs[0])}"
            )
        return [inputs[0]]

    def describe(self):
        s = f"eps {self.eps:g}"
        if self.use_global_stats is False:
            s += ", batch statistics"
        return s

    def weight_shapes(self, inputs):
        c = _channels(inputs[0])
        return [(c,), (c,), (1,)] + [(c,)] * sum(self.affine)

    def init_weights(self, inputs, rng):
        c = _channels(inputs[0])
        mean = rng.normal(0.0, 0.2, c).astype(np.float32)
        var = rng.uniform(0.5, 2.0, c).astype(np.float32)
        f = MOVING_AVERAGE_FACTOR
        own = [rng.uniform(0.5, 1.5, c), rng.uniform(-0.5, 0.5, c)][: sum(self.affine)]
        return [mean * f, var * f, np.array([f], np.float32)] + [a.astype(np.float32) for a in own]

    def absorbs(self, node, next_node):
        if self.affine[0]:  # its own scale (and bias): the Scale after it stays a Scale
            return False
        """The Scale that follows a BatchNorm in nearly every Caffe net becomes its affine
        part: one ``nn.BatchNorm2d`` as a hand-written model would have."""
        out = node.outputs[0]
        op = next_node.op
        return (
            isinstance(op, Scale)
            and op.n_bottoms == 1
            and next_node.inputs[0] is out
            and len(out.consumers) == 1
            and len(out.shape) >= 2
            and op._param_shape([out.shape], op.axis, op.num_axes) == (out.shape[1],)
            and op.axis in (1, 1 - len(out.shape))
        )

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        if len(shape) not in _BATCHNORM:
            raise NotConvertible(f"BatchNorm of a {len(shape)}-D input")
        c = _channels(shape)
        mean, var, factor = (b.reshape(-1) for b in ctx.blobs[:3])
        # Caffe stores running sums; it divides them by the factor (0 means "no statistics").
        f = np.float32(factor[0])
        scale = np.float32(0) if f == 0 else np.float32(1) / f
        args = [str(c)]
        if np.float32(self.eps) != TORCH_BN_EPS:
            args.append(f"eps={num(self.eps)}")
        state: dict[str, np.ndarray] = {}
        comment = ""
        if self.affine[0]:  # the fork's own scale and bias (blobs 3 and 4; no bias: 0)
            state["weight"] = ctx.blobs[3].reshape(-1)
            state["bias"] = ctx.blobs[4].reshape(-1) if self.affine[1] else np.zeros(c, np.float32)
        elif ctx.absorbed:
            (scale_node, blobs), = ctx.absorbed
            state["weight"] = blobs[0].reshape(-1)
            state["bias"] = (
                blobs[1].reshape(-1) if scale_node.op.bias_term else np.zeros(c, np.float32)
            )
        else:
            args.append("affine=False")
        if self.use_global_stats is False:
            # Caffe normalises with the batch's own statistics even at test time.
            args.append("track_running_stats=False")
            comment = "Caffe uses batch statistics here at test time (use_global_stats: false)"
        else:
            state["running_mean"] = (mean * scale).astype(np.float32)
            state["running_var"] = (var * scale).astype(np.float32)
            state["num_batches_tracked"] = np.array(0, np.int64)
        return Emission(
            ["{m}({0})"], module=f"nn.{_BATCHNORM[len(shape)]}({', '.join(args)})", state=state,
            comment=comment,
        )


@register
class BN(SameShape):
    """The "BN" layer of SegNet's and PSPNet's forks: scale and shift (and statistics).

    SegNet (``bn_mode``, ``scale_filler``/``shift_filler``) keeps scale and shift, 1xCx1x1;
    with ``bn_mode: INFERENCE`` its forward is ``scale * x + shift`` (statistics folded in).
    PSPNet's (``slope_filler``/``bias_filler``, ``frozen``, ``momentum``) keeps slope, bias,
    running mean and running variance, all 1xCx1x1.
    """

    TYPES = ("BN",)
    # SegNet (alexgkendall/caffe-segnet: bn_mode, scale_filler, shift_filler) and PSPNet
    # (hszhao/PSPNet, from yjxiong/caffe: slope_filler, bias_filler, momentum, eps, frozen) both
    # call their layer "BN"; their fields are merged here.
    SCHEMA = Schema(
        messages={
            "BNParameter": (
                ("optional", "FillerParameter", "scale_filler", 1, None, False),
                ("optional", "FillerParameter", "shift_filler", 2, None, False),
                ("optional", "BNParameter.BNMode", "bn_mode", 3, "LEARN", False),
                ("optional", "FillerParameter", "slope_filler", 11, None, False),
                ("optional", "FillerParameter", "bias_filler", 12, None, False),
                ("optional", "float", "momentum", 13, "0.9", False),
                ("optional", "float", "eps", 14, "1e-5", False),
                ("optional", "bool", "frozen", 15, "false", False),
                ("optional", "BNParameter.Engine", "engine", 16, "DEFAULT", False),
            ),
        },
        layer_fields=(
            ("BNParameter", "bn_param", 152),  # PSPNet's number
        ),
        enums={
            "BNParameter.BNMode": (("LEARN", 0), ("INFERENCE", 1)),
            "BNParameter.Engine": (("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)),
        },
    )

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.bn_param
        self.segnet = p.HasField("bn_mode") or p.HasField("scale_filler") or p.HasField("shift_filler")
        self.inference_mode = p.bn_mode == 1
        self.eps = p.eps
        self.frozen = p.frozen

    def describe(self):
        return "SegNet BN" if self.segnet else f"PSPNet BN, eps {self.eps:g}"

    def infer(self, inputs):
        legacy_4d(inputs[0])  # both forks read num/channels/height/width
        return [inputs[0]]

    def weight_shapes(self, inputs):
        c = _channels(inputs[0])
        return [(1, c, 1, 1)] * (2 if self.segnet else 4)

    def init_weights(self, inputs, rng):
        c = _channels(inputs[0])
        s = (1, c, 1, 1)
        scale = rng.uniform(0.5, 1.5, s).astype(np.float32)
        shift = rng.normal(0.0, 0.1, s).astype(np.float32)
        if self.segnet:
            return [scale, shift]
        mean = rng.normal(0.0, 0.2, s).astype(np.float32)
        var = rng.uniform(0.5, 2.0, s).astype(np.float32)
        return [scale, shift, mean, var]

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        c = _channels(shape)
        if self.segnet:
            if not self.inference_mode:
                raise NotConvertible(
                    "SegNet's BN in LEARN mode normalises with each batch's statistics: make "
                    "an inference net first (SegNet's compute_bn_statistics.py sets "
                    "bn_mode: INFERENCE)"
                )
            bshape = (c,) + (1,) * (len(shape) - 2)
            return Emission(
                ["{m}({0})"], module=f"Scale({bshape})", helpers=(SCALE,),
                state={"weight": ctx.blobs[0].reshape(bshape), "bias": ctx.blobs[1].reshape(bshape)},
                comment="SegNet's BN with its statistics folded in (bn_mode: INFERENCE)",
            )
        if len(shape) not in _BATCHNORM:
            raise NotConvertible(f"BN of a {len(shape)}-D input")
        slope, bias, mean, var = (b.reshape(-1) for b in ctx.blobs)
        args = [str(c)] + ([f"eps={num(self.eps)}"] if np.float32(self.eps) != TORCH_BN_EPS else [])
        return Emission(
            ["{m}({0})"], module=f"nn.{_BATCHNORM[len(shape)]}({', '.join(args)})",
            state={
                "weight": slope, "bias": bias, "running_mean": mean, "running_var": var,
                "num_batches_tracked": np.array(0, np.int64),
            },
        )


@register
class LRN(SameShape):
    TYPES = ("LRN",)
    OPENCV = frozenset({"LRN"})

    def opencv_gap(self, node):
        if self.proto.lrn_param.k != 1:
            return "OpenCV ignores LRN's k"
        return super().opencv_gap(node)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.lrn_param
        self.local_size, self.alpha, self.beta, self.k = p.local_size, p.alpha, p.beta, p.k
        self.across_channels = p.norm_region == 0
        if self.local_size % 2 == 0:
            raise LayerError(f"local_size {self.local_size} must be odd")

    def describe(self):
        region = "across channels" if self.across_channels else "within channel"
        return f"{region}, size {self.local_size}, alpha {self.alpha:g}, beta {self.beta:g}"

    def infer(self, inputs):
        if len(inputs[0]) != 4:
            raise LayerError(f"needs a 4-D input, got {fmt_shape(inputs[0])}")
        return [inputs[0]]

    def emit(self, ctx):
        params = f"alpha={num(self.alpha)}, beta={num(self.beta)}"
        if self.across_channels:
            return Emission(
                ["{m}({0})"],
                module=f"nn.LocalResponseNorm({self.local_size}, {params}, k={num(self.k)})",
            )
        return Emission(
            [f"lrn_within_channel({{0}}, {self.local_size}, {params})"], helpers=(LRN_WITHIN,)
        )


LRN_WITHIN = Helper("lrn_within_channel", '''
def lrn_within_channel(x: Tensor, size: int, alpha: float, beta: float) -> Tensor:
    """Caffe's LRN over a size x size window of each channel (norm_region: WITHIN_CHANNEL):
    x / (1 + alpha * mean of x^2 over the window, zero-padded)^beta."""
    mean_sq = F.avg_pool2d(x * x, size, stride=1, padding=(size - 1) // 2)
    return x * (mean_sq * alpha + 1).pow(-beta)
''')

MVN_HELPER = Helper("mvn", '''
def mvn(x: Tensor, across_channels: bool, normalize_variance: bool, eps: float) -> Tensor:
    """Caffe's MVN: subtract the mean of each (sample, channel), or of each sample across
    channels, and optionally divide by the standard deviation plus eps."""
    dims = tuple(range(1 if across_channels else 2, x.dim()))
    x = x - x.mean(dims, keepdim=True)
    if normalize_variance:
        x = x / (x.pow(2).mean(dims, keepdim=True).sqrt() + eps)
    return x
''')


@register
class MVN(Layer):
    """Caffe's MVNLayer: Reshape makes the top num x channels x height x width with the legacy
    accessors, so the input has at most 4 axes and the output is always 4-D."""

    TYPES = ("MVN",)
    OPENCV = frozenset({"MVN"})

    def opencv_gap(self, node):
        if self.proto.mvn_param.normalize_variance:
            return "OpenCV's MVN adds eps to the variance (Caffe: to the standard deviation)"
        return super().opencv_gap(node)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.mvn_param
        self.normalize_variance, self.across_channels, self.eps = (
            p.normalize_variance, p.across_channels, p.eps,
        )

    def infer(self, inputs):
        return [legacy_4d(inputs[0])]

    def emit(self, ctx):
        return Emission(
            [
                f"mvn({as_4d(ctx.ndim)}, across_channels={self.across_channels}, "
                f"normalize_variance={self.normalize_variance}, eps={num(self.eps)})"
            ],
            helpers=(MVN_HELPER,),
        )


@register
class Normalize(Layer):
    """SSD's L2 normalisation with a learned scale (``norm_param``; the older
    ``NormalizeBBox`` with ``normalize_bbox_param``)."""

    TYPES = ("Normalize", "NormalizeBBox")
    CAFFE_FORKS = {"ssd": frozenset({"Normalize"})}
    SCHEMA = Schema(
        messages={
            "NormalizeBBoxParameter": (
                ("optional", "bool", "across_spatial", 1, "true", False),
                ("optional", "FillerParameter", "scale_filler", 2, None, False),
                ("optional", "bool", "channel_shared", 3, "true", False),
                ("optional", "float", "eps", 4, "1e-10", False),
            ),
        },
        layer_fields=(
            ("NormalizeBBoxParameter", "normalize_bbox_param", 10149),  # old SSD: 149
        ),
    )
    OPENCV = frozenset({"Normalize"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.norm_param if proto.type == "Normalize" else proto.normalize_bbox_param
        self.across_spatial = p.across_spatial
        self.channel_shared = p.channel_shared
        self.eps = p.eps
        self.filler = p.scale_filler if p.HasField("scale_filler") else None

    def describe(self):
        return ("across spatial" if self.across_spatial else "per position") + (
            ", shared scale" if self.channel_shared else ""
        )

    def infer(self, inputs):
        # NormalizeLayer: at least 2 axes, read with the legacy accessors (so at most 4).
        if len(inputs[0]) < 2:
            raise LayerError(f"needs an input with channels, got {fmt_shape(inputs[0])}")
        legacy_4d(inputs[0])
        return [inputs[0]]

    def weight_shapes(self, inputs):
        # SSD stores a shared scale as a 0-axis blob. Its LayerSetUp checks only the count
        # (1 or C), but that is of the blob it made itself: weights loaded from a caffemodel
        # must match it by Blob::ShapeEquals (the base rule).
        return [() if self.channel_shared else (inputs[0][1],)]

    def init_weights(self, inputs, rng):
        shape = self.weight_shapes(inputs)[0]
        if self.filler is not None and self.filler.type == "constant":
            return [np.full(shape, self.filler.value, np.float32)]
        return [rng.uniform(0.5, 1.5, shape).astype(np.float32)]

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        wshape = () if self.channel_shared else (shape[1],) + (1,) * (len(shape) - 2)
        args = [str(wshape)]
        if self.across_spatial:
            args.append("across_spatial=True")
        args.append(f"eps={num(self.eps)}")
        return Emission(
            ["{m}({0})"], module=f"Normalize({', '.join(args)})", helpers=(NORMALIZE,),
            state={"weight": ctx.blobs[0].reshape(wshape)},
        )


NORMALIZE = Helper("Normalize", '''
class Normalize(nn.Module):
    """SSD's Normalize: divide by the L2 norm across channels (at each position, or over the
    whole sample with across_spatial), then multiply by a learned scale."""

    def __init__(
        self, shape: tuple[int, ...], across_spatial: bool = False, eps: float = 1e-10
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        self.across_spatial = across_spatial
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(1, x.dim())) if self.across_spatial else (1,)
        norm = (x.pow(2).sum(dims, keepdim=True) + self.eps).sqrt()
        return x / norm * self.weight
''')
