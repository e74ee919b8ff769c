"""Resizing layers of the forks: Interp (PSPNet/DeepLab), Upsample (SegNet), Resample and Accum
(FlowNet2, as OpenCV reads them)."""
from __future__ import annotations

import math

from . import register
from .base import Emission, Layer, LayerError, NotConvertible, Schema, fmt_shape, four_d
from .reshape import as_4d, legacy_4d


@register
class Interp(Layer):
    """Bilinear resize with corners aligned (PSPNet's InterpLayer). The output size depends on
    which fields are set, in Caffe's order: shrink only, zoom only, height and width, shrink and
    zoom; a factor is checked (>= 1) only where it is used. The input is read with the legacy
    num/channels/height/width accessors (at most 4 axes) and the output is 4-D. A second bottom
    (OpenCV's reading) gives the output size."""

    TYPES = ("Interp",)
    SCHEMA = Schema(
        messages={
            "InterpParameter": (
                ("optional", "int32", "height", 1, "0", False),
                ("optional", "int32", "width", 2, "0", False),
                ("optional", "int32", "zoom_factor", 3, "1", False),
                ("optional", "int32", "shrink_factor", 4, "1", False),
                ("optional", "int32", "pad_beg", 5, "0", False),
                ("optional", "int32", "pad_end", 6, "0", False),
            ),
        },
        layer_fields=(
            ("InterpParameter", "interp_param", 10143),  # PSPNet: 143 (BVLC's input_param)
        ),
    )
    BOTTOMS = (1, 2)
    OPENCV = frozenset({"Interp"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.interp_param
        self.p = p
        if p.pad_beg > 0 or p.pad_end > 0:
            raise LayerError("pad_beg and pad_end must be 0 or negative (they crop)")

    def describe(self):
        p = self.p
        if self.n_bottoms == 2:
            return "to the size of bottom 2"
        parts = []
        if p.HasField("height") or p.HasField("width"):
            parts.append(f"to {p.height}x{p.width}")
        if p.HasField("zoom_factor"):
            parts.append(f"zoom {p.zoom_factor}")
        if p.HasField("shrink_factor"):
            parts.append(f"shrink {p.shrink_factor}")
        return ", ".join(parts)

    def _factor(self, name: str) -> int:
        value = getattr(self.p, name)
        if value < 1:
            raise LayerError(f"{name} {value} must be at least 1 (Caffe: must be positive)")
        return value

    def infer(self, inputs):
        n, c, h, w = legacy_4d(inputs[0])
        p = self.p
        if len(inputs) == 2:
            ref = legacy_4d(inputs[1], "second input")
            return [(n, c, ref[2], ref[3])]
        h_eff, w_eff = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
        shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
        if shrink and not zoom:
            s = self._factor("shrink_factor")
            oh, ow = (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
        elif zoom and not shrink:
            z = self._factor("zoom_factor")
            oh, ow = h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
        elif p.HasField("height") and p.HasField("width"):
            oh, ow = p.height, p.width
        elif shrink and zoom:
            s, z = self._factor("shrink_factor"), self._factor("zoom_factor")
            oh, ow = (h_eff - 1) // s + 1, (w_eff - 1) // s + 1
            oh, ow = oh + (oh - 1) * (z - 1), ow + (ow - 1) * (z - 1)
        else:
            raise LayerError("interp_param needs zoom_factor, shrink_factor, or height and width")
        if min(oh, ow, h_eff, w_eff) <= 0:
            raise LayerError(f"output size {oh}x{ow} is not positive (input {fmt_shape(inputs[0])})")
        return [(n, c, oh, ow)]

    def emit(self, ctx):
        p = self.p
        x = as_4d(ctx.ndim)
        if self.n_bottoms == 1 and (p.pad_beg or p.pad_end):  # negative padding crops
            b, e = -p.pad_beg, p.pad_end
            rng = f"{b}:{e if e else ''}"
            x = f"{x}[:, :, {rng}, {rng}]"
        size = "{1}.shape[2:]" if self.n_bottoms == 2 else str(tuple(ctx.out_shapes[0][2:]))
        if self.n_bottoms == 2 and len(ctx.in_shapes[1]) < 4:
            size = str(tuple(ctx.out_shapes[0][2:]))
        # Caffe's interp maps corner pixels onto corner pixels.
        return Emission([f'F.interpolate({x}, size={size}, mode="bilinear", align_corners=True)'])


@register
class Upsample(Layer):
    """SegNet's max-unpooling (alexgkendall/caffe-segnet): bottoms (values, mask from a MAX
    pooling's second top). UpsampleLayer::LayerSetUp takes upsample_h and upsample_w (both,
    each > 1), else scale or scale_h and scale_w (each > 1, pad_out only with scale 2).

    With one bottom, the forks' other Upsample (YOLOv3 ports, the SSD fork as brocolli-caffe
    ships it): each value repeated ``scale`` x ``scale`` times (nearest neighbour)."""

    TYPES = ("Upsample",)
    CAFFE_FORKS = {"ssd": frozenset({"Upsample"})}
    SCHEMA = Schema(
        messages={
            "UpsampleParameter": (
                ("optional", "uint32", "scale", 1, "2", False),
                ("optional", "uint32", "scale_h", 2, None, False),
                ("optional", "uint32", "scale_w", 3, None, False),
                ("optional", "bool", "pad_out_h", 4, "false", False),
                ("optional", "bool", "pad_out_w", 5, "false", False),
                ("optional", "uint32", "upsample_h", 6, None, False),
                ("optional", "uint32", "upsample_w", 7, None, False),
            ),
        },
        layer_fields=(
            ("UpsampleParameter", "upsample_param", 10137),  # SegNet: 137 (BVLC's embed_param)
        ),
    )
    BOTTOMS = (1, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = self.p = proto.upsample_param
        has = p.HasField
        if self.n_bottoms == 1:
            self._repeat(p)
            return
        if not (
            (has("upsample_h") and has("upsample_w"))
            or (not has("scale") and has("scale_h") and has("scale_w"))
            or (not has("scale_h") and not has("scale_w"))
        ):
            raise LayerError(
                "upsample_h and upsample_w are required, else scale or both scale_h and scale_w "
                "(not scale with them)"
            )
        self.scale_h = p.scale_h if has("scale_h") else p.scale
        self.scale_w = p.scale_w if has("scale_w") else p.scale
        self.size = (p.upsample_h, p.upsample_w) if has("upsample_h") and has("upsample_w") else None
        if self.size is not None:
            if min(self.size) <= 1:
                raise LayerError(
                    f"upsample_h {p.upsample_h} and upsample_w {p.upsample_w} must be greater than 1"
                )
        else:
            if self.scale_h <= 1 or self.scale_w <= 1:
                raise LayerError(
                    f"scale {self.scale_h}x{self.scale_w} must be greater than 1"
                )
            if (p.pad_out_h and self.scale_h != 2) or (p.pad_out_w and self.scale_w != 2):
                raise LayerError("pad_out_h/pad_out_w work with scale 2 only")

    def _repeat(self, p) -> None:
        fields = ("scale_h", "scale_w", "pad_out_h", "pad_out_w", "upsample_h", "upsample_w")
        others = [f for f in fields if p.HasField(f)]
        if others:
            raise LayerError(f"a one-bottom Upsample (nearest) takes scale only, not {', '.join(others)}")
        if not p.HasField("scale"):
            raise LayerError(
                "a one-bottom Upsample needs scale: the forks disagree on its default "
                "(SegNet's 2, the YOLOv3 ports' and brocolli's 1)"
            )
        if p.scale < 1:
            raise LayerError(f"scale {p.scale} must be positive")
        self.scale_h = self.scale_w = p.scale
        self.size = None

    def caffe_gap(self, node, build="bvlc"):
        if build == "ssd" and self.n_bottoms == 2:
            return "the SSD fork's Upsample ignores the mask (it repeats bottom 0)"
        return super().caffe_gap(node, build)

    def describe(self):
        if self.size is not None:
            return f"to {self.size[0]}x{self.size[1]}"
        return f"scale {self.scale_h}x{self.scale_w}" + (" (nearest)" if self.n_bottoms == 1 else "")

    def infer(self, inputs):
        if self.n_bottoms == 1:
            n, c, h, w = four_d(inputs[0])
            return [(n, c, h * self.scale_h, w * self.scale_w)]
        x, mask = inputs
        n, c, h, w = four_d(x)
        four_d(mask, "mask")
        if mask != x:
            raise LayerError(f"mask {fmt_shape(mask)} must have the input's shape {fmt_shape(x)}")
        p = self.p
        if self.size is not None:
            oh, ow = self.size
        else:
            oh = h * self.scale_h - int(p.pad_out_h)
            ow = w * self.scale_w - int(p.pad_out_w)
        if oh < h or ow < w:
            raise LayerError(f"output {oh}x{ow} is smaller than the input {h}x{w}")
        return [(n, c, oh, ow)]

    def emit(self, ctx):
        _, _, h, w = ctx.in_shapes[0]
        oh, ow = ctx.out_shapes[0][2:]
        if self.n_bottoms == 1:
            return Emission([f'F.interpolate({{0}}, size=({oh}, {ow}), mode="nearest")'])
        k = (self.scale_h, self.scale_w)
        # The mask is the indices of the MAX pooling that made it (return_indices=True).
        if all(abs(o - i * s) < s for o, i, s in zip((oh, ow), (h, w), k)):
            return Emission([f"F.max_unpool2d({{0}}, {{1}}, {k}, output_size=({oh}, {ow}))"])
        # A size PyTorch's unpooling refuses for this scale: write each value at its index in
        # the (oh x ow) plane, as Caffe does.
        return Emission([
            f"{{0}}.new_zeros({{0}}.shape[0], {{0}}.shape[1], {oh * ow})"
            f".scatter_(2, {{1}}.flatten(2), {{0}}.flatten(2))"
            f".reshape({{0}}.shape[0], {{0}}.shape[1], {oh}, {ow})"
        ])


@register
class Resample(Layer):
    TYPES = ("Resample",)
    SCHEMA = Schema(
        messages={
            "ResampleParameter": (
                ("optional", "bool", "antialias", 4, "true", False),
                ("optional", "uint32", "width", 1, None, False),
                ("optional", "uint32", "height", 2, None, False),
                ("optional", "ResampleParameter.ResampleType", "type", 3, "LINEAR", False),
                ("optional", "float", "factor", 5, "1.0", False),
            ),
        },
        layer_fields=(
            ("ResampleParameter", "resample_param", 155),  # FlowNet2
        ),
        enums={
            "ResampleParameter.ResampleType": (("NEAREST", 1), ("LINEAR", 2), ("CUBIC", 3), ("AREA", 4)),
        },
    )
    BOTTOMS = (1, 2)

    def __init__(self, proto):
        super().__init__(proto)
        self.p = proto.resample_param

    def infer(self, inputs):
        n, c, h, w = four_d(inputs[0])
        p = self.p
        if len(inputs) == 2:
            ref = four_d(inputs[1], "second input")
            return [(n, c, ref[2], ref[3])]
        if p.HasField("height") and p.HasField("width"):
            return [(n, c, p.height, p.width)]
        # FlowNet2's own layer needs width/height; OpenCV reads ``factor`` as a zoom.
        return [(n, c, int(h * p.factor), int(w * p.factor))]

    OPENCV = frozenset({"Resample"})

    def emit(self, ctx):
        # Nearest neighbour as OpenCV's Resize computes it (source pixel floor(dst * in / out),
        # which is PyTorch's "nearest"); FlowNet2's linear, cubic and area kernels are not
        # converted.
        kind = self.p.type
        if kind != 1:  # NEAREST
            name = {2: "LINEAR", 3: "CUBIC", 4: "AREA"}.get(kind, str(kind))
            raise NotConvertible(f"Resample type {name} (FlowNet2's kernel) has no PyTorch form yet")
        size = tuple(ctx.out_shapes[0][2:])
        return Emission([f'F.interpolate({{0}}, size={size}, mode="nearest")'])


@register
class Accum(Layer):
    """FlowNet2's Accum: resize every bottom to a common size and concatenate channels."""

    TYPES = ("Accum",)
    SCHEMA = Schema(
        messages={
            "AccumParameter": (
                ("optional", "uint32", "top_height", 1, "0", False),
                ("optional", "uint32", "top_width", 2, "0", False),
                ("optional", "uint32", "size_divisible_by", 3, "0", False),
                ("optional", "bool", "have_reference", 4, "false", False),
            ),
        },
        layer_fields=(
            ("AccumParameter", "accum_param", 160),  # FlowNet2
        ),
    )
    BOTTOMS = (1, None)

    def __init__(self, proto):
        super().__init__(proto)
        self.p = proto.accum_param

    def infer(self, inputs):
        # AccumLayer::Reshape reads num/channels/height/width (legacy accessors).
        shapes = [legacy_4d(s) for s in inputs]
        p = self.p
        if p.have_reference:
            if len(shapes) < 2:
                raise LayerError("have_reference needs a reference bottom after the inputs")
            data, (_, _, oh, ow) = shapes[:-1], shapes[-1]
        else:
            data = shapes
            oh, ow = max(s[2] for s in data), max(s[3] for s in data)
            if p.HasField("size_divisible_by"):
                d = p.size_divisible_by
                if d == 0:
                    raise LayerError("size_divisible_by must be positive")
                top = math.ceil(oh / d) * d, math.ceil(ow / d) * d
            else:
                top = p.top_height, p.top_width
            # The given size is used only when it is larger than the inputs in both axes.
            if top[0] > oh and top[1] > ow:
                oh, ow = top
        if any(s[0] != data[0][0] for s in data):
            raise LayerError(
                "all accumulated bottoms must have the same number of images (num): "
                + ", ".join(fmt_shape(s) for s in inputs[: len(data)])
            )
        return [(data[0][0], sum(s[1] for s in data), oh, ow)]

    OPENCV = frozenset({"Accum"})

    def opencv_gap(self, node):
        if self.p.HasField("size_divisible_by"):
            return "OpenCV ignores size_divisible_by"
        return super().opencv_gap(node)

    def emit(self, ctx):
        # AccumLayer::Forward_gpu (UpscaleFeatures): each bottom resized bilinearly with its
        # corners on the top's (x * (w - 1) / (top_w - 1)), the channels concatenated.
        size = tuple(ctx.out_shapes[0][2:])
        n = len(ctx.in_shapes) - (1 if self.p.have_reference else 0)
        parts = ", ".join(
            f'F.interpolate({as_4d(len(ctx.in_shapes[i]), "{%d}" % i)}, size={size}, mode="bilinear", '
            "align_corners=True)"
            for i in range(n)
        )
        return Emission([f"torch.cat([{parts}], 1)"])
