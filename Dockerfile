# syntax=docker/dockerfile:1
# caffe2torch in a pinned image: Caffe prototxt + caffemodel -> PyTorch, checked against OpenCV
# or real Caffe (BVLC pycaffe, CPU, built here from a hash-pinned source).
#
#   docker build -t caffe2torch .                       # or: make image
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD:/workspace" \
#       caffe2torch convert foo.prototxt bar.caffemodel -o out
#
# Build arguments:
#   BASE_IMAGE     the exact CUDA + cuDNN runtime image; any Debian/Ubuntu with a python3.11
#                  package works (CI builds on a debootstrapped Debian bookworm).
#   TORCH_VARIANT  cuda (torch from PyPI, CUDA 13.0) or cpu (torch 2.13.0+cpu, a wheel that must
#                  lie in docker/wheels/: `make image TORCH_VARIANT=cpu` puts it there).
# Optional build secret `ca`: a CA bundle for pip behind a TLS-intercepting proxy
# (`--secret id=ca,src=$SSL_CERT_FILE`). It is used for the pip steps only, never stored.

ARG BASE_IMAGE=docker.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04

# --------------------------------------------------------------------------------------- caffe
# Real Caffe, the reference engine: BVLC pycaffe (CPU only, no Python layers) built by
# docker/caffe/build.sh into /opt/caffe-bvlc for the system python3 (3.11 on bookworm, 3.10 on
# Ubuntu 22.04: it runs as its own process, never in the venvs). The source is Debian's `caffe`
# source package, fetched with apt-get source from deb.debian.org (checked with Debian's archive
# keyring, which Ubuntu packages too) and checked against its sha256. The build packages are
# CAFFE_PACKAGES of the Makefile (`make caffe-ref`), the same list, with ca-certificates and
# debian-archive-keyring for apt-get source where the base lacks them. What the image installs to
# run it is computed from the build (docker/caffe-runtime-packages.sh: NEEDED -> ldd -> dpkg -S) and
# written to /opt/caffe-bvlc/runtime-packages. Only pycaffe and libcaffe are kept: no headers,
# static library, CMake files or command-line tools. This stage comes first and depends on
# build.sh, its patch and that script only: editing the project does not rebuild Caffe.
FROM ${BASE_IMAGE} AS caffe
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates debian-archive-keyring \
        build-essential cmake libboost-system-dev libboost-thread-dev libboost-filesystem-dev \
        libboost-python-dev libgoogle-glog-dev libgflags-dev libprotobuf-dev protobuf-compiler \
        libhdf5-dev libopenblas-dev python3-dev python3-numpy python3-protobuf python3-six patch \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY docker/caffe/build.sh docker/caffe/bvlc-99bd997.patch docker/caffe-runtime-packages.sh \
     /tmp/caffe-build/
RUN /tmp/caffe-build/build.sh /opt/caffe-bvlc /tmp/caffe-work \
 && rm -rf /tmp/caffe-work /opt/caffe-bvlc/bin /opt/caffe-bvlc/include /opt/caffe-bvlc/share \
        /opt/caffe-bvlc/lib/*.a \
 && /tmp/caffe-build/caffe-runtime-packages.sh /opt/caffe-bvlc > /opt/caffe-bvlc/runtime-packages \
 && echo "runtime packages: $(paste -s -d ' ' /opt/caffe-bvlc/runtime-packages)"

# ------------------------------------------------------------------------------------- builder
# Two virtual environments, every package pinned with its hash (docker/*.lock):
#   /opt/caffe2torch  caffe2torch with all its extras (caffe2torch[all]): torch, OpenCV, protobuf
#                     7, Pillow, h5py, onnx, onnxruntime, onnxscript, matplotlib;
#   /opt/mmdnn        MMdnn 0.3.1 with the protobuf 3.20.3 its generated code needs. It uses the
#                     torch of /opt/caffe2torch (a .pth line placed after its own packages), so
#                     torch is installed once and its own protobuf and numpy come first.
FROM ${BASE_IMAGE} AS builder
ARG TORCH_VARIANT=cuda
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
# Versions of apt packages follow the base image's release (see .hadolint.yaml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/caffe2torch \
 && python3.11 -m venv /opt/mmdnn
COPY docker/requirements-cuda.lock docker/requirements-cpu.lock docker/mmdnn.lock /tmp/locks/
RUN --mount=type=secret,id=ca,required=false \
    --mount=type=bind,source=docker/wheels,target=/wheels \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && case "${TORCH_VARIANT}" in cuda|cpu) ;; *) echo "TORCH_VARIANT must be cuda or cpu" >&2; exit 2;; esac \
 && /opt/caffe2torch/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        --find-links /wheels -r "/tmp/locks/requirements-${TORCH_VARIANT}.lock" \
 && /opt/mmdnn/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r /tmp/locks/mmdnn.lock
# The project, from the build context, with the build backend pinned in the lock (no download).
# With every extra and no index: pip resolves caffe2torch[all] against what the lock installed,
# so a requirement (or extra) the lock lacks, or pins outside its range, fails here.
COPY pyproject.toml README.md LICENSE /src/
COPY src /src/src
RUN /opt/caffe2torch/bin/pip install --no-index --no-build-isolation "/src[all]" \
 && /opt/caffe2torch/bin/pip check \
 && /opt/mmdnn/bin/pip check \
 && /opt/caffe2torch/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        > "$(/opt/mmdnn/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz-caffe2torch-torch.pth"

# ------------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# python3.11 for the venvs, tini as PID 1 (signals, zombies); setpriv (util-linux, in the base)
# lets the entry drop root to the owner of /workspace. apt-get clean: a debootstrapped base has
# no docker-clean hook, and apt's caches would stay in the layer (about 100 MB each).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# Real Caffe and only what `import caffe` needs: the libraries computed in the caffe stage, and
# the system python3 with the numpy, protobuf and six pycaffe was built against. A layer of its
# own, so `make image-test` can say what Caffe adds.
COPY --from=caffe /opt/caffe-bvlc /opt/caffe-bvlc
RUN apt-get update \
 && xargs --arg-file=/opt/caffe-bvlc/runtime-packages \
        apt-get install -y --no-install-recommends python3 python3-numpy python3-protobuf python3-six \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# Graphviz's `dot`, which draws the net in report.html (caffe2torch runs it as a program; without
# it the page says so instead). A layer of its own, so `make image-test` can say what it adds.
RUN apt-get update \
 && apt-get install -y --no-install-recommends graphviz \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && dot -V
# A numeric, non-root user; `--user UID:GID` runs as any other.
RUN groupadd --gid 1000 caffe2torch \
 && useradd --uid 1000 --gid 1000 --no-log-init --create-home --shell /bin/bash caffe2torch
# The build arguments and labels come after the system layers, so a new commit (VCS_REF) or
# version rebuilds only what follows: the venvs and the check.
ARG BASE_IMAGE
ARG TORCH_VARIANT=cuda
ARG CAFFE2TORCH_VERSION=0.1.0
ARG TORCH_VERSION=2.13.0
ARG MMDNN_VERSION=0.3.1
ARG OPENCV_VERSION=4.14.0.94
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="caffe2torch" \
      org.opencontainers.image.description="Convert Caffe models to readable, verified PyTorch (model.py + state_dict), with MMdnn's flow as a second engine" \
      org.opencontainers.image.version="${CAFFE2TORCH_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.caffe2torch.torch="${TORCH_VERSION} (${TORCH_VARIANT})" \
      io.caffe2torch.mmdnn="${MMDNN_VERSION} with protobuf 3.20.3" \
      io.caffe2torch.opencv="${OPENCV_VERSION}" \
      io.caffe2torch.caffe="BVLC 99bd997 (Debian caffe 1.0.0+git20180821.99bd997-8), CPU" \
      io.caffe2torch.python="3.11"
COPY --from=builder /opt/caffe2torch /opt/caffe2torch
COPY --from=builder /opt/mmdnn /opt/mmdnn
COPY entrypoint/caffe2torch-entry.sh /usr/local/bin/caffe2torch-entry
ENV PATH=/opt/caffe2torch/bin:$PATH \
    CAFFE2TORCH_MMDNN_PYTHON=/opt/mmdnn/bin/python \
    CAFFE2TORCH_CAFFE=/opt/caffe-bvlc \
    CAFFE2TORCH_CAFFE_PYTHON=/usr/bin/python3 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# matplotlib's font cache, built once here (sticky and world-writable, like /tmp, as matplotlib
# wants its folder writable): otherwise every fresh container spends seconds building it.
RUN python -c 'import matplotlib.font_manager' \
 && chmod 1777 "${MPLCONFIGDIR}" \
 && ls "${MPLCONFIGDIR}"
# The build-time check: everything imports at the versions on the labels, both engines convert
# and verify a tiny net (LeNet natively, the BatchNorm net through MMdnn), and real Caffe runs
# LeNet to what the converted model computes. The version build arguments reach it as
# environment variables of this step only.
RUN --mount=type=bind,source=docker/self-check.sh,target=/tmp/self-check.sh \
    --mount=type=bind,source=examples,target=/tmp/examples \
    bash /tmp/self-check.sh /tmp/examples
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/caffe2torch-entry"]
CMD ["--help"]
