#!/usr/bin/env bash
# Build-time check of the image (run by the Dockerfile, as root, before USER): everything imports
# at the versions on the image's labels, and both engines convert and verify a tiny net.
# Usage: self-check.sh EXAMPLES_DIR   (the build arguments come in as environment variables)
set -euo pipefail

examples=${1:?usage: self-check.sh EXAMPLES_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

/opt/caffe2torch/bin/python - <<'PY'
import os
from importlib.metadata import version

import cv2
import google.protobuf
import numpy
import safetensors
import torch
import typer

import caffe2torch

want = {
    "caffe2torch": (caffe2torch.__version__, os.environ["CAFFE2TORCH_VERSION"]),
    "torch": (torch.__version__.split("+")[0], os.environ["TORCH_VERSION"]),
    "opencv": (version("opencv-python-headless"), os.environ["OPENCV_VERSION"]),
}
for name, (have, label) in want.items():
    assert have == label, f"{name} {have} installed, the image label says {label}"
variant = os.environ["TORCH_VARIANT"]
assert (torch.version.cuda is not None) == (variant == "cuda"), (variant, torch.version.cuda)
assert google.protobuf.__version__.split(".")[0] != "3", google.protobuf.__version__
print("caffe2torch", caffe2torch.__version__, "torch", torch.__version__, "cuda", torch.version.cuda,
      "opencv", cv2.__version__, "numpy", numpy.__version__, "protobuf", google.protobuf.__version__,
      "typer", typer.__version__, "rich", version("rich"),
      "safetensors", safetensors.__version__)
PY

/opt/mmdnn/bin/python - <<'PY'
import os
from importlib.metadata import version

import google.protobuf
import numpy
import torch
from mmdnn.conversion.caffe import caffe_pb2  # noqa: F401  (fails on protobuf > 3.20)

assert google.protobuf.__version__ == "3.20.3", google.protobuf.__version__
assert version("mmdnn") == os.environ["MMDNN_VERSION"], version("mmdnn")
assert torch.__file__.startswith("/opt/caffe2torch/"), torch.__file__
print("mmdnn", version("mmdnn"), "protobuf", google.protobuf.__version__,
      "numpy", numpy.__version__, "torch", torch.__version__, "(shared)")
PY

cd "$work"
caffe2torch synth-weights "$examples/lenet/lenet.prototxt" -o lenet.caffemodel --seed 0
caffe2torch convert "$examples/lenet/lenet.prototxt" lenet.caffemodel -o lenet
caffe2torch verify lenet
caffe2torch convert "$examples/bn/bn.prototxt" --random-weights --seed 0 -o bn --engine mmdnn
echo "self-check passed"
