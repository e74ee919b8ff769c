"""Convolution, Deconvolution and the forks' depthwise convolutions (``convolution_param``).

``ConvolutionDepthwise`` (the fork used by ShuffleNet and MobileNet releases) ignores
``group`` and ``num_output``: one filter per input channel, weights C x 1 x kh x kw.
``DepthwiseConvolution`` (yonghenglh6's fork) is an ordinary grouped convolution that takes
``group`` from the prototxt, so it is handled exactly like ``Convolution``.

Output sizes use C++ integer division (truncation toward zero), as Caffe's
compute_output_shape does: a kernel that overhangs an input smaller than itself still gives
one output (the overhang reads zeros), where floor division would give none.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import (
    DYNAMIC,
    Emission,
    Layer,
    LayerError,
    NotConvertible,
    canonical_axis,
    fmt_shape,
    ints,
    kwargs,
)
from .reshape import as_4d, legacy_4d


def conv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """ConvolutionLayer::compute_output_shape for one axis, with C++'s truncating division."""
    span = size + 2 * pad - (dilation * (kernel - 1) + 1)
    return (span // stride if span >= 0 else -(-span // stride)) + 1


def _spatial(values, h_w, n: int, name: str, default: int | None) -> tuple[int, ...]:
    """Caffe's rule for kernel/stride/pad/dilation: ``x_h``/``x_w`` or a list of 0, 1 or n."""
    values = list(values)
    if h_w is not None:
        if n != 2:
            raise LayerError(f"{name}_h/{name}_w apply to 2-D convolution only")
        if values:
            raise LayerError(f"give either {name} or {name}_h/{name}_w, not both")
        return h_w
    if not values:
        if default is None and n:  # no spatial axes: Caffe takes no kernel size
            raise LayerError(f"{name} is required (kernel_size or kernel_h and kernel_w)")
        return (default,) * n
    if len(values) == 1:
        return (values[0],) * n
    if len(values) != n:
        raise LayerError(f"{name} has {len(values)} values for {n} spatial axes")
    return tuple(values)


def _positive(kernel, stride, pad, dilation):
    """Caffe's CHECKs on the geometry: kernel, stride and dilation positive."""
    for what, values in (("kernel size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise LayerError(f"{what} {fmt_shape(values)} must be positive")
    return kernel, stride, pad, dilation


@register
class Convolution(Layer):
    TYPES = ("Convolution", "Deconvolution", "ConvolutionDepthwise", "DepthwiseConvolution")
    BOTTOMS = (1, None)
    TOPS = (1, None)
    OPENCV = frozenset(TYPES)
    FOLDS_INPUT = frozenset({"Convolution"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.convolution_param
        self.depthwise = proto.type == "ConvolutionDepthwise"
        if not self.depthwise and (not p.HasField("num_output") or p.num_output == 0):
            raise LayerError("convolution_param.num_output is required and must be positive")
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.group = p.group
        self.axis = p.axis
        self.deconv = proto.type == "Deconvolution"
        self._p = p
        if self.group == 0:
            raise LayerError("group must be positive")
        if self.depthwise:
            # The fork's layer takes exactly one bottom and one top.
            self.BOTTOMS = self.TOPS = (1, 1)

    def _dw_geometry(self):
        """The fork's ConvolutionDepthwise: kernel_h and kernel_w (both), else kernel_size
        (one value, or the first two); stride, pad and dilation alike; always 2-D."""
        p = self._p

        def two(name: str, default: int | None) -> tuple[int, int]:
            if name != "dilation" and p.HasField(f"{name}_h") and p.HasField(f"{name}_w"):
                return getattr(p, f"{name}_h"), getattr(p, f"{name}_w")
            values = list(getattr(p, "kernel_size" if name == "kernel" else name))
            if not values:
                if default is None:
                    raise LayerError("kernel_size (or kernel_h and kernel_w) is required")
                return default, default
            return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])

        kernel, stride = two("kernel", None), two("stride", 1)
        pad, dilation = two("pad", 0), two("dilation", 1)
        return _positive(kernel, stride, pad, dilation)

    def _geometry(self, n: int):
        if self.depthwise:
            return self._dw_geometry()
        p = self._p
        pair = lambda a, b: (  # noqa: E731
            (getattr(p, a), getattr(p, b)) if p.HasField(a) or p.HasField(b) else None
        )
        if (p.HasField("kernel_h")) != (p.HasField("kernel_w")):
            raise LayerError("give both kernel_h and kernel_w")
        kernel = _spatial(p.kernel_size, pair("kernel_h", "kernel_w"), n, "kernel", None)
        stride = _spatial(p.stride, pair("stride_h", "stride_w"), n, "stride", 1)
        pad = _spatial(p.pad, pair("pad_h", "pad_w"), n, "pad", 0)
        dilation = _spatial(p.dilation, None, n, "dilation", 1)
        return _positive(kernel, stride, pad, dilation)

    def _setup(self, shape):
        if self.depthwise:
            # The fork reads num/channels/height/width (legacy accessors): a 4-D view.
            channels = legacy_4d(shape)[1]
            if channels == DYNAMIC:
                raise LayerError("the number of input channels must be known")
            return 1, 2, channels, channels
        # BaseConvolutionLayer::LayerSetUp: any axis, and 0 spatial axes are allowed.
        axis = canonical_axis(self.axis, len(shape))
        n = len(shape) - axis - 1
        channels = shape[axis]
        if channels == DYNAMIC:
            raise LayerError("the number of input channels must be known")
        group = self.group
        if channels % group:
            raise LayerError(f"{channels} input channels are not divisible by group {group}")
        if self.num_output % group:
            raise LayerError(f"num_output {self.num_output} is not divisible by group {group}")
        return axis, n, channels, group

    def out_channels(self, shape) -> int:
        return self._setup(shape)[2] if self.depthwise else self.num_output

    def describe(self):
        try:
            k, s, p, d = self._geometry(2 if self.depthwise else max(2, len(self._p.kernel_size)))
        except LayerError:  # no kernel size: a convolution without spatial axes
            k, s, p, d = self._geometry(0)
        parts = [f"{'' if self.depthwise else str(self.num_output) + ' out '}k{fmt_shape(k)}"]
        if any(x != 1 for x in s):
            parts.append(f"s{fmt_shape(s)}")
        if any(x for x in p):
            parts.append(f"p{fmt_shape(p)}")
        if any(x != 1 for x in d):
            parts.append(f"d{fmt_shape(d)}")
        if self.group != 1 or self.depthwise:
            parts.append("depthwise" if self.depthwise else f"g{self.group}")
        return " ".join(parts)

    def infer(self, inputs):
        if len(inputs) != self.n_tops:
            raise LayerError(f"needs one top per bottom, has {len(inputs)} bottoms and {self.n_tops} tops")
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise LayerError(
                    f"all bottoms must have the same shape: {fmt_shape(first)} vs {fmt_shape(other)}"
                )
        axis, n, _, _ = self._setup(first)
        kernel, stride, pad, dilation = self._geometry(n)
        spatial = legacy_4d(first)[2:] if self.depthwise else first[axis + 1 :]
        out = list(first[: axis])
        out.append(self.out_channels(first))
        for size, k, s, p, d in zip(spatial, kernel, stride, pad, dilation):
            extent = d * (k - 1) + 1
            if size == DYNAMIC:
                out.append(DYNAMIC)
                continue
            if self.deconv:
                o = s * (size - 1) + extent - 2 * p
            else:
                o = conv_out_size(size, k, s, p, d)
            if o <= 0:
                raise LayerError(
                    f"output size {o} is not positive (input {size}, kernel {k}, stride {s}, "
                    f"pad {p}, dilation {d})"
                )
            out.append(o)
        return [tuple(out)] * self.n_tops

    def weight_shapes(self, inputs):
        axis, n, channels, group = self._setup(inputs[0])
        kernel, *_ = self._geometry(n)
        n_out = self.out_channels(inputs[0])
        if self.deconv:
            w = (channels, n_out // group, *kernel)
        else:
            w = (n_out, channels // group, *kernel)
        return [w, (n_out,)] if self.bias_term else [w]

    def init_weights(self, inputs, rng):
        shapes = self.weight_shapes(inputs)
        w = shapes[0]
        if self.deconv:
            _, n, _, _ = self._setup(inputs[0])
            _, stride, _, _ = self._geometry(n)
            # Each output sees about in_channels * prod(kernel / stride) inputs.
            fan_in = w[0] * max(1.0, math.prod(k / s for k, s in zip(w[2:], stride)))
        else:
            fan_in = math.prod(w[1:])
        blobs = [(rng.standard_normal(w, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in)))]
        if self.bias_term:
            blobs.append(rng.uniform(-0.1, 0.1, shapes[1]).astype(np.float32))
        return blobs

    def _overhang(self, shape, kernel, stride, pad, dilation) -> list[int] | None:
        """Per spatial axis, the zero padding after the input that makes PyTorch's convolution
        give Caffe's size where the kernel overhangs an input smaller than itself (Caffe's
        truncating division gives one output there); None when no axis needs it."""
        spatial = legacy_4d(shape)[2:] if self.depthwise else shape[-len(kernel):]
        right, needed = [], False
        for size, k, p, d in zip(spatial, kernel, pad, dilation):
            extent = d * (k - 1) + 1
            if size != DYNAMIC and size + 2 * p < extent:
                right.append(extent - size - p)
                needed = True
            else:
                right.append(p)
        return right if needed else None

    def fold_gap(self, node, padding_matters):
        if self.group != 1 or self.axis != 1:
            return f"'{node.id}' is a grouped convolution (group {self.group})"
        if padding_matters:
            _, _, pad, _ = self._geometry(len(node.inputs[0].shape) - 2)
            if any(pad):
                return (
                    f"'{node.id}' pads its input by {max(pad)}: Caffe pads the normalized input "
                    "with zeros, which are not the mean in pixels, so the borders would differ"
                )
        return ""

    def opencv_gap(self, node):
        if self.type == "Deconvolution" and any(d != 1 for d in self.proto.convolution_param.dilation):
            return "OpenCV ignores Deconvolution's dilation"
        return super().opencv_gap(node)

    def opencv_layer(self, layer):
        if layer.type == "DepthwiseConvolution":  # a fork's name for a grouped Convolution
            layer.type = "Convolution"
            return True
        return False

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        axis, n, channels, group = self._setup(shape)
        n_out = self.out_channels(shape)
        state = {"weight": ctx.blobs[0]}
        if self.bias_term:
            state["bias"] = ctx.blobs[1]
        if n == 0:
            return self._emit_pointwise(ctx, channels, n_out, group, state)
        if axis != 1:
            raise NotConvertible(f"convolution with axis {axis} (only axis 1, the channels)")
        if n > 3:
            raise NotConvertible(f"{n}-D convolution (PyTorch has 1-D to 3-D)")
        kernel, stride, pad, dilation = self._geometry(n)
        groups = channels if self.depthwise else group
        cls = f"nn.{'ConvTranspose' if self.deconv else 'Conv'}{n}d"
        right = None if self.deconv else self._overhang(shape, kernel, stride, pad, dilation)
        args = kwargs(
            ("kernel_size", ints(kernel)),
            ("stride", ints(stride) if any(x != 1 for x in stride) else None),
            ("padding", ints(pad) if any(pad) and right is None else None),
            ("dilation", ints(dilation) if any(x != 1 for x in dilation) else None),
            ("groups", str(groups) if groups != 1 else None),
            ("bias", None if self.bias_term else "False"),
        )
        x = as_4d(len(shape), "{%d}") if self.depthwise else "{%d}"
        comment = ""
        if right is not None:
            pairs = [v for p, r in zip(reversed(pad), reversed(right)) for v in (p, r)]
            x = f"F.pad({x}, {tuple(pairs)})"
            comment = "the kernel overhangs the input: Caffe pads it with zeros to one output"
        if self.n_bottoms == 1:
            forward = "{m}(" + x % 0 + ")"
        else:  # one set of weights applied to each bottom
            forward = "(" + ", ".join("{m}(" + x % i + ")" for i in range(self.n_bottoms)) + ")"
        return Emission(
            [forward], module=f"{cls}({channels}, {n_out}, {args})", state=state, comment=comment
        )

    def _emit_pointwise(self, ctx, channels: int, n_out: int, group: int, state) -> Emission:
        """No spatial axes (the channel axis is the last): a linear map of the last axis."""
        if group != 1:
            raise NotConvertible(f"convolution without spatial axes and group {group}")
        if self.deconv:  # Caffe's deconvolution weight is C x num_output
            state["weight"] = np.ascontiguousarray(ctx.blobs[0].reshape(channels, n_out).T)
        else:
            state["weight"] = ctx.blobs[0].reshape(n_out, channels)
        bias = "" if self.bias_term else ", bias=False"
        if self.n_bottoms == 1:
            forward = "{m}({0})"
        else:
            forward = "(" + ", ".join(f"{{m}}({{{i}}})" for i in range(self.n_bottoms)) + ")"
        return Emission([forward], module=f"nn.Linear({channels}, {n_out}{bias})", state=state)

    def exact(self, inputs: list[np.ndarray], blobs: list[np.ndarray]) -> list[np.ndarray]:
        """Caffe's forward of this layer in float64, written from Caffe's definition (im2col's
        zero padding, truncating output size, groups, dilation), independent of the emitted
        PyTorch: how the check tells a reference that is wrong from a model that is. 2-D
        convolutions over axis 1 only (others raise NotImplementedError)."""
        shape = tuple(inputs[0].shape)
        axis, n, channels, group = self._setup(shape)
        if self.deconv or n != 2 or axis != 1 or len(shape) != 4:
            raise NotImplementedError("exact: 2-D convolution over the channels only")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self._geometry(2)
        groups = channels if self.depthwise else group
        weight = np.asarray(blobs[0], np.float64)
        n_out = weight.shape[0]
        _, _, oh, ow = self.infer([shape])[0]
        cg, og = channels // groups, n_out // groups
        outs = []
        for x in inputs:
            x = np.asarray(x, np.float64)
            need_h, need_w = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1
            xp = np.zeros((x.shape[0], channels, max(need_h, x.shape[2] + 2 * ph), max(need_w, x.shape[3] + 2 * pw)))
            xp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x
            y = np.zeros((x.shape[0], n_out, oh, ow))
            for g in range(groups):
                w = weight[g * og : (g + 1) * og]
                for i in range(kh):
                    for j in range(kw):
                        patch = xp[:, g * cg : (g + 1) * cg, i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                                   j * dw : j * dw + (ow - 1) * sw + 1 : sw]
                        y[:, g * og : (g + 1) * og] += np.einsum("ncij,oc->noij", patch, w[:, :, i, j])
            if self.bias_term:
                y += np.asarray(blobs[1], np.float64).reshape(1, -1, 1, 1)
            outs.append(y)
        return outs
