"""The folder as PyTorch people share models (hubconf.py, the model card, config.json), the
public Python API (caffe2torch.convert/verify/inspect/load), where sources are recorded, and
the CLI's habits (--json, -q, -h, --version, completion)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import TINY_V2, write

import caffe2torch
from caffe2torch.synth import write_synth_weights

OTHER = TINY_V2.replace('name: "tiny"', 'name: "other"').replace("num_output: 5", "num_output: 7")


@pytest.fixture
def net(tmp_path):
    """A small classifier with trained-looking weights in a .caffemodel, and 5 labels."""
    (tmp_path / "src").mkdir()
    proto = write(tmp_path / "src" / "deploy.prototxt", TINY_V2)
    weights = tmp_path / "src" / "tiny.caffemodel"
    write_synth_weights(caffe2torch.api.load_graph(proto), weights, seed=3)
    labels = write(tmp_path / "src" / "synset_words.txt", "".join(
        f"n0000000{i} class {i}, the {i}th\n" for i in range(5)))
    return proto, weights, labels


def _input(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _front_matter(text: str) -> dict:
    """The card's YAML front matter; its scalars are JSON (so json reads them)."""
    assert text.startswith("---\n")
    head = text.split("\n---\n", 1)[0].splitlines()[1:]
    out: dict = {}
    section = None
    for line in head:
        if line.startswith("- "):
            out[section] = (out[section] or []) + [line[2:]]
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        value = None if not value else value if value[0].isalpha() and value != "null" else json.loads(value)
        if not line.startswith(" "):
            section = key
            out[key] = value
        else:
            out[section] = {**(out[section] or {}), key: value}
    return out


def test_a_folder_loads_with_torch_hub_and_caffe2torch_load(net, tmp_path):
    proto, weights, labels = net
    conversion = caffe2torch.convert(proto, weights, tmp_path / "out", labels=labels, license="MIT")
    assert conversion.verification.passed and conversion.folder == tmp_path / "out"
    x = _input((2, 3, 17, 17))
    with torch.no_grad():
        want = conversion.module()(x)  # the model made in memory, checked against OpenCV
        hub = torch.hub.load(str(tmp_path / "out"), "model", source="local")
        got_hub = hub(x)
        got_load = caffe2torch.load(tmp_path / "out")(x)
        untrained = torch.hub.load(str(tmp_path / "out"), "model", source="local", pretrained=False)
    assert torch.equal(got_hub, want) and torch.equal(got_load, want)
    assert not hub.training and not torch.equal(untrained(x), want)


def test_two_folders_load_into_one_process(net, tmp_path):
    proto, weights, _ = net
    other = write(tmp_path / "src" / "other.prototxt", OTHER)
    a = caffe2torch.convert(proto, weights, tmp_path / "a")
    b = caffe2torch.convert(other, None, tmp_path / "b", random_weights=True, seed=5)
    x = _input((2, 3, 17, 17))
    with torch.no_grad():
        hub_a = torch.hub.load(str(tmp_path / "a"), "model", source="local")
        hub_b = torch.hub.load(str(tmp_path / "b"), "model", source="local")
        load_a, load_b = caffe2torch.load(tmp_path / "a"), caffe2torch.load(tmp_path / "b")
        assert torch.equal(hub_a(x), a.module()(x)) and torch.equal(load_a(x), a.module()(x))
        assert torch.equal(hub_b(x), b.module()(x)) and torch.equal(load_b(x), b.module()(x))
        assert hub_a(x).shape == (2, 5) and hub_b(x).shape == (2, 7)


def test_safetensors_folders_load_through_hubconf(net, tmp_path):
    proto, weights, _ = net
    c = caffe2torch.convert(proto, weights, tmp_path / "st", weights_format="safetensors")
    x = _input((2, 3, 17, 17))
    with torch.no_grad():
        got = torch.hub.load(str(tmp_path / "st"), "model", source="local")(x)
    assert torch.equal(got, c.module()(x))
    assert json.loads((tmp_path / "st" / "conversion.json").read_text())["weights_file"] == "model.safetensors"


def test_config_json_and_the_model_card_describe_a_classifier(net, tmp_path):
    proto, weights, labels = net
    out = tmp_path / "out"
    caffe2torch.convert(proto, weights, out, labels=labels, license="BSD-2-Clause", mean=[104, 117, 123],
                        scale=0.017)
    config = json.loads((out / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    model = caffe2torch.load(out)
    modules = dict(model.named_modules())
    assert config["num_classes"] == cfg["num_classes"] == 5 and config["num_features"] == 4 * 4 * 4
    assert isinstance(modules[cfg["classifier"]], torch.nn.Linear) and modules[cfg["classifier"]].out_features == 5
    assert isinstance(modules[cfg["first_conv"]], torch.nn.Conv2d)
    assert cfg["input_size"] == [3, 17, 17] and cfg["fixed_input_size"] is True
    assert config["label_names"] == [f"n0000000{i}" for i in range(5)]
    assert config["label_descriptions"]["n00000003"] == "class 3, the 3th"
    assert config["caffe2torch"]["labels"]["sha256"] == hashlib.sha256(labels.read_bytes()).hexdigest()
    assert config["caffe2torch"]["channel_order"] == "BGR"
    # timm's (p/255 - mean) / std is Caffe's (p - mean) * scale, on pixels 0..255.
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 4)).astype(np.float64)
    caffe = (pixels - np.array([104, 117, 123.0])[:, None]) * 0.017
    timm = (pixels / 255 - np.array(cfg["mean"])[:, None]) / np.array(cfg["std"])[:, None]
    np.testing.assert_allclose(timm, caffe, rtol=1e-6, atol=1e-6)
    card = (out / "README.md").read_text()
    front = _front_matter(card)
    assert front["license"] == "BSD-2-Clause" and front["library_name"] == "pytorch"
    assert "image-classification" in front["tags"]
    assert front["source"]["prototxt"] == "deploy.prototxt"
    assert front["source"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert front["caffe2torch"]["check"] == "passed"
    assert 'torch.hub.load("path/to/this/folder", "model", source="local")' in card
    assert "| input | `data` | 2x3x17x17 |" in card and "| output | `prob` | 2x5 |" in card
    assert "minus the mean [104.0, 117.0, 123.0], times 0.017" in card


def test_the_same_conversion_gives_the_same_hub_files(net, tmp_path):
    proto, weights, labels = net
    for name in ("a", "b"):
        caffe2torch.convert(proto, weights, tmp_path / name, labels=labels, license="MIT")
    for f in ("hubconf.py", "README.md", "config.json", "conversion.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_labels_that_do_not_fit_and_bad_licences_are_one_line_and_write_nothing(cli, net, tmp_path):
    proto, weights, _ = net
    wrong = write(tmp_path / "ten.txt", "".join(f"c{i}\n" for i in range(10)))
    out = tmp_path / "out"
    code, _, err = cli("convert", proto, weights, "-o", out, "--labels", wrong)
    assert code == 2 and not out.exists()
    assert err == f"error: {wrong}: has 10 labels, but the net's output 'prob' has 5 classes\n"
    code, _, err = cli("convert", proto, weights, "-o", out, "--license", "a\nb")
    assert code == 2 and not out.exists() and err.count("\n") == 1 and "--license must be one line" in err
    empty = write(tmp_path / "empty.txt", "\n\n")
    code, _, err = cli("convert", proto, weights, "-o", out, "--labels", empty)
    assert (code, err) == (2, f"error: {empty}: holds no labels (one per line)\n") and not out.exists()


def test_sources_are_named_but_their_paths_recorded_only_when_asked(cli, net, tmp_path):
    proto, weights, _ = net
    caffe2torch.convert(proto, weights, tmp_path / "plain")
    sources = json.loads((tmp_path / "plain" / "conversion.json").read_text())["sources"]
    assert sources["prototxt"] == {"file": "deploy.prototxt", "sha256": hashlib.sha256(proto.read_bytes()).hexdigest()}
    assert "path" not in sources["weights"]
    assert not any("../" in p.read_text() or str(tmp_path) in p.read_text()
                   for p in (tmp_path / "plain").iterdir() if p.suffix in (".json", ".md", ".py", ".html"))
    code, _, err = cli("verify", tmp_path / "plain")
    assert code == 2 and err == (
        f"error: {tmp_path / 'plain' / 'conversion.json'} does not say where the prototxt is: pass --net\n"
    )
    v = caffe2torch.verify(tmp_path / "plain", net=proto, weights=weights)
    assert v.passed and len(v.compared) >= 4
    caffe2torch.convert(proto, weights, tmp_path / "rec", record_paths=True)
    sources = json.loads((tmp_path / "rec" / "conversion.json").read_text())["sources"]
    assert sources["prototxt"]["path"] == "../src/deploy.prototxt"
    assert sources["weights"]["path"] == "../src/tiny.caffemodel"
    assert caffe2torch.verify(tmp_path / "rec").passed


def test_the_public_api_is_what_the_cli_runs(cli, net, tmp_path):
    proto, weights, _ = net
    assert set(caffe2torch.__all__) >= {"convert", "verify", "inspect", "load"}
    code, stdout, _ = cli("inspect", proto, weights, "--json")
    assert code == 0 and json.loads(stdout) == caffe2torch.inspect(proto, weights)
    code, stdout, _ = cli("convert", proto, weights, "-o", tmp_path / "cli", "--json")
    record = json.loads(stdout)
    api = caffe2torch.convert(proto, weights, tmp_path / "api")
    assert code == 0 and record["verification"] == api.verification_summary()
    assert "hubconf.py" in record["files"] and record["outputs"] == [{"name": "prob", "shape": [2, 5]}]
    assert (tmp_path / "cli" / "model.pth").read_bytes() == (tmp_path / "api" / "model.pth").read_bytes()
    code, stdout, _ = cli("verify", tmp_path / "cli", "--net", proto, "--weights", weights, "--json")
    assert code == 0 and json.loads(stdout) == caffe2torch.verify(
        tmp_path / "api", net=proto, weights=weights).to_dict()
    with pytest.raises(caffe2torch.CaffeError, match="no such folder"):
        caffe2torch.load(tmp_path / "nowhere")
    assert (tmp_path / "nowhere").exists() is False
    typed = __import__("importlib.resources", fromlist=["files"]).files("caffe2torch") / "py.typed"
    assert typed.is_file()


def test_quiet_json_and_the_progress_display_when_piped(cli, net, tmp_path):
    proto, weights, _ = net
    code, stdout, stderr = cli("convert", proto, weights, "-o", tmp_path / "q", "-q")
    assert (code, stdout, stderr) == (0, "", "")
    code, stdout, stderr = cli("synth-weights", proto, "-o", tmp_path / "w.caffemodel", "--json")
    record = json.loads(stdout)
    assert code == 0 and record["values"] == 4 * 3 * 9 + 4 + 5 * 64 + 5 and record["seed"] == 0
    code, _, stderr = cli("verify", tmp_path / "q", "--net", proto, "--weights", weights, "-q", "-v")
    assert code == 2 and "--quiet/--verbose" in stderr
    # A real process with its output piped: no progress display, nothing on stderr.
    done = subprocess.run(
        [sys.executable, "-m", "caffe2torch", "verify", str(tmp_path / "q"), "--net", str(proto),
         "--weights", str(weights)], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0 and done.stderr == "" and "passed" in done.stdout


def test_help_version_and_completion(cli):
    code, stdout, _ = cli("convert", "-h")
    assert code == 0 and "--labels" in stdout and "--record-paths" in stdout
    # Help is wrapped to the width, not at the docstring's line breaks; flags show no <bool>.
    assert "<bool>" not in stdout
    code, stdout, _ = cli("--version")
    assert code == 0 and f"torch {torch.__version__}" in stdout
    # What `--install-completion` makes bash run: the completion script, from the command itself.
    done = subprocess.run([sys.executable, "-m", "caffe2torch"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "_CAFFE2TORCH_COMPLETE": "source_bash"})
    assert done.returncode == 0 and "complete -o default -F _caffe2torch_completion caffe2torch" in done.stdout
    done = subprocess.run([sys.executable, "-m", "caffe2torch"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "_CAFFE2TORCH_COMPLETE": "complete_bash",
                               "COMP_WORDS": "caffe2torch conv", "COMP_CWORD": "1"})
    assert done.returncode == 0 and done.stdout.split() == ["convert", "convert-all"], done.stdout


def test_predict_names_the_classes_of_config_json(cli, net, tmp_path):
    from PIL import Image

    proto, weights, labels = net
    out = tmp_path / "out"
    caffe2torch.convert(proto, weights, out, labels=labels)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (17, 17, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    code, stdout, _ = cli("predict", out, tmp_path / "x.png", "--json", "--top", "5")
    with_config = json.loads(stdout)
    code2, stdout2, _ = cli("predict", out, tmp_path / "x.png", "--json", "--top", "5", "--labels", labels)
    assert code == code2 == 0 and with_config == json.loads(stdout2)
    names = {c["label"] for c in with_config[0]["top"]} if "top" in with_config[0] else None
    assert names == {f"class {i}, the {i}th" for i in range(5)}, with_config
