"""Element-wise combinations of several bottoms: Eltwise (sum, product, max) and SENet's Axpy."""
from __future__ import annotations

from . import register
from .base import Layer, LayerError, fmt_shape


@register
class Eltwise(Layer):
    TYPES = ("Eltwise",)
    BOTTOMS = (2, None)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.eltwise_param
        self.operation = ("prod", "sum", "max")[p.operation]
        self.coeff = list(p.coeff)
        if self.coeff and self.operation != "sum":
            raise LayerError("coeff applies to SUM only")
        if self.coeff and len(self.coeff) != self.n_bottoms:
            raise LayerError(f"{len(self.coeff)} coeff values for {self.n_bottoms} bottoms")

    def describe(self):
        if self.coeff and any(c != 1 for c in self.coeff):
            return "sum " + ", ".join(f"{c:g}" for c in self.coeff)
        return self.operation

    def infer(self, inputs):
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise LayerError(f"bottoms differ in shape: {fmt_shape(first)} vs {fmt_shape(other)}")
        return [first]


@register
class Axpy(Layer):
    """SENet's ``top = a * x + y``: bottoms (a: NxCx1x1, x: NxCxHxW, y: like x)."""

    TYPES = ("Axpy",)
    BOTTOMS = (3, 3)

    def infer(self, inputs):
        a, x, y = inputs
        if x != y:
            raise LayerError(f"x and y differ in shape: {fmt_shape(x)} vs {fmt_shape(y)}")
        if tuple(a[:2]) != tuple(x[:2]) or any(d != 1 for d in a[2:]):
            raise LayerError(f"scale {fmt_shape(a)} must be {fmt_shape((*x[:2], 1, 1))}")
        return [x]
