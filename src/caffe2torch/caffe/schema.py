"""Caffe's message classes, built from our own schema tables at import.

No generated ``caffe_pb2`` and no copied ``caffe.proto``: the field facts live as plain tuples
in ``_tables.py`` (BVLC master plus the SSD fork) and, for the layers of other widely used
forks, beside each layer (``Layer.SCHEMA`` in its family module). They are turned into a
``FileDescriptorProto`` and message classes here, which works the same on protobuf 3.20 (the
version MMdnn needs) and on current releases.

The message classes are used for the text format (prototxt) and for writing small messages.
Reading weights does not go through them: see ``caffemodel.py``.

Two things extend the schema for one run, and :func:`rebuild` builds the classes again in
place (``pb`` stays the same namespace object): a plugin's ``SCHEMA`` (``caffe2torch.plugins``
registers its classes, then rebuilds), and a user's own ``caffe.proto`` (:func:`extended`, read
as data by ``user_proto.py``). The user's file is merged under ours: a field or enum value we
declare by name is ours (its type, label and number are not taken from the user's file, and a
difference is recorded in ``active().conflicts``); a new field whose number we already use gets
a free number (prototxt text names fields, so numbers do not matter for reading it). What only
the user's file declares is recorded (``active().foreign``), so that the prototxt reader can
tell where a net sets a field caffe2torch does not read.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Iterator

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..layers import fork_schemas
from ._tables import ENUMS, MESSAGES
from .user_proto import UserProto

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
    # Read from a user's caffe.proto: in the text format they read as their plain kinds.
    "sint32": descriptor_pb2.FieldDescriptorProto.TYPE_SINT32,
    "sint64": descriptor_pb2.FieldDescriptorProto.TYPE_SINT64,
    "fixed32": descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32,
    "fixed64": descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64,
    "sfixed32": descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32,
    "sfixed64": descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64,
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


def _file_descriptor(messages: dict[str, list], enums: dict[str, tuple]) -> descriptor_pb2.FileDescriptorProto:
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


_BUILT: dict[str, dict[str, type]] = {}


def _message_classes(messages: dict[str, list], enums: dict[str, tuple]) -> dict[str, type]:
    """The message classes of these tables; the same tables give the same classes (a graph
    read before a plugin was loaded and unloaded stays of the schema in use)."""
    key = repr((sorted((k, list(v)) for k, v in messages.items()), sorted(enums.items())))
    if key not in _BUILT:
        _BUILT[key] = _new_classes(messages, enums)
    return dict(_BUILT[key])


def _new_classes(messages: dict[str, list], enums: dict[str, tuple]) -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor(messages, enums))
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is None:  # protobuf < 4.21
        factory = message_factory.MessageFactory(pool)
        get_class = factory.GetPrototype
    return {name: get_class(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in messages}


# ------------------------------------------------------------------- a user's caffe.proto
@dataclass
class Active:
    """What extends the schema now: a user's caffe.proto, what only it declares, and whether
    fields no schema declares are skipped where no kept layer sets them."""

    user: UserProto | None = None
    ignore_unknown_fields: bool = False
    foreign: set[tuple[str, str]] = field(default_factory=set)  # (message or enum, name)
    conflicts: list[str] = field(default_factory=list)


_ACTIVE = Active()


def active() -> Active:
    return _ACTIVE


def _free_numbers(taken: set[int]) -> Iterator[int]:
    n = max(taken, default=0)
    while True:
        n += 1
        if not 19000 <= n <= 19999:  # protobuf's reserved range
            yield n


def _repeated(label: str) -> bool:
    return label == "repeated"  # required reads as optional (see _LABELS)


def _merge_message(name: str, ours: list, rows: tuple, out: Active) -> None:
    """The user's fields of a message we declare: ours by name, theirs added."""
    by_name = {r[2]: r for r in ours}
    by_number = {r[3]: r[2] for r in ours}
    free = _free_numbers(set(by_number) | {r[3] for r in rows})
    for label, typ, fname, number, _, _ in rows:
        mine = by_name.get(fname)
        if mine is not None:
            if (_repeated(mine[0]), mine[1].rpartition(".")[2]) != (_repeated(label), typ.rpartition(".")[2]):
                out.conflicts.append(
                    f"{name}.{fname} is {label} {typ} there, {mine[0]} {mine[1]} here (ours is read)"
                )
            continue
        if number in by_number:
            out.conflicts.append(f"{name}.{fname} = {number} is our {name}.{by_number[number]}'s number")
            number = next(free)
        ours.append((label, typ, fname, number, None, False))
        out.foreign.add((name, fname))


def _merge_enum(qual: str, ours: tuple, values: tuple, out: Active) -> tuple:
    by_name = dict(ours)
    free = _free_numbers(set(by_name.values()) | {n for _, n in values})
    added = []
    for vname, number in values:
        if vname in by_name:
            if by_name[vname] != number:
                out.conflicts.append(f"{qual}.{vname} = {number} there, {by_name[vname]} here (ours is read)")
            continue
        if number in by_name.values():  # an alias would read as one of our values
            ours_name = next(k for k, v in by_name.items() if v == number)
            out.conflicts.append(f"{qual}.{vname} = {number} is our {qual}.{ours_name}'s number")
            number = next(free)
        added.append((vname, number))
        out.foreign.add((qual, vname))
    return tuple(ours) + tuple(added)


def _merge_user(messages: dict[str, list], enums: dict[str, tuple], user: UserProto, out: Active) -> None:
    for qual, values in user.enums.items():
        if qual in enums:
            enums[qual] = _merge_enum(qual, enums[qual], values, out)
        else:
            enums[qual] = values
            out.foreign |= {(qual, v) for v, _ in values}
    for name, rows in user.messages.items():
        if name in messages:
            _merge_message(name, messages[name], rows, out)
        else:
            messages[name] = list(rows)
            out.foreign |= {(name, r[2]) for r in rows}
    for name, rows in user.messages.items():
        for _, typ, fname, number, _, _ in rows:
            if typ not in _SCALARS and not any(
                t in messages or t in enums for t in (f"{name}.{typ}", typ)
            ):
                raise user.error(f"{name}.{fname}: type {typ} is not declared", fname, number)


def rebuild() -> None:
    """Build the message classes again, with the registered families' SCHEMA (plugins
    included) and the active user caffe.proto; ``pb`` and ``base`` are updated in place."""
    messages, enums = _all_tables()
    base.__dict__.clear()
    base.__dict__.update(_message_classes(messages, enums))
    _ACTIVE.foreign, _ACTIVE.conflicts = set(), []
    if _ACTIVE.user is not None:
        messages = {k: list(v) for k, v in messages.items()}
        _merge_user(messages, enums, _ACTIVE.user, _ACTIVE)
        classes = _message_classes(messages, enums)
    else:
        classes = dict(base.__dict__)
    pb.__dict__.clear()
    pb.__dict__.update(classes)


@contextlib.contextmanager
def extended(user: UserProto | None, *, ignore_unknown_fields: bool = False) -> Iterator[Active]:
    """The schema with ``user``'s caffe.proto merged in (see the module), and whether unknown
    fields on layers left out are skipped, for the ``with`` block; then as before."""
    global _ACTIVE
    saved = _ACTIVE
    _ACTIVE = Active(user, ignore_unknown_fields)
    try:
        rebuild()
        yield _ACTIVE
    finally:
        _ACTIVE = saved
        rebuild()


base = SimpleNamespace()
"""The message classes of our schema alone (with the plugins'), without a user's caffe.proto."""
pb = SimpleNamespace()
"""Namespace of message classes: ``pb.NetParameter``, ``pb.LayerParameter``, ``pb.BlobProto``..."""
rebuild()
