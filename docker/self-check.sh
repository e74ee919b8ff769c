#!/usr/bin/env bash
# Build-time check of the image (run by the Dockerfile, as root, before USER): everything imports
# at the versions on the image's labels, every requirement of caffe2torch[all] (each extra) is
# installed at a version it allows, Graphviz's dot runs, both engines convert and verify a tiny
# net (LeNet's report.html with the net drawn and the plot), and real Caffe (pycaffe in
# $CAFFE2TORCH_CAFFE, under $CAFFE2TORCH_CAFFE_PYTHON) runs LeNet to what the converted model
# computes.
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
import h5py
import matplotlib
import numpy
import onnx
import onnxruntime
import onnxscript
import PIL
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
print("extras: pillow", PIL.__version__, "h5py", h5py.__version__, "onnx", onnx.__version__,
      "onnxruntime", onnxruntime.__version__, "onnxscript", version("onnxscript"),
      "matplotlib", matplotlib.__version__)
PY

# Every requirement of caffe2torch[all] (the extras `all` names, read from the installed
# metadata, so it follows pyproject.toml) is installed at a version its range allows.
/opt/caffe2torch/bin/python - <<'PY'
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

reqs = [Requirement(r) for r in requires("caffe2torch") or []]


def of(extra):
    if extra is None:
        return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]
    return [r for r in reqs if r.marker is not None and "extra" in str(r.marker)
            and r.marker.evaluate({"extra": extra})]


todo, seen, checked, bad = [None, "all"], set(), [], []
while todo:
    extra = todo.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for r in of(extra):
        if canonicalize_name(r.name) == "caffe2torch":
            todo.extend(sorted(r.extras))
            continue
        try:
            have = version(r.name)
        except PackageNotFoundError:
            bad.append(f"{r} ({extra or 'core'}): not installed")
            continue
        if not r.specifier.contains(have, prereleases=True):
            bad.append(f"{r} ({extra or 'core'}): {have} installed")
        checked.append(f"{r.name} {have}")
assert len(seen) > 2 and not bad, (sorted(seen, key=str), bad)
extras = sorted(e for e in seen if e not in (None, "all"))
print(f"caffe2torch[all] = core + {', '.join(extras)}: {len(checked)} requirements installed at "
      "versions they allow")
PY

dot -V 2>&1

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
# --record-paths: conversion.json says where the sources are, so that verify finds them
caffe2torch convert "$examples/lenet/lenet.prototxt" lenet.caffemodel -o lenet --record-paths
caffe2torch verify lenet
# report.html: the net drawn by dot (a layer's name in it) and matplotlib's plot, no "needs ..."
for want in '<svg class="net"' '<svg class="plot"' '>conv1<'; do
    grep -q -F -- "$want" lenet/report.html || { echo "self-check: no '$want' in lenet/report.html" >&2; exit 1; }
done
if grep -q -E 'needs (Graphviz|matplotlib)' lenet/report.html; then
    echo "self-check: lenet/report.html says: $(grep -o -E '[^>]*needs (Graphviz|matplotlib)[^<]*' lenet/report.html)" >&2
    exit 1
fi
echo "report.html: the net drawn by dot and the error plot ($(wc -c < lenet/report.html) bytes)"

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
