"""caffe2torch: convert Caffe models (prototxt + caffemodel) to clean, verified PyTorch.

    import caffe2torch
    model = caffe2torch.load("googlenet")   # a folder written by `caffe2torch convert`

``load`` imports the folder's ``model.py`` under a module name of its own, so several converted
folders load into one process, and its weights with ``weights_only=True``.
"""

__version__ = "0.1.0"

from .folder import load_converted  # noqa: E402 - after __version__, which modules import


def load(folder):
    """The model of a converted folder, weights loaded (``weights_only``), in eval mode. Any
    problem with the folder's files raises :class:`caffe2torch.errors.CaffeError` with one
    line naming the file."""
    return load_converted(folder)


__all__ = ["__version__", "load"]
