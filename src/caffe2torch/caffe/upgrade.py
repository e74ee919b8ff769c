"""Upgrading old net descriptions to the V2 form, following Caffe's ``upgrade_proto.cpp``.

- V0: ``layers { layer { name type num_output kernelsize ... } bottom top }``, with separate
  "padding" layers folded into the convolution or pooling that follows them;
- V1: ``layers { type: CONVOLUTION blobs_lr weight_decay ... }``;
- data layers whose ``scale``/``mean_file``/``crop_size``/``mirror`` sit in their own
  parameters instead of ``transform_param``;
- net-level ``input`` + ``input_dim``/``input_shape`` declarations, which become ``Input``
  layers (one per input, named after its blob).
"""
from __future__ import annotations

from ..errors import PrototxtError
from .schema import pb

# V1 enum name -> V2 type string (UpgradeV1LayerType).
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise",
    "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V0 type string -> V1 enum name (UpgradeV0LayerType).
V0_TYPES = {
    "accuracy": "ACCURACY", "bnll": "BNLL", "concat": "CONCAT", "conv": "CONVOLUTION",
    "data": "DATA", "dropout": "DROPOUT", "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN", "hdf5_data": "HDF5_DATA", "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL", "images": "IMAGE_DATA", "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT", "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS", "pool": "POOLING",
    "relu": "RELU", "sigmoid": "SIGMOID", "softmax": "SOFTMAX", "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT", "tanh": "TANH", "window_data": "WINDOW_DATA",
}

_DATA_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


def _err(msg: str, line: int | None, layer: str | None = None) -> PrototxtError:
    return PrototxtError(msg, line=line, layer=layer)


# --------------------------------------------------------------------------------------- V0
def _v0_padding(net, lines):
    """Fold V0 "padding" layers into the convolution/pooling layer that reads their top."""
    pads: dict[str, tuple[str, int]] = {}
    keep_layers, keep_lines = [], []
    for conn, line in zip(net.layers, lines):
        v0 = conn.layer
        if v0.type == "padding":
            if len(conn.bottom) != 1 or len(conn.top) != 1:
                raise _err("a padding layer takes one bottom and one top", line, v0.name)
            pads[conn.top[0]] = (conn.bottom[0], v0.pad)
            continue
        for i, bottom in enumerate(conn.bottom):
            if bottom in pads:
                if v0.type not in ("conv", "pool"):
                    raise _err(
                        f"padding layer output '{bottom}' feeds a '{v0.type}' layer; "
                        "only conv and pool layers can take padding",
                        line,
                        v0.name,
                    )
                src, pad = pads[bottom]
                conn.bottom[i] = src
                v0.pad = pad
        keep_layers.append(conn)
        keep_lines.append(line)
    return keep_layers, keep_lines


def _v0_to_v1(conn, line):
    """One V0 ``layers { layer {...} bottom top }`` connection -> V1LayerParameter."""
    v0 = conn.layer
    out = pb.V1LayerParameter()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    name, t = v0.name, v0.type
    if v0.HasField("name"):
        out.name = name
    if t not in V0_TYPES:
        raise _err(f"unknown V0 layer type '{t}'", line, name)
    out.type = pb.V1LayerParameter.LayerType.Value(V0_TYPES[t])
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)

    def bad(field):
        return _err(f"V0 field '{field}' does not apply to a '{t}' layer", line, name)

    conv, ip, pool = out.convolution_param, out.inner_product_param, out.pooling_param
    if v0.HasField("num_output"):
        if t == "conv":
            conv.num_output = v0.num_output
        elif t == "innerproduct":
            ip.num_output = v0.num_output
        else:
            raise bad("num_output")
    if v0.HasField("biasterm"):
        if t == "conv":
            conv.bias_term = v0.biasterm
        elif t == "innerproduct":
            ip.bias_term = v0.biasterm
        else:
            raise bad("biasterm")
    for fld in ("weight_filler", "bias_filler"):
        if v0.HasField(fld):
            if t == "conv":
                getattr(conv, fld).CopyFrom(getattr(v0, fld))
            elif t == "innerproduct":
                getattr(ip, fld).CopyFrom(getattr(v0, fld))
            else:
                raise bad(fld)
    if v0.HasField("pad"):
        if t == "conv":
            conv.pad.append(v0.pad)
        elif t == "pool":
            pool.pad = v0.pad
        else:
            raise bad("pad")
    if v0.HasField("kernelsize"):
        if t == "conv":
            conv.kernel_size.append(v0.kernelsize)
        elif t == "pool":
            pool.kernel_size = v0.kernelsize
        else:
            raise bad("kernelsize")
    if v0.HasField("group"):
        if t != "conv":
            raise bad("group")
        conv.group = v0.group
    if v0.HasField("stride"):
        if t == "conv":
            conv.stride.append(v0.stride)
        elif t == "pool":
            pool.stride = v0.stride
        else:
            raise bad("stride")
    if v0.HasField("pool"):
        if t != "pool":
            raise bad("pool")
        pool.pool = v0.pool  # same numbering in both enums
    if v0.HasField("dropout_ratio"):
        if t != "dropout":
            raise bad("dropout_ratio")
        out.dropout_param.dropout_ratio = v0.dropout_ratio
    for fld in ("local_size", "alpha", "beta", "k"):
        if v0.HasField(fld):
            if t != "lrn":
                raise bad(fld)
            setattr(out.lrn_param, fld, getattr(v0, fld))
    data_params = {
        "data": out.data_param,
        "images": out.image_data_param,
        "window_data": out.window_data_param,
    }
    if v0.HasField("source"):
        target = {
            **data_params,
            "hdf5_data": out.hdf5_data_param,
            "infogain_loss": out.infogain_loss_param,
        }.get(t)
        if target is None:
            raise bad("source")
        target.source = v0.source
    for v0_field, field in (
        ("scale", "scale"), ("meanfile", "mean_file"), ("cropsize", "crop_size"),
        ("mirror", "mirror"),
    ):
        if v0.HasField(v0_field):
            if t not in data_params:
                raise bad(v0_field)
            setattr(out.transform_param, field, getattr(v0, v0_field))
    if v0.HasField("batchsize"):
        target = {**data_params, "hdf5_data": out.hdf5_data_param}.get(t)
        if target is None:
            raise bad("batchsize")
        target.batch_size = v0.batchsize
    if v0.HasField("rand_skip"):
        if t not in ("data", "images"):
            raise bad("rand_skip")
        data_params[t].rand_skip = v0.rand_skip
    if v0.HasField("shuffle_images"):
        if t != "images":
            raise bad("shuffle_images")
        out.image_data_param.shuffle = v0.shuffle_images
    for fld in ("new_height", "new_width"):
        if v0.HasField(fld):
            if t != "images":
                raise bad(fld)
            setattr(out.image_data_param, fld, getattr(v0, fld))
    if v0.HasField("concat_dim"):
        if t != "concat":
            raise bad("concat_dim")
        out.concat_param.concat_dim = v0.concat_dim
    for v0_field, field in (
        ("det_fg_threshold", "fg_threshold"), ("det_bg_threshold", "bg_threshold"),
        ("det_fg_fraction", "fg_fraction"), ("det_context_pad", "context_pad"),
        ("det_crop_mode", "crop_mode"),
    ):
        if v0.HasField(v0_field):
            if t != "window_data":
                raise bad(v0_field)
            setattr(out.window_data_param, field, getattr(v0, v0_field))
    if v0.HasField("hdf5_output_param"):
        if t != "hdf5_output":
            raise bad("hdf5_output_param")
        out.hdf5_output_param.CopyFrom(v0.hdf5_output_param)
    return out


# --------------------------------------------------------------------------------------- V1
_V1_PARAM_FIELDS = None


def _v1_param_fields():
    global _V1_PARAM_FIELDS
    if _V1_PARAM_FIELDS is None:
        v2_fields = {f.name for f in pb.LayerParameter.DESCRIPTOR.fields}
        _V1_PARAM_FIELDS = [
            f.name
            for f in pb.V1LayerParameter.DESCRIPTOR.fields
            if f.name.endswith("_param") and f.name in v2_fields
        ]
    return _V1_PARAM_FIELDS


def _v1_to_v2(v1, line):
    out = pb.LayerParameter()
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    if v1.HasField("name"):
        out.name = v1.name
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        enum_name = pb.V1LayerParameter.LayerType.Name(v1.type)
        if enum_name not in V1_TYPES:
            raise _err(f"V1 layer type {enum_name} has no V2 equivalent", line, v1.name)
        out.type = V1_TYPES[enum_name]
    out.blobs.extend(v1.blobs)
    n_specs = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(n_specs):
        spec = out.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    out.loss_weight.extend(v1.loss_weight)
    for fld in _v1_param_fields():
        if v1.HasField(fld):
            getattr(out, fld).CopyFrom(getattr(v1, fld))
    if v1.HasField("layer"):  # a V0 connection that was not upgraded: cannot happen here
        raise _err("V0 layer inside a V1 net", line, v1.name)
    return out


# ------------------------------------------------------------------------------- V2 passes
def _upgrade_data_transform(layer) -> None:
    """Move scale/mean_file/crop_size/mirror from data params into transform_param."""
    param = {
        "Data": "data_param",
        "ImageData": "image_data_param",
        "WindowData": "window_data_param",
    }.get(layer.type)
    if param is None or not layer.HasField(param):
        return
    p = getattr(layer, param)
    for fld in _DATA_TRANSFORM_FIELDS:
        if p.HasField(fld):
            setattr(layer.transform_param, fld, getattr(p, fld))
            p.ClearField(fld)


def _upgrade_inputs(net, lines):
    """Net-level ``input``/``input_dim``/``input_shape`` -> ``Input`` layers."""
    names = list(net.input)
    if not names:
        if len(net.input_dim) or len(net.input_shape):
            raise _err("input_dim/input_shape given without any 'input' name", None)
        return [], []
    shapes: list[list[int] | None]
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise _err(
                f"{len(names)} inputs but {len(net.input_shape)} input_shape entries", None
            )
        shapes = [list(s.dim) for s in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise _err(
                f"{len(names)} inputs need {4 * len(names)} input_dim values, "
                f"found {len(net.input_dim)}",
                None,
            )
        dims = list(net.input_dim)
        shapes = [dims[4 * i : 4 * i + 4] for i in range(len(names))]
    else:
        shapes = [None] * len(names)
    taken = {layer.name for layer in net.layer}
    layers = []
    for name, shape in zip(names, shapes):
        layer = pb.LayerParameter(type="Input")
        lname = name
        while lname in taken:
            lname += "_input"
        taken.add(lname)
        layer.name = lname
        layer.top.append(name)
        if shape is not None:
            layer.input_param.shape.add().dim.extend(shape)
        layers.append(layer)
    return layers, [None] * len(layers)


def upgrade_net(net, lines: list[int | None]):
    """Return ``(v2_net, format, layer_lines, notes)`` for a parsed NetParameter."""
    notes: list[str] = []
    if len(net.layers):
        is_v0 = any(conn.HasField("layer") for conn in net.layers)
        fmt = "V0" if is_v0 else "V1"
        if is_v0:
            if not all(conn.HasField("layer") for conn in net.layers):
                raise _err("mixes V0 'layers { layer {...} }' and V1 'layers' blocks", None)
            conns, lines = _v0_padding(net, lines)
            v1_layers = [_v0_to_v1(c, line) for c, line in zip(conns, lines)]
        else:
            v1_layers = list(net.layers)
        v2_layers = [_v1_to_v2(v1, line) for v1, line in zip(v1_layers, lines)]
        notes.append(f"upgraded from the {fmt} prototxt format")
    else:
        fmt = "V2"
        v2_layers = list(net.layer)
    out = pb.NetParameter()
    if net.HasField("name"):
        out.name = net.name
    if net.HasField("state"):
        out.state.CopyFrom(net.state)
    out.force_backward = net.force_backward
    input_layers, input_lines = _upgrade_inputs(net, lines)
    out.layer.extend(input_layers)
    out.layer.extend(v2_layers)
    for layer in out.layer:
        _upgrade_data_transform(layer)
    return out, fmt, input_lines + list(lines), notes
