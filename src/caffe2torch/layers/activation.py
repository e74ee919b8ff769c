"""Element-wise activations and arithmetic: the output has the input's shape."""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import Emission, Layer, LayerError, NotConvertible, SameShape, Schema, fmt_shape, num
from .reshape import legacy_4d, no_inplace


def _inplace(ctx) -> str:
    return "inplace=True" if ctx.inplace else ""


@register
class ReLU(SameShape):
    TYPES = ("ReLU",)
    SAVES_OUTPUT = True
    INPLACE = True
    OPENCV = frozenset({"ReLU"})

    def __init__(self, proto):
        super().__init__(proto)
        self.negative_slope = proto.relu_param.negative_slope

    def describe(self):
        return f"negative_slope {self.negative_slope:g}" if self.negative_slope else ""

    def emit(self, ctx):
        if self.negative_slope:
            args = ", ".join(a for a in (num(self.negative_slope), _inplace(ctx)) if a)
            return Emission(["{m}({0})"], module=f"nn.LeakyReLU({args})")
        return Emission(["{m}({0})"], module=f"nn.ReLU({_inplace(ctx)})")


def _scaled(x: str, scale: float, shift: float) -> str:
    """``scale * x + shift`` with Caffe's order of operations, leaving out no-ops."""
    if scale != 1:
        x = f"{x} * {num(scale)}"
    if shift != 0:
        x = f"{x} + {num(shift)}" if shift > 0 else f"{x} - {num(-shift)}"
    return x


@register
class Unary(SameShape):
    """Parameter-free or scalar-parameter element-wise layers."""

    TYPES = (
        "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Exp", "Log", "Power", "Threshold",
        "Clip", "Swish", "SeLu", "ReLU6", "Mish",
    )
    CAFFE_FORKS = {"ssd": frozenset({"ReLU6"})}  # tests/test_caffe_fork.py
    # Self-normalising nets (SNN Caffe reimplementations; soeaver's PSP models).
    SCHEMA = Schema(
        messages={
            "SeLuParameter": (
                ("optional", "float", "lambda", 1, "1.050700987", False),
                ("optional", "float", "alpha", 2, "1.67326324", False),
            ),
        },
        layer_fields=(
            ("SeLuParameter", "selu_param", 161),
        ),
    )
    SAVES_OUTPUT = True
    OPENCV = frozenset(
        "Sigmoid TanH AbsVal BNLL ELU Exp Log Power Swish ReLU6 Mish".split()
    )

    def opencv_gap(self, node):
        p = self.proto.log_param
        if self.type == "Log" and (p.base != -1 or p.scale != 1 or p.shift):
            return "OpenCV ignores Log's base, scale and shift"
        if self.type == "Swish" and self.proto.swish_param.beta != 1:
            return "OpenCV ignores Swish's beta"  # docs/opencv-deviations.md: swish-beta-2
        return super().opencv_gap(node)

    def __init__(self, proto):
        super().__init__(proto)
        if proto.type == "AbsVal":
            no_inplace(proto)  # AbsValLayer::LayerSetUp checks top[0] != bottom[0]
        if proto.type == "Clip":
            p = proto.clip_param
            # Required fields; Caffe checks nothing else (min above max clips everything to min).
            if not (p.HasField("min") and p.HasField("max")):
                raise LayerError("clip_param needs min and max")
        if proto.type in ("Exp", "Log"):
            self._log_base(proto)
        if proto.type == "Power":
            p = proto.power_param
            self._desc = f"({p.shift:g} + {p.scale:g}x)^{p.power:g}"
        else:
            self._desc = ""

    def describe(self):
        return self._desc

    @staticmethod
    def _log_base(proto) -> np.float32:
        """ln(base) as Caffe's ExpLayer/LogLayer::LayerSetUp computes it (in float), with their
        checks: base -1 means e; otherwise it must be strictly positive, and ln(base) (and for
        Log its inverse) finite."""
        p = proto.exp_param if proto.type == "Exp" else proto.log_param
        base = np.float32(p.base)
        if base == -1:
            return np.float32(1)
        if not base > 0:
            raise LayerError(
                f"base {p.base:g} must be strictly positive, or -1 for e (Caffe: base must be "
                "strictly positive)"
            )
        with np.errstate(all="ignore"):
            ln = np.log(base)
            inverse = np.float32(1) / ln
        if not np.isfinite(ln):
            raise LayerError(f"base {p.base:g}: log(base) is not finite")
        if proto.type == "Log" and not np.isfinite(inverse):
            raise LayerError(f"base {p.base:g}: 1/log(base) is not finite (Caffe refuses base 1)")
        return ln

    def emit(self, ctx):
        t, proto = self.type, self.proto
        inplace = _inplace(ctx)
        if t == "Sigmoid":
            return Emission(["{m}({0})"], module="nn.Sigmoid()")
        if t == "TanH":
            return Emission(["{m}({0})"], module="nn.Tanh()")
        if t == "ReLU6":
            return Emission(["{m}({0})"], module=f"nn.ReLU6({inplace})")
        if t == "Mish":
            return Emission(["{m}({0})"], module="nn.Mish()")
        if t == "BNLL":  # log(1 + exp(x))
            return Emission(["{m}({0})"], module="nn.Softplus()")
        if t == "AbsVal":
            return Emission(["torch.abs({0})"])
        if t == "ELU":
            alpha = proto.elu_param.alpha
            args = ", ".join(a for a in ("" if alpha == 1 else f"alpha={num(alpha)}", inplace) if a)
            return Emission(["{m}({0})"], module=f"nn.ELU({args})")
        if t == "Threshold":
            th = proto.threshold_param.threshold
            return Emission([f"({{0}} > {num(th)}).to({{0}}.dtype)"])
        if t == "Clip":
            p = proto.clip_param
            if np.float32(p.min) > np.float32(p.max):
                # Caffe: max(min, min(x, max)) is min everywhere; torch.clamp would give max.
                return Emission([f"torch.full_like({{0}}, {num(p.min)})"])
            return Emission([f"torch.clamp({{0}}, min={num(p.min)}, max={num(p.max)})"])
        if t == "Swish":
            beta = proto.swish_param.beta
            if beta == 1:
                return Emission(["{m}({0})"], module="nn.SiLU()")
            return Emission([f"{{0}} * torch.sigmoid({{0}} * {num(beta)})"])
        if t == "SeLu":
            p = proto.selu_param
            lam, alpha = getattr(p, "lambda"), p.alpha
            if np.float32(lam) == np.float32(1.050700987) and np.float32(alpha) == np.float32(1.67326324):
                return Emission(["{m}({0})"], module="nn.SELU()")
            return Emission([f"F.elu({{0}}, alpha={num(alpha)}) * {num(lam)}"])
        if t == "Power":
            p = proto.power_param
            power, scale, shift = (np.float32(v) for v in (p.power, p.scale, p.shift))
            if power * scale == 0:
                # PowerLayer::Forward_cpu ignores the input when power or scale is 0.
                with np.errstate(all="ignore"):
                    value = np.float32(1) if power == 0 else np.float32(shift**power)
                return Emission([f"torch.full_like({{0}}, {num(value)})"])
            x = _scaled("{0}", p.scale, p.shift)
            if p.power == 1:
                return Emission([x]) if x != "{0}" else Emission([], alias=True)
            return Emission([f"torch.pow({x}, {num(p.power)})"])
        if t == "Exp":
            # Caffe: base^(shift + scale * x) = base^shift * exp(ln(base) * scale * x)
            p = proto.exp_param
            ln_base = self._log_base(proto)
            inner = np.float32(ln_base * np.float32(p.scale))
            with np.errstate(all="ignore"):
                outer = np.float32(1) if p.shift == 0 else (
                    np.float32(math.exp(p.shift)) if p.base == -1
                    else np.float32(np.float32(p.base) ** np.float32(p.shift))
                )
            x = f"torch.exp({_scaled('{0}', inner, 0)})"
            return Emission([x if outer == 1 else f"{x} * {num(outer)}"])
        if t == "Log":
            # Caffe: log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)
            p = proto.log_param
            x = f"torch.log({_scaled('{0}', p.scale, p.shift)})"
            if p.base != -1:
                x = f"{x} * {num(np.float32(1) / self._log_base(proto))}"
            return Emission([x])
        raise NotConvertible(f"layer type '{t}' has no PyTorch conversion yet")


@register
class HardSigmoid(SameShape):
    """The forks' HardSigmoid (synopsys-caffe: ``y = max(0, min(1, alpha * x + beta))``, with
    a ``hard_sigmoid_param`` whose field numbers the forks do not share): read and
    shape-inferred; not converted, since its parameters are not in the schema yet."""

    TYPES = ("HardSigmoid",)


@register
class PReLU(Layer):
    """Caffe's PReLULayer: at least 2 axes, read through the legacy channels() accessor (so at
    most 4). The slope is a C-vector, or with channel_shared a 0-axis (scalar) blob."""

    TYPES = ("PReLU",)
    OPENCV = frozenset({"PReLU"})

    def __init__(self, proto):
        super().__init__(proto)
        self.channel_shared = proto.prelu_param.channel_shared

    def infer(self, inputs):
        shape = inputs[0]
        if len(shape) < 2:
            raise LayerError(
                f"needs an input with channels (at least 2-D), got {fmt_shape(shape)} "
                "(Caffe: number of axes of bottom blob must be >= 2)"
            )
        legacy_4d(shape)
        return [shape]

    def weight_shapes(self, inputs):
        # PReLULayer::LayerSetUp: Blob(vector<int>(0)) when shared, else (channels,).
        return [() if self.channel_shared else (inputs[0][1],)]

    def init_weights(self, inputs, rng):
        shape = self.weight_shapes(inputs)[0]
        return [np.asarray(rng.uniform(0.05, 0.4, shape), np.float32).reshape(shape)]

    def emit(self, ctx):
        n = ctx.blobs[0].size
        module = "nn.PReLU()" if self.channel_shared else f"nn.PReLU({n})"
        return Emission(["{m}({0})"], module=module, state={"weight": ctx.blobs[0].reshape(n)})
