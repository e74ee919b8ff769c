# caffe2torch developer targets. `make example` and `make test` set everything up from scratch.
PYTHON ?= python3
VENV ?= .venv
VENV_PB3 ?= .venv-protobuf3
VENV_MMDNN ?= .venv-mmdnn
BIN := $(VENV)/bin

.PHONY: example test test-protobuf3 mmdnn-env bench bench-engines corpus clean

# The development environment: pinned versions (torch 2.13.0, CPU build), the package editable.
$(BIN)/caffe2torch: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $@

# The bundled example: seeded weights for LeNet as a .caffemodel, checked, then converted.
example: $(BIN)/caffe2torch
	mkdir -p out
	$(BIN)/caffe2torch synth-weights examples/lenet/lenet.prototxt -o out/lenet.caffemodel --seed 0
	$(BIN)/caffe2torch inspect examples/lenet/lenet.prototxt out/lenet.caffemodel
	$(BIN)/caffe2torch convert examples/lenet/lenet.prototxt out/lenet.caffemodel -o out/lenet --overwrite
	$(BIN)/caffe2torch verify out/lenet
	$(BIN)/python -c "import torch, json; s = torch.load('out/lenet/model.pth', weights_only=True); \
		print('out/lenet/model.pth:', len(s), 'tensors, loads with weights_only=True')"

test: $(BIN)/caffe2torch $(VENV_MMDNN)/bin/mmtoir
	CAFFE2TORCH_MMDNN_PYTHON=$(VENV_MMDNN)/bin/python $(BIN)/python -m pytest
	$(MAKE) test-protobuf3

# The MMdnn engine's environment (mmdnn 0.3.1, protobuf 3.20.3): `convert --engine mmdnn`
# finds it as .venv-mmdnn in the working folder, or by $$CAFFE2TORCH_MMDNN_PYTHON.
mmdnn-env: $(VENV_MMDNN)/bin/mmtoir
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

bench: $(BIN)/caffe2torch
	$(BIN)/python benchmarks/read_caffemodel.py
	$(BIN)/python benchmarks/convert_vgg16.py
	$(BIN)/python benchmarks/vgg16_forward.py
	$(BIN)/python benchmarks/verify_vgg16.py

bench-engines: $(BIN)/caffe2torch $(VENV_MMDNN)/bin/mmtoir
	CAFFE2TORCH_MMDNN_PYTHON=$(VENV_MMDNN)/bin/python $(BIN)/python benchmarks/engines_vgg16.py

# Every corpus net in ../shared converted and verified layer by layer against OpenCV: one line per net.
corpus: $(BIN)/caffe2torch
	$(BIN)/python tools/convert_corpus.py

clean:
	rm -rf $(VENV) $(VENV_PB3) $(VENV_MMDNN) out build *.egg-info src/*.egg-info
