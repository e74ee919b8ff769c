"""Convolution, Deconvolution and the forks' depthwise convolutions (``convolution_param``).

``ConvolutionDepthwise`` (the fork used by ShuffleNet and MobileNet releases) ignores
``group`` and ``num_output``: one filter per input channel, weights C x 1 x kh x kw.
``DepthwiseConvolution`` (yonghenglh6's fork) is an ordinary grouped convolution that takes
``group`` from the prototxt, so it is handled exactly like ``Convolution``.
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
        if default is None:
            raise LayerError(f"{name} is required (kernel_size or kernel_h and kernel_w)")
        return (default,) * n
    if len(values) == 1:
        return (values[0],) * n
    if len(values) != n:
        raise LayerError(f"{name} has {len(values)} values for {n} spatial axes")
    return tuple(values)


@register
class Convolution(Layer):
    TYPES = ("Convolution", "Deconvolution", "ConvolutionDepthwise", "DepthwiseConvolution")
    BOTTOMS = (1, None)
    TOPS = (1, None)

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

    def _geometry(self, n: int):
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
        if any(k <= 0 for k in kernel):
            raise LayerError(f"kernel size {fmt_shape(kernel)} must be positive")
        if any(s <= 0 for s in stride):
            raise LayerError(f"stride {fmt_shape(stride)} must be positive")
        if any(d <= 0 for d in dilation):
            raise LayerError(f"dilation {fmt_shape(dilation)} must be positive")
        return kernel, stride, pad, dilation

    def _setup(self, shape):
        axis = canonical_axis(self.axis, len(shape))
        n = len(shape) - axis - 1
        if n < 1:
            raise LayerError(f"a {len(shape)}-D input has no spatial axes after axis {axis}")
        channels = shape[axis]
        if channels == DYNAMIC:
            raise LayerError("the number of input channels must be known")
        if self.depthwise:
            return axis, n, channels, channels
        group = self.group
        if channels % group:
            raise LayerError(f"{channels} input channels are not divisible by group {group}")
        if self.num_output % group:
            raise LayerError(f"num_output {self.num_output} is not divisible by group {group}")
        return axis, n, channels, group

    def out_channels(self, shape) -> int:
        return self._setup(shape)[2] if self.depthwise else self.num_output

    def describe(self):
        k, s, p, d = self._geometry(max(2, len(self._p.kernel_size)))
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
        out = list(first[: axis])
        out.append(self.out_channels(first))
        for size, k, s, p, d in zip(first[axis + 1 :], kernel, stride, pad, dilation):
            extent = d * (k - 1) + 1
            if size == DYNAMIC:
                out.append(DYNAMIC)
                continue
            if self.deconv:
                o = s * (size - 1) + extent - 2 * p
            else:
                o = (size + 2 * p - extent) // s + 1
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

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        axis, n, channels, group = self._setup(shape)
        if axis != 1:
            raise NotConvertible(f"convolution with axis {axis} (only axis 1, the channels)")
        if n > 3:
            raise NotConvertible(f"{n}-D convolution (PyTorch has 1-D to 3-D)")
        kernel, stride, pad, dilation = self._geometry(n)
        n_out = self.out_channels(shape)
        groups = channels if self.depthwise else group
        cls = f"nn.{'ConvTranspose' if self.deconv else 'Conv'}{n}d"
        args = kwargs(
            ("kernel_size", ints(kernel)),
            ("stride", ints(stride) if any(x != 1 for x in stride) else None),
            ("padding", ints(pad) if any(pad) else None),
            ("dilation", ints(dilation) if any(x != 1 for x in dilation) else None),
            ("groups", str(groups) if groups != 1 else None),
            ("bias", None if self.bias_term else "False"),
        )
        state = {"weight": ctx.blobs[0]}
        if self.bias_term:
            state["bias"] = ctx.blobs[1]
        if self.n_bottoms == 1:
            forward = "{m}({0})"
        else:  # one set of weights applied to each bottom
            forward = "(" + ", ".join(f"{{m}}({{{i}}})" for i in range(self.n_bottoms)) + ")"
        return Emission([forward], module=f"{cls}({channels}, {n_out}, {args})", state=state)
