#!/usr/bin/env bash
# Build BVLC Caffe's pycaffe (CPU only, no Python layers) from a hash-pinned source into PREFIX.
#
#   docker/caffe/build.sh PREFIX [WORKDIR]
#
# The source is Debian bullseye's `caffe` source package, whose orig tarball is BVLC/caffe
# commit 99bd997 (its src/, include/, python/ and cmake/ equal BVLC master 9b89154). It is
# fetched with `apt-get source` through a private apt configuration (a deb-src entry for
# bullseye on the archive the system already uses; the system's own sources are untouched),
# checked against its sha256, patched (bvlc-99bd997.patch: protobuf's one-argument
# SetTotalBytesLimit, boost-python's python311 component name, `import caffe` without
# scikit-image) and built with Caffe's CMake.
# Python layers are compiled out: a reference engine never runs code from a net.
# The build packages: see `make caffe-ref`. The result runs under the system python3 (its
# numpy), as its own process: PYTHONPATH=PREFIX/python python3 -c 'import caffe'.
set -euo pipefail

PREFIX=$(realpath -m "$1")
WORK=$(realpath -m "${2:-$(mktemp -d)}")
HERE=$(cd "$(dirname "$0")" && pwd)
VERSION=1.0.0+git20180821.99bd997-8
TARBALL=caffe_1.0.0+git20180821.99bd997.orig.tar.gz
SHA256=e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c
ARCHIVE=${CAFFE_SOURCE_ARCHIVE:-http://deb.debian.org/debian}
PYTHON=${CAFFE_PYTHON:-/usr/bin/python3}

mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/archives/partial" "$WORK/apt/sources.list.d" "$WORK/fetch"
cat > "$WORK/apt/sources.list.d/bullseye-src.sources" <<SOURCES
Types: deb-src
URIs: $ARCHIVE
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt_opts=(
    -o "Dir::State=$WORK/apt" -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt"
    -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$WORK/apt/sources.list.d"
    -o "APT::Sandbox::User=root" -q
)
if [[ ! -f "$WORK/fetch/$TARBALL" ]]; then
    apt-get "${apt_opts[@]}" update
    (cd "$WORK/fetch" && apt-get "${apt_opts[@]}" source --download-only "caffe=$VERSION")
fi
echo "$SHA256  $WORK/fetch/$TARBALL" | sha256sum --check --quiet
rm -rf "$WORK/src" "$WORK/build"
mkdir -p "$WORK/src"
tar -xzf "$WORK/fetch/$TARBALL" -C "$WORK/src"
patch -d "$WORK/src" -p1 --quiet < "$HERE/bvlc-99bd997.patch"

# The compilers' output goes to a log (it is long, and full of Boost's deprecation notes);
# a failing step shows its end.
step() {
    local log=$1
    shift
    if ! "$@" > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "docker/caffe/build.sh: failed, see $log" >&2
        exit 1
    fi
}
echo "building pycaffe in $WORK/build (about 4 minutes on 2 cores)"
step "$WORK/cmake.log" cmake -S "$WORK/src" -B "$WORK/build" -Wno-dev \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCPU_ONLY=ON -DBLAS=Open -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF \
    -DBUILD_python=ON -DBUILD_python_layer=OFF -Dpython_version=3 \
    -DPYTHON_EXECUTABLE="$PYTHON" -DBUILD_docs=OFF -DBUILD_matlab=OFF
step "$WORK/make.log" make -C "$WORK/build" -j"$(nproc)" --no-print-directory install
# What the check reports as its reference (verify/caffe_ref.py reads it).
echo "BVLC 99bd997, Debian caffe $VERSION" > "$PREFIX/SOURCE"
PYTHONPATH="$PREFIX/python" "$PYTHON" -c 'import caffe; print("pycaffe built:", caffe.__file__)'
