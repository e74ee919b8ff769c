"""InnerProduct (fully connected, ``inner_product_param``) and Embed (``embed_param``)."""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import DYNAMIC, Emission, Layer, LayerError, canonical_axis, fmt_shape


@register
class InnerProduct(Layer):
    TYPES = ("InnerProduct",)
    OPENCV = frozenset({"InnerProduct"})
    FOLDS_INPUT = frozenset({"InnerProduct"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.inner_product_param
        if not p.HasField("num_output") or p.num_output == 0:
            raise LayerError("inner_product_param.num_output is required and must be positive")
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.axis = p.axis
        self.transpose = p.transpose

    def describe(self):
        return f"{self.num_output} out" + (" (transposed weights)" if self.transpose else "")

    def fold_gap(self, node, padding_matters):
        if self.transpose or self.axis != 1:
            return f"'{node.id}' has transposed weights or axis {self.axis}"
        return ""

    def opencv_gap(self, node):
        if self.transpose:
            return "OpenCV ignores InnerProduct's transpose"
        return super().opencv_gap(node)

    def _k(self, shape):
        axis = canonical_axis(self.axis, len(shape))
        tail = shape[axis:]
        if DYNAMIC in tail:
            raise LayerError(f"input {fmt_shape(shape)} has an unknown size after axis {axis}")
        return axis, math.prod(tail)

    def infer(self, inputs):
        (shape,) = inputs
        axis, _ = self._k(shape)
        return [(*shape[:axis], self.num_output)]

    def weight_shapes(self, inputs):
        _, k = self._k(inputs[0])
        w = (k, self.num_output) if self.transpose else (self.num_output, k)
        return [w, (self.num_output,)] if self.bias_term else [w]

    def init_weights(self, inputs, rng):
        _, k = self._k(inputs[0])
        shapes = self.weight_shapes(inputs)
        blobs = [rng.standard_normal(shapes[0], dtype=np.float32) * np.float32(math.sqrt(2.0 / k))]
        if self.bias_term:
            blobs.append(rng.uniform(-0.1, 0.1, shapes[1]).astype(np.float32))
        return blobs

    def emit(self, ctx):
        shape = ctx.in_shapes[0]
        axis, k = self._k(shape)
        weight = ctx.blobs[0]
        if self.transpose:  # Caffe stores K x N; nn.Linear wants N x K
            weight = np.ascontiguousarray(weight.T)
        state = {"weight": weight}
        if self.bias_term:
            state["bias"] = ctx.blobs[1]
        bias = "" if self.bias_term else ", bias=False"
        forward = ["{m}({0})"]
        if len(shape) > axis + 1:  # Caffe flattens everything from axis on
            forward.insert(0, f"torch.flatten({{0}}, {axis})")
        return Emission(forward, module=f"nn.Linear({k}, {self.num_output}{bias})", state=state)


@register
class Embed(Layer):
    TYPES = ("Embed",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.embed_param
        if not p.num_output or not p.input_dim:
            raise LayerError("embed_param.num_output and input_dim are required")
        self.num_output, self.input_dim, self.bias_term = p.num_output, p.input_dim, p.bias_term

    def infer(self, inputs):
        return [(*inputs[0], self.num_output)]

    def weight_shapes(self, inputs):
        w = (self.input_dim, self.num_output)
        return [w, (self.num_output,)] if self.bias_term else [w]
