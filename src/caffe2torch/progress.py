"""Where long work stands, for whoever shows it (the CLI's staged display, ``convert-all``).

The library calls :func:`stage` as it goes (reading, converting, layer i of N of the check,
writing); nothing happens unless a caller installed a callback with :func:`reporting`. The
callback gets ``(stage, done, total)``; ``done``/``total`` are None for a stage without steps.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Optional

Callback = Callable[[str, Optional[int], Optional[int]], None]

_current: contextvars.ContextVar[Callback | None] = contextvars.ContextVar(
    "caffe2torch_progress", default=None
)


def stage(name: str, done: int | None = None, total: int | None = None) -> None:
    """Report that the work is at ``name`` (step ``done`` of ``total``)."""
    callback = _current.get()
    if callback is not None:
        callback(name, done, total)


@contextlib.contextmanager
def reporting(callback: Callback | None) -> Iterator[None]:
    """Send :func:`stage` reports to ``callback`` inside the block (None: nowhere)."""
    token = _current.set(callback)
    try:
        yield
    finally:
        _current.reset(token)
