"""Caffe ``Python`` layers: their code lives in a user's module, which caffe2torch never
imports or runs. A Python layer without bottoms is a data layer (its shapes must be given with
``--input-shape``). A Python layer whose ``module.layer`` a family reimplements
(``register_python``: py-faster-rcnn's proposal layer in rcnn.py, or a ``--plugin``'s) is
converted by that family; any other is reported as unsupported."""
from __future__ import annotations

from ..errors import UnsupportedLayerError
from . import python_layers, register
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
                f"is a Python layer ({self.qualname()}): its code is not imported or run, and "
                f"caffe2torch converts only {', '.join(python_layers())} natively; replace it "
                "with a native layer, or convert it with --plugin"
            )

    def qualname(self) -> str:
        return f"{self.module or '?'}.{self.layer or '?'}"

    def describe(self):
        return f"Python {self.qualname()} (not imported)"

    def source_shapes(self):
        return [(None, f"from Python layer {self.qualname()}")] * self.n_tops
