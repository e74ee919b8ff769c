"""Pooling (``pooling_param``), with Caffe's output-size rounding and pad clipping."""
from __future__ import annotations

import math

from . import register
from .base import (
    DYNAMIC,
    Emission,
    Helper,
    Layer,
    LayerError,
    NotConvertible,
    Schema,
    fmt_shape,
    four_d,
    ints,
    kwargs,
)


def pooled_size(
    size: int, kernel: int, stride: int, pad: int, ceil: bool, clip: bool | None = None
) -> int:
    """Caffe's PoolingLayer::Reshape for one axis. ``clip``: whether the layer has any padding
    (pad_h or pad_w): Caffe then drops a last window that starts in the bottom/right padding,
    on both axes; it defaults to this axis' pad."""
    if size == DYNAMIC:
        return DYNAMIC
    span = size + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil else span // stride) + 1
    if (bool(pad) if clip is None else clip) and (out - 1) * stride >= size + pad:
        # The last pooling window must start inside the image (or its top/left padding).
        out -= 1
    return out


def torch_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """PyTorch's output size for one axis: like Caffe's, but the last window must start inside
    the input or its left padding even without padding (Caffe only checks that with pad > 0)."""
    out = (size + 2 * pad - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


CAFFE_POOL2D = Helper("caffe_pool2d", '''
def caffe_pool2d(
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    average: bool,
    ceil_mode: bool = True,
) -> Tensor:
    """Caffe's pooling where PyTorch's pooling cannot express it (padding over half the kernel,
    or a last window that starts past the input): explicit padding, Caffe's output size (with
    any padding, a last window starting in the bottom/right padding is dropped on both axes)."""
    size = []
    for n, k, s, p in zip(x.shape[2:], kernel, stride, pad):
        out = (n + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        if any(pad) and (out - 1) * s >= n + p:
            out -= 1
        size.append(out)
    if average:
        # Caffe divides by the window clipped to the zero-padded input, as PyTorch does here.
        x = F.pad(x, (pad[1], pad[1], pad[0], pad[0]))
        y = F.avg_pool2d(x, kernel, stride, ceil_mode=True)
    else:
        # -inf on the left and as far right as Caffe's last window reaches
        right = [
            max(0, (o - 1) * s + k - n - p)
            for o, s, k, n, p in zip(size, stride, kernel, x.shape[2:], pad)
        ]
        x = F.pad(x, (pad[1], right[1], pad[0], right[0]), value=-float("inf"))
        y = F.max_pool2d(x, kernel, stride)
    y = y[:, :, : size[0], : size[1]]
    return F.pad(y, (0, size[1] - y.shape[3], 0, size[0] - y.shape[2]))
''')


@register
class Pooling(Layer):
    TYPES = ("Pooling",)
    # The fork reads ceil_mode (field 13), which BVLC's schema lacks (tests/test_caffe_fork.py).
    CAFFE_FORKS = {"ssd": frozenset({"Pooling"})}
    SCHEMA = Schema(
        fields={
            # DenseNet/ResNeXt releases: ``ceil_mode: false`` rounds the output size down.
            "PoolingParameter": (("optional", "bool", "ceil_mode", 100, "true", False),),
        },
    )
    TOPS = (1, 2)  # MAX pooling may also output its argmax mask (SegNet)
    OPENCV = frozenset({"Pooling"})

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
            both_hw = p.HasField("kernel_h") and p.HasField("kernel_w")
            # PoolingLayer::LayerSetUp: kernel_size XOR (kernel_h and kernel_w); a lone
            # kernel_h or kernel_w next to kernel_size is ignored.
            if p.HasField("kernel_size"):
                if both_hw:
                    raise LayerError("give either kernel_size or kernel_h/kernel_w, not both")
                self.kernel = (p.kernel_size, p.kernel_size)
            elif has_hw:
                if not both_hw:
                    raise LayerError("give both kernel_h and kernel_w")
                self.kernel = (p.kernel_h, p.kernel_w)
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
        if any(self.pad) and self.method not in (0, 1):
            raise LayerError("padding is implemented only for MAX and AVE pooling, not STOCHASTIC")
        if self.kernel and any(p >= k for p, k in zip(self.pad, self.kernel)):
            raise LayerError(f"pad {fmt_shape(self.pad)} must be smaller than kernel {fmt_shape(self.kernel)}")
        if self.n_tops == 2 and self.method != 0:
            raise LayerError("only MAX pooling has a second (mask) top")

    def opencv_gap(self, node):
        if self.method == 0 and self.kernel and node.inputs[0].shape and node.outputs[0].shape:
            size, out = node.inputs[0].shape[2:], node.outputs[0].shape[2:]
            # Without pad Caffe keeps a last window that starts past the input (stride >
            # kernel, ceil): its max is -FLT_MAX, OpenCV's 0 (pool-max-window-outside).
            if any((o - 1) * s - p >= n for o, s, p, n in zip(out, self.stride, self.pad, size)):
                return "OpenCV's MAX pooling gives 0 for a window past the input, Caffe -FLT_MAX"
        return super().opencv_gap(node)

    def opencv_top_gap(self, top):
        return "OpenCV makes MAX pooling's mask only for its own unpooling" if top == 1 else ""

    def opencv_layer(self, layer):
        p = layer.pooling_param
        if self.ceil and not p.HasField("round_mode"):
            return False
        # BVLC's round_mode, which OpenCV's schema lacks (it then drops the whole
        # pooling_param: docs/opencv-deviations.md, pool-round-*), as the fork field it reads.
        p.ClearField("round_mode")
        if not self.ceil:
            p.ceil_mode = False
        return True

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
            o = pooled_size(size, k, s, p, self.ceil, any(self.pad))
            if o != DYNAMIC and o <= 0:
                raise LayerError(f"output size {o} is not positive (input {fmt_shape(shape)})")
            out.append(o)
        return [(n, c, *out)] * self.n_tops

    def emit(self, ctx):
        if self.method == 2:
            raise NotConvertible("STOCHASTIC pooling has no PyTorch equivalent")
        kind = "Max" if self.method == 0 else "Avg"
        mask = self.n_tops == 2
        if self.global_pooling:
            indices = ", return_indices=True" if mask else ""
            return Emission(["{m}({0})"], module=f"nn.Adaptive{kind}Pool2d(1{indices})")
        _, _, h, w = ctx.in_shapes[0]
        k, s, p = self.kernel, self.stride, self.pad
        native = all(2 * pp <= kk for pp, kk in zip(p, k)) and all(
            torch_pooled_size(n, kk, ss, pp, self.ceil)
            == pooled_size(n, kk, ss, pp, self.ceil, any(p))
            for n, kk, ss, pp in zip((h, w), k, s, p)
        )
        if native:
            args = kwargs(
                ("kernel_size", ints(k)),
                ("stride", ints(s)),
                ("padding", ints(p) if any(p) else None),
                ("ceil_mode", "True" if self.ceil else None),
                # The second top: the argmax of each window, for SegNet's Upsample (Caffe
                # stores it as floats, PyTorch as int64 indices).
                ("return_indices", "True" if mask else None),
            )
            return Emission(["{m}({0})"], module=f"nn.{kind}Pool2d({args})")
        if mask:
            raise NotConvertible("the argmax mask top of a pooling PyTorch's cannot express")
        average = "True" if self.method == 1 else "False"
        ceil = "" if self.ceil else ", ceil_mode=False"
        why = (
            f"pad {fmt_shape(p)} is over half the kernel {fmt_shape(k)}"
            if not all(2 * pp <= kk for pp, kk in zip(p, k))
            else "its last window starts past the input"
        )
        return Emission(
            [f"caffe_pool2d({{0}}, {tuple(k)}, {tuple(s)}, {tuple(p)}, average={average}{ceil})"],
            helpers=(CAFFE_POOL2D,),
            comment=f"Caffe pooling that PyTorch's cannot express: {why}",
        )
