"""--plugin: a user's converter for a layer type caffe2torch lacks (CONTRIBUTING.md's worked
example, run as written there), and for a Python layer by its module.layer."""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write

import caffe2torch
from caffe2torch import layers
from caffe2torch.caffe.caffemodel import read_caffemodel
from caffe2torch.caffe.schema import pb

ROOT = Path(__file__).resolve().parents[1]

NET = """
name: "st"
input: "data"
input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
layer {
  name: "st1" type: "ScaledTanh" bottom: "data" top: "st1"
  scaled_tanh_param { alpha: 1.7159 beta: 0.6666 }
}
layer { name: "st2" type: "ScaledTanh" bottom: "st1" top: "st2" }
"""

PYTHON_NET = """
name: "shift"
input: "data"
input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer {
  name: "shift" type: "Python" bottom: "data" top: "shift"
  python_param { module: "my_layers" layer: "ShiftLayer" param_str: "2.5" }
}
"""

PYTHON_PLUGIN = '''
from caffe2torch.layers import Layer, register_python
from caffe2torch.layers.base import Emission, num


@register_python
class Shift(Layer):
    """my_layers.ShiftLayer: top = bottom + float(param_str)."""

    PYTHON = ("my_layers.ShiftLayer",)

    def __init__(self, proto):
        super().__init__(proto)
        self.shift = float(proto.python_param.param_str)

    def infer(self, inputs):
        return [inputs[0]]

    def emit(self, ctx):
        return Emission(["{0} + " + num(self.shift)])
'''


def contributing_plugin(tmp_path: Path) -> Path:
    """The worked example's plugin file, exactly as CONTRIBUTING.md shows it."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("### Worked example: ScaledTanh", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return write(tmp_path / "scaled_tanh.py", code)


def scaled_tanh(x, alpha, beta, gain):
    return alpha * np.tanh(beta * x) * gain.reshape(1, -1, 1, 1)


def test_plugin_converts_a_made_up_layer_type_to_its_formula(cli, tmp_path):
    plugin = contributing_plugin(tmp_path)
    net = write(tmp_path / "net.prototxt", NET)
    weights = tmp_path / "net.caffemodel"
    code, _, err = cli("synth-weights", net, "-o", weights, "--plugin", plugin, "--seed", "4")
    assert (code, err) == (0, "")
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, weights, "-o", out, "--plugin", plugin, "--no-verify")
    assert (code, err) == (0, "")

    stored = read_caffemodel(weights).layers
    gain1, gain2 = (np.asarray(stored[n].blobs[0].data, np.float64) for n in ("st1", "st2"))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    ref = scaled_tanh(scaled_tanh(x, np.float32(1.7159), np.float32(0.6666), gain1), 1.0, 1.0, gain2)
    model = caffe2torch.load(out)
    y = model(torch.from_numpy(x.astype(np.float32))).detach().numpy()
    assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max() + 1e-7
    assert not np.allclose(gain1, 1)  # the learned blob reached the model (not its default)

    source = (out / "model.py").read_text()
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    roots = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0] for n in imports for a in n.names}
    assert roots == {"torch"} and "class ScaledTanh(nn.Module)" in source

    manifest = json.loads((out / "conversion.json").read_text())
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert manifest["plugins"] == [
        {"file": "scaled_tanh.py", "path": "../scaled_tanh.py", "sha256": digest,
         "types": ["ScaledTanh"], "python": []}
    ]
    assert manifest["layer_map"] == {"data": "input", "st1": "st1", "st2": "st2"}
    # Without --record-paths the plugin is named, not located (no path outside the folder).
    code, _, err = cli("convert", net, weights, "-o", tmp_path / "bare", "--plugin", plugin, "--no-verify")
    assert (code, err) == (0, "")
    bare = json.loads((tmp_path / "bare" / "conversion.json").read_text())["plugins"]
    assert bare == [{"file": "scaled_tanh.py", "sha256": digest, "types": ["ScaledTanh"], "python": []}]
    # Nothing stays registered after the command.
    assert layers.layer_class("ScaledTanh") is None
    assert "scaled_tanh_param" not in pb.LayerParameter.DESCRIPTOR.fields_by_name


def test_the_same_net_without_the_plugin_is_refused_in_one_line(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", NET)
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out)
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1, err
    assert "2 layers cannot be converted: 'st1' (ScaledTanh, line 5): unknown layer type; " in err
    assert "'st2' (ScaledTanh, line 9): unknown layer type" in err


def test_a_python_layer_converts_through_a_plugin_by_module_and_layer(cli, tmp_path):
    net = write(tmp_path / "shift.prototxt", PYTHON_NET)
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "-o", out, "--no-verify")
    assert code == 2 and "Python layer (my_layers.ShiftLayer)" in err and not out.exists()
    plugin = write(tmp_path / "my_plugin.py", PYTHON_PLUGIN)
    code, _, err = cli("convert", "--record-paths", net, "-o", out, "--no-verify", "--plugin", plugin)
    assert (code, err) == (0, "")
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 3)).astype(np.float32)
    y = caffe2torch.load(out)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(y, x + np.float32(2.5))
    record = json.loads((out / "conversion.json").read_text())["plugins"][0]
    assert (record["types"], record["python"]) == ([], ["my_layers.ShiftLayer"])
    assert layers.layer_class("Python", pb.LayerParameter(type="Python")) is layers.layer_class("Python")


BAD_PLUGINS = {
    "syntax.py": ("def broken(:\n", "syntax.py:1: cannot be imported: "),
    "raises.py": ("x = 1\nraise RuntimeError('no GPU here')\n", "raises.py:2: cannot be imported: RuntimeError: no GPU here"),
    "nothing.py": ("import math\n", "nothing.py: registers no converter: decorate a subclass of caffe2torch.layers.Layer"),
    "twice.py": (
        "from caffe2torch.layers import Layer, register\n\n@register\nclass Conv(Layer):\n    TYPES = ('Convolution',)\n",
        "twice.py:3: cannot be loaded: layer type 'Convolution' registered twice",
    ),
    "not_a_layer.py": (
        "from caffe2torch.layers import register\n\n@register\nclass Odd:\n    TYPES = ('Odd',)\n",
        "not_a_layer.py: registers <class",
    ),
    "plugin.txt": ("x = 1\n", "plugin.txt: is not a .py file"),
}


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_one_line_naming_the_file(cli, tmp_path, name):
    source, expected = BAD_PLUGINS[name]
    plugin = write(tmp_path / name, source)
    net = write(tmp_path / "net.prototxt", NET)
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--plugin", plugin)
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and expected in err, err
    assert layers.layer_class("Odd") is None and layers.layer_class("Convolution").__name__ != "Conv"


def test_a_missing_plugin_and_one_given_twice(cli, tmp_path):
    net = write(tmp_path / "net.prototxt", NET)
    code, _, err = cli("inspect", net, "--plugin", tmp_path / "nope.py")
    assert code == 2 and "nope.py: no such file" in err
    plugin = contributing_plugin(tmp_path)
    code, _, err = cli("inspect", net, "--plugin", plugin, "--plugin", plugin)
    assert code == 2 and "scaled_tanh.py: is given twice" in err
    code, out, err = cli("inspect", net, "--plugin", plugin)
    assert (code, err) == (0, "") and "1.7159" in out  # the table may wrap its details


def test_verify_needs_the_same_plugin_again(cli, tmp_path):
    plugin = contributing_plugin(tmp_path)
    net = write(tmp_path / "net.prototxt", NET.replace('bottom: "data" top: "st1"', 'bottom: "conv" top: "st1"').replace(
        'layer {\n  name: "st1"',
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
        '  convolution_param { num_output: 3 kernel_size: 1 } }\nlayer {\n  name: "st1"',
    ))
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--plugin", plugin)
    assert (code, err) == (0, "")
    code, _, err = cli("verify", out)
    assert code == 2 and err.count("\n") == 1
    assert "conversion.json: this model was converted with the plugin(s) scaled_tanh.py (sha256 " in err
    assert "pass the same --plugin again" in err
    (tmp_path / "other").mkdir()
    changed = write(tmp_path / "other" / "scaled_tanh.py", plugin.read_text() + "# edited\n")
    code, _, err = cli("verify", out, "--plugin", changed)
    assert code == 2 and "scaled_tanh.py: is not the plugin this model was converted with" in err
    unrelated = write(tmp_path / "my_plugin.py", PYTHON_PLUGIN)
    code, _, err = cli("verify", out, "--plugin", plugin, "--plugin", unrelated)
    assert code == 2 and "my_plugin.py: was not used to convert this model" in err
    code, stdout, err = cli("verify", out, "--plugin", plugin)
    assert (code, err) == (0, "") and "passed: 1 values compared" in stdout
