"""Scale and Bias: broadcast along ``axis`` over ``num_axes`` axes, learned or from a bottom."""
from __future__ import annotations

import numpy as np

from . import register
from .base import Layer, LayerError, canonical_axis, fmt_shape


class _Broadcast(Layer):
    BOTTOMS = (1, 2)

    def _param_shape(self, inputs, axis: int, num_axes: int) -> tuple[int, ...]:
        shape = inputs[0]
        if len(inputs) == 2:
            other = inputs[1]
            # Caffe: a scalar second bottom applies to everything (axis is ignored).
            if len(other) == 0:
                return other
            a = canonical_axis(axis, len(shape))
            if tuple(shape[a : a + len(other)]) != tuple(other):
                raise LayerError(
                    f"second bottom {fmt_shape(other)} does not match {fmt_shape(shape)} "
                    f"at axis {a}"
                )
            return other
        # An axis equal to the number of axes is allowed for a scalar parameter.
        if len(shape) == 0 and axis in (0, -1):
            a = 0
        else:
            a = canonical_axis(axis, len(shape)) if axis != len(shape) else axis
        if num_axes < -1:
            raise LayerError(f"num_axes {num_axes} must be -1 or more")
        end = len(shape) if num_axes == -1 else a + num_axes
        if end > len(shape):
            raise LayerError(f"axis {a} + num_axes {num_axes} exceed the input's {len(shape)} axes")
        return tuple(shape[a:end])

    def infer(self, inputs):
        self._param_shape(inputs, *self._axes())
        return [inputs[0]]


@register
class Scale(_Broadcast):
    TYPES = ("Scale",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.scale_param
        self.axis, self.num_axes, self.bias_term = p.axis, p.num_axes, p.bias_term

    def _axes(self):
        return self.axis, self.num_axes

    def describe(self):
        return ("from bottom" if self.n_bottoms == 2 else "learned") + (
            " + bias" if self.bias_term else ""
        )

    def weight_shapes(self, inputs):
        shape = self._param_shape(inputs, self.axis, self.num_axes)
        if len(inputs) == 2:
            return [shape] if self.bias_term else []
        return [shape, shape] if self.bias_term else [shape]

    def init_weights(self, inputs, rng):
        shapes = self.weight_shapes(inputs)
        blobs = []
        if len(inputs) == 1:
            blobs.append(rng.uniform(0.5, 1.5, shapes[0]).astype(np.float32))
        if self.bias_term:
            blobs.append(rng.normal(0.0, 0.1, shapes[-1]).astype(np.float32))
        return blobs


@register
class Bias(_Broadcast):
    TYPES = ("Bias",)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.bias_param
        self.axis, self.num_axes = p.axis, p.num_axes

    def _axes(self):
        return self.axis, self.num_axes

    def weight_shapes(self, inputs):
        if len(inputs) == 2:
            return []
        return [self._param_shape(inputs, self.axis, self.num_axes)]

    def init_weights(self, inputs, rng):
        return [rng.normal(0.0, 0.1, s).astype(np.float32) for s in self.weight_shapes(inputs)]
