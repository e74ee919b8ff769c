"""The MMdnn engine: MMdnn 0.3.1's flow run in its own environment, the bias/scale squeeze applied
automatically, KitModel made loadable from a plain state_dict, and the result verified against
OpenCV like the native engine's (every value MMdnn names after a Caffe layer).

Needs the MMdnn environment (`make mmdnn-env`; `make test` makes it and points
CAFFE2TORCH_MMDNN_PYTHON at it); skipped without it.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write
from layer_harness import net_text

pytest.importorskip("cv2")

from caffe2torch.mmdnn.engine import MMdnnError, convert_mmdnn, find_python  # noqa: E402
from caffe2torch.verify.run import verify_conversion  # noqa: E402

try:
    find_python()
    HAVE_MMDNN = True
except MMdnnError:
    HAVE_MMDNN = False

pytestmark = pytest.mark.skipif(not HAVE_MMDNN, reason="no MMdnn environment (make mmdnn-env)")

# BatchNorm + Scale after a 1x1 convolution with bias (examples/bn/bn.prototxt, which the Docker
# image's check converts too): MMdnn's padded 4-D bias, scale, mean and var crash its own
# mmtomodel unless squeezed; the 1x1 kernel must stay 4-D.
BN_NET = (Path(__file__).resolve().parents[1] / "examples" / "bn" / "bn.prototxt").read_text()
assert "BatchNorm" in BN_NET and "Scale" in BN_NET


def test_bn_net_squeezed_converted_and_verified(cli, tmp_path):
    net = write(tmp_path / "bn.prototxt", BN_NET)
    out = tmp_path / "out"
    code, stdout, stderr = cli("convert", net, "--random-weights", "-o", out, "--engine", "mmdnn",
                               "--keep-intermediate")
    assert code == 0, stderr
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["engine"]["name"] == "mmdnn" and manifest["engine"]["versions"]["mmdnn"] == "0.3.1"
    assert manifest["engine"]["versions"]["protobuf"] == "3.20.3"
    squeezed = set(manifest["engine"]["squeezed"])
    # What MMdnn padded to 4-D (its mmtomodel, run for kit.pth below, crashes on them otherwise).
    assert squeezed == {"conv1.bias", "conv2.bias", "bn1.scale"}
    # Verified like the native engine: conv1, scale1 (BatchNorm folded in), relu1, conv2.
    check = manifest["verification"]
    assert check["passed"] is True and check["compared"] == 4, check
    # A plain state_dict; the 1x1 kernel is still 4-D.
    state = torch.load(out / "model.pth", weights_only=True)
    assert tuple(state["conv1.weight"].shape) == (8, 3, 1, 1) and state["conv1.bias"].ndim == 1
    # model.py: KitModel() builds without a weights file, no imp, no pickle.
    text = (out / "model.py").read_text()
    assert "import imp" not in text and "allow_pickle" not in text
    namespace: dict = {}
    exec(compile(text, "model.py", "exec"), namespace)
    model = namespace["KitModel"]()
    model.load_state_dict(state)
    # MMdnn's own artifacts, as the seed's flow makes them.
    assert sorted(p.name for p in (out / "mmdnn").iterdir()) == [
        "ir.json", "ir.npy", "ir.pb", "kit.npy", "kit.pth", "kit.py"]
    assert "PyCaffe" in stdout and "squeezed" in stdout
    code, stdout, _ = cli("verify", out)
    assert code == 0 and "passed: 4 values compared" in stdout


def test_same_numbers_as_the_native_engine(tmp_path):
    net = write(tmp_path / "bn.prototxt", BN_NET)
    from caffe2torch.emit import convert

    mm = convert_mmdnn(net, random_weights=True, seed=4)
    native = convert(net, random_weights=True, seed=4)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 8, 8), dtype=np.float32))
    with torch.no_grad():
        a, b = mm.module()(x), native.module()(x)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


CORPUS_NETS = [
    "lenet_bvlc/lenet.prototxt",
    "bvlc_reference_caffenet/deploy.prototxt",
    "vgg16_ilsvrc/VGG_ILSVRC_16_layers_deploy.prototxt",
    "bvlc_googlenet/deploy.prototxt",
    "resnet50/ResNet-50-deploy.prototxt",
    "squeezenet_v1.1/deploy.prototxt",
]


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("rel", CORPUS_NETS)
def test_corpus_nets_convert_and_verify(corpus, rel):
    conversion = convert_mmdnn(corpus / rel, random_weights=True, seed=1)
    v = verify_conversion(conversion)
    assert v.status == "passed", v.to_dict(rows=False)
    assert not v.drifted
    # Every layer MMdnn names is compared, not only the outputs.
    assert len(v.compared) > len(conversion.outputs)
    # Every net with a biased convolution needed the squeeze, and got it.
    assert any(s.endswith(".bias") for s in conversion.engine["squeezed"])


def test_layers_mmdnn_lacks_or_gets_wrong_stop_before_writing(cli, tmp_path):
    net = write(
        tmp_path / "gaps.prototxt",
        net_text(
            {"data": (1, 4, 8, 8)},
            """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 dilation: 2 } }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "conv" top: "shuffle" shuffle_channel_param { group: 2 } }
layer { name: "pool" type: "Pooling" bottom: "shuffle" top: "pool"
  pooling_param { pool: AVE kernel_size: 3 pad: 1 } }
""",
        ),
    )
    out = tmp_path / "out"
    code, _, stderr = cli("convert", net, "--random-weights", "-o", out, "--engine", "mmdnn")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "'shuffle': MMdnn has no ShuffleChannel layer" in stderr
    assert "'conv': MMdnn's PyTorch code ignores dilation" in stderr
    assert "'pool': MMdnn's padded AVE pooling" in stderr
    assert "--engine native" in stderr and not out.exists()
    # The native engine converts it.
    assert cli("convert", net, "--random-weights", "-o", out)[0] == 0


def test_loadable_code_keeps_mmdnn_code_and_drops_the_weights_file():
    kit = '''
import numpy as np
import torch.nn as nn
_weights_dict = dict()
def load_weights(weight_file):
    return np.load(weight_file, allow_pickle=True).item()
class KitModel(nn.Module):
    def __init__(self, weight_file):
        super(KitModel, self).__init__()
        global _weights_dict
        _weights_dict = load_weights(weight_file)
        self.fc = self.__dense(name="fc", in_features=2, out_features=3)
    def forward(self, x):
        fc = self.fc(x)
        return fc
    @staticmethod
    def __dense(name, **kwargs):
        layer = nn.Linear(**kwargs)
        layer.state_dict()["weight"].copy_(torch.from_numpy(_weights_dict[name]["weights"]))
        if "bias" in _weights_dict[name]:
            layer.state_dict()["bias"].copy_(torch.from_numpy(_weights_dict[name]["bias"]))
        return layer
'''
    from caffe2torch.mmdnn.engine import loadable_code

    code = loadable_code(kit)
    ast.parse(code)
    namespace: dict = {}
    exec(compile(code, "model.py", "exec"), namespace)
    model = namespace["KitModel"]()
    assert tuple(model.fc.weight.shape) == (3, 2)
    with pytest.raises(ValueError, match="load_state_dict"):
        namespace["KitModel"]("kit.npy")


def test_same_inputs_give_identical_bytes(cli, tmp_path):
    """MMdnn orders its helper methods by set iteration; the engine fixes the hash seed."""
    net = write(tmp_path / "bn.prototxt", BN_NET)
    for out in ("a", "b"):
        args = ("convert", net, "--random-weights", "-o", tmp_path / out, "--engine", "mmdnn",
                "--keep-intermediate")
        assert cli(*args)[0] == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 12  # model.py, model.pth, conversion.json, report.md, preprocess.json/.py, mmdnn/ (6)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
