"""Small nets and weight files written by the tests themselves (no copies of ../shared)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus"

# The same small net in the three prototxt generations. Shapes:
# data 2x3x17x17 -> conv1 (k3 s2 p1) 2x4x9x9 -> relu in place -> pool1 (max k3 s2, ceil)
# 2x4x4x4 -> fc 2x5 -> prob 2x5.
TINY_V2 = """
name: "tiny"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 17
input_dim: 17
layer {
  name: "conv1"  type: "Convolution"  bottom: "data"  top: "conv1"
  param { lr_mult: 1 decay_mult: 1 }
  param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 }
}
layer {
  name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
  inner_product_param { num_output: 5 }
}
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

TINY_V1 = """
name: "tiny"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 17
input_dim: 17
layers {
  name: "conv1"  type: CONVOLUTION  bottom: "data"  top: "conv1"
  blobs_lr: 1  blobs_lr: 2
  weight_decay: 1  weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 }
}
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers {
  name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 }
}
layers {
  name: "fc" type: INNER_PRODUCT bottom: "pool1" top: "fc"
  inner_product_param { num_output: 5 }
}
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
"""

TINY_V0 = """
name: "tiny"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 17
input_dim: 17
layers {
  layer {
    name: "pad1"
    type: "padding"
    pad: 1
  }
  bottom: "data"
  top: "data_padded"
}
layers {
  layer {
    name: "conv1"
    type: "conv"
    num_output: 4
    kernelsize: 3
    stride: 2
    blobs_lr: 1.
    blobs_lr: 2.
    weight_decay: 1.
    weight_decay: 0.
  }
  bottom: "data_padded"
  top: "conv1"
}
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers {
  layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 }
  bottom: "conv1"
  top: "pool1"
}
layers { layer { name: "fc" type: "innerproduct" num_output: 5 } bottom: "pool1" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
"""

TINY_SHAPES = {
    "conv1": (2, 4, 9, 9),
    "pool1": (2, 4, 4, 4),
    "fc": (2, 5),
    "prob": (2, 5),
}
TINY_WEIGHTS = {"conv1": [(4, 3, 3, 3), (4,)], "fc": [(5, 64), (5,)]}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- wire format
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return key(number, 2) + varint(len(payload)) + payload


def blob_bytes(
    array: np.ndarray,
    *,
    legacy: bool = False,
    double: bool = False,
    packed: bool = True,
) -> bytes:
    """A BlobProto: shape (or legacy num/channels/height/width), data or double_data."""
    out = b""
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        for number, d in zip((1, 2, 3, 4), dims):
            out += key(number, 0) + varint(d)
    else:
        out += ld(7, ld(1, b"".join(varint(d) for d in array.shape)))
    if double:
        values = np.asarray(array, "<f8").ravel()
        field, wire, fmt = 8, 1, "<d"
    else:
        values = np.asarray(array, "<f4").ravel()
        field, wire, fmt = 5, 5, "<f"
    if packed:
        out += ld(field, values.tobytes())
    else:
        out += b"".join(key(field, wire) + struct.pack(fmt, v) for v in values.tolist())
    return out


def v2_layer(name: str, type_: str, blobs: list[bytes]) -> bytes:
    body = ld(1, name.encode()) + ld(2, type_.encode()) + b"".join(ld(7, b) for b in blobs)
    return ld(100, body)


def v1_layer(name: str, type_enum: int, blobs: list[bytes]) -> bytes:
    body = ld(4, name.encode()) + key(5, 0) + varint(type_enum) + b"".join(ld(6, b) for b in blobs)
    return ld(2, body)


def v0_layer(name: str, type_: str, blobs: list[bytes]) -> bytes:
    inner = ld(1, name.encode()) + ld(2, type_.encode()) + b"".join(ld(50, b) for b in blobs)
    return ld(2, ld(1, inner))


def tiny_arrays(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        name: [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for name, shapes in TINY_WEIGHTS.items()
    }
