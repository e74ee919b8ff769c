"""The one exception family of caffe2torch.

Every problem with a user's input is raised as a :class:`CaffeError` that knows the file, and
where it can, the line, column and layer. ``str(error)`` is the one line the CLI prints.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


class CaffeError(Exception):
    """A problem with the input files; ``str()`` gives one self-contained line."""

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
        return f"{where}: {self.message}" if where else self.message

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


@contextlib.contextmanager
def reading(path: str | Path, error: type[CaffeError], expected: str) -> Iterator[None]:
    """Turn the OS errors of reading an input file into one-line errors of type ``error``."""
    try:
        yield
    except FileNotFoundError:
        raise error("no such file", file=path) from None
    except IsADirectoryError:
        raise error(f"is a directory, expected {expected}", file=path) from None
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=path) from None
