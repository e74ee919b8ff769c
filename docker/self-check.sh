#!/usr/bin/env bash
# Build-time check of the image (run by the Dockerfile, as root, before USER): everything imports
# at the versions on the image's labels, both engines convert and verify a tiny net, and real
# Caffe (pycaffe in $CAFFE2TORCH_CAFFE, under $CAFFE2TORCH_CAFFE_PYTHON) runs LeNet to what the
# converted model computes.
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

# pycaffe on its own: the system python3 with the Debian numpy and protobuf it was built against
PYTHONPATH="$CAFFE2TORCH_CAFFE/python" "$CAFFE2TORCH_CAFFE_PYTHON" - <<'PY'
import sys

import google.protobuf
import numpy

import caffe

assert caffe.__file__.startswith("/opt/caffe-bvlc/python/"), caffe.__file__
assert "Python" not in caffe.layer_type_list(), "pycaffe was built with Python layers"
print("pycaffe", caffe.__version__, "python", sys.version.split()[0], "numpy", numpy.__version__,
      "protobuf", google.protobuf.__version__, "layer types", len(caffe.layer_type_list()))
PY

cd "$work"
caffe2torch synth-weights "$examples/lenet/lenet.prototxt" -o lenet.caffemodel --seed 0
caffe2torch convert "$examples/lenet/lenet.prototxt" lenet.caffemodel -o lenet
caffe2torch verify lenet

# Real Caffe runs LeNet (seeded weights, a seeded input) and gives what the converted model does.
/opt/caffe2torch/bin/python - "$examples/lenet/lenet.prototxt" lenet.caffemodel <<'PY'
import sys

import numpy as np

from caffe2torch.api import load_graph
from caffe2torch.emit import convert
from caffe2torch.verify.caffe_ref import run_caffe
from caffe2torch.verify.parity import random_inputs, run_model

net, weights = sys.argv[1:3]
graph = load_graph(net)
conversion = convert(net, weights)
feed = random_inputs(graph.inputs, 0)
ours = run_model(conversion.module(), graph.inputs, feed)
blobs = run_caffe(net, weights, feed)
for y, v in zip(ours, conversion.outputs):
    y = np.asarray(y)
    ref = blobs[v.name].reshape(y.shape)
    err = float(np.abs(y - ref).max())
    bound = 1e-5 + 1e-4 * float(np.abs(ref).max())
    print(f"real Caffe on LeNet: {len(blobs)} blobs; {v.name} {'x'.join(map(str, y.shape))}: "
          f"max|torch - caffe| = {err:.1e} (bound {bound:.1e}), argmax {int(ref.argmax())} in both")
    assert err <= bound, (v.name, err, bound)
    assert int(y.argmax()) == int(ref.argmax()), (v.name, y.argmax(), ref.argmax())
PY
# The converted folder checked layer by layer against real Caffe alone.
caffe2torch verify lenet --reference caffe --json > verify-caffe.json
/opt/caffe2torch/bin/python - verify-caffe.json <<'PY'
import json, sys

v = json.load(open(sys.argv[1]))
assert v["passed"] is True and v["compared"] > 0, v
assert v["reference"].startswith("Caffe ") and "OpenCV" not in v["reference"], v["reference"]
print(f"verify lenet --reference caffe: passed, {v['compared']} values compared with {v['reference']}")
PY

caffe2torch convert "$examples/bn/bn.prototxt" --random-weights --seed 0 -o bn --engine mmdnn
echo "self-check passed"
