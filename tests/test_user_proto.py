"""--proto: a user's own fork schema, read as data, and the rule for fields caffe2torch does
not read (CONTRIBUTING.md, "A user's own caffe.proto")."""
from __future__ import annotations

import hashlib
import json

import pytest
from helpers import write

from caffe2torch.caffe.schema import pb

FORK = """
syntax = "proto2";
package caffe;

message PoolingParameter {
  optional float my_gain = 4242;   // the fork's own field
  optional float kernel_size = 2;  // ours is uint32: ours is read
  enum PoolMethod { MAX = 0; AVE = 1; STOCHASTIC = 2; DEF = 7; }
}
message LayerParameter {
  optional MyParameter my_param = 9999;
}
message MyParameter {
  optional int32 level = 1;
  repeated float weights = 2;
}
"""

# "extra" is after the output the conversion keeps (--outputs conv): it is left out.
NET = """name: "fork"
input: "data"
input_shape { dim: 1 dim: 2 dim: 6 dim: 6 }
layer {
  name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 }
}
layer {
  name: "extra" type: "Pooling" bottom: "conv" top: "extra"
  pooling_param { pool: MAX kernel_size: 2 my_gain: 0.5 }
  my_param { level: 3 weights: [1, 2] }
}
"""


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "caffe.proto", FORK), write(tmp_path / "net.prototxt", NET)


def test_without_the_proto_the_field_is_named_with_its_place(cli, files, tmp_path):
    _, net = files
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", tmp_path / "out", "--outputs", "conv")
    assert code == 2 and not (tmp_path / "out").exists()
    assert err == f"error: {net}:10:44: layer 'extra': unknown field 'my_gain' in PoolingParameter\n"


def test_with_the_proto_the_net_is_read_and_converted_around_the_field(cli, files, tmp_path):
    proto, net = files
    out = tmp_path / "out"
    code, _, err = cli(
        "convert", net, "--random-weights", "-o", out, "--outputs", "conv", "--proto", proto,
        "--record-paths",
    )
    assert (code, err) == (0, "")
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["sources"]["proto"] == {
        "file": "caffe.proto", "sha256": hashlib.sha256(proto.read_bytes()).hexdigest(),
        "path": "../caffe.proto",
    }
    ignored = next(n for n in manifest["notes"] if n.startswith("ignored 2 field(s)"))
    assert "layer 'extra' field 'my_gain' of PoolingParameter (line 10:44, declared only in --proto)" in ignored
    assert "layer 'extra' field 'my_param' of LayerParameter (line 11:3, declared only in --proto)" in ignored
    assert manifest["layer_map"]["extra"] == "dropped"
    # verify reads the same proto again (data), from where conversion.json says.
    code, _, err = cli("verify", out)
    assert (code, err) == (0, "")
    proto.write_text(FORK + "\nmessage Other { optional int32 x = 1; }\n")
    code, _, err = cli("verify", out)
    assert code == 2 and "caffe.proto: is not the caffe.proto this model was converted with" in err
    proto.unlink()
    code, _, err = cli("verify", out)
    assert code == 2 and "is not at" in err and "pass --proto" in err
    # The schema is ours again after each command.
    assert "my_param" not in pb.LayerParameter.DESCRIPTOR.fields_by_name


def test_inspect_reads_the_whole_net_and_notes_what_is_not_read(cli, files):
    proto, net = files
    code, out, err = cli("inspect", net, "--proto", proto, "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out)
    assert [r["id"] for r in summary["layers"]] == ["data", "conv", "extra"]
    notes = " ".join(summary["notes"])
    assert "layer 'extra' (line 10:44) sets field 'my_gain' of PoolingParameter, which caffe2torch does not read" in notes
    assert "PoolingParameter.kernel_size is optional float there, optional uint32 here (ours is read)" in notes


def test_a_converted_layer_that_sets_a_field_only_the_proto_declares_stops(cli, files, tmp_path):
    proto, net = files
    out = tmp_path / "out"
    code, _, err = cli("convert", "--record-paths", net, "--random-weights", "-o", out, "--proto", proto)
    assert code == 2 and not out.exists() and err.count("\n") == 1
    assert err.startswith(
        f"error: {net}:10:44: layer 'extra' (Pooling): field 'my_gain' of PoolingParameter is "
        "declared only in caffe.proto (--proto): caffe2torch does not read it"
    )
    # An enum value only the proto declares is such a field too (its number is not ours).
    code, _, err = cli("synth-weights", write(tmp_path / "def.prototxt", NET.replace(
        "pool: MAX kernel_size: 2 my_gain: 0.5", "pool: DEF kernel_size: 2")), "-o", tmp_path / "w.caffemodel", "--proto", proto)
    assert code == 2 and "def.prototxt:10:25: layer 'extra' (Pooling): value DEF of PoolingParameter.PoolMethod (field 'pool') is declared only in caffe.proto" in err


def test_ignore_unknown_fields_skips_them_only_on_layers_left_out(cli, files, tmp_path):
    _, net = files
    out = tmp_path / "out"
    args = ("convert", "--record-paths", net, "--random-weights", "-o", out, "--ignore-unknown-fields")
    code, _, err = cli(*args)
    assert code == 2 and not out.exists()
    assert err == (
        f"error: {net}:10:44: layer 'extra' (Pooling): unknown field 'my_gain' of PoolingParameter: "
        "--ignore-unknown-fields skips unknown fields only on layers left out, and this layer is converted\n"
    )
    code, _, err = cli(*args, "--outputs", "conv")
    assert (code, err) == (0, "")
    manifest = json.loads((out / "conversion.json").read_text())
    assert manifest["options"]["ignore_unknown_fields"] is True
    assert any("field 'my_param' of LayerParameter (line 11:3, declared nowhere)" in n for n in manifest["notes"])
    code, _, err = cli("verify", out)  # with the option conversion.json records
    assert (code, err) == (0, "")


def test_the_values_of_a_net_read_with_a_proto_are_those_of_the_net_without_the_field(cli, files, tmp_path):
    """The field left out changes nothing: the same seeded conversion, with and without it."""
    proto, net = files
    plain = write(tmp_path / "plain.prototxt", NET.replace(" my_gain: 0.5", "").replace(
        "  my_param { level: 3 weights: [1, 2] }\n", ""))
    for name, source, extra in (("a", net, ("--proto", proto)), ("b", plain, ())):
        code, _, err = cli("convert", "--record-paths", source, "--random-weights", "-o", tmp_path / name, "--outputs", "conv", "--no-verify", *extra)
        assert (code, err) == (0, "")
    assert (tmp_path / "a" / "model.pth").read_bytes() == (tmp_path / "b" / "model.pth").read_bytes()


BAD = {
    "syntax": ("message X { optional int32 = 1; }\n", ":1:28: syntax error: "),
    "undeclared type": ("message X { optional Nowhere y = 1; }\n", ":1:30: X.y: type Nowhere is not declared"),
    "nested": ("message X { message Y { optional int32 a = 1; } }\n", "message Y is nested in X"),
    "import": ('import "other.proto";\nmessage X { optional int32 a = 1; }\n', ":1:1: imports 'other.proto'"),
    "twice": ("message X { optional int32 a = 1; optional int32 b = 1; }\n", "X.b = 1: the name or the number is used twice"),
    "empty": ('syntax = "proto2";\n', "declares no message or enum"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_proto_is_one_line_naming_the_file(cli, files, tmp_path, case):
    text, expected = BAD[case]
    bad = write(tmp_path / "bad.proto", text)
    _, net = files
    code, _, err = cli("inspect", net, "--proto", bad)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {bad}") and expected in err, err


def test_a_full_fork_caffe_proto_merges(tmp_path):
    """A whole caffe.proto (ours, written out as a fork's would be) merges without a foreign
    field, and the net reads the same as without it."""
    from caffe2torch.caffe import schema
    from caffe2torch.caffe.prototxt import read_prototxt
    from caffe2torch.caffe.user_proto import read_proto

    lines = ['syntax = "proto2";', "package caffe;"]
    for name, cls in sorted(vars(pb).items()):
        lines.append(f"message {name} {{")
        for f in cls.DESCRIPTOR.fields:
            repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == 3
            label = "repeated" if repeated else "optional"
            typ = f.message_type or f.enum_type
            typ = typ.full_name.split(".", 1)[1] if typ is not None else _SCALAR[f.type]
            lines.append(f"  {label} {typ} {f.name} = {f.number};")
        for e in cls.DESCRIPTOR.enum_types:
            lines.append(f"  enum {e.name} {{ " + " ".join(f"{v.name} = {v.number};" for v in e.values) + " }")
        lines.append("}")
    user = read_proto(write(tmp_path / "full.proto", "\n".join(lines)))
    net = write(tmp_path / "net.prototxt", NET.replace(" my_gain: 0.5", "").replace("  my_param { level: 3 weights: [1, 2] }\n", ""))
    with schema.extended(user) as active:
        assert active.foreign == set() and active.conflicts == []
        text = read_prototxt(net)
        assert text.unread == []
    assert [layer.name for layer in text.net.layer] == ["data", "conv", "extra"]


_SCALAR = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 8: "bool", 9: "string",
           12: "bytes", 13: "uint32"}
