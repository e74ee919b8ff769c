"""Detection heads: SSD's PriorBox and DetectionOutput, Fast/Faster R-CNN's ROIPooling,
R-FCN's PSROIPooling, and OpenCV's Proposal (the C++ stand-in for py-faster-rcnn's Python
proposal layer)."""
from __future__ import annotations

from . import register
from .base import DYNAMIC, Layer, LayerError, Schema, fmt_shape, four_d
from .reshape import legacy_4d


def prior_aspect_ratios(ratios, flip: bool) -> list[float]:
    """SSD's list: 1 first, then each new ratio (and its inverse with flip), deduplicated."""
    out = [1.0]
    for ar in ratios:
        if any(abs(ar - x) < 1e-6 for x in out):
            continue
        out.append(ar)
        if flip:
            out.append(1.0 / ar)
    return out


@register
class PriorBox(Layer):
    TYPES = ("PriorBox",)
    CAFFE_FORKS = {"ssd": frozenset({"PriorBox"})}
    BOTTOMS = (2, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.prior_box_param
        self.min_sizes, self.max_sizes = list(p.min_size), list(p.max_size)
        if not self.min_sizes:
            raise LayerError("prior_box_param.min_size is required")
        if any(m <= 0 for m in self.min_sizes):
            raise LayerError("min_size must be positive")
        if self.max_sizes and len(self.max_sizes) != len(self.min_sizes):
            raise LayerError(f"{len(self.max_sizes)} max_size values for {len(self.min_sizes)} min_size")
        for lo, hi in zip(self.min_sizes, self.max_sizes):
            if hi <= lo:
                raise LayerError(f"max_size {hi:g} must be larger than min_size {lo:g}")
        self.aspect_ratios = prior_aspect_ratios(p.aspect_ratio, p.flip)
        self.num_priors = len(self.aspect_ratios) * len(self.min_sizes) + len(self.max_sizes)
        variance = list(p.variance)
        if len(variance) not in (0, 1, 4):
            raise LayerError(f"variance takes 1 or 4 values, has {len(variance)}")
        if any(not v > 0 for v in variance):
            raise LayerError(f"variance {', '.join(f'{v:g}' for v in variance)} must be positive")
        # PriorBoxLayer::LayerSetUp: img_size or img_h/img_w, step or step_h/step_w, positive.
        for name, kind in (("img", "img_size"), ("step", "step")):
            h, w = f"{name}_h", f"{name}_w"
            if p.HasField(h) or p.HasField(w):
                if p.HasField(kind):
                    raise LayerError(f"give either {kind} or {h}/{w}, not both")
                for f in (h, w):
                    if not getattr(p, f) > 0:
                        raise LayerError(f"{f} must be larger than 0 (give both {h} and {w})")
            elif p.HasField(kind) and not getattr(p, kind) > 0:
                raise LayerError(f"{kind} must be larger than 0")

    def describe(self):
        return f"{self.num_priors} priors per position"

    def reads_only_shape(self, bottom):
        return True  # the feature map and the image give only their sizes

    def infer(self, inputs):
        feat, image = inputs
        # Caffe reads width() and height() (legacy accessors: at most 4 axes, missing ones 1).
        _, _, h, w = legacy_4d(feat, "feature map")
        legacy_4d(image, "image")
        return [(1, 2, h * w * self.num_priors * 4)]


@register
class DetectionOutput(Layer):
    """SSD's decoding + NMS. The number of detections is only known at run time."""

    TYPES = ("DetectionOutput",)
    CAFFE_FORKS = {"ssd": frozenset({"DetectionOutput"})}
    SCHEMA = Schema(
        fields={
            # The first SSD release kept NMS settings directly in detection_output_param.
            "DetectionOutputParameter": (
                ("optional", "float", "nms_threshold", 100, None, False),
                ("optional", "int32", "top_k", 101, None, False),
                # OpenCV's copy: boxes in pixels (Faster R-CNN) instead of [0, 1] (SSD).
                ("optional", "bool", "normalized_bbox", 102, "true", False),
                ("optional", "bool", "clip", 103, "false", False),
            ),
        },
    )
    BOTTOMS = (3, 5)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.detection_output_param
        if not p.HasField("num_classes"):
            raise LayerError("detection_output_param.num_classes is required")
        self.num_classes = p.num_classes
        self.share_location = p.share_location
        nms = p.nms_param
        if not nms.nms_threshold >= 0:
            raise LayerError(f"nms_threshold {nms.nms_threshold:g} must be non negative")
        if not 0 < nms.eta <= 1:
            raise LayerError(f"nms_param eta {nms.eta:g} must be in (0, 1]")

    def describe(self):
        return f"{self.num_classes} classes"

    def infer(self, inputs):
        loc, conf, prior = inputs[:3]
        # DetectionOutputLayer::Reshape, with the legacy accessors: the priors are
        # height() / 4, and loc and conf carry them in channels() (axis 1), not in count(1).
        lo, co, pr = legacy_4d(loc, "loc"), legacy_4d(conf, "conf"), legacy_4d(prior, "prior")
        if DYNAMIC not in (lo[0], co[0]) and lo[0] != co[0]:
            raise LayerError(f"loc {fmt_shape(loc)} and conf {fmt_shape(conf)} differ in num")
        if DYNAMIC not in (lo[1], co[1], pr[2]):
            num_priors = pr[2] // 4
            loc_classes = 1 if self.share_location else self.num_classes
            if lo[1] != num_priors * loc_classes * 4:
                raise LayerError(
                    f"loc {fmt_shape(loc)} does not hold {num_priors} priors x {loc_classes} x 4 "
                    "in axis 1"
                )
            if co[1] != num_priors * self.num_classes:
                raise LayerError(
                    f"conf {fmt_shape(conf)} does not hold {num_priors} priors x "
                    f"{self.num_classes} classes in axis 1"
                )
        # Rows of [image_id, label, confidence, xmin, ymin, xmax, ymax].
        return [(1, 1, DYNAMIC, 7)]


@register
class ROIPooling(Layer):
    TYPES = ("ROIPooling",)
    SCHEMA = Schema(
        messages={
            "ROIPoolingParameter": (
                ("optional", "uint32", "pooled_h", 1, "0", False),
                ("optional", "uint32", "pooled_w", 2, "0", False),
                ("optional", "float", "spatial_scale", 3, "1", False),
            ),
        },
        layer_fields=(
            ("ROIPoolingParameter", "roi_pooling_param", 8266711),  # caffe-fast-rcnn, OpenCV
        ),
    )
    BOTTOMS = (2, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.roi_pooling_param
        if not p.pooled_h or not p.pooled_w:
            raise LayerError("roi_pooling_param.pooled_h and pooled_w are required")
        self.pooled = (p.pooled_h, p.pooled_w)
        self.spatial_scale = p.spatial_scale

    def describe(self):
        return f"{self.pooled[0]}x{self.pooled[1]}, scale {self.spatial_scale:g}"

    def infer(self, inputs):
        feat, rois = inputs
        # ROIPoolingLayer::Reshape (caffe-fast-rcnn): channels() of the features and num() of
        # the rois, legacy accessors; the rois' other axes are not checked.
        _, c, _, _ = legacy_4d(feat, "feature map")
        r = legacy_4d(rois, "rois")[0]
        return [(r, c, *self.pooled)]


@register
class PSROIPooling(Layer):
    TYPES = ("PSROIPooling",)
    SCHEMA = Schema(
        messages={
            "PSROIPoolingParameter": (
                ("optional", "float", "spatial_scale", 1, None, False),
                ("optional", "int32", "output_dim", 2, None, False),
                ("optional", "int32", "group_size", 3, None, False),
            ),
        },
        layer_fields=(
            ("PSROIPoolingParameter", "psroi_pooling_param", 10001),  # caffe-rfcn, OpenCV
        ),
    )
    BOTTOMS = (2, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.psroi_pooling_param
        for f in ("spatial_scale", "output_dim", "group_size"):
            if not p.HasField(f):
                raise LayerError(f"psroi_pooling_param.{f} is required")
        if p.output_dim <= 0 or p.group_size <= 0:
            raise LayerError("output_dim and group_size must be positive")
        self.output_dim, self.group_size, self.spatial_scale = (
            p.output_dim, p.group_size, p.spatial_scale,
        )

    def describe(self):
        return f"{self.output_dim} x {self.group_size}x{self.group_size}"

    def infer(self, inputs):
        feat, rois = inputs
        _, c, _, _ = legacy_4d(feat, "feature map")
        if c != self.output_dim * self.group_size**2:
            raise LayerError(
                f"{c} channels; needs output_dim x group_size^2 = "
                f"{self.output_dim * self.group_size ** 2}"
            )
        g = self.group_size
        return [(legacy_4d(rois, "rois")[0], self.output_dim, g, g)]


@register
class Proposal(Layer):
    """OpenCV's region proposal layer: rois (post_nms_topn x 5) and optional scores."""

    TYPES = ("Proposal",)
    SCHEMA = Schema(
        messages={
            "ProposalParameter": (
                ("optional", "uint32", "feat_stride", 1, "16", False),
                ("optional", "uint32", "base_size", 2, "16", False),
                ("optional", "uint32", "min_size", 3, "16", False),
                ("repeated", "float", "ratio", 4, None, False),
                ("repeated", "float", "scale", 5, None, False),
                ("optional", "uint32", "pre_nms_topn", 6, "6000", False),
                ("optional", "uint32", "post_nms_topn", 7, "300", False),
                ("optional", "float", "nms_thresh", 8, "0.7", False),
            ),
        },
        layer_fields=(
            ("ProposalParameter", "proposal_param", 10201),  # OpenCV: 201 (SSD's multibox_loss_param)
        ),
    )
    BOTTOMS = (3, 3)
    TOPS = (1, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.proposal_param
        self.post_nms_topn = p.post_nms_topn
        self.anchors = len(p.ratio) * len(p.scale)
        if not self.anchors:
            raise LayerError("proposal_param needs ratio and scale values")

    def describe(self):
        return f"{self.anchors} anchors, top {self.post_nms_topn}"

    def infer(self, inputs):
        scores, deltas, _ = inputs
        four_d(scores, "score map")
        if scores[1] != 2 * self.anchors or deltas[1] != 4 * self.anchors:
            raise LayerError(
                f"{self.anchors} anchors need 2x and 4x as many channels in the scores and "
                f"box deltas, got {fmt_shape(scores)} and {fmt_shape(deltas)}"
            )
        out = [(self.post_nms_topn, 5)]
        if self.n_tops == 2:
            out.append((self.post_nms_topn, 1))
        return out
