"""Mean images: Caffe's ``.binaryproto`` (a BlobProto, legacy 4-D dims or ``shape``) or a
``.npy``, read as (C, H, W) float32; written next to the weights as ``mean.pth``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..caffe.caffemodel import read_blobproto
from ..errors import WeightsError, reading


def read_mean(path: str | Path) -> np.ndarray:
    """A mean image as (C, H, W) float32 (a leading batch axis of 1 is dropped; a (C,) or
    (C, 1, 1) mean stays per channel as (C, 1, 1))."""
    path = Path(path)
    if path.suffix == ".npy":
        with reading(path, WeightsError, "a mean file (.npy)"):
            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise WeightsError(f"not a numeric .npy: {e}", file=path) from None
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiu":
            raise WeightsError(f"holds {arr.dtype}, not numbers", file=path)
    else:
        arr = read_blobproto(path).data
    arr = np.asarray(arr, np.float32)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1, 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise WeightsError(f"a mean of shape {arr.shape}: expected C x H x W", file=path)
    return np.ascontiguousarray(arr)


def save_mean(arr: np.ndarray, path: str | Path) -> None:
    """``{"mean": tensor}`` with torch.save: loads with ``torch.load(..., weights_only=True)``."""
    import torch

    torch.save({"mean": torch.from_numpy(np.ascontiguousarray(arr, np.float32))}, path)


def load_mean(path: str | Path) -> np.ndarray:
    import torch

    with reading(Path(path), WeightsError, "a mean (mean.pth)"):
        return torch.load(path, weights_only=True)["mean"].numpy()
