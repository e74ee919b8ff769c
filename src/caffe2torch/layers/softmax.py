"""Softmax along an axis (``softmax_param``)."""
from __future__ import annotations

from . import register
from .base import Emission, SameShape, canonical_axis


@register
class Softmax(SameShape):
    TYPES = ("Softmax",)
    PROBABILITIES = True
    SAVES_OUTPUT = True
    OPENCV = frozenset({"Softmax"})

    def __init__(self, proto):
        super().__init__(proto)
        self.axis = proto.softmax_param.axis

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""

    def infer(self, inputs):
        canonical_axis(self.axis, len(inputs[0]))
        return [inputs[0]]

    def emit(self, ctx):
        dim = canonical_axis(self.axis, ctx.ndim)
        return Emission(["{m}({0})"], module=f"nn.Softmax(dim={dim})")
