"""Caffe's message classes, built from our own schema tables at import.

No generated ``caffe_pb2`` and no copied ``caffe.proto``: the field facts live as plain tuples
in ``_tables.py`` (BVLC master plus the SSD fork) and, for the layers of other widely used
forks, beside each layer (``Layer.SCHEMA`` in its family module). They are turned into a
``FileDescriptorProto`` and message classes here, which works the same on protobuf 3.20 (the
version MMdnn needs) and on current releases.

The message classes are used for the text format (prototxt) and for writing small messages.
Reading weights does not go through them: see ``caffemodel.py``.
"""
from __future__ import annotations

from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..layers import fork_schemas
from ._tables import ENUMS, MESSAGES

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
    """BVLC's and SSD's messages, with what each layer family declares forks added."""
    messages = {name: list(fields) for name, fields in MESSAGES.items()}
    enums = dict(ENUMS)

    def add(msg: str, field: tuple, who: str) -> None:
        if any(f[2] == field[2] or f[3] == field[3] for f in messages[msg]):
            raise TypeError(f"{who}: {msg}.{field[2]} (number {field[3]}) is declared twice")
        messages[msg].append(field)

    for who, schema in fork_schemas():
        for name, fields in schema.messages.items():
            if name in messages:
                raise TypeError(f"{who}: message {name} is declared twice")
            messages[name] = list(fields)
        for name, values in schema.enums.items():
            if name in enums:
                raise TypeError(f"{who}: enum {name} is declared twice")
            enums[name] = values
    for who, schema in fork_schemas():
        for name, fields in schema.fields.items():
            for f in fields:
                add(name, f, who)
        for msg, name, number in schema.layer_fields:
            add("LayerParameter", ("optional", msg, name, number, None, False), who)
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
