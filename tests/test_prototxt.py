"""Reading nets: the three prototxt generations, input declarations, phases, in-place chains."""
from __future__ import annotations

import pytest
from helpers import TINY_SHAPES, TINY_V0, TINY_V1, TINY_V2, TINY_WEIGHTS, write

from caffe2torch.api import load_graph
from caffe2torch.caffe.prototxt import read_prototxt
from caffe2torch.errors import InputShapeError


def shapes(graph):
    return {n.id: n.outputs[0].shape for n in graph.nodes if n.outputs}


@pytest.mark.parametrize("fmt,text", [("V2", TINY_V2), ("V1", TINY_V1), ("V0", TINY_V0)])
def test_three_generations_give_one_graph(tmp_path, fmt, text):
    net = read_prototxt(write(tmp_path / "net.prototxt", text))
    assert net.format == fmt
    graph = load_graph(tmp_path / "net.prototxt")
    assert [n.type for n in graph.nodes] == [
        "Input", "Convolution", "ReLU", "Pooling", "InnerProduct", "Softmax",
    ]
    got = shapes(graph)
    for name, shape in TINY_SHAPES.items():
        assert got[name] == shape, name
    assert {n.id: n.weight_shapes for n in graph.nodes if n.weight_shapes} == TINY_WEIGHTS
    assert [(v.name, v.shape) for v in graph.inputs] == [("data", (2, 3, 17, 17))]
    assert [(v.name, v.shape) for v in graph.outputs] == [("prob", (2, 5))]


@pytest.mark.parametrize("text", [TINY_V1, TINY_V0])
def test_v1_and_v0_learning_rates_become_param_specs(tmp_path, text):
    net = read_prototxt(write(tmp_path / "net.prototxt", text)).net
    conv = next(layer for layer in net.layer if layer.name == "conv1")
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]
    assert list(conv.convolution_param.pad) == [1]  # V0: from the folded padding layer


def test_v0_padding_layer_folds_into_the_convolution(tmp_path):
    net = read_prototxt(write(tmp_path / "net.prototxt", TINY_V0)).net
    assert "pad1" not in [layer.name for layer in net.layer]
    conv = next(layer for layer in net.layer if layer.name == "conv1")
    assert list(conv.bottom) == ["data"]


def test_corpus_generations_agree(corpus):
    """The BVLC nets shipped in several formats give identical graphs."""
    groups = [
        ("lenet_bvlc", ["lenet.prototxt", "lenet_V1.prototxt", "lenet_V0.prototxt"]),
        (
            "bvlc_reference_caffenet",
            [
                "deploy.prototxt", "deploy_V1.prototxt", "deploy_input_dim.prototxt",
                "deploy_input_shape.prototxt", "imagenet_deploy_V0.prototxt",
            ],
        ),
        ("cifar10_full_bvlc", ["cifar10_full.prototxt", "cifar10_full_V1.prototxt", "cifar10_full_V0.prototxt"]),
    ]
    for folder, files in groups:
        graphs = [load_graph(corpus / folder / f) for f in files]
        formats = {read_prototxt(corpus / folder / f).format for f in files}
        assert len(formats) >= 2, folder
        ref = [(n.type, n.outputs[0].shape if n.outputs else None, n.weight_shapes)
               for n in graphs[0].layers]
        for g in graphs[1:]:
            got = [(n.type, n.outputs[0].shape if n.outputs else None, n.weight_shapes)
                   for n in g.layers]
            assert got == ref, (folder, g.path.name)


# ------------------------------------------------------------------------- input styles
BODY = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
"""


@pytest.mark.parametrize(
    "header,shape",
    [
        ('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 10', (1, 3, 8, 10)),
        ('input: "data" input_shape { dim: 4 dim: 3 dim: 9 dim: 9 }', (4, 3, 9, 9)),
        ('layer { name: "in" type: "Input" top: "data" '
         'input_param { shape { dim: 2 dim: 3 dim: 5 dim: 6 } } }', (2, 3, 5, 6)),
        ('layer { name: "d" type: "ImageData" top: "data" top: "label" '
         'image_data_param { source: "x.txt" batch_size: 5 new_height: 12 new_width: 14 } }',
         (5, 3, 12, 14)),
        ('layer { name: "d" type: "ImageData" top: "data" top: "label" '
         'transform_param { crop_size: 7 } '
         'image_data_param { source: "x.txt" batch_size: 3 is_color: false } }', (3, 1, 7, 7)),
        ('layer { name: "d" type: "MemoryData" top: "data" top: "label" '
         'memory_data_param { batch_size: 6 channels: 3 height: 11 width: 12 } }', (6, 3, 11, 12)),
        ('layer { name: "d" type: "DummyData" top: "data" '
         'dummy_data_param { shape { dim: 1 dim: 3 dim: 6 dim: 6 } } }', (1, 3, 6, 6)),
        ('layer { name: "d" type: "DummyData" top: "data" '
         'dummy_data_param { num: 2 channels: 3 height: 4 width: 5 } }', (2, 3, 4, 5)),
        ('layer { name: "d" type: "WindowData" top: "data" top: "label" '
         'transform_param { crop_size: 9 } window_data_param { source: "w" batch_size: 8 } }',
         (8, 3, 9, 9)),
        ('layers { name: "d" type: IMAGE_DATA top: "data" top: "label" '
         'image_data_param { source: "x" batch_size: 2 crop_size: 6 } }', (2, 3, 6, 6)),
    ],
)
def test_input_declarations(tmp_path, header, shape):
    body = BODY
    if header.startswith("layers"):
        body = body.replace("layer {", "layers {").replace('"Convolution"', "CONVOLUTION")
    graph = load_graph(write(tmp_path / "net.prototxt", header + body))
    assert [(v.name, v.shape) for v in graph.inputs] == [("data", shape)]
    conv = graph.node("conv").outputs[0].shape
    assert conv == (shape[0], 2, shape[2] - 2, shape[3] - 2)
    if "label" in header:
        assert "unused input(s) dropped: label" in graph.notes


@pytest.mark.parametrize(
    "header",
    [
        'layer { name: "d" type: "Data" top: "data" top: "label" data_param { source: "db" batch_size: 64 } }',
        'layer { name: "d" type: "HDF5Data" top: "data" hdf5_data_param { source: "h5.txt" batch_size: 4 } }',
        'layer { name: "d" type: "Input" top: "data" }',
        'input: "data"',
        'layer { name: "d" type: "Python" top: "data" python_param { module: "m" layer: "L" } }',
    ],
)
def test_undeclared_input_shape_comes_from_the_command_line(tmp_path, header):
    path = write(tmp_path / "net.prototxt", header + BODY)
    with pytest.raises(InputShapeError, match=r"input 'data' has no declared shape"):
        load_graph(path)
    graph = load_graph(path, input_shapes={None: (1, 3, 10, 10)})
    assert graph.node("conv").outputs[0].shape == (1, 2, 8, 8)
    graph = load_graph(path, input_shapes={"data": (3, 3, 5, 5)})
    assert graph.node("conv").outputs[0].shape == (3, 2, 3, 3)


def test_input_shape_overrides_a_declared_shape(tmp_path):
    graph = load_graph(write(tmp_path / "n.prototxt", TINY_V2), input_shapes={"data": (1, 3, 33, 33)})
    assert graph.node("pool1").outputs[0].shape == (1, 4, 8, 8)
    assert graph.node("fc").weight_shapes == [(5, 256), (5,)]


def test_several_inputs_need_names(tmp_path):
    text = (
        'input: "a" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
        'input: "b" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
        'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n'
    )
    path = write(tmp_path / "n.prototxt", text)
    graph = load_graph(path)
    assert [v.name for v in graph.inputs] == ["a", "b"]
    with pytest.raises(InputShapeError, match=r"the net has 2 inputs \(a, b\)"):
        load_graph(path, input_shapes={None: (1, 2, 4, 4)})
    with pytest.raises(InputShapeError, match=r"names 'c', but the net's inputs are: a, b"):
        load_graph(path, input_shapes={"c": (1, 2, 4, 4)})
    graph = load_graph(path, input_shapes={"a": (1, 2, 5, 5), "b": (1, 2, 5, 5)})
    assert graph.outputs[0].shape == (1, 2, 5, 5)


# ---------------------------------------------------------------------------------- phases
TRAIN_VAL = """
name: "tv"
layer { name: "train_data" type: "Data" top: "data" top: "label"
        include { phase: TRAIN } data_param { source: "train_db" batch_size: 32 } }
layer { name: "test_data" type: "Data" top: "data" top: "label"
        include { phase: TEST } transform_param { crop_size: 8 }
        data_param { source: "test_db" batch_size: 10 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" exclude { phase: TEST } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 3 } }
layer { name: "extra" type: "ReLU" bottom: "fc" top: "fc" include { phase: TEST stage: "deploy" } }
layer { name: "acc" type: "Accuracy" bottom: "fc" bottom: "label" top: "acc" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def test_phase_test_keeps_test_layers_and_drops_training_only(tmp_path):
    path = write(tmp_path / "tv.prototxt", TRAIN_VAL)
    graph = load_graph(path, input_shapes={"data": (10, 3, 8, 8)})
    assert [n.name for n in graph.nodes] == ["test_data", "conv", "fc"]
    assert [(v.name, v.shape) for v in graph.inputs] == [("data", (10, 3, 8, 8))]
    assert [(v.name, v.shape) for v in graph.outputs] == [("fc", (10, 3))]
    notes = " | ".join(graph.notes)
    assert "phase TEST excludes 3 layer(s): train_data, drop, extra" in notes
    assert "dropped 2 training-only layer(s): acc (Accuracy), loss (SoftmaxWithLoss)" in notes
    assert "unused input(s) dropped: label" in notes


def test_phase_train_and_stages(tmp_path):
    path = write(tmp_path / "tv.prototxt", TRAIN_VAL)
    graph = load_graph(path, phase="train", input_shapes={"data": (32, 3, 8, 8)})
    assert [n.name for n in graph.nodes] == ["train_data", "conv", "drop", "fc"]
    graph = load_graph(path, stages=["deploy"], input_shapes={"data": (1, 3, 8, 8)})
    assert [n.name for n in graph.nodes] == ["test_data", "conv", "fc", "extra"]


def test_data_layer_partial_shape_is_reported(tmp_path):
    path = write(tmp_path / "tv.prototxt", TRAIN_VAL)
    with pytest.raises(InputShapeError) as e:
        load_graph(path)
    assert str(e.value) == (
        f"{path}:5: layer 'test_data' (Data): input 'data' has no declared shape "
        "(batch 10, 8x8): pass --input-shape data=N,C,H,W"
    )


# ------------------------------------------------------------------------ in-place chains
CHAIN = """
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 1 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "split" type: "Split" bottom: "conv" top: "a" top: "b" }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "slice" type: "Slice" bottom: "sum" top: "s1" top: "s2" slice_param { slice_point: 1 } }
"""


def test_in_place_chain_gives_one_value_per_layer(tmp_path):
    graph = load_graph(write(tmp_path / "c.prototxt", CHAIN))
    conv, bn, scale, relu, split = (graph.node(n) for n in ("conv", "bn", "scale", "relu", "split"))
    assert [n.inplace for n in (conv, bn, scale, relu)] == [False, True, True, True]
    chain = [conv.outputs[0], bn.outputs[0], scale.outputs[0], relu.outputs[0]]
    assert [v.name for v in chain] == ["conv"] * 4
    assert [v.version for v in chain] == [0, 1, 2, 3]
    assert bn.inputs[0] is conv.outputs[0] and relu.inputs[0] is scale.outputs[0]
    assert split.inputs[0] is relu.outputs[0]
    assert [v.consumers for v in chain[:3]] == [[bn], [scale], [relu]]
    assert bn.weight_shapes == [(4,), (4,), (1,)] and scale.weight_shapes == [(4,), (4,)]
    assert [(v.name, v.shape) for v in graph.outputs] == [("s1", (1, 1, 8, 8)), ("s2", (1, 3, 8, 8))]


def test_shared_parameters_and_repeated_layer_names(tmp_path):
    text = """
input: "a" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }
input: "b" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }
layer { name: "conv" type: "Convolution" bottom: "a" top: "ca" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "conv" type: "Convolution" bottom: "b" top: "cb" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "ip_a" type: "InnerProduct" bottom: "ca" top: "fa" param { name: "w" } param { name: "bias" }
        inner_product_param { num_output: 3 } }
layer { name: "ip_b" type: "InnerProduct" bottom: "cb" top: "fb" param { name: "w" } param { name: "bias" }
        inner_product_param { num_output: 3 } }
"""
    graph = load_graph(write(tmp_path / "s.prototxt", text))
    assert [n.id for n in graph.nodes] == ["a", "b", "conv", "conv_2", "ip_a", "ip_b"]
    assert graph.node("conv_2").name == "conv"
    assert any("2 layers are named 'conv'" in n for n in graph.notes)
    assert graph.node("ip_b").param_names == ["w", "bias"]
