"""SSD's PriorBox and DetectionOutput (layers/detection.py), against a numpy copy of the SSD
fork's code written here and against OpenCV; tests/test_caffe_fork.py compares them with the
fork itself (weiliu89's, built by ``make caffe-ref-ssd``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cv2")
from layer_harness import check_numpy, net_text, one, opencv_outputs, run  # noqa: E402


# ----------------------------------------------------------------------------- PriorBox
def fork_priors(fh, fw, ih, iw, p):
    """PriorBoxLayer::Forward_cpu of the SSD fork, loop for loop (sizes read into ints), with
    OpenCV's TextBoxes fields: each box at each (offset_w, offset_h), box after box."""
    ars = [1.0]
    for ar in p.get("aspect_ratio", []):
        if all(abs(ar - x) >= 1e-6 for x in ars):
            ars.append(ar)
            if p.get("flip", True):
                ars.append(1 / ar)
    if "width" in p:
        boxes = list(zip(p["width"], p["height"]))
    else:
        boxes = []
        for s, lo in enumerate(p["min_size"]):
            lo = int(lo)
            boxes.append((lo, lo))
            if p.get("max_size"):
                side = math.sqrt(lo * int(p["max_size"][s]))
                boxes.append((side, side))
            boxes += [(lo * math.sqrt(ar), lo / math.sqrt(ar)) for ar in ars[1:]]
    offsets = list(zip(p["offset_w"], p["offset_h"])) if "offset_h" in p else [(p.get("offset", 0.5),) * 2]
    img_h, img_w = p.get("img", (ih, iw))
    step_h, step_w = p.get("step", (img_h / fh, img_w / fw))
    out = []
    for h in range(fh):
        for w in range(fw):
            for bw, bh in boxes:
                for ox, oy in offsets:
                    cx, cy = (w + ox) * step_w, (h + oy) * step_h
                    out += [(cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w, (cy + bh / 2) / img_h]
    out = np.array(out)
    if p.get("clip"):
        out = out.clip(0, 1)
    var = p.get("variance", [0.1])
    return np.stack([out, np.tile(var, len(out) // len(var))])[None]


def prior_text(p) -> str:
    fields = []
    for k, v in p.items():
        if k in ("img", "step"):
            fields += [f"{k}_h: {v[0]}", f"{k}_w: {v[1]}"]
        elif isinstance(v, list):
            fields += [f"{k}: {x}" for x in v]
        else:
            fields.append(f"{k}: {str(v).lower()}")
    return "prior_box_param { " + " ".join(fields) + " }"


PRIORS = {
    "ssd": {"min_size": [30.0], "max_size": [60.0], "aspect_ratio": [2.0, 3.0], "flip": True, "clip": False,
            "variance": [0.1, 0.1, 0.2, 0.2]},
    "clip_step_offset": {"min_size": [60.0], "aspect_ratio": [2.0], "flip": False, "clip": True,
                         "step": (8.0, 8.0), "offset": 0.25},
    "fractional_sizes": {"min_size": [35.84], "max_size": [76.8], "clip": False},  # the fork: 35 and 76
    "several_min_sizes": {"min_size": [16.0, 32.0, 64.0], "clip": False, "variance": [0.1]},  # FaceBoxes
    "image_size": {"min_size": [20.0], "max_size": [40.0], "img": (100, 80), "clip": False, "variance": [0.2]},
    "textboxes": {"min_size": [30.0], "max_size": [60.0], "aspect_ratio": [2.0, 5.0], "flip": False,
                  "clip": False, "variance": [0.1, 0.1, 0.2, 0.2], "offset_h": [0.5, 1.0], "offset_w": [0.5, 0.5]},
    "explicit_sizes": {"width": [12.0, 30.0], "height": [20.0, 9.0], "clip": False, "variance": [0.1, 0.1, 0.2, 0.2]},
}
OPENCV_AGREES = {"ssd", "several_min_sizes", "textboxes", "explicit_sizes"}


def _prior_net(p):
    return one("PriorBox", prior_text(p), bottoms=("feat", "data"))


@pytest.mark.formula("PriorBox")
@pytest.mark.opencv("PriorBox")
@pytest.mark.parametrize("name", PRIORS)
def test_priorbox(tmp_path, name):
    p = PRIORS[name]
    inputs = {"feat": (1, 4, 5, 7), "data": (1, 3, 40, 56)}
    r = check_numpy(tmp_path, inputs, _prior_net(p), lambda i, b: [fork_priors(5, 7, 40, 56, p)])
    node = r.conversion.graph.layers[-1]
    assert bool(node.op.opencv_gap(node)) == (name not in OPENCV_AGREES), node.op.opencv_gap(node)
    if name in OPENCV_AGREES:
        ref = opencv_outputs(run(tmp_path / "cv", inputs, _prior_net(p)))[0]
        np.testing.assert_allclose(r.ours[0], ref.reshape(r.ours[0].shape), atol=1e-5)


def test_priorbox_follows_the_input_size(tmp_path):
    # Computed from the sizes in forward: the same model at another input size gives the
    # fork's priors for that size.
    import torch

    p = PRIORS["ssd"]
    r = run(tmp_path, {"feat": (1, 4, 5, 7), "data": (1, 3, 40, 56)}, _prior_net(p))
    y = r.conversion.module()(torch.zeros(1, 4, 3, 4), torch.zeros(1, 3, 24, 32))
    np.testing.assert_allclose(y.numpy(), fork_priors(3, 4, 24, 32, p), atol=1e-6)


@pytest.mark.parametrize(
    "param,message",
    [
        ("min_size: 10 offset_h: 0.5", "offset_h values for 0 offset_w"),
        ("min_size: 10 offset: 0.5 offset_h: 0.5 offset_w: 0.5", "either offset or offset_h"),
        ("width: 10 height: 10 min_size: 5", "take no min_size"),
        ("width: 10", "1 width values for 0 height"),
    ],
)
def test_priorbox_refuses(tmp_path, param, message):
    from caffe2torch.errors import CaffeError

    with pytest.raises(CaffeError, match=message):
        run(tmp_path, {"feat": (1, 4, 5, 7), "data": (1, 3, 40, 56)}, _prior_net_text(param))


def _prior_net_text(param):
    return one("PriorBox", f"prior_box_param {{ {param} }}", bottoms=("feat", "data"))


# ---------------------------------------------------------------------- DetectionOutput
def detection_inputs(num=2, priors=60, classes=4, seed=0, share=True):
    """Meaningful heads: priors inside the image, small offsets, softmax scores."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.1, 0.9, (priors, 2))
    s = rng.uniform(0.05, 0.3, (priors, 2))
    boxes = np.concatenate([c - s / 2, c + s / 2], 1).reshape(-1)
    prior = np.stack([boxes, np.tile([0.1, 0.1, 0.2, 0.2], priors)])[None].astype(np.float32)
    loc = rng.normal(0, 0.5, (num, priors * (1 if share else classes) * 4)).astype(np.float32)
    logits = rng.normal(0, 1.5, (num, priors, classes))
    conf = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).reshape(num, -1).astype(np.float32)
    return {"loc": loc, "conf": conf, "prior": prior}


def caffe_detections(x, p):
    """weiliu89's DetectionOutputLayer::Forward_cpu in numpy (float64): decode, per class
    score threshold, top_k, greedy NMS with eta, keep_top_k over all classes."""
    num, classes = x["loc"].shape[0], p["num_classes"]
    share = p.get("share_location", True)
    prior = x["prior"].reshape(2, -1, 4).astype(np.float64)
    pb, pv = prior[0], prior[1]
    n = len(pb)
    loc = x["loc"].reshape(num, n, -1, 4).astype(np.float64)
    conf = x["conf"].reshape(num, n, classes).astype(np.float64)
    code = p.get("code_type", "CORNER")
    thr, top_k, eta = p.get("confidence_threshold", -np.inf), p.get("top_k", -1), p.get("eta", 1.0)
    rows = []
    for i in range(num):
        d = loc[i] if p.get("variance_encoded_in_target") else loc[i] * pv[:, None]
        pw, ph = (pb[:, 2] - pb[:, 0])[:, None], (pb[:, 3] - pb[:, 1])[:, None]
        if code == "CORNER":
            boxes = pb[:, None] + d
        elif code == "CORNER_SIZE":
            boxes = pb[:, None] + d * np.stack([pw, ph, pw, ph], -1)
        else:
            cx = d[..., 0] * pw + ((pb[:, 0] + pb[:, 2]) / 2)[:, None]
            cy = d[..., 1] * ph + ((pb[:, 1] + pb[:, 3]) / 2)[:, None]
            w, h = np.exp(d[..., 2]) * pw, np.exp(d[..., 3]) * ph
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        found = []
        for c in range(classes):
            if c == p.get("background_label_id", 0):
                continue
            b, s = boxes[:, 0 if share else c], conf[i, :, c]
            order = [j for j in np.argsort(-s, kind="stable") if s[j] > thr]
            order = order[:top_k] if top_k > -1 else order
            kept, t = [], p.get("nms_threshold", 0.3)
            for j in order:
                if all(_iou(b[j], b[k]) <= t for k in kept):
                    kept.append(j)
                    if eta < 1 and t > 0.5:
                        t *= eta
            found += [(c, s[j], *b[j]) for j in kept]
        k = p.get("keep_top_k", -1)
        if -1 < k < len(found):
            found = sorted(found, key=lambda f: -f[1])[:k]
        rows += [(i, *f) for f in found]
    return np.array(rows).reshape(1, 1, -1, 7) if rows else None


def _iou(a, b):
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    size = [max(0, x[2] - x[0]) * max(0, x[3] - x[1]) if x[2] >= x[0] and x[3] >= x[1] else 0 for x in (a, b)]
    return iw * ih / (size[0] + size[1] - iw * ih)


DETECTIONS = {
    "center_size": {"num_classes": 4, "code_type": "CENTER_SIZE", "nms_threshold": 0.45, "top_k": 20,
                    "confidence_threshold": 0.05, "keep_top_k": 25},
    "corner": {"num_classes": 4, "code_type": "CORNER", "nms_threshold": 0.3, "confidence_threshold": 0.1},
    "corner_size_eta": {"num_classes": 4, "code_type": "CORNER_SIZE", "nms_threshold": 0.9, "eta": 0.8,
                        "confidence_threshold": 0.05},
    "per_class_boxes": {"num_classes": 4, "share_location": False, "code_type": "CENTER_SIZE",
                        "background_label_id": 2, "nms_threshold": 0.5,
                        "keep_top_k": 10, "confidence_threshold": 0.01},
}


def detection_text(p) -> str:
    nms = {k: p[k] for k in ("nms_threshold", "top_k", "eta") if k in p}
    rest = {k: v for k, v in p.items() if k not in nms}
    fields = " ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in rest.items())
    fields += " nms_param { " + " ".join(f"{k}: {v}" for k, v in nms.items()) + " }"
    return one("DetectionOutput", f"detection_output_param {{ {fields} }}", bottoms=("loc", "conf", "prior"))


def _shapes(x):
    return {k: v.shape for k, v in x.items()}


@pytest.mark.formula("DetectionOutput")
@pytest.mark.opencv("DetectionOutput")
@pytest.mark.parametrize("name", DETECTIONS)
def test_detection_output(tmp_path, name):
    p = DETECTIONS[name]
    x = detection_inputs(share=p.get("share_location", True))
    r = run(tmp_path, _shapes(x), detection_text(p), data=x)
    node = r.conversion.graph.layers[-1]
    want = caffe_detections(x, p)
    assert want is not None and want.shape[2] > 5  # something to compare
    form = node.op.compare_form
    np.testing.assert_allclose(form(0, r.ours[0]), form(0, want), atol=1e-5)
    if not node.op.opencv_gap(node):
        theirs = opencv_outputs(r)[0]
        np.testing.assert_allclose(form(0, r.ours[0]), form(0, theirs), atol=1e-5)


def test_detection_output_without_detections(tmp_path):
    # Caffe's "no detections": one row of -1 per image, after the image's index.
    x = detection_inputs(num=3)
    r = run(tmp_path, _shapes(x), detection_text({"num_classes": 4, "confidence_threshold": 0.99}), data=x)
    want = np.full((1, 1, 3, 7), -1.0)
    want[0, 0, :, 0] = [0, 1, 2]
    np.testing.assert_array_equal(r.ours[0], want)


def test_detection_output_compares_ties_at_keep_top_k_by_score(tmp_path):
    # Which of the rows tied at the last kept score Caffe keeps is not defined (std::sort):
    # those rows are compared by image and score only, the others fully.
    from caffe2torch.api import load_graph

    path = tmp_path / "n.prototxt"
    x = detection_inputs()
    path.write_text(net_text(_shapes(x), detection_text({"num_classes": 4, "keep_top_k": 3})))
    op = load_graph(path).layers[-1].op
    a = np.array([[0, 1, 0.9, 0, 0, 1, 1], [0, 2, 0.5, 0.1, 0.1, 0.2, 0.2], [0, 3, 0.5, 0.3, 0.3, 0.4, 0.4]])
    b = a.copy()
    b[2] = [0, 1, 0.5, 0.7, 0.7, 0.8, 0.8]  # another of the rows tied at 0.5
    np.testing.assert_array_equal(op.compare_form(0, a), op.compare_form(0, b))
    b[0, 3] = 0.01  # a row above the tie differs: seen
    assert not np.array_equal(op.compare_form(0, a), op.compare_form(0, b))


def test_detection_output_with_encoded_variance(tmp_path):
    # Faster R-CNN's form in OpenCV: priors without variances (1 channel), encoded in the deltas.
    p = {"num_classes": 4, "code_type": "CENTER_SIZE", "variance_encoded_in_target": True,
         "share_location": False, "nms_threshold": 0.4, "keep_top_k": 12}
    x = detection_inputs(share=False)
    x["prior"] = x["prior"][:, :1]
    r = run(tmp_path, _shapes(x), detection_text(p), data=x)
    form = r.conversion.graph.layers[-1].op.compare_form
    np.testing.assert_allclose(form(0, r.ours[0]), form(0, caffe_detections(dict(x, prior=np.concatenate([x["prior"]] * 2, 1)), p)), atol=1e-5)
