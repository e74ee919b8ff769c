"""SSD's detection head: PriorBox and DetectionOutput (weiliu89's fork, with OpenCV's
TextBoxes and Faster R-CNN variants). The two-stage detectors' layers are in rcnn.py."""
from __future__ import annotations

import math

import numpy as np

from . import register
from .base import (
    DYNAMIC, Emission, Helper, Layer, LayerError, NotConvertible, Schema, fmt_shape, num,
)
from .reshape import as_4d, legacy_4d


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
    """SSD's default boxes for one feature map (weiliu89's PriorBoxLayer), with the variants
    real nets use: several ``min_size`` values (face detectors), and OpenCV's TextBoxes
    dialect (``offset_h``/``offset_w``: each box repeated at several offsets in the cell;
    ``width``/``height``: boxes of explicit sizes instead of sizes and aspect ratios)."""

    TYPES = ("PriorBox",)
    CAFFE_FORKS = {"ssd": frozenset({"PriorBox"})}
    OPENCV = frozenset({"PriorBox"})
    SCHEMA = Schema(
        fields={
            # OpenCV's caffe.proto (TextBoxes): offsets in the cell, explicit box sizes.
            "PriorBoxParameter": (
                ("repeated", "float", "offset_h", 14, None, False),
                ("repeated", "float", "offset_w", 15, None, False),
                ("repeated", "float", "width", 16, None, False),
                ("repeated", "float", "height", 17, None, False),
            ),
        },
    )
    BOTTOMS = (2, 2)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.prior_box_param
        self.min_sizes, self.max_sizes = list(p.min_size), list(p.max_size)
        self.explicit = bool(p.width or p.height)
        if self.explicit:
            self._explicit_sizes(p)
        else:
            self._sizes(p)
        if len(p.offset_h) != len(p.offset_w):
            raise LayerError(f"{len(p.offset_h)} offset_h values for {len(p.offset_w)} offset_w")
        if p.offset_h and p.HasField("offset"):
            raise LayerError("give either offset or offset_h/offset_w, not both")
        self.offsets = list(zip(p.offset_w, p.offset_h)) or [(p.offset, p.offset)]
        self.num_priors = len(self.boxes) * len(self.offsets)
        variance = list(p.variance)
        if len(variance) not in (0, 1, 4):
            raise LayerError(f"variance takes 1 or 4 values, has {len(variance)}")
        if any(not v > 0 for v in variance):
            raise LayerError(f"variance {', '.join(f'{v:g}' for v in variance)} must be positive")
        self.variance = variance or [0.1]
        self.clip = p.clip
        self.clip_given = p.HasField("clip")
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
        self.image = (p.img_h, p.img_w) if p.HasField("img_h") else (p.img_size, p.img_size)
        self.step = (p.step_h, p.step_w) if p.HasField("step_h") else (p.step, p.step)

    def _sizes(self, p) -> None:
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
        # Forward_cpu: per min size, the square box of min_size, the square of
        # sqrt(min_size * max_size), then one box per other aspect ratio. The fork reads each
        # size into an int (``int min_size_ = min_sizes_[s]``): 35.84 is 35.
        self.boxes: list[tuple[float, float]] = []
        for s, lo in enumerate(self.min_sizes):
            lo = int(lo)
            self.boxes.append((lo, lo))
            if self.max_sizes:
                side = float(np.float32(math.sqrt(lo * int(self.max_sizes[s]))))
                self.boxes.append((side, side))
            for ar in self.aspect_ratios[1:]:
                r = np.sqrt(np.float32(ar))
                self.boxes.append((float(np.float32(lo * r)), float(np.float32(lo / r))))

    def _explicit_sizes(self, p) -> None:
        # OpenCV's PriorBoxLayer: width/height pairs, and then no sizes or aspect ratios.
        if len(p.width) != len(p.height):
            raise LayerError(f"{len(p.width)} width values for {len(p.height)} height")
        if self.min_sizes or self.max_sizes or p.aspect_ratio:
            raise LayerError("width/height boxes take no min_size, max_size or aspect_ratio")
        if any(not v > 0 for v in [*p.width, *p.height]):
            raise LayerError("width and height must be positive")
        self.boxes = [(float(w), float(h)) for w, h in zip(p.width, p.height)]

    def describe(self):
        return f"{self.num_priors} priors per position"

    def reads_only_shape(self, bottom):
        return True  # the feature map and the image give only their sizes

    def opencv_gap(self, node):
        if not self.proto.prior_box_param.variance:
            return "OpenCV refuses a PriorBox without variance (Caffe: 0.1)"
        if any(self.image):
            return "OpenCV ignores img_size/img_h/img_w (it reads the image input's size)"
        if not self.clip_given:
            return "OpenCV clips priors unless clip is given (the SSD fork: only with clip: true)"
        if not self.explicit and any(m != int(m) for m in self.min_sizes + self.max_sizes):
            return "OpenCV keeps fractional min/max sizes (the SSD fork truncates them to ints)"
        if len(self.offsets) > 2:
            return "OpenCV makes room for 2 x (n - 1) offsets of n, not n"
        return ""

    def caffe_gap(self, node, build="bvlc"):
        p = self.proto.prior_box_param
        if build == "ssd" and not self.clip_given:
            return "this build of the SSD fork clips priors by default (weiliu89's does not)"
        if build == "ssd" and (p.offset_h or p.width):
            return "offset_h/offset_w and width/height are OpenCV's fields (TextBoxes), not the fork's"
        return super().caffe_gap(node, build)

    def infer(self, inputs):
        feat, image = inputs
        # Caffe reads width() and height() (legacy accessors: at most 4 axes, missing ones 1).
        _, _, h, w = legacy_4d(feat, "feature map")
        legacy_4d(image, "image")
        return [(1, 2, h * w * self.num_priors * 4)]

    def emit(self, ctx):
        args = [
            f"boxes={_pairs(self.boxes)}",
            f"variance=[{', '.join(num(v) for v in self.variance)}]",
        ]
        if self.offsets != [(0.5, 0.5)]:
            args.append(f"offsets={_pairs(self.offsets)}")
        if any(self.image):
            args.append(f"image_size=({self.image[0]}, {self.image[1]})")
        if any(self.step):
            args.append(f"step=({num(self.step[0])}, {num(self.step[1])})")
        if self.clip:
            args.append("clip=True")
        feat, image = (as_4d(len(s), "{%d}" % i) for i, s in enumerate(ctx.in_shapes))
        return Emission(
            [f"{{m}}({feat}, {image})"], module=f"PriorBox({', '.join(args)})", helpers=(PRIOR_BOX,),
            comment="boxes are (width, height) in pixels; the output does not depend on the values",
        )


def _pairs(pairs) -> str:
    """``[(a, b), ...]`` as Python source, each number as Caffe's float32 reads it."""
    return "[" + ", ".join(f"({num(a)}, {num(b)})" for a, b in pairs) + "]"


PRIOR_BOX = Helper("PriorBox", '''
class PriorBox(nn.Module):
    """SSD's PriorBox: for each position of the feature map (row by row), each box (width,
    height in pixels) at each offset in the cell, as [xmin, ymin, xmax, ymax] divided by the
    image size; then the variances. Output 1 x 2 x (H * W * boxes * offsets * 4). Computed
    from the sizes of ``feature`` and ``image`` (not their values), so any input size works."""

    def __init__(
        self,
        boxes: list[tuple[float, float]],
        variance: list[float],
        offsets: tuple[tuple[float, float], ...] = ((0.5, 0.5),),
        image_size: tuple[int, int] = (0, 0),
        step: tuple[float, float] = (0.0, 0.0),
        clip: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("boxes", torch.tensor(boxes, dtype=torch.float32), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.float32), persistent=False)
        self.register_buffer("variance", torch.tensor(variance, dtype=torch.float32), persistent=False)
        self.image_size, self.step, self.clip = image_size, step, clip

    def forward(self, feature: Tensor, image: Tensor) -> Tensor:
        h, w = feature.shape[2], feature.shape[3]
        img_h, img_w = self.image_size if self.image_size[0] else (image.shape[2], image.shape[3])
        step_h, step_w = self.step if self.step[0] else (img_h / h, img_w / w)
        # Centres in float32 as Caffe computes them: (w + offset) * step.
        cx = (torch.arange(w, dtype=torch.float32)[:, None] + self.offsets[:, 0]) * step_w
        cy = (torch.arange(h, dtype=torch.float32)[:, None] + self.offsets[:, 1]) * step_h
        cx = cx[None, :, None, :].expand(h, w, len(self.boxes), len(self.offsets))
        cy = cy[:, None, None, :].expand(h, w, len(self.boxes), len(self.offsets))
        half_w = (self.boxes[:, 0] / 2).double()[None, None, :, None]
        half_h = (self.boxes[:, 1] / 2).double()[None, None, :, None]
        corners = torch.stack(
            [(cx - half_w) / img_w, (cy - half_h) / img_h, (cx + half_w) / img_w, (cy + half_h) / img_h],
            dim=-1,
        ).float().reshape(-1)
        if self.clip:
            corners = corners.clamp(0.0, 1.0)
        variance = self.variance.expand(corners.numel() // 4, 4).reshape(-1)
        return torch.stack([corners, variance])[None]
''')


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
        self.background = p.background_label_id
        self.code_type = CODE_TYPES[p.code_type]
        self.variance_encoded = p.variance_encoded_in_target
        self.keep_top_k = p.keep_top_k
        # weiliu89: -FLT_MAX when not given (every finite score passes).
        self.threshold = p.confidence_threshold if p.HasField("confidence_threshold") else -FLT_MAX
        nms = p.nms_param
        if not nms.nms_threshold >= 0:
            raise LayerError(f"nms_threshold {nms.nms_threshold:g} must be non negative")
        if not 0 < nms.eta <= 1:
            raise LayerError(f"nms_param eta {nms.eta:g} must be in (0, 1]")
        # The first SSD release kept nms_threshold and top_k in detection_output_param.
        old = not p.HasField("nms_param") and (p.HasField("nms_threshold") or p.HasField("top_k"))
        self.nms_threshold = p.nms_threshold if old and p.HasField("nms_threshold") else nms.nms_threshold
        self.top_k = (p.top_k if p.HasField("top_k") else -1) if old else (nms.top_k if nms.HasField("top_k") else -1)
        self.eta = nms.eta
        self.normalized = p.normalized_bbox
        self.clip = p.clip

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

    def opencv_gap(self, node):
        if self.eta < 1:
            return "OpenCV's NMS ignores eta"
        if self.keep_top_k < 0:
            return "OpenCV crashes (segmentation fault) on a DetectionOutput without keep_top_k"
        prior = node.inputs[2].shape or ()
        if len(prior) > 1 and prior[1] != 1 + (not self.variance_encoded):
            return (
                "OpenCV takes priors with variances (2 channels) only when they are not encoded "
                "in the target, and without (1 channel) only when they are"
            )
        return ""

    def opencv_layer(self, layer):
        # OpenCV requires these to be given (Caffe's defaults: true, 0, -1).
        p = layer.detection_output_param
        fields = ("share_location", "background_label_id", "keep_top_k")
        given = all(p.HasField(f) for f in fields)
        for f in fields:
            setattr(p, f, getattr(p, f))
        return not given

    def caffe_gap(self, node, build="bvlc"):
        p = self.proto.detection_output_param
        if build == "ssd" and not p.HasField("nms_param"):
            return "this build of the SSD fork skips NMS without nms_param (weiliu89's applies its defaults)"
        return super().caffe_gap(node, build)

    def caffe_layer(self, layer):
        # The fork's LayerSetUp deletes save_output_param's output_directory and reads its
        # label map and name-size files; visualize opens windows. None of it is computed.
        p = layer.detection_output_param
        changed = p.HasField("save_output_param") or p.visualize
        p.ClearField("save_output_param")
        p.ClearField("visualize")
        return changed

    def compare_form(self, top, value):
        """The same detections in any order: rows sorted by image, label, score (descending)
        and box. Caffe orders them by label, then score, and picks the ``keep_top_k`` best with
        an unstable sort: when an image has that many rows, which of the rows tied at its
        lowest score are kept is not defined, so only their image and score are compared."""
        if not isinstance(value, np.ndarray):
            value = value.detach().numpy()
        rows = np.asarray(value, np.float64).reshape(-1, 7).copy()
        if self.keep_top_k > 0:
            for image in np.unique(rows[:, 0]):
                mine = rows[:, 0] == image
                if mine.sum() == self.keep_top_k:
                    tied = mine & (rows[:, 2] == rows[mine, 2].min())
                    rows[tied, 1] = 0.0
                    rows[tied, 3:] = 0.0
        keys = [rows[:, k] for k in (6, 5, 4, 3)] + [-rows[:, 2], rows[:, 1], rows[:, 0]]
        return rows[np.lexsort(keys)]

    def emit(self, ctx):
        if self.n_bottoms > 3:
            raise NotConvertible(
                f"{self.n_bottoms} bottoms: OpenCV's image-size and RefineDet's extra inputs are "
                "not converted"
            )
        if self.clip and not self.normalized:
            raise NotConvertible("clip with normalized_bbox: false needs OpenCV's image-size input")
        args = [str(self.num_classes)]
        args += [
            f"{k}={v}"
            for k, v, default in (
                ("share_location", self.share_location, True),
                ("background_label_id", self.background, 0),
                ("code_type", repr(self.code_type), repr("CORNER")),
                ("variance_encoded_in_target", self.variance_encoded, False),
                ("nms_threshold", num(self.nms_threshold), num(0.3)),
                ("top_k", self.top_k, -1),
                ("eta", num(self.eta), num(1.0)),
                ("confidence_threshold", num(self.threshold) if self.threshold != -FLT_MAX else None, None),
                ("keep_top_k", self.keep_top_k, -1),
                ("normalized", self.normalized, True),
                ("clip", self.clip, False),
            )
            if v != default
        ]
        prior = as_4d(len(ctx.in_shapes[2]), "{2}")
        return Emission(
            [f"{{m}}({{0}}, {{1}}, {prior})"], module=f"DetectionOutput({', '.join(args)})",
            helpers=(DETECTION_OUTPUT,),
            comment="rows [image, label, score, xmin, ymin, xmax, ymax]; their number depends on the input",
        )


CODE_TYPES = {1: "CORNER", 2: "CENTER_SIZE", 3: "CORNER_SIZE"}
FLT_MAX = float(np.finfo(np.float32).max)

DETECTION_OUTPUT = Helper("DetectionOutput", '''
class DetectionOutput(nn.Module):
    """SSD's DetectionOutput (weiliu89's DetectionOutputLayer): decode each prior's box, keep
    the scores above ``confidence_threshold``, per class the ``top_k`` best, greedy NMS at
    ``nms_threshold`` (made stricter by ``eta`` after each kept box while above 0.5), then
    the ``keep_top_k`` best of all classes. Returns 1 x 1 x N x 7 rows of [image, label,
    score, xmin, ymin, xmax, ymax], by image, then label, then score; one row of -1 per image
    (after its index) when nothing is found. ``normalized``: False for boxes in pixels
    (OpenCV's Faster R-CNN form: sizes are w + 1, h + 1)."""

    def __init__(
        self,
        num_classes: int,
        share_location: bool = True,
        background_label_id: int = 0,
        code_type: str = "CORNER",
        variance_encoded_in_target: bool = False,
        nms_threshold: float = 0.3,
        top_k: int = -1,
        eta: float = 1.0,
        confidence_threshold: float = -3.4028234663852886e38,
        keep_top_k: int = -1,
        normalized: bool = True,
        clip: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes, self.share_location = num_classes, share_location
        self.background_label_id, self.code_type = background_label_id, code_type
        self.variance_encoded_in_target = variance_encoded_in_target
        self.nms_threshold, self.top_k, self.eta = nms_threshold, top_k, eta
        self.confidence_threshold, self.keep_top_k = confidence_threshold, keep_top_k
        self.normalized, self.clip = normalized, clip

    def forward(self, loc: Tensor, conf: Tensor, prior: Tensor) -> Tensor:
        n, p = loc.shape[0], prior.shape[2] // 4
        loc = loc.reshape(n, p, -1, 4).float()
        conf = conf.reshape(n, p, self.num_classes).float()
        flat = prior.reshape(-1).float()
        variance = None if self.variance_encoded_in_target else flat[p * 4 : p * 8].view(p, 1, 4)
        boxes = self.decode(loc, flat[: p * 4].view(p, 1, 4), variance)
        rows = [self.detect(i, boxes[i], conf[i]) for i in range(n)]
        out = torch.cat(rows) if rows else loc.new_zeros(0, 7)
        if not len(out):  # Caffe's "no detections": a row of -1 per image, with its index
            out = loc.new_full((n, 7), -1.0)
            out[:, 0] = torch.arange(n, dtype=out.dtype)
        return out[None, None]

    def decode(self, loc: Tensor, prior: Tensor, variance: Tensor | None) -> Tensor:
        if variance is not None:
            loc = loc * variance
        plus = 0.0 if self.normalized else 1.0
        if self.code_type == "CORNER":
            out = prior + loc
        else:
            pw = prior[..., 2] - prior[..., 0] + plus
            ph = prior[..., 3] - prior[..., 1] + plus
            if self.code_type == "CORNER_SIZE":
                out = prior + loc * torch.stack([pw, ph, pw, ph], -1)
            else:  # CENTER_SIZE
                cx = loc[..., 0] * pw + (prior[..., 0] + pw * 0.5 if plus else (prior[..., 0] + prior[..., 2]) / 2)
                cy = loc[..., 1] * ph + (prior[..., 1] + ph * 0.5 if plus else (prior[..., 1] + prior[..., 3]) / 2)
                w, h = loc[..., 2].exp() * pw, loc[..., 3].exp() * ph
                out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        return out.clamp(0.0, 1.0) if self.clip else out

    def detect(self, image: int, boxes: Tensor, scores: Tensor) -> Tensor:
        labels, kept = [], []
        for c in range(self.num_classes):
            if c == self.background_label_id:
                continue
            b = boxes[:, 0 if self.share_location else c]
            keep = self.nms(b, scores[:, c])
            labels.append(torch.full((len(keep),), c, dtype=torch.long))
            kept.append(keep)
        label = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        index = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
        score = scores[index, label]
        if -1 < self.keep_top_k < len(index):
            best = torch.sort(score, descending=True, stable=True).indices[: self.keep_top_k]
            best = best[torch.sort(label[best], stable=True).indices]  # by label, then score
            label, index, score = label[best], index[best], score[best]
        box = boxes[index, 0 if self.share_location else label]
        first = torch.stack([torch.full_like(score, image), label.to(score.dtype), score], -1)
        return torch.cat([first, box], -1)

    def nms(self, boxes: Tensor, scores: Tensor) -> Tensor:
        """The indices greedy NMS keeps, best score first (Caffe's ApplyNMSFast)."""
        index = (scores > self.confidence_threshold).nonzero().squeeze(1)
        index = index[torch.sort(scores[index], descending=True, stable=True).indices]
        if self.top_k > -1:
            index = index[: self.top_k]
        boxes = boxes[index]
        worst = torch.zeros(len(index))  # each candidate's largest overlap with a kept box
        threshold, keep = self.nms_threshold, []
        for j in range(len(index)):
            if keep and worst[j] > threshold:
                continue
            keep.append(j)
            worst = torch.maximum(worst, self.overlap(boxes[j], boxes))
            if self.eta < 1 and threshold > 0.5:
                threshold *= self.eta
        return index[torch.tensor(keep, dtype=torch.long)]

    def overlap(self, box: Tensor, boxes: Tensor) -> Tensor:
        """Jaccard overlap of ``box`` with each of ``boxes`` (an inverted box has size 0)."""
        plus = 0.0 if self.normalized else 1.0
        lo = torch.maximum(box[:2], boxes[:, :2])
        hi = torch.minimum(box[2:], boxes[:, 2:])
        side = hi - lo + plus
        inter = torch.where((side > 0).all(1), side.prod(1), 0.0)
        return torch.where(inter > 0, inter / (self.size(box[None])[0] + self.size(boxes) - inter), 0.0)

    def size(self, b: Tensor) -> Tensor:
        plus = 0.0 if self.normalized else 1.0
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        return torch.where((w < 0) | (h < 0), 0.0, (w + plus) * (h + plus))
''')
