"""Two-stage detectors: Fast/Faster R-CNN's ROIPooling (caffe-fast-rcnn), R-FCN's
PSROIPooling (caffe-rfcn), the region proposal layer: py-faster-rcnn's Python
``rpn.proposal_layer.ProposalLayer``, recognised by name and reimplemented (its code is never
imported), and OpenCV's C++ ``Proposal``, which stands in for it in OpenCV's Faster R-CNN."""
from __future__ import annotations

import ast

import numpy as np

from . import register, register_python
from .base import DYNAMIC, Emission, Helper, Layer, LayerError, Schema, fmt_shape, four_d, num
from .reshape import legacy_4d


@register
class ROIPooling(Layer):
    TYPES = ("ROIPooling",)
    OPENCV = frozenset({"ROIPooling"})
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

    def emit(self, ctx):
        args = f"{{0}}, {{1}}, {self.pooled}, {num(self.spatial_scale)}"
        return Emission([f"roi_pool({args})"], helpers=(C_ROUND, ROI_POOL))


C_ROUND = Helper("c_round", '''
def c_round(x: Tensor) -> Tensor:
    """C's round(): halves away from zero (torch.round rounds them to even)."""
    return x.sign() * (x.abs() + 0.5).floor()
''')

ROI_POOL = Helper("roi_pool", '''
def roi_pool(x: Tensor, rois: Tensor, size: tuple[int, int], spatial_scale: float) -> Tensor:
    """Fast R-CNN's ROIPooling (caffe-fast-rcnn): each roi [image, x1, y1, x2, y2] in image
    pixels is scaled and rounded to feature cells, cut into ``size`` bins (edges rounded
    down and up, in float32 as Caffe computes them), and each bin is the max of its cells
    (0 when it holds none). Output rois x C x size."""
    rois = rois.reshape(rois.shape[0], -1)[:, :5].float()
    height, width = x.shape[2], x.shape[3]
    corners = c_round((rois[:, 1:5] * spatial_scale).double()).long()
    out = x.new_zeros(len(rois), x.shape[1], *size)
    for r, (image, (x1, y1, x2, y2)) in enumerate(zip(rois[:, 0].long().tolist(), corners.tolist())):
        hs, he = _bins(y1, max(y2 - y1 + 1, 1), size[0], height)
        ws, we = _bins(x1, max(x2 - x1 + 1, 1), size[1], width)
        top, bottom, left, right = int(hs.min()), int(he.max()), int(ws.min()), int(we.max())
        if bottom <= top or right <= left:
            continue
        crop = x[image, :, top:bottom, left:right]
        cols = torch.arange(left, right)
        in_w = (cols >= ws[:, None]) & (cols < we[:, None])  # bins x columns
        rows = torch.arange(top, bottom)
        in_h = (rows >= hs[:, None]) & (rows < he[:, None])
        # The max of a rectangle: over its columns, then over its rows.
        v = crop[:, :, None, :].masked_fill(~in_w, float("-inf")).amax(-1)  # C x rows x bins_w
        v = v[:, None].masked_fill(~in_h[None, :, :, None], float("-inf")).amax(2)
        out[r] = v.masked_fill(v == float("-inf"), 0.0)
    return out


def _bins(start: int, length: int, bins: int, limit: int) -> tuple[Tensor, Tensor]:
    size = torch.tensor(length, dtype=torch.float32) / bins
    edge = torch.arange(bins + 1, dtype=torch.float32) * size
    lo = (edge[:-1].floor().long() + start).clamp(0, limit)
    hi = (edge[1:].ceil().long() + start).clamp(0, limit)
    return lo, hi
''')


@register
class PSROIPooling(Layer):
    TYPES = ("PSROIPooling",)
    OPENCV = frozenset({"PSROIPooling"})
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

    def emit(self, ctx):
        args = f"{{0}}, {{1}}, {self.output_dim}, {self.group_size}, {num(self.spatial_scale)}"
        return Emission([f"psroi_pool({args})"], helpers=(C_ROUND, PSROI_POOL))


PSROI_POOL = Helper("psroi_pool", '''
def psroi_pool(x: Tensor, rois: Tensor, output_dim: int, group: int, spatial_scale: float) -> Tensor:
    """R-FCN's position-sensitive ROI pooling (caffe-rfcn): each roi [image, x1, y1, x2, y2]
    (rounded, then scaled, in float32 as Caffe computes them) is cut into group x group bins;
    bin (i, j) of output channel d is the mean of input channel (d * group + i) * group + j
    over the bin (0 when empty). Output rois x output_dim x group x group."""
    rois = rois.reshape(rois.shape[0], -1)[:, :5].float()
    n, _, height, width = x.shape
    corners = c_round(rois[:, 1:5])
    start = corners[:, :2] * spatial_scale
    size = ((corners[:, 2:] + 1.0) * spatial_scale - start).clamp(min=0.1) / group  # bin w, h
    step = torch.arange(group + 1, dtype=torch.float32)
    lo = (step[None, :-1, None] * size[:, None] + start[:, None]).floor().long()  # rois x bins x (x, y)
    hi = (step[None, 1:, None] * size[:, None] + start[:, None]).ceil().long()
    limit = torch.tensor([width, height])
    lo, hi = lo.clamp(min=0).minimum(limit), hi.clamp(min=0).minimum(limit)
    # Sums over rectangles from the summed-area table (float64), per output channel and bin.
    table = x.double().cumsum(2).cumsum(3)
    table = torch.nn.functional.pad(table, (1, 0, 1, 0))
    table = table.view(n, output_dim, group, group, height + 1, width + 1)
    b = rois[:, 0].long()[:, None, None, None]
    d = torch.arange(output_dim)[None, :, None, None]
    i = torch.arange(group)[None, None, :, None]
    j = torch.arange(group)[None, None, None, :]
    x0, x1 = lo[:, None, None, :, 0], hi[:, None, None, :, 0]
    y0, y1 = lo[:, None, :, None, 1], hi[:, None, :, None, 1]
    total = (
        table[b, d, i, j, y1, x1] - table[b, d, i, j, y0, x1]
        - table[b, d, i, j, y1, x0] + table[b, d, i, j, y0, x0]
    )
    area = ((y1 - y0) * (x1 - x0)).double()
    empty = (y1 <= y0) | (x1 <= x0)
    return torch.where(empty, 0.0, total / area.clamp(min=1)).to(x.dtype)
''')


# ------------------------------------------------------------------------ region proposals
def anchors(base_size: int, ratios, scales) -> np.ndarray:
    """py-faster-rcnn's generate_anchors: boxes [x1, y1, x2, y2] around the centre of the
    base_size cell at (0, 0), for each ratio (areas kept, sides rounded half to even), each
    scale."""
    w = h = float(base_size)
    cx = cy = 0.5 * (base_size - 1)
    out = []
    for ratio in ratios:
        ws = np.round(np.sqrt(w * h / ratio))
        hs = np.round(ws * ratio)
        for scale in scales:
            bw, bh = ws * scale, hs * scale
            out.append([cx - 0.5 * (bw - 1), cy - 0.5 * (bh - 1), cx + 0.5 * (bw - 1), cy + 0.5 * (bh - 1)])
    return np.array(out)


class _Proposals(Layer):
    """What the two proposal layers share: scores (2 x anchors channels: background, then
    objects), box deltas (4 x anchors), im_info [height, width, scale]; rois [0, x1, y1, x2,
    y2] and optionally their scores."""

    BOTTOMS = (3, 3)
    TOPS = (1, 2)
    ROWS = DYNAMIC

    def describe(self):
        return f"{len(self.anchors)} anchors, stride {self.feat_stride}, top {self.post_nms_topn}"

    def infer(self, inputs):
        scores, deltas, _ = inputs
        four_d(scores, "score map")
        four_d(deltas, "box deltas")
        a = len(self.anchors)
        if scores[1] != 2 * a or deltas[1] != 4 * a:
            raise LayerError(
                f"{a} anchors need 2x and 4x as many channels in the scores and "
                f"box deltas, got {fmt_shape(scores)} and {fmt_shape(deltas)}"
            )
        if scores[0] not in (1, DYNAMIC):
            raise LayerError(f"proposals are made for one image, the scores are {fmt_shape(scores)}")
        rows = self.post_nms_topn if self.ROWS is None else self.ROWS
        return [(rows, 5), (rows, 1)][: self.n_tops]

    def sample_input(self, node, bottom):
        # im_info [height, width, scale]: the image the feature map was computed from.
        if bottom != 2 or len(node.inputs[0].shape or ()) != 4:
            return None
        _, _, h, w = node.inputs[0].shape
        return np.array([h * self.feat_stride, w * self.feat_stride, 1.0])

    def emit(self, ctx):
        boxes = "[" + ", ".join("(" + ", ".join(num(v) for v in a) + ")" for a in self.anchors) + "]"
        args = [
            f"anchors={boxes}", f"feat_stride={self.feat_stride}",
            f"pre_nms_topn={self.pre_nms_topn}", f"post_nms_topn={self.post_nms_topn}",
            f"nms_threshold={num(self.nms_threshold)}", f"min_size={self.min_size}",
        ]
        if self.ROWS is None:
            args.append("pad=True")
        tops = "" if self.n_tops == 2 else "[0]"
        return Emission(
            [f"{{m}}({{0}}, {{1}}, {{2}}){tops}"], module=f"Proposal({', '.join(args)})",
            helpers=(PROPOSAL,), comment=self.COMMENT,
        )


@register
class Proposal(_Proposals):
    """OpenCV's region proposal layer (its Faster R-CNN sample's stand-in for the Python
    layer): anchors from ratio and scale, no minimum box size, ``post_nms_topn`` rows always
    (zeros after the proposals found)."""

    TYPES = ("Proposal",)
    OPENCV = frozenset({"Proposal"})
    ROWS = None  # always post_nms_topn rows
    COMMENT = "OpenCV's Proposal: no minimum box size; rows after the proposals found are 0"
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

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.proposal_param
        if not p.ratio or not p.scale:
            raise LayerError("proposal_param needs ratio and scale values")
        # OpenCV's sides: floor(base / sqrt(ratio) + 0.5), then floor(width * ratio + 0.5).
        self.anchors = _opencv_anchors(p.base_size, p.ratio, p.scale)
        self.feat_stride, self.post_nms_topn = p.feat_stride, p.post_nms_topn
        self.pre_nms_topn, self.nms_threshold = p.pre_nms_topn, p.nms_thresh
        self.min_size = 0  # OpenCV reads min_size but does not filter by it


def _opencv_anchors(base_size, ratios, scales) -> np.ndarray:
    out = []
    c = 0.5 * (base_size - 1)
    for ratio in ratios:
        w = np.floor(np.float32(base_size) / np.sqrt(np.float32(ratio)) + np.float32(0.5))
        h = np.floor(w * np.float32(ratio) + np.float32(0.5))
        for scale in scales:
            bw, bh = np.float32(scale) * w, np.float32(scale) * h
            out.append([c - 0.5 * (bw - 1), c - 0.5 * (bh - 1), c + 0.5 * (bw - 1), c + 0.5 * (bh - 1)])
    return np.array(out, np.float64)


@register_python
class ProposalLayer(_Proposals):
    """py-faster-rcnn's (and R-FCN's) ``rpn.proposal_layer.ProposalLayer``, reimplemented:
    ``param_str`` gives ``feat_stride`` and optionally ``scales`` (8, 16, 32) and ``ratios``
    (0.5, 1, 2); the rest is py-faster-rcnn's TEST configuration (6000 boxes before NMS, 300
    after, NMS at 0.7, boxes under 16 pixels x im_info's scale dropped)."""

    PYTHON = ("rpn.proposal_layer.ProposalLayer",)
    COMMENT = "py-faster-rcnn's ProposalLayer with its TEST settings (never imported: reimplemented)"
    KEYS = ("feat_stride", "scales", "ratios")

    def __init__(self, proto):
        super().__init__(proto)
        params = _param_str(proto.python_param.param_str)
        unknown = sorted(set(params) - set(self.KEYS))
        if unknown:
            raise LayerError(
                f"param_str has {', '.join(map(repr, unknown))}, which py-faster-rcnn's "
                f"ProposalLayer does not read (it reads {', '.join(self.KEYS)}): a fork's layer"
            )
        self.feat_stride = int(params.get("feat_stride", 16))
        scales = params.get("scales", (8, 16, 32))
        ratios = params.get("ratios", (0.5, 1, 2))
        self.anchors = anchors(16, ratios, scales)
        self.pre_nms_topn, self.post_nms_topn, self.nms_threshold, self.min_size = 6000, 300, 0.7, 16

    def opencv_gap(self, node):
        return ""  # OpenCV runs it as its Proposal layer (opencv_layer), without minimum size

    def opencv_layer(self, layer):
        # OpenCV runs it as its Proposal layer (no minimum size: see exact()).
        params = _param_str(layer.python_param.param_str)
        layer.type = "Proposal"
        layer.ClearField("python_param")
        p = layer.proposal_param
        p.feat_stride = self.feat_stride
        p.ratio.extend(params.get("ratios", (0.5, 1, 2)))
        p.scale.extend(params.get("scales", (8, 16, 32)))
        return True

    def exact(self, inputs, blobs):
        """py-faster-rcnn's ProposalLayer.forward in numpy (float64), for the check to tell
        OpenCV's Proposal (no minimum size) from a wrong model."""
        return _proposals_numpy(self, *inputs[:3])[: self.n_tops]

    def compare_form(self, top, value):
        # OpenCV's Proposal always gives 300 rows, zeros after the proposals found.
        if not isinstance(value, np.ndarray):
            value = value.detach().numpy()
        rows = np.asarray(value).reshape(len(value), -1)
        found = np.flatnonzero(np.abs(rows).sum(1) != 0) if top == 0 else np.arange(len(rows))
        return rows[: found[-1] + 1 if len(found) else 0]


def _proposals_numpy(layer: _Proposals, scores, deltas, im_info) -> list[np.ndarray]:
    a = len(layer.anchors)
    scores = scores[:, a:, :, :]
    height, width = scores.shape[-2:]
    shift_x, shift_y = np.meshgrid(np.arange(width) * layer.feat_stride, np.arange(height) * layer.feat_stride)
    shifts = np.vstack((shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel())).T
    boxes = (layer.anchors[None] + shifts[:, None]).reshape(-1, 4)
    d = deltas.transpose(0, 2, 3, 1).reshape(-1, 4)
    s = scores.transpose(0, 2, 3, 1).reshape(-1)
    w, h = boxes[:, 2] - boxes[:, 0] + 1.0, boxes[:, 3] - boxes[:, 1] + 1.0
    cx, cy = boxes[:, 0] + 0.5 * w + d[:, 0] * w, boxes[:, 1] + 0.5 * h + d[:, 1] * h
    pw, ph = np.exp(d[:, 2]) * w, np.exp(d[:, 3]) * h
    info = im_info.reshape(-1)
    p = np.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph], 1)
    p[:, 0::2] = np.clip(p[:, 0::2], 0, info[1] - 1)
    p[:, 1::2] = np.clip(p[:, 1::2], 0, info[0] - 1)
    if layer.min_size:
        least = layer.min_size * info[2]
        big = np.where((p[:, 2] - p[:, 0] + 1 >= least) & (p[:, 3] - p[:, 1] + 1 >= least))[0]
        p, s = p[big], s[big]
    order = np.argsort(-s, kind="stable")[: layer.pre_nms_topn or None]
    p, s = p[order], s[order]
    keep, rest = [], np.arange(len(p))
    area = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)
    while rest.size and len(keep) < (layer.post_nms_topn or len(p)):
        i, rest = rest[0], rest[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(p[i, 2], p[rest, 2]) - np.maximum(p[i, 0], p[rest, 0]) + 1)
        ih = np.maximum(0.0, np.minimum(p[i, 3], p[rest, 3]) - np.maximum(p[i, 1], p[rest, 1]) + 1)
        inter = iw * ih
        rest = rest[inter / (area[i] + area[rest] - inter) <= layer.nms_threshold]
    rois = np.hstack([np.zeros((len(keep), 1)), p[keep]])
    return [rois, s[keep][:, None]]


def _param_str(text: str) -> dict:
    """A Python layer's ``param_str`` as py-faster-rcnn writes it ("'feat_stride': 16"), read
    as a literal (never evaluated as code)."""
    for candidate in (text, text.replace("\n", ",")):
        try:
            value = ast.literal_eval("{" + candidate.strip().strip("{}") + "}")
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    raise LayerError(f"param_str {text!r} is not a dict of literals")


PROPOSAL = Helper("Proposal", '''
class Proposal(nn.Module):
    """Faster R-CNN's region proposals (py-faster-rcnn's ProposalLayer): the anchors at every
    position (``feat_stride`` pixels apart) moved by the box deltas, clipped to the image
    (im_info: height, width, scale), those under ``min_size`` x scale pixels dropped, the
    ``pre_nms_topn`` best by object score, NMS at ``nms_threshold``, the ``post_nms_topn``
    best. Returns rois [0, x1, y1, x2, y2] and their scores (``pad``: always post_nms_topn
    rows, zeros after the proposals found, as OpenCV's Proposal)."""

    def __init__(
        self,
        anchors: list[tuple[float, float, float, float]],
        feat_stride: int = 16,
        pre_nms_topn: int = 6000,
        post_nms_topn: int = 300,
        nms_threshold: float = 0.7,
        min_size: int = 16,
        pad: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float64), persistent=False)
        self.feat_stride, self.pre_nms_topn, self.post_nms_topn = feat_stride, pre_nms_topn, post_nms_topn
        self.nms_threshold, self.min_size, self.pad = nms_threshold, min_size, pad

    def forward(self, scores: Tensor, deltas: Tensor, im_info: Tensor) -> tuple[Tensor, Tensor]:
        a = len(self.anchors)
        h, w = scores.shape[2], scores.shape[3]
        info = im_info.reshape(-1).double()
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        shifts = torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4).double() * self.feat_stride
        boxes = self.decode((self.anchors[None] + shifts).reshape(-1, 4), deltas[0].permute(1, 2, 0).reshape(-1, 4))
        boxes = torch.stack([
            boxes[:, 0].clamp(0, info[1] - 1), boxes[:, 1].clamp(0, info[0] - 1),
            boxes[:, 2].clamp(0, info[1] - 1), boxes[:, 3].clamp(0, info[0] - 1),
        ], -1)
        score = scores[0, a:].permute(1, 2, 0).reshape(-1)
        if self.min_size:
            size = self.min_size * info[2]
            big = (boxes[:, 2] - boxes[:, 0] + 1 >= size) & (boxes[:, 3] - boxes[:, 1] + 1 >= size)
            boxes, score = boxes[big], score[big]
        order = torch.sort(score, descending=True, stable=True).indices
        if self.pre_nms_topn > 0:
            order = order[: self.pre_nms_topn]
        boxes, score = boxes[order], score[order]
        keep = self.nms(boxes)
        if self.post_nms_topn > 0:
            keep = keep[: self.post_nms_topn]
        rois = torch.cat([boxes.new_zeros(len(keep), 1), boxes[keep]], 1).float()
        score = score[keep, None]
        if self.pad and len(keep) < self.post_nms_topn:
            rois = torch.cat([rois, rois.new_zeros(self.post_nms_topn - len(keep), 5)])
            score = torch.cat([score, score.new_zeros(self.post_nms_topn - len(keep), 1)])
        return rois, score

    @staticmethod
    def decode(anchors: Tensor, deltas: Tensor) -> Tensor:
        """py-faster-rcnn's bbox_transform_inv (sizes are x2 - x1 + 1)."""
        deltas = deltas.double()
        w = anchors[:, 2] - anchors[:, 0] + 1.0
        h = anchors[:, 3] - anchors[:, 1] + 1.0
        cx = deltas[:, 0] * w + anchors[:, 0] + 0.5 * w
        cy = deltas[:, 1] * h + anchors[:, 1] + 0.5 * h
        pw, ph = deltas[:, 2].exp() * w, deltas[:, 3].exp() * h
        return torch.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph], -1)

    def nms(self, boxes: Tensor) -> Tensor:
        """py-faster-rcnn's greedy NMS, best first: a box goes when it overlaps a kept one by
        more than nms_threshold (sizes x2 - x1 + 1)."""
        area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
        removed = torch.zeros(len(boxes), dtype=torch.bool)
        keep = []
        for i in range(len(boxes)):
            if removed[i]:
                continue
            keep.append(i)
            if len(keep) == self.post_nms_topn:
                break
            lo = torch.maximum(boxes[i, :2], boxes[:, :2])
            hi = torch.minimum(boxes[i, 2:], boxes[:, 2:])
            inter = (hi - lo + 1).clamp(min=0).prod(1)
            removed |= inter / (area[i] + area - inter) > self.nms_threshold
        return torch.tensor(keep, dtype=torch.long)
''')
