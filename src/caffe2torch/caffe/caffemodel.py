"""Reading and writing trained weights: binary ``.caffemodel`` and HDF5 ``.caffemodel.h5``.

The binary reader walks protobuf's wire format itself instead of building message objects:
only the layer names, types and blobs are needed, and the blob values must end as numpy
arrays without a detour through Python lists (parsing a VGG16 file into messages and
converting ``blob.data`` costs minutes and gigabytes). The whole file is read once into
memory and every packed blob becomes a zero-copy, read-only numpy view of it, so reading
costs about the file's size in memory and the time it takes to read the file.

Field numbers (see ``_tables.py``):
  NetParameter: name 1, layers 2 (V1/V0), layer 100 (V2)
  LayerParameter (V2): name 1, type 2, bottom 3, top 4, blobs 7
  V1LayerParameter: layer 1 (V0), bottom 2, top 3, name 4, type 5 (enum), blobs 6
  V0LayerParameter: name 1, type 2, blobs 50
  BlobProto: num 1, channels 2, height 3, width 4, data 5, shape 7, double_data 8
  BlobShape: dim 1
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import PROTO_BINARY_LIMIT, WeightsError, check_file, reading, size_text
from ..extras import require
from ..folder import atomic_file

# Caffe's blobs: at most 32 axes (kMaxBlobAxes), each and the count at most INT_MAX.
MAX_AXES = 32
INT_MAX = (1 << 31) - 1

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# Wire types
VARINT, I64, LEN, I32 = 0, 1, 2, 5


@dataclass
class Blob:
    """One learnable blob as stored: its shape exactly as the file gives it."""

    data: np.ndarray  # shaped, float32 or float64; read-only view into the file where possible
    legacy: bool = False  # shape came from the legacy num/channels/height/width fields

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass
class LayerWeights:
    name: str
    type: str | None  # None in HDF5 files, which do not store types
    blobs: list[Blob] = field(default_factory=list)
    version: str = ""  # the message it was read from: "V2", "V1", "V0" or "HDF5"


@dataclass
class Weights:
    path: Path
    format: str  # "V2", "V1", "V0" or "HDF5"
    layers: dict[str, LayerWeights]
    net_name: str | None = None
    notes: list[str] = field(default_factory=list)
    raw: bytes | None = None  # the whole binary file, which the blobs are views of

    @property
    def total_values(self) -> int:
        return sum(b.data.size for lw in self.layers.values() for b in lw.blobs)


class _Corrupt(Exception):
    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


# ------------------------------------------------------------------------------ wire reader
def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("ends inside a number", pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Corrupt("malformed number", pos)


def _next_field(buf: bytes, pos: int, end: int):
    """Read one field at ``pos``: ``(number, wire_type, value, next_pos)``.

    For LEN fields ``value`` is ``(offset, length)``; for I32/I64 it is the offset of the
    value; for VARINT the integer.
    """
    key, p = _varint(buf, pos, end)
    number, wtype = key >> 3, key & 7
    if number == 0:
        raise _Corrupt("field number 0", pos)
    if wtype == VARINT:
        value, p = _varint(buf, p, end)
    elif wtype == LEN:
        length, p = _varint(buf, p, end)
        if p + length > end:
            raise _Corrupt("a field runs past the end of its message", pos)
        value = (p, length)
        p += length
    elif wtype in (I32, I64):
        size = 4 if wtype == I32 else 8
        if p + size > end:
            raise _Corrupt("ends inside a value", pos)
        value = p
        p += size
    else:
        raise _Corrupt(f"invalid wire type {wtype}", pos)
    return number, wtype, value, p


def _fields(buf: bytes, pos: int, end: int):
    """Yield ``(field_number, wire_type, value)`` for the message in ``buf[pos:end]``."""
    while pos < end:
        number, wtype, value, pos = _next_field(buf, pos, end)
        yield number, wtype, value


def _string(buf: bytes, value) -> str:
    off, length = value
    try:
        return bytes(buf[off : off + length]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt("a name is not UTF-8", off) from None


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _unpacked_run(buf, first: int, end: int, dtype: np.dtype, tag: int) -> tuple[np.ndarray, int]:
    """Values of a non-packed repeated float/double field, starting at the first value.

    Non-packed entries are ``value tag value tag ...`` after the first tag; a run of them is
    read in one numpy pass over a strided view. Returns the values and the position after the
    run (where the next, different field starts).
    """
    size = dtype.itemsize
    stride = size + 1  # the tag of these fields is one byte
    n = 1
    max_more = (end - first - size) // stride
    if max_more > 0:
        tags = np.frombuffer(buf, np.uint8, count=max_more * stride, offset=first + size)[::stride]
        bad = np.flatnonzero(tags != tag)
        n += int(bad[0]) if bad.size else max_more
    # Entry k (k < n) has its value at first + k*stride.
    rec = np.dtype([("v", dtype), ("t", np.uint8)])
    values = np.empty(n, dtype)
    if n > 1:
        values[: n - 1] = np.frombuffer(buf, rec, count=n - 1, offset=first)["v"]
    values[n - 1] = np.frombuffer(buf, dtype, count=1, offset=first + (n - 1) * stride)[0]
    return values, first + (n - 1) * stride + size


def _dims(buf, value) -> list[int]:
    dims: list[int] = []
    s_off, s_len = value
    for number, wtype, v in _fields(buf, s_off, s_off + s_len):
        if number != 1:
            continue
        if wtype == LEN:
            p, e = v[0], v[0] + v[1]
            while p < e:
                d, p = _varint(buf, p, e)
                dims.append(_signed64(d))
        elif wtype == VARINT:
            dims.append(_signed64(v))
    return dims


_F32, _F64 = np.dtype("<f4"), np.dtype("<f8")


def _parse_blob(buf, off: int, end: int) -> Blob:
    dims: list[int] | None = None
    legacy: dict[int, int] = {}
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    pos = off
    while pos < end:
        number, wtype, value, nxt = _next_field(buf, pos, end)
        if number == 7 and wtype == LEN:
            dims = _dims(buf, value)
        elif number in (1, 2, 3, 4) and wtype == VARINT:
            legacy[number] = _signed64(value)
        elif number in (5, 8):
            dtype, out = (_F32, floats) if number == 5 else (_F64, doubles)
            if wtype == LEN:
                p, n = value
                if n % dtype.itemsize:
                    raise _Corrupt(f"packed values of {n} bytes are not whole numbers", p)
                out.append(np.frombuffer(buf, dtype, count=n // dtype.itemsize, offset=p))
            elif wtype == (I32 if number == 5 else I64):
                arr, nxt = _unpacked_run(buf, value, end, dtype, (number << 3) | wtype)
                out.append(arr)
        pos = nxt
    return _finish_blob(dims, legacy, floats, doubles, off)


def _finish_blob(dims, legacy, floats, doubles, off) -> Blob:
    if dims is not None:
        shape, is_legacy = tuple(dims), False
    elif legacy:
        shape = tuple(legacy.get(i, 0) for i in (1, 2, 3, 4))
        is_legacy = True
    else:
        # Caffe writes no shape field for a 0-axis blob (SSD's shared Normalize scale): a scalar.
        shape, is_legacy = (), False
    if any(d < 0 for d in shape):
        raise _Corrupt(f"negative dimension in blob shape {_fmt(shape)}", off)
    if len(shape) > MAX_AXES:
        raise _Corrupt(f"a blob shape of {len(shape)} axes (Caffe allows {MAX_AXES})", off)
    if any(d > INT_MAX for d in shape):
        raise _Corrupt(
            f"blob shape {_fmt(shape)} has a dimension over Caffe's limit of 2^31 - 1", off
        )
    if math.prod(shape) > INT_MAX:
        raise _Corrupt(f"blob shape {_fmt(shape)} holds over 2^31 - 1 values (Caffe's limit)", off)
    values = doubles if doubles else floats
    if not values:
        data = np.empty(0, np.float32)
    elif len(values) == 1:
        data = values[0]
    else:
        data = np.concatenate(values)
    count = math.prod(shape)
    if count != data.size:
        kind = "double_data" if doubles else "data"
        raise _Corrupt(
            f"a blob of shape {_fmt(shape)} needs {count} values but its {kind} holds {data.size}",
            off,
        )
    return Blob(data.reshape(shape), legacy=is_legacy)


def _fmt(shape) -> str:
    if not shape:
        return "scalar"
    text = "x".join(str(d) for d in shape)
    return text if len(text) <= 80 else text[:60] + f"...({len(shape)} axes)"


def _parse_layer(buf, off: int, end: int, version: str) -> LayerWeights:
    name_f, type_f, blobs_f = {"V2": (1, 2, 7), "V1": (4, 5, 6), "V0": (1, 2, 50)}[version]
    name: str | None = None
    typ: str | None = None
    blob_spans: list[tuple[int, int]] = []
    v0_span = None
    for number, wtype, value in _fields(buf, off, end):
        if number == name_f and wtype == LEN:
            name = _string(buf, value)
        elif number == type_f:
            if wtype == LEN:
                typ = _string(buf, value)
            elif wtype == VARINT:
                typ = _v1_type_name(value)
        elif number == blobs_f and wtype == LEN:
            blob_spans.append(value)
        elif version == "V1" and number == 1 and wtype == LEN:
            v0_span = value
    if v0_span is not None and name is None and not blob_spans:
        return _parse_layer(buf, v0_span[0], v0_span[0] + v0_span[1], "V0")
    if version == "V0" and typ is not None:
        # (imported here: the binary reader needs protobuf only for V0/V1 type names)
        from .upgrade import V0_TYPES, V1_TYPES

        typ = V1_TYPES.get(V0_TYPES.get(typ, ""), typ)
    layer = LayerWeights(name=name or "", type=typ, version=version)
    for b_off, b_len in blob_spans:
        try:
            layer.blobs.append(_parse_blob(buf, b_off, b_off + b_len))
        except _Corrupt as e:
            e.args = (f"blob {len(layer.blobs)}: {e.args[0]}",)
            raise
    return layer


def _v1_type_name(value: int) -> str:
    # (imported here: the binary reader needs protobuf only for V0/V1 type names)
    from .schema import pb
    from .upgrade import V1_TYPES

    try:
        enum_name = pb.V1LayerParameter.LayerType.Name(value)
    except ValueError:
        return f"V1 type {value}"
    return V1_TYPES.get(enum_name, enum_name)


def parse_caffemodel_bytes(buf: bytes, path: Path) -> Weights:
    """Parse a binary NetParameter held in ``buf``; blobs are views into ``buf``."""
    end = len(buf)
    net_name = None
    spans: list[tuple[str, int, int]] = []
    layers: dict[str, LayerWeights] = {}
    notes: list[str] = []
    try:
        pos = 0
        while pos < end:
            start = pos
            try:
                number, wtype, value, pos = _next_field(buf, pos, end)
            except _Corrupt:
                _raise_if_truncated(buf, start, end)
                raise
            if number == 1 and wtype == LEN:
                net_name = _string(buf, value)
            elif number == 100 and wtype == LEN:
                spans.append(("V2", *value))
            elif number == 2 and wtype == LEN:
                spans.append(("V1", *value))
        if not spans:
            raise _Corrupt("no layers found: not a Caffe net", 0)
        if len({v for v, _, _ in spans}) > 1:
            raise _Corrupt("holds both V1 'layers' and V2 'layer' entries", 0)
        for version, off, length in spans:
            layer = _parse_layer_named(buf, off, off + length, version)
            prev = layers.get(layer.name)
            if prev is not None and prev.blobs and layer.blobs and not _same_blobs(prev, layer):
                notes.append(
                    f"layer '{layer.name}' appears twice with different weights; the last is used"
                )
            if prev is None or layer.blobs or not prev.blobs:
                layers[layer.name] = layer
    except _Truncated as e:
        raise WeightsError(e.args[0], file=path) from None
    except _Corrupt as e:
        raise WeightsError(
            f"corrupted caffemodel: {e.args[0]} (at byte {e.offset})", file=path
        ) from None
    fmt = spans[0][0]
    if fmt == "V1" and any(lw.version == "V0" for lw in layers.values()):
        fmt = "V0"
    return Weights(path=path, format=fmt, layers=layers, net_name=net_name, notes=notes)


def _raise_if_truncated(buf, start: int, end: int) -> None:
    """A top-level layer that runs past the end of the file: say which, and how much is missing."""
    try:
        key, p = _varint(buf, start, end)
        if key & 7 != LEN or (key >> 3) not in (2, 100):
            return
        length, p = _varint(buf, p, end)
    except _Corrupt:
        return
    if p + length <= end:
        return
    version = "V2" if key >> 3 == 100 else "V1"
    name = _peek_name(buf, p, end, version)
    which = f"layer '{name}'" if name else "a layer"
    raise _Truncated(
        f"the file is truncated: it ends inside {which}, {p + length - end:,} bytes short", start
    )


class _Truncated(_Corrupt):
    pass


def _same_blobs(a: LayerWeights, b: LayerWeights) -> bool:
    return len(a.blobs) == len(b.blobs) and all(
        x.shape == y.shape and np.array_equal(x.data, y.data) for x, y in zip(a.blobs, b.blobs)
    )


def _parse_layer_named(buf, off, end, version) -> LayerWeights:
    """Parse a layer, putting its name into any corruption error found in it."""
    try:
        return _parse_layer(buf, off, end, version)
    except _Corrupt as e:
        name = _peek_name(buf, off, end, version)
        if name:
            e.args = (f"layer '{name}', {e.args[0]}",)
        raise


def _peek_name(buf, off, end, version) -> str | None:
    name_f = {"V2": 1, "V1": 4, "V0": 1}[version]
    pos = off
    try:
        while pos < end:
            number, wtype, value, pos = _next_field(buf, pos, end)
            if number == name_f and wtype == LEN:
                return _string(buf, value)
            if version == "V1" and number == 1 and wtype == LEN:
                return _peek_name(buf, value[0], value[0] + value[1], "V0")
    except _Corrupt:
        return None
    return None


# ------------------------------------------------------------------------------------ HDF5
def read_hdf5(path: Path) -> Weights:
    """Caffe's HDF5 snapshot: group ``data``, one subgroup per layer, datasets ``0``, ``1``...

    Links are never followed (a soft link may loop, an external link reads another file), and
    every dataset's size is checked from its header before it is read (Caffe's blob limits)."""
    h5py = _h5py(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"cannot read as HDF5: {_h5_reason(e)}", file=path) from None
    layers: dict[str, LayerWeights] = {}
    total = 0
    try:
        with f:
            group = _h5_child(f, "data", path, "the 'data' group")
            if group is None or not isinstance(group, h5py.Group):
                raise WeightsError("HDF5 file without a 'data' group: not a Caffe snapshot", file=path)
            for name in group:
                sub = _h5_child(group, name, path, f"'data/{name}'")
                if not isinstance(sub, h5py.Group):
                    raise WeightsError(f"'data/{name}' is not a group of blobs", file=path)
                keys = sorted(sub.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
                if [k for k in keys] != [str(i) for i in range(len(keys))]:
                    raise WeightsError(
                        f"layer '{name}': blobs are named {keys[:8]}, expected 0, 1, ...", file=path
                    )
                blobs = []
                for k in keys:
                    ds = _h5_child(sub, k, path, f"'data/{name}/{k}'")
                    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f":
                        raise WeightsError(f"layer '{name}': blob {k} is not a float array", file=path)
                    shape = tuple(int(d) for d in (ds.shape or ()))
                    if len(shape) > MAX_AXES or any(d > INT_MAX for d in shape) or math.prod(shape) > INT_MAX:
                        raise WeightsError(
                            f"layer '{name}': blob {k} of shape {_fmt(shape)} is over Caffe's blob "
                            "limits (32 axes, 2^31 - 1 values)",
                            file=path,
                        )
                    total += math.prod(shape) * ds.dtype.itemsize
                    if total > HDF5_LIMIT:
                        raise WeightsError(
                            f"its blobs hold over {size_text(HDF5_LIMIT)}: not the weights of a net "
                            "caffe2torch can hold in memory",
                            file=path,
                        )
                    arr = ds[()]
                    if not isinstance(arr, np.ndarray):
                        arr = np.asarray(arr)
                    arr.flags.writeable = False
                    blobs.append(Blob(arr))
                layers[name] = LayerWeights(name=name, type=None, blobs=blobs, version="HDF5")
    except WeightsError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"cannot read as HDF5: {_h5_reason(e)}", file=path) from None
    return Weights(path=path, format="HDF5", layers=layers)


HDF5_LIMIT = 64 << 30


def _h5py(path: Path):
    return require("h5py", "hdf5", "reading HDF5 weights", error=WeightsError, file=path)


def _h5_child(group, name: str, path: Path, what: str):
    h5py = _h5py(path)
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if isinstance(link, h5py.SoftLink):
        raise WeightsError(f"{what} is a soft link, which caffe2torch does not follow", file=path)
    if isinstance(link, h5py.ExternalLink):
        raise WeightsError(
            f"{what} is a link to another file ({link.filename}), which caffe2torch does not follow",
            file=path,
        )
    return group.get(name)


def _h5_reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    text = text.split("(file read failed")[0].strip().rstrip(",")
    return text[:160]


# -------------------------------------------------------------------------------- dispatch
def read_caffemodel(path: str | Path) -> Weights:
    """Read a ``.caffemodel`` (binary, V2/V1/V0) or ``.caffemodel.h5`` weights file."""
    path = Path(path)
    st = check_file(path, WeightsError, "a weights file", limit=None)
    with reading(path, WeightsError, "a weights file"):
        # Unbuffered: readall() then reads the file once into a buffer of the right size (a
        # buffered file would join its 8 KiB read-ahead with the rest: twice the memory).
        with open(path, "rb", buffering=0) as f:
            head = f.read(8)
            if head == HDF5_SIGNATURE:
                return read_hdf5(path)
            if st.st_size > PROTO_BINARY_LIMIT:
                raise WeightsError(
                    f"is {size_text(st.st_size)}: Caffe reads binary caffemodels of at most 2 GiB "
                    "(protobuf's limit, kProtoReadBytesLimit), so no Caffe could load it",
                    file=path,
                )
            f.seek(0)
            buf = f.readall()
    if not buf:
        raise WeightsError("empty file", file=path)
    if _looks_like_text(buf):
        raise WeightsError(
            "this is a text file (a prototxt?), expected binary weights (.caffemodel)", file=path
        )
    weights = parse_caffemodel_bytes(buf, path)
    weights.raw = buf
    return weights


def _looks_like_text(buf: bytes) -> bool:
    head = buf[:512]
    if b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


# ---------------------------------------------------------------------------------- writer
def _key(number: int, wtype: int) -> bytes:
    return _encode_varint((number << 3) | wtype)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, LEN) + _encode_varint(len(payload)) + payload


def _blob_header(shape: Sequence[int], n_bytes: int) -> bytes:
    """A BlobProto's shape and the head of its packed data. A 0-axis blob gets no shape field
    at all, as Caffe's Blob::ToProto writes it (OpenCV refuses an empty ``shape {}``)."""
    dims = b"".join(_encode_varint(int(d)) for d in shape)
    shape_msg = _len_field(1, dims) if shape else b""
    return (_len_field(7, shape_msg) if shape else b"") + _key(5, LEN) + _encode_varint(n_bytes)


@dataclass
class LayerRecord:
    """A layer to write: name, type, connections and its blobs (any float arrays)."""

    name: str
    type: str
    bottom: Sequence[str] = ()
    top: Sequence[str] = ()
    blobs: Sequence[np.ndarray] = ()


def write_caffemodel(path: str | Path, layers: Iterable[LayerRecord], net_name: str = "") -> None:
    """Write a V2 binary caffemodel (float32 packed data, ``shape`` dims), atomically.

    Blobs are streamed to disk one at a time, so writing needs no more memory than the
    largest blob.
    """
    path = Path(path)
    with atomic_file(path) as f:
        if net_name:
            f.write(_len_field(1, net_name.encode("utf-8")))
        for layer in layers:
            head = _len_field(1, layer.name.encode()) + _len_field(2, layer.type.encode())
            for b in layer.bottom:
                head += _len_field(3, b.encode())
            for t in layer.top:
                head += _len_field(4, t.encode())
            # (np.require keeps a 0-axis blob 0-axis; ascontiguousarray would make it 1-D)
            arrays = [np.require(np.asarray(a, dtype="<f4"), requirements="C") for a in layer.blobs]
            blob_heads = [_blob_header(a.shape, a.nbytes) for a in arrays]
            blob_lens = [len(h) + a.nbytes for h, a in zip(blob_heads, arrays)]
            body_len = len(head) + sum(
                len(_key(7, LEN)) + len(_encode_varint(n)) + n for n in blob_lens
            )
            f.write(_key(100, LEN) + _encode_varint(body_len) + head)
            for h, a, n in zip(blob_heads, arrays, blob_lens):
                f.write(_key(7, LEN) + _encode_varint(n) + h)
                f.write(memoryview(a).cast("B"))


@contextlib.contextmanager
def binary_caffemodel(path: str | Path) -> Iterator[Path]:
    """``path`` as a binary caffemodel, for readers that take no HDF5 (OpenCV, MMdnn): a binary
    file is itself; an HDF5 snapshot is written as one, same blobs, in a temporary folder."""
    path = Path(path)
    if not path.name.endswith(".h5"):
        yield path
        return
    stored = read_caffemodel(path).layers
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "weights.caffemodel"
        write_caffemodel(
            out,
            (
                LayerRecord(n, lw.type or "", [], [], [b.data for b in lw.blobs])
                for n, lw in stored.items()
            ),
        )
        yield out


# ------------------------------------------------------------------ BlobProto files (means)
def read_blobproto(path: str | Path) -> Blob:
    """Read a ``.binaryproto``: one serialized BlobProto, as Caffe's ``compute_image_mean``
    writes a mean image (legacy num/channels/height/width dims, or ``shape``)."""
    path = Path(path)
    check_file(
        path, WeightsError, "a mean file (.binaryproto)", limit=PROTO_BINARY_LIMIT,
        why_limit="Caffe reads binary protos of at most 2 GiB",
    )
    with reading(path, WeightsError, "a mean file (.binaryproto)"):
        buf = path.read_bytes()
    if not buf:
        raise WeightsError("empty file", file=path)
    if _looks_like_text(buf):
        raise WeightsError("this is a text file, expected a binary BlobProto (.binaryproto)", file=path)
    try:
        blob = _parse_blob(buf, 0, len(buf))
    except _Corrupt as e:
        raise WeightsError(
            f"not a BlobProto: {e.args[0]} (at byte {e.offset})", file=path
        ) from None
    if blob.data.size == 0:
        raise WeightsError("the BlobProto holds no values", file=path)
    blob.data = np.array(blob.data)  # its own memory, not the file's buffer (read_mean checks it)
    return blob


def write_blobproto(path: str | Path, array: np.ndarray, legacy: bool = False) -> None:
    """Write ``array`` as a BlobProto file, atomically: float32 ``data`` with ``shape`` dims,
    or with the legacy num/channels/height/width dims (4-D at most) as older Caffe wrote."""
    path = Path(path)
    a = np.ascontiguousarray(array, dtype="<f4")
    if legacy:
        if a.ndim > 4:
            raise ValueError(f"legacy dims hold 4 axes at most, not {a.ndim}")
        dims = (1,) * (4 - a.ndim) + a.shape
        head = b"".join(_key(n, 0) + _encode_varint(int(d)) for n, d in zip((1, 2, 3, 4), dims))
        head += _key(5, LEN) + _encode_varint(a.nbytes)
    else:
        head = _blob_header(a.shape, a.nbytes)
    with atomic_file(path) as f:
        f.write(head)
        f.write(memoryview(a).cast("B"))
