"""The one exception family of caffe2torch, and the checks every input file goes through.

Every problem with a user's input is raised as a :class:`CaffeError` that knows the file, and
where it can, the line, column and layer. ``str(error)`` is the one line the CLI prints: text
that came from an input (a layer name, a path) is made safe to print first (control characters
and escape sequences are shown escaped, absurdly long names are shortened), so a message can
never clear a terminal, forge a second line or run to megabytes.

Input files are opened only after :func:`check_file` has seen that they are regular files of
a plausible size: a FIFO would block forever, ``/dev/zero`` or a sparse 12 GiB "prototxt"
would be read whole into memory.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import Iterator

MiB = 1 << 20
GiB = 1 << 30

# Caffe reads binary protos (caffemodels, binaryproto means) with protobuf's total bytes limit
# set to INT_MAX (io.cpp, kProtoReadBytesLimit): a larger file is one Caffe cannot load.
PROTO_BINARY_LIMIT = (1 << 31) - 1
# Text files: the largest real net descriptions are a few megabytes.
TEXT_LIMIT = 64 * MiB

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LONG_TOKEN = re.compile(r"\S{121,}")
MESSAGE_LIMIT = 2000


def _escape_control(m: re.Match) -> str:
    c = m.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` safe to show on a terminal, on one line: control characters (escape sequences,
    carriage returns, bidi overrides) escaped, newlines and tabs as spaces, any run of over 120
    non-space characters shortened in the middle, and at most ``limit`` characters."""
    text = str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = _CONTROL.sub(_escape_control, text)

    def shorten(m: re.Match) -> str:
        s = m.group()
        return f"{s[:60]}…({len(s) - 80:,} more characters)…{s[-20:]}"

    text = _LONG_TOKEN.sub(shorten, text)
    if len(text) > limit:
        text = text[: limit - 40] + f"… ({len(text) - limit + 40:,} more characters)"
    return text


class CaffeError(Exception):
    """A problem with the input files; ``str()`` gives one self-contained, printable line."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        layer: str | None = None,
        layer_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.layer = layer
        self.layer_type = layer_type

    def where(self) -> str:
        parts = []
        if self.file:
            loc = self.file
            if self.line:
                loc += f":{self.line}"
                if self.column:
                    loc += f":{self.column}"
            parts.append(loc)
        if self.layer is not None:
            parts.append(
                f"layer '{self.layer}'" + (f" ({self.layer_type})" if self.layer_type else "")
            )
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return printable(f"{where}: {self.message}" if where else self.message)

    def located(self, **kwargs) -> "CaffeError":
        """Fill in location fields that are still unknown; returns self."""
        for key, value in kwargs.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, str(value) if key == "file" else value)
        return self


class PrototxtError(CaffeError):
    """The net description cannot be read or makes no sense."""


class WeightsError(CaffeError):
    """The weights file cannot be read or does not fit the net."""


class ShapeError(CaffeError):
    """A layer cannot compute its output shape from its inputs."""


class UnsupportedLayerError(CaffeError):
    """A layer type caffe2torch does not know (or will not run, like Python layers)."""


class InputShapeError(CaffeError):
    """An input's shape is missing or given badly on the command line."""


class OutputError(CaffeError):
    """The output cannot be written as asked (or would replace what it must not)."""


class MemoryLimitError(CaffeError):
    """The work would need more memory than allowed: refused before it starts."""


class Interrupted(Exception):
    """Ctrl-C: raised instead of KeyboardInterrupt where cleanup has been done."""


def size_text(n: float) -> str:
    """Bytes as text: ``1.5 GiB``, ``300 MiB``, ``12 KiB``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} bytes"


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_file(
    path: str | Path,
    error: type[CaffeError],
    expected: str,
    *,
    limit: int | None = TEXT_LIMIT,
    why_limit: str = "",
) -> os.stat_result:
    """Check that ``path`` is a regular file of at most ``limit`` bytes before anything opens
    it; raise ``error`` with one line otherwise. Returns its stat."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise error("is a symbolic link to a file that does not exist", file=path) from None
        raise error("no such file", file=path) from None
    except NotADirectoryError:
        raise error("no such file (a folder in its path is a file)", file=path) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=path) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise error(f"is {kind}, expected {expected}", file=path)
    if limit is not None and st.st_size > limit:
        reason = why_limit or f"{expected} is never that large"
        raise error(
            f"is {size_text(st.st_size)}, over the limit of {size_text(limit)}: {reason}",
            file=path,
        )
    return st


@contextlib.contextmanager
def reading(path: str | Path, error: type[CaffeError], expected: str) -> Iterator[None]:
    """Turn the OS errors of reading an input file into one-line errors of type ``error``."""
    try:
        yield
    except FileNotFoundError:
        raise error("no such file", file=path) from None
    except IsADirectoryError:
        raise error(f"is a directory, expected {expected}", file=path) from None
    except MemoryError:
        raise error("not enough memory to read it", file=path) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=path) from None


def read_input(
    path: str | Path,
    error: type[CaffeError],
    expected: str,
    *,
    limit: int | None = TEXT_LIMIT,
    why_limit: str = "",
) -> bytes:
    """The bytes of a checked input file (see :func:`check_file`)."""
    check_file(path, error, expected, limit=limit, why_limit=why_limit)
    with reading(path, error, expected):
        # Unbuffered: readall() reads the file once into a buffer of the right size.
        with open(path, "rb", buffering=0) as f:
            return f.readall()


def read_text(
    path: str | Path, error: type[CaffeError], expected: str, *, limit: int = TEXT_LIMIT
) -> str:
    """A checked UTF-8 text input file."""
    raw = read_input(path, error, expected, limit=limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error("not UTF-8 text", file=path, line=line) from None


def npy_header(path: str | Path, error: type[CaffeError], expected: str):
    """(shape, dtype, offset of the data, file size) from an ``.npy`` file's header, read
    without loading or allocating anything; one line for a file that is not one."""
    import numpy as np

    st = check_file(path, error, expected, limit=None)
    with reading(path, error, expected):
        with open(path, "rb") as f:
            try:
                reader = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(np.lib.format.read_magic(f))
                if reader is None:
                    raise ValueError("format version")
                shape, _, dtype = reader(f)
            except Exception:  # noqa: BLE001 - numpy parses the header text in several ways
                what = "the file is empty" if st.st_size == 0 else "its header is damaged"
                raise error(f"not an .npy array ({what})", file=path) from None
            offset = f.tell()
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise error("not an .npy array (its header is damaged)", file=path)
    return tuple(int(d) for d in shape), dtype, offset, st.st_size


def safe_text(text: str, limit: int = 200) -> str:
    """Text from an input file, for a comment or docstring of generated code: printable ASCII
    only, no quotes or backslashes (nothing that could end the docstring), one line."""
    out = "".join(
        c if (c.isascii() and c.isprintable() and c not in "\"'\\") else "?" for c in text
    )
    return out[:limit]


def bug_line(e: BaseException) -> str:
    """The line for an unexpected exception, a bug in caffe2torch: where in caffe2torch it was
    raised (the innermost of its frames) and what it was."""
    where = ""
    tb = e.__traceback__
    while tb is not None:
        if "caffe2torch" in tb.tb_frame.f_code.co_filename:
            where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    first = str(e).splitlines()[0] if str(e) else ""
    return printable(f"caffe2torch failed unexpectedly{where} ({type(e).__name__}: {first}): this is a bug")
