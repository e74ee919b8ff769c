"""Dropout layers: identity shapes; what they do at test time matters when converting."""
from __future__ import annotations

from . import register
from .base import Emission, NotConvertible, SameShape, Schema, num


@register
class Dropout(SameShape):
    TYPES = ("Dropout", "SeLuDropout")
    SCHEMA = Schema(
        messages={
            "SeLuDropoutParameter": (
                ("optional", "float", "dropout_ratio", 1, "0.1", False),
                ("optional", "float", "alpha", 2, "-1.75809934", False),
            ),
        },
        fields={
            # py-faster-rcnn's Caffe: ``scale_train: false`` scales by (1 - ratio) at test time.
            # Bayesian SegNet: ``sample_weights_test`` keeps dropout on at test time (MC dropout).
            "DropoutParameter": (
                ("optional", "bool", "scale_train", 100, "true", False),
                ("optional", "bool", "sample_weights_test", 101, "false", False),
            ),
        },
        layer_fields=(
            ("SeLuDropoutParameter", "selu_dropout_param", 162),
        ),
    )
    OPENCV = frozenset({"Dropout"})

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.selu_dropout_param if proto.type == "SeLuDropout" else proto.dropout_param
        # DropoutLayer::LayerSetUp checks 0 < ratio < 1 with DCHECK only: release builds take
        # any ratio, and at test time pass the input through whatever it is.
        self.ratio = p.dropout_ratio
        # py-faster-rcnn's fork: without scaling at training time, test time scales by 1-ratio.
        self.scale_train = proto.dropout_param.scale_train if proto.type == "Dropout" else True
        # Bayesian SegNet: dropout stays on at test time (Monte Carlo sampling).
        self.sample_at_test = proto.dropout_param.sample_weights_test

    def describe(self):
        s = f"ratio {self.ratio:g}"
        if not self.scale_train:
            s += ", test output scaled by 1-ratio"
        if self.sample_at_test:
            s += ", sampled at test time"
        return s

    def emit(self, ctx):
        module = f"nn.Dropout(p={num(self.ratio)})"
        if self.type == "SeLuDropout":
            module = f"nn.AlphaDropout(p={num(self.ratio)})"
        if not 0.0 <= self.ratio <= 1.0:
            if self.sample_at_test:
                raise NotConvertible(
                    f"dropout sampled at test time with dropout_ratio {self.ratio:g} outside [0, 1]"
                )
            # PyTorch's dropout refuses such a ratio; at test time Caffe's is the identity.
            module = "nn.Identity()"
        if not self.scale_train:
            # Caffe's fork drops without rescaling while training and scales by 1 - ratio at
            # test time; PyTorch's dropout times (1 - ratio) is the same in both modes.
            keep = num(1 - float(self.ratio))
            return Emission(
                [f"{{m}}({{0}}) * {keep}"], module=module,
                comment=f"Caffe (scale_train: false) scales by 1 - ratio = {keep} at test time",
            )
        comment = ""
        if self.sample_at_test:
            comment = (
                "Caffe keeps this dropout on at test time (Monte Carlo sampling): "
                "call .train() on it to do the same"
            )
        return Emission(["{m}({0})"], module=module, comment=comment, alias=True)
