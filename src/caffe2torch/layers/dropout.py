"""Dropout layers: identity shapes; what they do at test time matters when converting."""
from __future__ import annotations

from . import register
from .base import LayerError, SameShape


@register
class Dropout(SameShape):
    TYPES = ("Dropout", "SeLuDropout")

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.selu_dropout_param if proto.type == "SeLuDropout" else proto.dropout_param
        self.ratio = p.dropout_ratio
        if not 0.0 <= self.ratio < 1.0:
            raise LayerError(f"dropout_ratio {self.ratio:g} must be in [0, 1)")
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
