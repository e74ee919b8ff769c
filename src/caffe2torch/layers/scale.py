"""Scale and Bias: broadcast along ``axis`` over ``num_axes`` axes, learned or from a bottom."""
from __future__ import annotations

import numpy as np

from . import register
from .base import Emission, Helper, Layer, LayerError, canonical_axis, fmt_shape

SCALE = Helper("Scale", '''
class Scale(nn.Module):
    """Caffe's Scale layer: a learned per-channel (or per-element) factor, and optionally a
    bias, stored in the shape that broadcasts against the input."""

    def __init__(self, shape: tuple[int, ...], bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.weight
        return x if self.bias is None else x + self.bias
''')

BIAS = Helper("Bias", '''
class Bias(nn.Module):
    """Caffe's Bias layer: a learned offset stored in the shape that broadcasts against the
    input."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias
''')


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
        # LayerSetUp: CanonicalAxisIndex(axis) of bottom 0, even for a scalar parameter
        # (num_axes 0), so axis must name an axis of the input.
        a = canonical_axis(axis, len(shape))
        if num_axes < -1:
            raise LayerError(f"num_axes {num_axes} must be -1 or more")
        end = len(shape) if num_axes == -1 else a + num_axes
        if end > len(shape):
            raise LayerError(f"axis {a} + num_axes {num_axes} exceed the input's {len(shape)} axes")
        return tuple(shape[a:end])

    def infer(self, inputs):
        self._param_shape(inputs, *self._axes())
        if len(inputs) == 2 and getattr(self, "bias_term", False):
            # Scale's bias sub-layer is set up with the same axis on bottom 0, which checks it
            # even when bottom 1 is a scalar.
            canonical_axis(self._axes()[0], len(inputs[0]))
        return [inputs[0]]

    def _broadcast(self, inputs) -> tuple[tuple[int, ...], int]:
        """The parameter's shape made to broadcast against bottom 0, and how many trailing
        axes of size 1 that took."""
        shape = inputs[0]
        axis, num_axes = self._axes()
        p = self._param_shape(inputs, axis, num_axes)
        if len(p) == 0:
            return (), 0
        a = canonical_axis(axis, len(shape))
        trailing = len(shape) - a - len(p)
        return tuple(p) + (1,) * trailing, trailing

    def _from_bottom(self, ctx) -> str:
        """Bottom 0 combined with bottom 1, broadcast from ``axis``."""
        _, trailing = self._broadcast(ctx.in_shapes)
        other = "{1}" + ("[" + ", ".join(["...", *["None"] * trailing]) + "]" if trailing else "")
        return other


@register
class Scale(_Broadcast):
    TYPES = ("Scale",)
    OPENCV = frozenset({"Scale"})

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

    def emit(self, ctx):
        bshape, _ = self._broadcast(ctx.in_shapes)
        if self.n_bottoms == 2:
            product = f"{{0}} * {self._from_bottom(ctx)}"
            if not self.bias_term:
                return Emission([product])
            return Emission(
                [f"{{m}}({product})"], module=f"Bias({bshape})", helpers=(BIAS,),
                state={"bias": ctx.blobs[0].reshape(bshape)},
            )
        state = {"weight": ctx.blobs[0].reshape(bshape)}
        if self.bias_term:
            state["bias"] = ctx.blobs[1].reshape(bshape)
        bias = "" if self.bias_term else ", bias=False"
        return Emission(["{m}({0})"], module=f"Scale({bshape}{bias})", helpers=(SCALE,), state=state)


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

    def emit(self, ctx):
        if self.n_bottoms == 2:
            return Emission([f"{{0}} + {self._from_bottom(ctx)}"])
        bshape, _ = self._broadcast(ctx.in_shapes)
        return Emission(
            ["{m}({0})"], module=f"Bias({bshape})", helpers=(BIAS,),
            state={"bias": ctx.blobs[0].reshape(bshape)},
        )
