# caffe2torch developer targets. `make example` and `make test` set everything up from scratch.
# `make help` lists them. Every variable can be set on the command line (make image DOCKER=podman).
comma := ,
PYTHON ?= python3
VENV ?= .venv
VENV_PB3 ?= .venv-protobuf3
VENV_MMDNN ?= .venv-mmdnn
VENV_TOOLS ?= .venv-tools
BIN := $(VENV)/bin
TOOLS := $(VENV_TOOLS)/bin

# The image: `make image`, then `make convert PROTOTXT=... WEIGHTS=... OUT=...` on this folder.
DOCKER ?= docker
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/caffe2torch/__init__.py)
IMAGE ?= caffe2torch:$(VERSION)
TORCH_VARIANT ?= cuda
BASE_IMAGE ?=
CA_BUNDLE ?= $(SSL_CERT_FILE)
BUILD_FLAGS ?=
PROTOTXT ?=
WEIGHTS ?=
OUT ?= out/converted
ARGS ?=
GPUS ?=
# Who the container runs as, so its files belong to you: your uid with docker; with podman,
# rootless root is you already (the entry keeps the owner of the mounted folder).
RUN_USER ?= $(if $(findstring podman,$(DOCKER)),0,$(shell id -u):$(shell id -g))
TORCH_CPU_WHEEL := docker/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: help example test test-fast docs test-protobuf3 test-min-versions mmdnn-env caffe-ref bench bench-engines corpus clean \
	image convert convert-all verify lint lock torch-wheel image-test caffe-ref-ssd

help: ## List the targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  %-15s %s\n", $$1, $$2}'

# The development environment: pinned versions (torch 2.13.0, CPU build), the package editable.
$(BIN)/caffe2torch: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $@

# The bundled example: seeded weights for LeNet as a .caffemodel, checked, then converted.
example: $(BIN)/caffe2torch ## Set up .venv, convert the bundled LeNet (seeded weights) and verify it
	mkdir -p out
	$(BIN)/caffe2torch synth-weights examples/lenet/lenet.prototxt -o out/lenet.caffemodel --seed 0 --overwrite
	$(BIN)/caffe2torch inspect examples/lenet/lenet.prototxt out/lenet.caffemodel
	$(BIN)/caffe2torch convert examples/lenet/lenet.prototxt out/lenet.caffemodel -o out/lenet --overwrite --record-paths
	$(BIN)/caffe2torch verify out/lenet
	$(BIN)/python -c "import torch, json; s = torch.load('out/lenet/model.pth', weights_only=True); \
		print('out/lenet/model.pth:', len(s), 'tensors, loads with weights_only=True')"

# The suite in two tiers: the fast one (unit tests, layer grids, CLI, bad input: under 90 s),
# then the corpus and slow tests on TEST_WORKERS processes (pytest-xdist; the tests that share
# a corpus net's conversion run on one worker, which converts it once: --dist loadgroup).
TEST_WORKERS ?= auto
PYTEST := CAFFE2TORCH_MMDNN_PYTHON=$(VENV_MMDNN)/bin/python $(BIN)/python -m pytest
test: $(BIN)/caffe2torch $(VENV_MMDNN)/bin/mmtoir ## Set up the venvs and run the test suite
	$(PYTEST) -m "not slow and not corpus"
	$(PYTEST) -m "slow or corpus" -n $(TEST_WORKERS) --dist loadgroup
	$(MAKE) test-protobuf3

test-fast: $(BIN)/caffe2torch ## The fast tier: all but the corpus and slow tests (under 90 s)
	$(PYTEST) -m "not slow and not corpus"

# docs/layers.md, the supported-layer table: the registry and the layer tests' markers.
docs: $(BIN)/caffe2torch ## Regenerate docs/layers.md (tests/test_docs.py checks it)
	$(BIN)/python tools/layer_docs.py

# Real Caffe (BVLC, CPU only, no Python layers) built from a hash-pinned source into
# $(CAFFE_PREFIX): docker/caffe/build.sh says how. It runs under the system python3 (Debian's
# numpy), as its own process. As root the packages are installed with apt; otherwise they are
# named and the build stops.
CAFFE_PREFIX ?= .caffe/bvlc
CAFFE_PACKAGES := build-essential cmake libboost-system-dev libboost-thread-dev \
	libboost-filesystem-dev libboost-python-dev libgoogle-glog-dev libgflags-dev libprotobuf-dev \
	protobuf-compiler libhdf5-dev libopenblas-dev python3-dev python3-numpy python3-protobuf \
	python3-six patch
caffe-ref: $(CAFFE_PREFIX)/python/caffe/_caffe.so ## Build real Caffe (pinned BVLC source, CPU) as a reference
$(CAFFE_PREFIX)/python/caffe/_caffe.so: docker/caffe/build.sh docker/caffe/bvlc-99bd997.patch
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CAFFE_PACKAGES); \
	elif ! dpkg -s $(CAFFE_PACKAGES) > /dev/null 2>&1; then \
		echo "make caffe-ref: install these packages first (apt-get install, as root): $(CAFFE_PACKAGES)"; exit 2; \
	fi
	docker/caffe/build.sh $(CAFFE_PREFIX) .caffe/work

# The SSD fork (PyPI's sdist brocolli-caffe 9.0.2, hash-pinned), for the detection layers BVLC
# lacks: the check's engine caffe-ssd (PriorBox, DetectionOutput, Normalize, Permute).
CAFFE_SSD_PREFIX ?= .caffe/ssd
caffe-ref-ssd: $(CAFFE_SSD_PREFIX)/python/caffe/_caffe.so ## Build the SSD fork of Caffe (pinned sdist, CPU) as a second reference
$(CAFFE_SSD_PREFIX)/python/caffe/_caffe.so: docker/caffe/build-ssd.sh docker/caffe/ssd-brocolli-9.0.2.patch
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CAFFE_PACKAGES) libboost-regex-dev ca-certificates; \
	elif ! dpkg -s $(CAFFE_PACKAGES) libboost-regex-dev ca-certificates > /dev/null 2>&1; then \
		echo "make caffe-ref-ssd: install these packages first (apt-get install, as root): $(CAFFE_PACKAGES) libboost-regex-dev ca-certificates"; exit 2; \
	fi
	docker/caffe/build-ssd.sh $(CAFFE_SSD_PREFIX) .caffe/ssd-work

# The MMdnn engine's environment (mmdnn 0.3.1, protobuf 3.20.3): `convert --engine mmdnn`
# finds it as .venv-mmdnn in the working folder, or by $$CAFFE2TORCH_MMDNN_PYTHON.
mmdnn-env: $(VENV_MMDNN)/bin/mmtoir ## Make .venv-mmdnn (MMdnn 0.3.1, protobuf 3.20.3) for --engine mmdnn
$(VENV_MMDNN)/bin/mmtoir: requirements/mmdnn.txt
	$(PYTHON) -m venv $(VENV_MMDNN)
	$(VENV_MMDNN)/bin/pip install --quiet -r requirements/mmdnn.txt
	touch $@

# The reader on protobuf 3.20.3 (what MMdnn needs): the tests that need neither torch nor OpenCV.
$(VENV_PB3)/bin/caffe2torch: pyproject.toml requirements/protobuf3.txt
	$(PYTHON) -m venv $(VENV_PB3)
	$(VENV_PB3)/bin/pip install --quiet -r requirements/protobuf3.txt
	$(VENV_PB3)/bin/pip install --quiet --no-deps -e .
	touch $@

test-protobuf3: $(VENV_PB3)/bin/caffe2torch
	$(VENV_PB3)/bin/python -c "import google.protobuf as p; assert p.__version__ == '3.20.3', p.__version__"
	$(VENV_PB3)/bin/python -m pytest -p no:cacheprovider tests/test_prototxt.py tests/test_caffemodel.py \
		tests/test_shapes.py tests/test_bad_input.py tests/test_corpus.py tests/test_cli_and_synth.py

# The lowest versions pyproject.toml allows (core and the verify, images, hdf5 extras), from PyPI
# into a fresh venv from the built wheel (uv --resolution lowest-direct, none of this machine's
# pip settings), then the bundled LeNet: synth-weights, convert, verify (tools/min_versions.py).
test-min-versions: $(TOOLS)/uv ## Install the lowest declared versions from PyPI; convert and verify LeNet with them
	$(PYTHON) tools/min_versions.py --uv $(TOOLS)/uv --python $(PYTHON)

bench: $(BIN)/caffe2torch ## Run the speed and memory benchmarks (ratios against baselines)
	$(BIN)/python benchmarks/read_caffemodel.py
	$(BIN)/python benchmarks/convert_vgg16.py
	$(BIN)/python benchmarks/vgg16_forward.py
	$(BIN)/python benchmarks/verify_vgg16.py

bench-engines: $(BIN)/caffe2torch $(VENV_MMDNN)/bin/mmtoir ## Benchmark the MMdnn engine against the native one
	CAFFE2TORCH_MMDNN_PYTHON=$(VENV_MMDNN)/bin/python $(BIN)/python benchmarks/engines_vgg16.py

# Every corpus net in ../shared converted and verified layer by layer against OpenCV: one line per net.
corpus: $(BIN)/caffe2torch ## Convert and verify every corpus net in ../shared
	$(BIN)/python tools/convert_corpus.py

# Property-based fuzzing (hypothesis) of every input: prototxt, caffemodel, HDF5, mean files,
# converted folders, command lines, Ctrl-C. tests/test_fuzz.py runs a short fixed set in `make test`.
.PHONY: fuzz
FUZZ_SECONDS ?= 300
FUZZ_WORKERS ?= 2
fuzz: $(BIN)/caffe2torch ## Fuzz every input for FUZZ_SECONDS (300); reproducers in fuzz-findings/
	$(BIN)/python tools/fuzz.py --seconds $(FUZZ_SECONDS) --workers $(FUZZ_WORKERS) --out fuzz-findings

# ------------------------------------------------------------------------------- the image
image: $(if $(filter cpu,$(TORCH_VARIANT)),$(TORCH_CPU_WHEEL)) ## Build the image (DOCKER=podman, TORCH_VARIANT=cpu, BASE_IMAGE=...)
	$(DOCKER) build --tag $(IMAGE) \
		--build-arg TORCH_VARIANT=$(TORCH_VARIANT) \
		--build-arg CAFFE2TORCH_VERSION=$(VERSION) \
		--build-arg VCS_REF=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) \
		$(BUILD_FLAGS) .

convert: ## Convert PROTOTXT [WEIGHTS] from this folder into OUT with the image (ARGS=... for more)
	@test -n "$(PROTOTXT)" || { echo "usage: make convert PROTOTXT=net.prototxt [WEIGHTS=w.caffemodel] [OUT=dir] [ARGS=...]" >&2; exit 2; }
	mkdir -p "$(dir $(OUT))"
	$(DOCKER) run --rm $(if $(GPUS),--gpus $(GPUS)) --user $(RUN_USER) -v "$(CURDIR):/workspace" \
		$(IMAGE) convert $(PROTOTXT) $(WEIGHTS) -o $(OUT) $(ARGS)

ZOO ?=
JOBS ?=
convert-all: ## Convert every net under ZOO into OUT (summary.json, index.html) with the image (JOBS=N, ARGS=--random-weights ...)
	@test -n "$(ZOO)" || { echo "usage: make convert-all ZOO=zoo/ [OUT=out/zoo] [JOBS=N] [ARGS=...]" >&2; exit 2; }
	mkdir -p "$(OUT)"
	$(DOCKER) run --rm $(if $(GPUS),--gpus $(GPUS)) --user $(RUN_USER) -v "$(CURDIR):/workspace" \
		$(IMAGE) convert-all $(ZOO) -o $(OUT) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

verify: ## Verify the converted folder OUT against real Caffe (OpenCV where it lacks a layer), layer by layer, with the image
	$(DOCKER) run --rm --user $(RUN_USER) -v "$(CURDIR):/workspace" $(IMAGE) verify $(OUT) $(ARGS)

# The CPU build of torch for TORCH_VARIANT=cpu: from this machine's pip sources if they have it,
# else from PyTorch's CPU index. Its hash is checked against docker/requirements-cpu.lock.
torch-wheel: $(TORCH_CPU_WHEEL) ## Download the CPU torch wheel into docker/wheels
$(TORCH_CPU_WHEEL): | $(TOOLS)/uv
	$(TOOLS)/pip download --quiet --no-deps --only-binary=:all: --dest docker/wheels torch==2.13.0+cpu \
		|| $(TOOLS)/pip download --quiet --no-deps --only-binary=:all: --dest docker/wheels \
			--index-url $(TORCH_CPU_INDEX) torch==2.13.0+cpu
	test -f $@

# Build the image on a debootstrapped Debian base with podman, then convert, verify and check
# ownership and byte-identity inside it (docker/image-test.sh; needs root for podman/buildah).
image-test: $(TORCH_CPU_WHEEL) ## CI: build the image (CPU torch) and test it on a mounted folder
	bash docker/image-test.sh

# ------------------------------------------------------------------------------- lint, locks
$(TOOLS)/uv: requirements/tools.txt
	$(PYTHON) -m venv $(VENV_TOOLS)
	$(TOOLS)/pip install --quiet -r requirements/tools.txt
	touch $@

lint: $(TOOLS)/uv ## hadolint, shellcheck and ruff
	$(TOOLS)/hadolint Dockerfile
	$(TOOLS)/shellcheck entrypoint/*.sh docker/*.sh docker/caffe/*.sh .ci/run
	$(TOOLS)/ruff check src tests benchmarks tools

# docker/*.lock: every package with its hashes, for Python 3.11 on x86-64 Linux. The main
# environment follows requirements/constraints.txt, so the image runs what CI tests.
UV_COMPILE = $(TOOLS)/uv pip compile --quiet --no-config --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple \
	--custom-compile-command "make lock"
lock: $(TOOLS)/uv $(TORCH_CPU_WHEEL) ## Recompile docker/*.lock (exact versions with hashes)
	$(UV_COMPILE) -c requirements/constraints.txt docker/requirements.in docker/torch-cuda.in \
		-o docker/requirements-cuda.lock
	$(UV_COMPILE) -c requirements/constraints.txt --find-links docker/wheels \
		docker/requirements.in docker/torch-cpu.in -o docker/requirements-cpu.lock
	$(UV_COMPILE) docker/mmdnn.in -o docker/mmdnn.lock

clean: ## Remove the venvs and build outputs
	rm -rf $(VENV) $(VENV_PB3) $(VENV_MMDNN) $(VENV_TOOLS) out build *.egg-info src/*.egg-info \
		docker/wheels/*.whl
