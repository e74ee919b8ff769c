"""Softmax along an axis (``softmax_param``)."""
from __future__ import annotations

from . import register
from .base import SameShape, canonical_axis


@register
class Softmax(SameShape):
    TYPES = ("Softmax",)

    def __init__(self, proto):
        super().__init__(proto)
        self.axis = proto.softmax_param.axis

    def describe(self):
        return f"axis {self.axis}" if self.axis != 1 else ""

    def infer(self, inputs):
        canonical_axis(self.axis, len(inputs[0]))
        return [inputs[0]]
