"""Caffe's message classes, built from our own schema tables at import.

No generated ``caffe_pb2`` and no copied ``caffe.proto``: the field facts live as plain tuples
in ``_tables.py`` (BVLC master plus the SSD fork) and in ``FORK_MESSAGES`` below (layers of
other widely used forks). They are turned into a ``FileDescriptorProto`` and message classes
here, which works the same on protobuf 3.20 (the version MMdnn needs) and on current releases.

The message classes are used for the text format (prototxt) and for writing small messages.
Reading weights does not go through them: see ``caffemodel.py``.
"""
from __future__ import annotations

from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ._tables import ENUMS, MESSAGES

# Layer parameters of forks outside BVLC and SSD that published models use. The forks disagree
# on field numbers (SegNet's upsample_param = 137 is BVLC's embed_param; bn_param is 45 in
# SegNet, 152 in PSPNet, 137 in yjxiong's Caffe), so the numbers here are only unique, chosen
# to match OpenCV's copy where it has one. They never matter: prototxts are text, and weights
# are read by layer name, skipping layer parameters.
FORK_MESSAGES: dict[str, tuple] = {
    # SegNet (alexgkendall/caffe-segnet: bn_mode, scale_filler, shift_filler) and PSPNet
    # (hszhao/PSPNet, from yjxiong/caffe: slope_filler, bias_filler, momentum, eps, frozen)
    # both call their layer "BN"; their fields are merged here.
    "BNParameter": (
        ("optional", "FillerParameter", "scale_filler", 1, None, False),
        ("optional", "FillerParameter", "shift_filler", 2, None, False),
        ("optional", "BNParameter.BNMode", "bn_mode", 3, "LEARN", False),
        ("optional", "FillerParameter", "slope_filler", 11, None, False),
        ("optional", "FillerParameter", "bias_filler", 12, None, False),
        ("optional", "float", "momentum", 13, "0.9", False),
        ("optional", "float", "eps", 14, "1e-5", False),
        ("optional", "bool", "frozen", 15, "false", False),
        ("optional", "BNParameter.Engine", "engine", 16, "DEFAULT", False),
    ),
    "InterpParameter": (
        ("optional", "int32", "height", 1, "0", False),
        ("optional", "int32", "width", 2, "0", False),
        ("optional", "int32", "zoom_factor", 3, "1", False),
        ("optional", "int32", "shrink_factor", 4, "1", False),
        ("optional", "int32", "pad_beg", 5, "0", False),
        ("optional", "int32", "pad_end", 6, "0", False),
    ),
    "UpsampleParameter": (
        ("optional", "uint32", "scale", 1, "2", False),
        ("optional", "uint32", "scale_h", 2, None, False),
        ("optional", "uint32", "scale_w", 3, None, False),
        ("optional", "bool", "pad_out_h", 4, "false", False),
        ("optional", "bool", "pad_out_w", 5, "false", False),
        ("optional", "uint32", "upsample_h", 6, None, False),
        ("optional", "uint32", "upsample_w", 7, None, False),
    ),
    "ShuffleChannelParameter": (("optional", "uint32", "group", 1, "1", False),),
    "ROIPoolingParameter": (
        ("optional", "uint32", "pooled_h", 1, "0", False),
        ("optional", "uint32", "pooled_w", 2, "0", False),
        ("optional", "float", "spatial_scale", 3, "1", False),
    ),
    "PSROIPoolingParameter": (
        ("optional", "float", "spatial_scale", 1, None, False),
        ("optional", "int32", "output_dim", 2, None, False),
        ("optional", "int32", "group_size", 3, None, False),
    ),
    "ProposalParameter": (
        ("optional", "uint32", "feat_stride", 1, "16", False),
        ("optional", "uint32", "base_size", 2, "16", False),
        ("optional", "uint32", "min_size", 3, "16", False),
        ("repeated", "float", "ratio", 4, None, False),
        ("repeated", "float", "scale", 5, None, False),
        ("optional", "uint32", "pre_nms_topn", 6, "6000", False),
        ("optional", "uint32", "post_nms_topn", 7, "300", False),
        ("optional", "float", "nms_thresh", 8, "0.7", False),
    ),
    # Self-normalising nets (SNN Caffe reimplementations; soeaver's PSP models).
    "SeLuParameter": (
        ("optional", "float", "lambda", 1, "1.050700987", False),
        ("optional", "float", "alpha", 2, "1.67326324", False),
    ),
    "SeLuDropoutParameter": (
        ("optional", "float", "dropout_ratio", 1, "0.1", False),
        ("optional", "float", "alpha", 2, "-1.75809934", False),
    ),
    "NormalizeBBoxParameter": (
        ("optional", "bool", "across_spatial", 1, "true", False),
        ("optional", "FillerParameter", "scale_filler", 2, None, False),
        ("optional", "bool", "channel_shared", 3, "true", False),
        ("optional", "float", "eps", 4, "1e-10", False),
    ),
    "ResampleParameter": (
        ("optional", "bool", "antialias", 4, "true", False),
        ("optional", "uint32", "width", 1, None, False),
        ("optional", "uint32", "height", 2, None, False),
        ("optional", "ResampleParameter.ResampleType", "type", 3, "LINEAR", False),
        ("optional", "float", "factor", 5, "1.0", False),
    ),
    "AccumParameter": (
        ("optional", "uint32", "top_height", 1, "0", False),
        ("optional", "uint32", "top_width", 2, "0", False),
        ("optional", "uint32", "size_divisible_by", 3, "0", False),
        ("optional", "bool", "have_reference", 4, "false", False),
    ),
    # SegNet's data layer for images and label images.
    "DenseImageDataParameter": (
        ("optional", "string", "source", 1, None, False),
        ("optional", "uint32", "batch_size", 2, None, False),
        ("optional", "uint32", "rand_skip", 3, "0", False),
        ("optional", "bool", "shuffle", 4, "false", False),
        ("optional", "uint32", "new_height", 5, "0", False),
        ("optional", "uint32", "new_width", 6, "0", False),
        ("optional", "bool", "is_color", 7, "true", False),
        ("optional", "string", "mean_file", 8, None, False),
        ("optional", "string", "root_folder", 9, ("str", ""), False),
    ),
}
# Fields that forks added to BVLC messages, as seen in published prototxts.
FORK_FIELDS: dict[str, tuple] = {
    # DenseNet/ResNeXt releases: ``ceil_mode: false`` rounds the output size down.
    "PoolingParameter": (("optional", "bool", "ceil_mode", 100, "true", False),),
    # py-faster-rcnn's Caffe: ``scale_train: false`` scales by (1 - ratio) at test time.
    # Bayesian SegNet: ``sample_weights_test`` keeps dropout on at test time (MC dropout).
    "DropoutParameter": (
        ("optional", "bool", "scale_train", 100, "true", False),
        ("optional", "bool", "sample_weights_test", 101, "false", False),
    ),
    # The first SSD release kept NMS settings directly in detection_output_param.
    "DetectionOutputParameter": (
        ("optional", "float", "nms_threshold", 100, None, False),
        ("optional", "int32", "top_k", 101, None, False),
        # OpenCV's copy: boxes in pixels (Faster R-CNN) instead of [0, 1] (SSD).
        ("optional", "bool", "normalized_bbox", 102, "true", False),
        ("optional", "bool", "clip", 103, "false", False),
    ),
    "ImageDataParameter": (("optional", "bool", "images_in_color", 100, "true", False),),
}
FORK_ENUMS: dict[str, tuple] = {
    "BNParameter.BNMode": (("LEARN", 0), ("INFERENCE", 1)),
    "BNParameter.Engine": (("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)),
    "ResampleParameter.ResampleType": (("NEAREST", 1), ("LINEAR", 2), ("CUBIC", 3), ("AREA", 4)),
}
# (message, field name, field number) added to LayerParameter for the fork layers above.
FORK_LAYER_FIELDS = (
    ("BNParameter", "bn_param", 152),  # PSPNet's number
    ("InterpParameter", "interp_param", 10143),  # PSPNet: 143 (BVLC's input_param)
    ("UpsampleParameter", "upsample_param", 10137),  # SegNet: 137 (BVLC's embed_param)
    ("DenseImageDataParameter", "dense_image_data_param", 10138),  # SegNet: 138
    ("ShuffleChannelParameter", "shuffle_channel_param", 164),
    ("ROIPoolingParameter", "roi_pooling_param", 8266711),  # caffe-fast-rcnn, OpenCV
    ("PSROIPoolingParameter", "psroi_pooling_param", 10001),  # caffe-rfcn, OpenCV
    ("ProposalParameter", "proposal_param", 10201),  # OpenCV: 201 (SSD's multibox_loss_param)
    ("SeLuParameter", "selu_param", 161),
    ("SeLuDropoutParameter", "selu_dropout_param", 162),
    ("NormalizeBBoxParameter", "normalize_bbox_param", 10149),  # old SSD: 149
    ("ResampleParameter", "resample_param", 155),  # FlowNet2
    ("AccumParameter", "accum_param", 160),  # FlowNet2
)

_SCALARS = {
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "float": descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}
_LABELS = {
    "optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    # Required fields are declared optional: the layer that reads them checks presence, so a
    # missing one is reported with the layer's name instead of failing serialisation.
    "required": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
}
PACKAGE = "caffe"


def _all_tables() -> tuple[dict[str, list], dict[str, tuple]]:
    messages = {name: list(fields) for name, fields in MESSAGES.items()}
    for name, fields in FORK_MESSAGES.items():
        assert name not in messages, name
        messages[name] = list(fields)
    for name, fields in FORK_FIELDS.items():
        messages[name].extend(fields)
    for msg, field, number in FORK_LAYER_FIELDS:
        messages["LayerParameter"].append(("optional", msg, field, number, None, False))
    enums = dict(ENUMS)
    enums.update(FORK_ENUMS)
    return messages, enums


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    messages, enums = _all_tables()
    fdp = descriptor_pb2.FileDescriptorProto(name="caffe2torch_caffe.proto", package=PACKAGE)
    fdp.syntax = "proto2"
    protos: dict[str, descriptor_pb2.DescriptorProto] = {}
    for name in messages:
        protos[name] = fdp.message_type.add(name=name)

    enum_names = set()
    for qual, values in enums.items():
        parent, _, short = qual.rpartition(".")
        target = protos[parent].enum_type if parent else fdp.enum_type
        e = target.add(name=short)
        for vname, number in values:
            e.value.add(name=vname, number=number)
        enum_names.add(qual)

    def resolve(scope: str, typ: str) -> tuple[str, bool]:
        """Full name of a message/enum type referenced from message ``scope``."""
        for candidate in (f"{scope}.{typ}", typ):
            if candidate in enum_names:
                return f".{PACKAGE}.{candidate}", True
            if candidate in protos:
                return f".{PACKAGE}.{candidate}", False
        raise KeyError(f"schema: type {typ!r} used in {scope} is not declared")

    for name, fields in messages.items():
        proto = protos[name]
        seen_numbers = set()
        for label, typ, fname, number, default, packed in fields:
            if number in seen_numbers:
                raise ValueError(f"schema: {name} reuses field number {number}")
            seen_numbers.add(number)
            f = proto.field.add(name=fname, number=number, label=_LABELS[label])
            if typ in _SCALARS:
                f.type = _SCALARS[typ]
            else:
                f.type_name, is_enum = resolve(name, typ)
                f.type = (
                    descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
                    if is_enum
                    else descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                )
            if default is not None:
                f.default_value = default[1] if isinstance(default, tuple) else default
            if packed:
                f.options.packed = True
    return fdp


def _message_classes() -> SimpleNamespace:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is None:  # protobuf < 4.21
        factory = message_factory.MessageFactory(pool)
        get_class = factory.GetPrototype
    messages, _ = _all_tables()
    return SimpleNamespace(
        **{name: get_class(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in messages}
    )


pb = _message_classes()
"""Namespace of message classes: ``pb.NetParameter``, ``pb.LayerParameter``, ``pb.BlobProto``..."""
