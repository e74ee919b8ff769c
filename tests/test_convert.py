"""The convert command and the folder it writes: contract, determinism, names, outputs,
errors, weight sharing, in-place safety and the lean forward pass."""
from __future__ import annotations

import ast
import json
import sys

import numpy as np
import pytest
import torch
from helpers import TINY_V2, write
from layer_harness import net_text

from caffe2torch.emit import conversion as conversion_module
from caffe2torch.emit import convert, load_converted
from caffe2torch.errors import OutputError


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _run_model(model, conversion, seed=0):
    rng = np.random.default_rng(seed)
    xs = [torch.from_numpy(rng.standard_normal(v.shape, dtype=np.float32)) for v in conversion.graph.inputs]
    with torch.no_grad():
        out = model(*xs)
    return out if isinstance(out, tuple) else (out,)


# ------------------------------------------------------------------------------ the folder
def test_folder_contract(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    out = tmp_path / "out"
    code, stdout, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 0, stderr
    assert _files(out) == [
        "README.md", "config.json", "conversion.json", "hubconf.py", "model.pth", "model.py",
        "preprocess.json", "preprocess.py", "report.html", "report.md",
    ]
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["class_name"] == "Tiny"
    assert manifest["weights_file"] == "model.pth"
    assert manifest["inputs"] == [{"name": "data", "shape": [2, 3, 17, 17]}]
    assert manifest["outputs"] == [{"name": "prob", "shape": [2, 5]}]
    assert manifest["layer_map"] == {
        "data": "input", "conv1": "conv1", "relu1": "relu1", "pool1": "pool1", "fc": "fc", "prob": "prob",
    }
    assert manifest["sources"]["prototxt"]["file"] == "tiny.prototxt"
    assert len(manifest["sources"]["prototxt"]["sha256"]) == 64
    assert manifest["sources"]["weights"] == {"random": True, "seed": 0}
    assert manifest["sources"]["prototxt"]["path"] == "../tiny.prototxt"  # from the folder
    assert manifest["options"] == {"phase": "test", "stages": []}
    # Verified by default: every value of the 5 layers compared, none failed.
    check = manifest["verification"]
    assert check["passed"] is True and check["compared"] == 5 and check["failed"] == 0, check
    # The check runs at batch 1 (the net declares 2), and says so.
    assert "| 1 | conv1 | Convolution | conv1 | 1x4x9x9 |" in (out / "report.md").read_text()
    assert "at batch 1 (the prototxt declares 2; --check-batch changes it)" in check["inputs"]
    assert {"caffe2torch", "torch", "numpy", "python"} <= set(manifest["versions"])
    # No absolute paths, no temporary names.
    for f in out.iterdir():
        assert str(tmp_path) not in f.read_bytes().decode("latin-1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "tiny.prototxt" in stdout and "model.pth" in stdout and "prob 2x5" in stdout


def test_model_py_imports_only_torch_and_loads_weights_only(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", out)[0] == 0
    tree = ast.parse((out / "model.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"torch"}
    state = torch.load(out / "model.pth", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    # Run the written file as a user would, in a fresh namespace.
    namespace: dict = {}
    exec(compile((out / "model.py").read_text(), str(out / "model.py"), "exec"), namespace)
    model = namespace["Tiny"]()
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state)
    model.eval()
    conversion = convert(net, random_weights=True)
    a = _run_model(model, conversion)[0]
    b = _run_model(load_converted(out), conversion)[0]
    c = _run_model(conversion.module(), conversion)[0]
    assert torch.equal(a, b) and torch.equal(a, c)


def _same_bytes(cli, net, out, *args):
    a, b = out / "a", out / "b"
    out.mkdir()
    for folder in (a, b):
        code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "--seed", 3, "-o", folder, *args)
        assert code == 0, stderr
    assert _files(a) == _files(b)
    for f in _files(a):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_same_inputs_give_identical_bytes(cli, tmp_path, corpus):
    # A real architecture (GoogLeNet: branches, concats, 116 tensors) in both formats, without
    # the check: it changes no byte of the model, weights or code, and costs a minute a run.
    net = corpus / "bvlc_googlenet" / "deploy.prototxt"
    for fmt in ("pth", "safetensors"):
        _same_bytes(cli, net, tmp_path / f"googlenet_{fmt}", "--format", fmt, "--no-verify")
    # With the check, its results (conversion.json, report.md) are identical bytes too.
    tiny = write(tmp_path / "tiny.prototxt", TINY_V2)
    for fmt in ("pth", "safetensors"):
        _same_bytes(cli, tiny, tmp_path / f"tiny_{fmt}", "--format", fmt)
    report = (tmp_path / "tiny_pth" / "a" / "report.md").read_text()
    assert "## Parity with Caffe" in report and "**passed**" in report


def test_safetensors(cli, tmp_path):
    from safetensors.torch import load_file

    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    out = tmp_path / "out"
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--format", "safetensors")[0] == 0
    assert _files(out) == [
        "README.md", "config.json", "conversion.json", "hubconf.py", "model.py", "model.safetensors",
        "preprocess.json", "preprocess.py", "report.html", "report.md",
    ]
    pth = convert(net, random_weights=True).state_dict()
    st = load_file(out / "model.safetensors")
    assert set(st) == set(pth) and all(torch.equal(st[k], pth[k]) for k in pth)
    load_converted(out)


def test_trained_weights_end_to_end(cli, tmp_path, corpus):
    folder = corpus / "lenet_mnist_weights_ethereon"
    out = tmp_path / "lenet"
    code, _, stderr = cli("convert", "--record-paths", folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel", "-o", out)
    assert code == 0, stderr
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["sources"]["weights"]["file"] == "lenet_iter_10000.caffemodel"
    state = torch.load(out / "model.pth", weights_only=True)
    from caffe2torch.caffe.caffemodel import read_caffemodel

    blobs = read_caffemodel(folder / "lenet_iter_10000.caffemodel").layers
    np.testing.assert_array_equal(state["conv1.weight"].numpy(), blobs["conv1"].blobs[0].data)
    np.testing.assert_array_equal(state["ip2.bias"].numpy(), blobs["ip2"].blobs[1].data.ravel())


# ---------------------------------------------------------------------------------- outputs
VGG_HEAD = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv1" top: "fc6" inner_product_param { num_output: 8 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7" inner_product_param { num_output: 6 } }
layer { name: "relu7" type: "ReLU" bottom: "fc7" top: "fc7" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""


def test_outputs_pick_blobs_and_drop_what_they_do_not_need(tmp_path):
    net = write(tmp_path / "v.prototxt", net_text({"data": (2, 3, 6, 6)}, VGG_HEAD, name="vgg"))
    full = convert(net, random_weights=True, outputs=["fc7", "prob"])
    fc7, prob = _run_model(full.module(), full)
    assert fc7.shape == (2, 6) and prob.shape == (2, 3)
    assert (fc7 >= 0).all()  # the blob as Caffe holds it: after relu7, which ran in place
    feats = convert(net, random_weights=True, outputs=["fc7"])
    (only,) = _run_model(feats.module(), feats)
    assert torch.equal(only, fc7)
    assert feats.generated.layer_map["fc8"] == "dropped" and feats.generated.layer_map["prob"] == "dropped"
    assert "fc8" not in feats.code and not any(k.startswith("fc8") for k in feats.state_dict())
    assert "-> tuple[Tensor, Tensor]" in full.code


def test_unknown_output_blob(cli, tmp_path):
    net = write(tmp_path / "v.prototxt", net_text({"data": (2, 3, 6, 6)}, VGG_HEAD, name="vgg"))
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o", "--outputs", "fc9")
    assert code == 2
    assert "v.prototxt: --outputs names 'fc9', which is not a blob of the net" in stderr
    assert not (tmp_path / "o").exists()


def test_class_name(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "a", "--class-name", "MyNet")[0] == 0
    assert "class MyNet(nn.Module):" in (tmp_path / "a" / "model.py").read_text()
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "b", "--class-name", "my-net")
    assert code == 2 and "--class-name 'my-net' is not a Python identifier" in stderr


# ------------------------------------------------------------------------------------ names
AWKWARD = """
layer { name: "inception_3a/1x1" type: "Convolution" bottom: "input" top: "inception_3a/1x1" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "1x1" type: "Convolution" bottom: "input" top: "1x1" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "inception_3a_1x1" type: "Convolution" bottom: "input" top: "class" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "forward" type: "ReLU" bottom: "class" top: "x" }
layer { name: "training" type: "Concat" bottom: "inception_3a/1x1" bottom: "1x1" bottom: "x" top: "def" }
layer { name: "self" type: "TanH" bottom: "def" top: "torch" }
"""


def test_names_are_sanitised_and_unique(tmp_path):
    net = write(tmp_path / "n.prototxt", net_text({"input": (1, 3, 4, 4)}, AWKWARD, name="2 awkward-net"))
    conversion = convert(net, random_weights=True)
    layer_map = conversion.generated.layer_map
    assert layer_map["inception_3a/1x1"] == "inception_3a_1x1"
    assert layer_map["inception_3a_1x1"] == "inception_3a_1x1_1"  # clash
    assert layer_map["1x1"] == "_1x1"
    assert layer_map["forward"] == "forward_" and layer_map["training"] == "functional"
    assert layer_map["self"] == "self"  # self.self is fine; a local named self would not be
    assert conversion.class_name == "Net2_awkward_net"
    code = conversion.code
    ast.parse(code)
    assert "def forward(self, input: Tensor) -> Tensor:" in code
    (y,) = _run_model(conversion.module(), conversion)
    assert y.shape == (1, 6, 4, 4)


def test_names_from_inputs_cannot_inject_code(tmp_path):
    evil = 'name: "x\\"\\"\\"\\nimport os\\nos.system(1)\\n"\n' + net_text({"d": (1, 2)}, 'layer { name: "t" type: "TanH" bottom: "d" top: "t" }').split("\n", 1)[1]
    net = write(tmp_path / 'e"vil.prototxt', evil)
    conversion = convert(net)
    tree = ast.parse(conversion.code)
    assert [type(n).__name__ for n in tree.body][:1] == ["Expr"]  # the docstring stays a docstring
    assert "import os" not in conversion.code.split('"""')[2]
    conversion.module()


# ------------------------------------------------------------------------------------ errors
def test_every_unsupported_layer_is_listed_and_nothing_is_written(cli, tmp_path):
    layers = """
layer { name: "a" type: "Frobnicate" bottom: "data" top: "a" }
layer { name: "b" type: "TanH" bottom: "a" top: "b" }
layer { name: "c" type: "Wibble" bottom: "b" top: "c" }
"""
    net = write(tmp_path / "u.prototxt", net_text({"data": (1, 3)}, layers))
    code, _, stderr = cli("convert", "--record-paths", net, "-o", tmp_path / "o")
    assert code == 2
    assert stderr.count("\n") == 1
    assert "u.prototxt: 2 layers cannot be converted: 'a' (Frobnicate, line 5): unknown layer type; 'c' (Wibble, line 7)" in stderr
    assert not (tmp_path / "o").exists()


def test_known_layers_without_pytorch_form_are_listed(cli, tmp_path):
    # Embed: known (shapes, weights) but without a PyTorch form yet.
    layer = 'layer { name: "emb" type: "Embed" bottom: "data" top: "emb" embed_param { num_output: 4 input_dim: 10 } }'
    net = write(tmp_path / "embed.prototxt", net_text({"data": (2, 3)}, layer))
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "o")
    assert code == 2
    assert "1 layer(s) cannot be converted: 'emb' (Embed)" in stderr
    assert not (tmp_path / "o").exists()


def test_python_layers_are_reported_never_imported(cli, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_layer.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nclass L: pass\n")
    layers = """
layer { name: "p" type: "Python" bottom: "data" top: "p" python_param { module: "evil_layer" layer: "L" } }
layer { name: "q" type: "Python" bottom: "p" top: "q" python_param { module: "evil_layer" layer: "L" } }
"""
    net = write(tmp_path / "py.prototxt", net_text({"data": (1, 3)}, layers))
    # The module is importable (so that importing it would show), yet never imported.
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, stderr = cli("convert", "--record-paths", net, "-o", tmp_path / "o")
    assert code == 2
    assert "'p' (Python evil_layer.L, line 5): a Python layer's code is never imported or run" in stderr
    assert "'q'" in stderr and not marker.exists() and not (tmp_path / "o").exists()


def test_weights_are_required_unless_random(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    code, _, stderr = cli("convert", "--record-paths", net, "-o", tmp_path / "o")
    assert code == 2 and "no weights given: pass the .caffemodel, or --random-weights" in stderr
    w = tmp_path / "w.caffemodel"
    assert cli("synth-weights", net, "-o", w)[0] == 0
    code, _, stderr = cli("convert", "--record-paths", net, w, "--random-weights", "-o", tmp_path / "o")
    assert code == 2 and "not both" in stderr


def test_existing_folder_is_kept_unless_overwrite(cli, tmp_path):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 2 and "the folder exists and is not empty: pass --overwrite" in stderr
    assert _files(out) == ["mine.txt"]
    # --overwrite replaces only a folder caffe2torch wrote, holding nothing else.
    code, _, stderr = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--overwrite")
    assert code == 2 and stderr == (
        f"error: {out}: --overwrite replaces only a folder caffe2torch wrote, and it has no "
        "conversion.json, so caffe2torch did not write it; give a new folder\n"
    )
    assert _files(out) == ["mine.txt"]
    (out / "mine.txt").unlink()
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", out)[0] == 0
    first = (out / "model.py").read_bytes()
    assert cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--overwrite", "--class-name", "Other")[0] == 0
    assert _files(out) == [
        "README.md", "config.json", "conversion.json", "hubconf.py", "model.pth", "model.py",
        "preprocess.json", "preprocess.py", "report.html", "report.md",
    ]
    assert (out / "model.py").read_bytes() != first and b"class Other" in (out / "model.py").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_while_writing_leaves_nothing(cli, tmp_path, monkeypatch):
    net = write(tmp_path / "tiny.prototxt", TINY_V2)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conversion_module, "save_weights", boom)
    with pytest.raises(OutputError, match="out: cannot write: No space left on device"):
        convert(net, random_weights=True).write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.prototxt"]


# ------------------------------------------------------------------------- weight sharing
SIAMESE = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { name: "conv1_w" } param { name: "conv1_b" } convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "conv1_p" type: "Convolution" bottom: "data_p" top: "conv1_p"
  param { name: "conv1_w" } param { name: "conv1_b" } convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv1" top: "ip" inner_product_param { num_output: 3 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv1_p" top: "ip_p" inner_product_param { num_output: 3 } }
layer { name: "diff" type: "Eltwise" bottom: "ip" bottom: "ip_p" top: "diff" eltwise_param { coeff: 1 coeff: -1 } }
"""


def test_shared_weights_share_one_module(tmp_path):
    """Shared by ``param { name }`` (the siamese pattern) and by a repeated layer name."""
    pytest.importorskip("cv2")
    from caffe2torch.api import load_graph
    from caffe2torch.synth import write_synth_weights
    from caffe2torch.verify.parity import compare_outputs, random_inputs

    net = write(tmp_path / "s.prototxt", net_text({"data": (2, 1, 6, 6), "data_p": (2, 1, 6, 6)}, SIAMESE))
    w = tmp_path / "w.caffemodel"
    write_synth_weights(load_graph(net), w)
    conversion = convert(net, w)
    layer_map = conversion.generated.layer_map
    assert layer_map["conv1_p"] == "conv1" and layer_map["ip_2"] == "ip"
    assert sorted(conversion.state_dict()) == ["conv1.bias", "conv1.weight", "ip.bias", "ip.weight"]
    assert "self.conv1(data_p)" in conversion.code
    for c in compare_outputs(conversion, net, w, random_inputs(conversion.graph.inputs)):
        assert c.ok, c


# -------------------------------------------------------------------- in place, lean forward
BRANCHES = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: MAX kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "sig" type: "Sigmoid" bottom: "conv" top: "sig" }
layer { name: "relu2" type: "ReLU" bottom: "sig" top: "sig" }
layer { name: "flat" type: "Flatten" bottom: "pool" top: "flat" }
layer { name: "relu3" type: "ReLU" bottom: "flat" top: "flat" }
layer { name: "split" type: "Split" bottom: "data" top: "d1" top: "d2" }
layer { name: "relu4" type: "ReLU" bottom: "d1" top: "d1" }
layer { name: "sum" type: "Eltwise" bottom: "d1" bottom: "d2" top: "sum" }
layer { name: "slice" type: "Slice" bottom: "data" top: "s0" top: "s1" slice_param { axis: 1 slice_point: 1 } }
layer { name: "relu5" type: "ReLU" bottom: "s1" top: "s1" }
layer { name: "cat" type: "Concat" bottom: "s0" bottom: "s1" top: "cat" }
"""


def test_in_place_only_where_nothing_else_sees_the_tensor(tmp_path):
    pytest.importorskip("cv2")
    from caffe2torch.api import load_graph
    from caffe2torch.synth import write_synth_weights
    from caffe2torch.verify.parity import compare_outputs, random_inputs

    net = write(tmp_path / "b.prototxt", net_text({"data": (2, 3, 4, 4)}, BRANCHES))
    w = tmp_path / "w.caffemodel"
    write_synth_weights(load_graph(net), w)
    conversion = convert(net, w)
    code = conversion.code
    # relu: pool read conv before and keeps it for its backward pass.
    assert "self.relu = nn.ReLU()" in code
    assert "self.relu2 = nn.ReLU()" in code  # sigmoid's backward needs its output
    assert "self.relu3 = nn.ReLU(inplace=True)" in code  # a view of pool, which nothing else reads
    assert "self.relu4 = nn.ReLU()" in code  # d1 is the net's input (via Split)
    assert "self.relu5 = nn.ReLU()" in code  # s1 is a view of the net's input (via Slice)
    for c in compare_outputs(conversion, net, w, random_inputs(conversion.graph.inputs)):
        assert c.ok, c
    # The input is not modified, and training works (no in-place op breaks autograd).
    model = conversion.module().train()
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    x0 = x.detach().clone()
    sum(o.sum() for o in model(x)).backward()
    assert torch.equal(x.detach(), x0) and x.grad is not None


def _live_tensors_per_line(model, inputs):
    """Run forward under a tracer; at each line, the names of local tensors held."""
    seen = []
    code = type(model).forward.__code__

    def tracer(frame, event, arg):
        if frame.f_code is code:
            if event == "line":
                seen.append({k for k, v in frame.f_locals.items() if isinstance(v, torch.Tensor)})
            return tracer
        return None

    sys.settrace(tracer)
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        sys.settrace(None)
    return seen


LIVE_NETS = ["bvlc_googlenet/deploy.prototxt", "resnet50/ResNet-50-deploy.prototxt", "densenet121/DenseNet_121.prototxt"]


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("net", [pytest.param(n, marks=pytest.mark.converts(n)) for n in LIVE_NETS])
def test_forward_holds_only_live_activations(corpus, corpus_conversions, net):
    """Every local tensor at every line of forward is read later (or is an input)."""
    conversion = corpus_conversions.get(corpus / net)  # the corpus sweep's, made once a session
    model = conversion.module()
    params = [v for v in conversion.code.split("def forward(self, ")[1].split(")")[0].split(", ")]
    inputs = {p.split(":")[0] for p in params}
    lines = conversion.code.split("def forward(")[1].splitlines()[1:]
    xs = [torch.randn(v.shape) for v in conversion.graph.inputs]
    live = _live_tensors_per_line(model, xs)
    assert len(live) == len(lines)
    for i, names in enumerate(live):
        # The locals before line i runs must all be read by line i or later.
        rest = "\n".join(lines[i:])
        for name in names - inputs:
            assert any(
                tok == name for tok in rest.replace("(", " ").replace(")", " ").replace(",", " ").replace("[", " ").replace("]", " ").split()
            ), f"{name} is held at line {i} but never read again: {lines[i]}"
