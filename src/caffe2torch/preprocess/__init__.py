"""Inputs done right: what an image goes through to become the net's input blob
(``preprocess.json`` + a torch-only ``preprocess.py`` in every converted folder), mean files,
and folding the channel order or the normalization into the first layers."""
from .fold import fold
from .meanfile import load_mean, read_mean, save_mean
from .spec import MEAN_FILE, Options, Preprocess, PreprocessError, derive, input_lines
from .template import PREPROCESS_PY

__all__ = [
    "MEAN_FILE", "Options", "PREPROCESS_PY", "Preprocess", "PreprocessError", "derive", "fold", "input_lines",
    "load_mean", "read_mean", "save_mean",
]
