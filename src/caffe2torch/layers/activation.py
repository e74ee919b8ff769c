"""Element-wise activations and arithmetic: the output has the input's shape."""
from __future__ import annotations

import numpy as np

from . import register
from .base import Layer, LayerError, SameShape, fmt_shape


@register
class ReLU(SameShape):
    TYPES = ("ReLU",)

    def __init__(self, proto):
        super().__init__(proto)
        self.negative_slope = proto.relu_param.negative_slope

    def describe(self):
        return f"negative_slope {self.negative_slope:g}" if self.negative_slope else ""


@register
class Unary(SameShape):
    """Parameter-free or scalar-parameter element-wise layers."""

    TYPES = (
        "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Exp", "Log", "Power", "Threshold",
        "Clip", "Swish", "SeLu", "ReLU6", "Mish", "HardSigmoid",
    )

    def __init__(self, proto):
        super().__init__(proto)
        if proto.type == "Clip":
            p = proto.clip_param
            if not (p.HasField("min") and p.HasField("max")):
                raise LayerError("clip_param needs min and max")
            if p.min > p.max:
                raise LayerError(f"clip_param min {p.min:g} is above max {p.max:g}")
        if proto.type == "Power":
            p = proto.power_param
            self._desc = f"({p.shift:g} + {p.scale:g}x)^{p.power:g}"
        else:
            self._desc = ""

    def describe(self):
        return self._desc


@register
class PReLU(Layer):
    TYPES = ("PReLU",)

    def __init__(self, proto):
        super().__init__(proto)
        self.channel_shared = proto.prelu_param.channel_shared

    def infer(self, inputs):
        if len(inputs[0]) < 2 and not self.channel_shared:
            raise LayerError(f"needs an input with channels (at least 2-D), got {fmt_shape(inputs[0])}")
        return [inputs[0]]

    def weight_shapes(self, inputs):
        return [(1,) if self.channel_shared else (inputs[0][1],)]

    def init_weights(self, inputs, rng):
        return [rng.uniform(0.05, 0.4, self.weight_shapes(inputs)[0]).astype(np.float32)]
