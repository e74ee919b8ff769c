"""Caffe ``Python`` layers: their code lives in a user's module, which caffe2torch never
imports or runs. A Python layer without bottoms is a data layer (its shapes must be given with
``--input-shape``); any other Python layer is reported as unsupported."""
from __future__ import annotations

from ..errors import UnsupportedLayerError
from . import register
from .data import Source


@register
class Python(Source):
    TYPES = ("Python",)
    TOPS = (1, None)

    def __init__(self, proto):
        super().__init__(proto)
        p = proto.python_param
        self.module, self.layer = p.module, p.layer
        if self.n_bottoms:
            raise UnsupportedLayerError(
                f"is a Python layer ({self.qualname()}): its code is not imported or run, so "
                "it cannot be converted; replace it with a native layer"
            )

    def qualname(self) -> str:
        return f"{self.module or '?'}.{self.layer or '?'}"

    def describe(self):
        return f"Python {self.qualname()} (not imported)"

    def source_shapes(self):
        return [(None, f"from Python layer {self.qualname()}")] * self.n_tops
