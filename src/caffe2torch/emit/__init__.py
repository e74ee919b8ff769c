"""Graph to PyTorch: ``model.py``, a plain state_dict and ``conversion.json``."""

from .conversion import Conversion, OutputError, convert, load_converted

__all__ = ["Conversion", "OutputError", "convert", "load_converted"]
