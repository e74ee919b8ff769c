"""Element-wise combinations of several bottoms: Eltwise (sum, product, max) and SENet's Axpy."""
from __future__ import annotations

from . import register
from .base import Emission, Layer, LayerError, count, fmt_shape, num


@register
class Eltwise(Layer):
    TYPES = ("Eltwise",)
    BOTTOMS = (2, None)
    OPENCV = frozenset({"Eltwise"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.eltwise_param
        self.operation = ("prod", "sum", "max")[p.operation]
        self.coeff = list(p.coeff)
        # EltwiseLayer::LayerSetUp refuses coefficients for PROD only; MAX ignores them.
        if self.coeff and self.operation == "prod":
            raise LayerError("coeff applies to SUM only (Caffe: only takes coefficients for summation)")
        if self.coeff and len(self.coeff) != self.n_bottoms:
            raise LayerError(
                f"{len(self.coeff)} coeff values for {self.n_bottoms} bottoms (Caffe: one "
                "coefficient per bottom blob)"
            )
        if self.operation != "sum":
            self.coeff = []

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

    def emit(self, ctx):
        n = self.n_bottoms
        if self.operation == "prod":
            return Emission([" * ".join(f"{{{i}}}" for i in range(n))])
        if self.operation == "max":
            expr = "{0}"
            for i in range(1, n):
                expr = f"torch.maximum({expr}, {{{i}}})"
            return Emission([expr])
        coeff = self.coeff or [1.0] * n
        expr = ""
        for i, c in enumerate(coeff):
            c = float(c)
            term = f"{{{i}}}" if abs(c) == 1 else f"{{{i}}} * {num(abs(c))}"
            if i == 0:
                expr = term if c >= 0 else f"-{term}"
            else:
                expr += f" + {term}" if c >= 0 else f" - {term}"
        return Emission([expr])


@register
class Axpy(Layer):
    """SENet's ``top = a * x + y`` (hujie-frank/SENet): bottoms (a: N x C [x 1 x 1], x, y like
    x). AxpyLayer::Reshape checks a's first two axes against x's, and its last two only when a
    is 4-D; Forward reads a as N*C values, a[n * C + c] scaling x[n, c, ...]."""

    TYPES = ("Axpy",)
    BOTTOMS = (3, 3)
    OPENCV = frozenset({"Axpy"})

    def opencv_layer(self, layer):
        # OpenCV computes b0 * b2 + b1 where SENet's Caffe (axpy_layer.cpp) computes
        # top = b0 * b1 + b2: the last two bottoms swapped make OpenCV compute Caffe's.
        layer.bottom[1], layer.bottom[2] = layer.bottom[2], layer.bottom[1]
        return True

    def infer(self, inputs):
        a, x, y = inputs
        if len(a) < 2 or len(x) < 2:
            raise LayerError(
                f"scale {fmt_shape(a)} and x {fmt_shape(x)} need at least 2 axes (N, C)"
            )
        if tuple(a[:2]) != tuple(x[:2]) or (len(a) == 4 and tuple(a[2:]) != (1, 1)):
            raise LayerError(f"scale {fmt_shape(a)} must be {fmt_shape((*x[:2], 1, 1))}")
        if x != y:
            raise LayerError(f"x and y differ in shape: {fmt_shape(x)} vs {fmt_shape(y)}")
        return [x]

    def emit(self, ctx):
        a, x, _ = ctx.in_shapes
        ones = ", 1" * (len(x) - 2)
        if count(a[2:]) == 1:
            scale = f"{{0}}.reshape({{0}}.shape[0], {{0}}.shape[1]{ones})"
        else:  # Caffe uses the first N*C values of a
            scale = (
                f"{{0}}.reshape(-1)[: {{1}}.shape[0] * {{1}}.shape[1]]"
                f".reshape({{1}}.shape[0], {{1}}.shape[1]{ones})"
            )
        return Emission([f"{scale} * {{1}} + {{2}}"])
