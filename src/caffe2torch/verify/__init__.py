"""Checking a conversion against an independent Caffe implementation (real Caffe, built from
pinned source, and OpenCV's dnn module for the layers it lacks).

The package is also the public function ``caffe2torch.verify(folder, ...)``: calling it calls
:func:`caffe2torch.verify.run.verify` (a module can be called once its class has a
``__call__``; the name is the subpackage's, so the function lives here)."""
import inspect
import sys
import types

from .run import verify as _verify


class _VerifyModule(types.ModuleType):
    __call__ = staticmethod(_verify)  # caffe2torch.verify(folder) is verify(folder)
sys.modules[__name__].__class__ = _VerifyModule
__signature__ = inspect.signature(_verify)
__doc__ = __doc__ + "\n\n" + (_verify.__doc__ or "")
