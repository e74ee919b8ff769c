#!/usr/bin/env bash
# Build the SSD fork of Caffe's pycaffe (CPU only, no Python layers) from a hash-pinned source
# into PREFIX: the second reference, for the fork's layers (PriorBox, DetectionOutput,
# Normalize, Permute, BN, Upsample, ...).
#
#   docker/caffe/build-ssd.sh PREFIX [WORKDIR]
#
# The source is PyPI's sdist brocolli-caffe 9.0.2: weiliu89/caffe's ssd branch (early 2018)
# with a few more layers, and the fork's pooling field 13 (ceil_mode, not BVLC's round_mode).
# It has no Clip or Swish layer. Its setup.py wants conda and Python <= 3.9, so it is not
# used: the sdist is fetched by its PyPI address, checked against its sha256, stripped of
# the generated files it ships (protoc output of another protobuf, Python 3.8 bytecode),
# patched (ssd-brocolli-9.0.2.patch: its CMake finds the system's Boost with regex and
# python311, glog, gflags, HDF5, OpenBLAS, Python and NumPy instead of a conda prefix;
# `import caffe` without scikit-image) and built with its CMake, which links the whole of
# Caffe into python/caffe/_caffe.so. Its io.cpp has protobuf's one-argument
# SetTotalBytesLimit already.
# Python layers are compiled out: a reference engine never runs code from a net.
# The build packages: see `make caffe-ref-ssd` (those of `make caffe-ref` and
# libboost-regex-dev). The result runs under the system python3 (its numpy), as its own
# process: PYTHONPATH=PREFIX/python python3 -c 'import caffe'.
set -euo pipefail

PREFIX=$(realpath -m "$1")
WORK=$(realpath -m "${2:-$(mktemp -d)}")
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=brocolli-caffe-9.0.2
TARBALL=$NAME.tar.gz
SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
URL=${CAFFE_SSD_SOURCE_URL:-https://files.pythonhosted.org/packages/d6/2f/7eca8c691bacdfe2cd3bb5d20a780f692a3aa6039e972dc330806a747d7c/$TARBALL}
PYTHON=${CAFFE_PYTHON:-/usr/bin/python3}
JOBS=${CAFFE_JOBS:-$(nproc)}

mkdir -p "$WORK/fetch"
if [[ ! -f "$WORK/fetch/$TARBALL" ]]; then
    if command -v curl > /dev/null; then
        curl -fsSL --retry 3 -o "$WORK/fetch/$TARBALL.part" "$URL"
    else  # python3 is a build package anyway (https needs ca-certificates either way)
        "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
            "$URL" "$WORK/fetch/$TARBALL.part"
    fi
    mv "$WORK/fetch/$TARBALL.part" "$WORK/fetch/$TARBALL"
fi
echo "$SHA256  $WORK/fetch/$TARBALL" | sha256sum --check --quiet
rm -rf "$WORK/src" "$WORK/build"
mkdir -p "$WORK/src"
tar -xzf "$WORK/fetch/$TARBALL" -C "$WORK/src" --strip-components=1
# Generated files the sdist ships: the build makes its own (with the system's protoc).
rm -rf "$WORK/src/src/caffe/proto/caffe.pb.cc" "$WORK/src/include/caffe/proto/caffe.pb.h" \
    "$WORK/src/python/caffe/proto/caffe_pb2.py" "$WORK/src/python/caffe/__pycache__"
patch -d "$WORK/src" -p1 --quiet < "$HERE/ssd-brocolli-9.0.2.patch"

# The compilers' output goes to a log (it is long, and full of Boost's deprecation notes);
# a failing step shows its end.
step() {
    local log=$1
    shift
    if ! "$@" > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "docker/caffe/build-ssd.sh: failed, see $log" >&2
        exit 1
    fi
}
echo "building the SSD fork's pycaffe in $WORK/build (about 5 minutes on 2 idle cores, 20 on busy ones)"
step "$WORK/cmake.log" cmake -S "$WORK/src" -B "$WORK/build" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCPU_ONLY=ON -DBLAS=Open -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF \
    -DBUILD_python=ON -DBUILD_python_layer=OFF -Dpython_version=3 \
    -DPYTHON_EXECUTABLE="$PYTHON" -DBUILD_docs=OFF -DBUILD_matlab=OFF
step "$WORK/make.log" make -C "$WORK/build" -j"$JOBS" --no-print-directory install
# What the prefix holds, for the check's report (verify/caffe_ref.py reads it).
echo "SSD fork: weiliu89/caffe ssd as PyPI brocolli-caffe 9.0.2" > "$PREFIX/SOURCE"
PYTHONPATH="$PREFIX/python" "$PYTHON" -c '
import caffe
types = caffe.layer_type_list()
missing = {"PriorBox", "DetectionOutput", "Normalize", "Permute"} - set(types)
assert not missing, f"the fork layers {sorted(missing)} are not in the build"
assert "Python" not in types, "the build has Python layers"
print("pycaffe (SSD fork) built:", caffe.__file__, f"({len(types)} layer types)")'
