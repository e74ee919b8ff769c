"""Mean images: Caffe's ``.binaryproto`` (a BlobProto, legacy 4-D dims or ``shape``) or a
``.npy``, read as (C, H, W) float32; written next to the weights as ``mean.pth``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..caffe.caffemodel import read_blobproto
from ..errors import WeightsError, npy_header, reading
from ..folder import load_state


def read_mean(path: str | Path) -> np.ndarray:
    """A mean image as (C, H, W) float32 (a leading batch axis of 1 is dropped; a (C,) or
    (C, 1, 1) mean stays per channel as (C, 1, 1))."""
    path = Path(path)
    if path.suffix == ".npy":
        shape, dtype = _npy_header(path)
        if dtype.hasobject or dtype.kind not in "fiu" or dtype.fields is not None:
            raise WeightsError(f"holds {dtype}, not numbers", file=path)
        n = math.prod(shape)
        if n >= 1 << 31 or len(shape) > 4:
            raise WeightsError(
                f"holds an array of {'x'.join(map(str, shape))}: not a mean image (C x H x W)",
                file=path,
            )
        with reading(path, WeightsError, "a mean file (.npy)"):
            try:
                raw = np.load(path, allow_pickle=False, mmap_mode="r")
            except (ValueError, EOFError, OverflowError):
                raise WeightsError("not a numeric .npy (its header or data is damaged)", file=path) from None
            raw = np.asarray(raw, np.float64)
    else:
        raw = np.asarray(read_blobproto(path).data, np.float64)
    if raw.size == 0:
        raise WeightsError(f"holds no values (shape {'x'.join(map(str, raw.shape))})", file=path)
    if not np.isfinite(raw).all() or np.abs(raw).max() > np.finfo(np.float32).max:
        raise WeightsError("holds values that are not finite float32 numbers (NaN, inf or beyond)", file=path)
    arr = raw.astype(np.float32)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1, 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise WeightsError(f"a mean of shape {arr.shape}: expected C x H x W", file=path)
    return np.ascontiguousarray(arr)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """An .npy file's shape and dtype from its header, before anything is allocated."""
    shape, dtype, offset, size = npy_header(path, WeightsError, "a mean file (.npy)")
    if size < offset + math.prod(shape) * dtype.itemsize:
        raise WeightsError("is truncated: its data is shorter than its header says", file=path)
    return shape, dtype


def save_mean(arr: np.ndarray, path: str | Path) -> None:
    """``{"mean": tensor}`` with torch.save: loads with ``torch.load(..., weights_only=True)``."""
    import torch

    torch.save({"mean": torch.from_numpy(np.ascontiguousarray(arr, np.float32))}, path)


def load_mean(path: str | Path) -> np.ndarray:
    state = load_state(Path(path))
    if "mean" not in state:
        raise WeightsError("holds no 'mean' tensor", file=path)
    return state["mean"].numpy()
