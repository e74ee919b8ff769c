"""Pooling (``pooling_param``), with Caffe's output-size rounding and pad clipping."""
from __future__ import annotations

import math

from . import register
from .base import DYNAMIC, Layer, LayerError, fmt_shape, four_d


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Caffe's PoolingLayer::Reshape for one axis."""
    if size == DYNAMIC:
        return DYNAMIC
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        # The last pooling window must start inside the image (or its top/left padding).
        out -= 1
    return out


@register
class Pooling(Layer):
    TYPES = ("Pooling",)
    TOPS = (1, 2)  # MAX pooling may also output its argmax mask (SegNet)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.pooling_param
        self.method = p.pool  # 0 MAX, 1 AVE, 2 STOCHASTIC
        self.global_pooling = p.global_pooling
        # BVLC's round_mode, or the ceil_mode flag of DenseNet/ResNeXt-era forks.
        self.ceil = p.round_mode == 0
        if p.HasField("ceil_mode"):
            self.ceil = p.ceil_mode
        has_hw = p.HasField("kernel_h") or p.HasField("kernel_w")
        if self.global_pooling:
            if p.HasField("kernel_size") or has_hw:
                raise LayerError("global_pooling takes no kernel size")
            self.kernel = None
        else:
            if has_hw:
                if p.HasField("kernel_size"):
                    raise LayerError("give either kernel_size or kernel_h/kernel_w, not both")
                if not (p.HasField("kernel_h") and p.HasField("kernel_w")):
                    raise LayerError("give both kernel_h and kernel_w")
                self.kernel = (p.kernel_h, p.kernel_w)
            elif p.HasField("kernel_size"):
                self.kernel = (p.kernel_size, p.kernel_size)
            else:
                raise LayerError("kernel_size (or kernel_h and kernel_w) is required")
            if min(self.kernel) <= 0:
                raise LayerError(f"kernel size {fmt_shape(self.kernel)} must be positive")
        self.pad = self._pair(p, "pad")
        self.stride = self._pair(p, "stride")
        if min(self.stride) <= 0:
            raise LayerError(f"stride {fmt_shape(self.stride)} must be positive")
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise LayerError("global_pooling takes no pad and stride 1")
        if self.kernel and any(p >= k for p, k in zip(self.pad, self.kernel)):
            raise LayerError(f"pad {fmt_shape(self.pad)} must be smaller than kernel {fmt_shape(self.kernel)}")
        if self.n_tops == 2 and self.method != 0:
            raise LayerError("only MAX pooling has a second (mask) top")

    @staticmethod
    def _pair(p, name: str) -> tuple[int, int]:
        """Caffe's rule: ``x`` or both ``x_h`` and ``x_w``, never a mix."""
        has_h, has_w = p.HasField(f"{name}_h"), p.HasField(f"{name}_w")
        if has_h or has_w:
            if p.HasField(name):
                raise LayerError(f"give either {name} or {name}_h/{name}_w, not both")
            if not (has_h and has_w):
                raise LayerError(f"give both {name}_h and {name}_w")
            return getattr(p, f"{name}_h"), getattr(p, f"{name}_w")
        value = getattr(p, name)
        return value, value

    def describe(self):
        kind = ("max", "ave", "stochastic")[self.method]
        if self.global_pooling:
            return f"global {kind}"
        s = f"{kind} k{fmt_shape(self.kernel)} s{fmt_shape(self.stride)}"
        if any(self.pad):
            s += f" p{fmt_shape(self.pad)}"
        if not self.ceil:
            s += " floor"
        return s

    def infer(self, inputs):
        (shape,) = inputs
        n, c, h, w = four_d(shape)
        if self.global_pooling:
            return [(n, c, 1, 1)] * self.n_tops
        out = []
        for size, k, s, p in zip((h, w), self.kernel, self.stride, self.pad):
            o = pooled_size(size, k, s, p, self.ceil)
            if o != DYNAMIC and o <= 0:
                raise LayerError(f"output size {o} is not positive (input {fmt_shape(shape)})")
            out.append(o)
        return [(n, c, *out)] * self.n_tops
