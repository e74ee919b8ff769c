"""caffe2torch: convert Caffe models (prototxt + caffemodel) to clean, verified PyTorch.

    import caffe2torch

    result = caffe2torch.convert("deploy.prototxt", "bvlc_googlenet.caffemodel", "googlenet")
    result.verification.passed                      # every layer compared with real Caffe
    model = caffe2torch.load("googlenet")           # an nn.Module, weights_only, eval mode
    caffe2torch.verify("googlenet", net="deploy.prototxt", weights="bvlc_googlenet.caffemodel")
    caffe2torch.inspect("deploy.prototxt")["layers"]

``load`` imports the folder's ``model.py`` under a module name of its own, so several converted
folders load into one process. Every function raises :class:`caffe2torch.CaffeError` (one
line naming the file, the layer or the field) on bad input and never prints; the command line
(``caffe2torch convert``, ``verify``, ``inspect``) is a thin layer over these.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from . import verify  # noqa: E402 - callable: caffe2torch.verify(folder, ...)
from .api import inspect, load  # noqa: E402
from .errors import CaffeError  # noqa: E402

if TYPE_CHECKING:
    from .public import convert

__all__ = ["__version__", "convert", "verify", "inspect", "load", "CaffeError"]


def __getattr__(name: str):
    """``convert`` imports torch: loaded on first use, so that ``import caffe2torch`` (and
    the commands that need no torch) stay fast."""
    if name == "convert":
        from . import public

        return public.convert
    raise AttributeError(f"module 'caffe2torch' has no attribute '{name}'")
