"""The ``caffe2torch`` command line: a thin typer layer over the library."""
from .app import app, main

__all__ = ["app", "main"]
