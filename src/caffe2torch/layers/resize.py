"""Resizing layers of the forks: Interp (PSPNet/DeepLab), Upsample (SegNet), Resample and Accum
(FlowNet2, as OpenCV reads them)."""
from __future__ import annotations

import math

from . import register
from .base import Emission, Layer, LayerError, fmt_shape, four_d


@register
class Interp(Layer):
    """Bilinear resize with corners aligned. The output size depends on which fields are set,
    in Caffe's order: shrink only, zoom only, height and width, shrink and zoom."""

    TYPES = ("Interp",)
    BOTTOMS = (1, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.interp_param
        self.p = p
        if p.pad_beg > 0 or p.pad_end > 0:
            raise LayerError("pad_beg and pad_end must be 0 or negative (they crop)")
        if p.HasField("zoom_factor") and p.zoom_factor < 1:
            raise LayerError("zoom_factor must be at least 1")
        if p.HasField("shrink_factor") and p.shrink_factor < 1:
            raise LayerError("shrink_factor must be at least 1")

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

    def infer(self, inputs):
        n, c, h, w = four_d(inputs[0])
        p = self.p
        if len(inputs) == 2:
            ref = four_d(inputs[1], "second input")
            return [(n, c, ref[2], ref[3])]
        h_eff, w_eff = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
        shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
        if shrink and not zoom:
            oh, ow = (h_eff - 1) // p.shrink_factor + 1, (w_eff - 1) // p.shrink_factor + 1
        elif zoom and not shrink:
            z = p.zoom_factor
            oh, ow = h_eff + (h_eff - 1) * (z - 1), w_eff + (w_eff - 1) * (z - 1)
        elif p.HasField("height") and p.HasField("width"):
            oh, ow = p.height, p.width
        elif shrink and zoom:
            oh, ow = (h_eff - 1) // p.shrink_factor + 1, (w_eff - 1) // p.shrink_factor + 1
            oh, ow = oh + (oh - 1) * (p.zoom_factor - 1), ow + (ow - 1) * (p.zoom_factor - 1)
        else:
            raise LayerError("interp_param needs zoom_factor, shrink_factor, or height and width")
        if min(oh, ow, h_eff, w_eff) <= 0:
            raise LayerError(f"output size {oh}x{ow} is not positive (input {fmt_shape(inputs[0])})")
        return [(n, c, oh, ow)]

    def emit(self, ctx):
        p = self.p
        x = "{0}"
        if self.n_bottoms == 1 and (p.pad_beg or p.pad_end):  # negative padding crops
            b, e = -p.pad_beg, p.pad_end
            rng = f"{b}:{e if e else ''}"
            x = f"{{0}}[:, :, {rng}, {rng}]"
        size = "{1}.shape[2:]" if self.n_bottoms == 2 else str(tuple(ctx.out_shapes[0][2:]))
        # Caffe's interp maps corner pixels onto corner pixels.
        return Emission([f'F.interpolate({x}, size={size}, mode="bilinear", align_corners=True)'])


@register
class Upsample(Layer):
    """SegNet's max-unpooling: bottoms (values, mask from a MAX pooling's second top)."""

    TYPES = ("Upsample",)
    BOTTOMS = (2, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.upsample_param
        self.p = p
        if p.HasField("upsample_h") != p.HasField("upsample_w"):
            raise LayerError("give both upsample_h and upsample_w")
        self.scale_h = p.scale_h if p.HasField("scale_h") else p.scale
        self.scale_w = p.scale_w if p.HasField("scale_w") else p.scale
        if (p.pad_out_h and self.scale_h != 2) or (p.pad_out_w and self.scale_w != 2):
            raise LayerError("pad_out_h/pad_out_w work with scale 2 only")

    def describe(self):
        if self.p.HasField("upsample_h"):
            return f"to {self.p.upsample_h}x{self.p.upsample_w}"
        return f"scale {self.scale_h}x{self.scale_w}"

    def infer(self, inputs):
        x, mask = inputs
        n, c, h, w = four_d(x)
        if mask != x:
            raise LayerError(f"mask {fmt_shape(mask)} must have the input's shape {fmt_shape(x)}")
        p = self.p
        if p.HasField("upsample_h"):
            oh, ow = p.upsample_h, p.upsample_w
        else:
            oh = h * self.scale_h - int(p.pad_out_h)
            ow = w * self.scale_w - int(p.pad_out_w)
        if oh < h or ow < w:
            raise LayerError(f"output {oh}x{ow} is smaller than the input {h}x{w}")
        return [(n, c, oh, ow)]

    def emit(self, ctx):
        oh, ow = ctx.out_shapes[0][2:]
        k = (self.scale_h, self.scale_w)
        # The mask is the indices of the MAX pooling that made it (return_indices=True).
        return Emission([f"F.max_unpool2d({{0}}, {{1}}, {k}, output_size=({oh}, {ow}))"])


@register
class Resample(Layer):
    TYPES = ("Resample",)
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


@register
class Accum(Layer):
    """FlowNet2's Accum: resize every bottom to a common size and concatenate channels."""

    TYPES = ("Accum",)
    BOTTOMS = (1, None)

    def __init__(self, proto):
        super().__init__(proto)
        self.p = proto.accum_param

    def infer(self, inputs):
        shapes = [four_d(s) for s in inputs]
        p = self.p
        if p.have_reference:
            if len(shapes) < 2:
                raise LayerError("have_reference needs a reference bottom after the inputs")
            data, (_, _, oh, ow) = shapes[:-1], shapes[-1]
        else:
            data = shapes
            oh, ow = max(s[2] for s in data), max(s[3] for s in data)
            if p.size_divisible_by:
                d = p.size_divisible_by
                oh, ow = math.ceil(oh / d) * d, math.ceil(ow / d) * d
            elif p.top_height > oh and p.top_width > ow:
                oh, ow = p.top_height, p.top_width
        return [(data[0][0], sum(s[1] for s in data), oh, ow)]
