"""Graph to PyTorch: ``model.py``, a plain state_dict and ``conversion.json``."""

from .conversion import Conversion, ConvertOptions, OutputError, convert, load_converted

__all__ = ["Conversion", "ConvertOptions", "OutputError", "convert", "load_converted"]
