"""A user's own fork schema (``--proto caffe.proto``), read as data.

The ``.proto`` text is parsed by ``proto-schema-parser`` (pure Python, an ANTLR grammar of the
protobuf language) into a syntax tree; its messages, fields and enums become rows of the same
form as ``_tables.py`` (``(label, type, name, number, default, packed)``), which
:mod:`caffe2torch.caffe.schema` merges into our own schema. Nothing is generated from it and
nothing of it is executed: it is never given to ``protoc``, and no ``_pb2`` module exists.

What is kept: top-level messages (their fields, and the fields of their ``oneof`` blocks as
optional fields), top-level enums and enums nested in a message. Defaults and options are
dropped: caffe2torch never reads a field it knows only from this file (see
``read_prototxt``). Nested messages, ``map`` fields, groups, ``extend`` and ``import`` are
refused with one line naming the file and line: a Caffe schema has none.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import TEXT_LIMIT, CaffeError, read_text

Row = tuple  # (label, type, name, number, default, packed), as in _tables.py


class ProtoError(CaffeError):
    """A ``--proto`` file cannot be read as a Caffe schema."""


@dataclass(frozen=True)
class UserProto:
    """The messages and enums of a user's ``.proto`` file, as table rows."""

    path: Path
    sha256: str
    package: str
    messages: dict[str, tuple[Row, ...]]
    enums: dict[str, tuple[tuple[str, int], ...]]
    text: str

    def where(self, name: str, number: int | None = None) -> tuple[int | None, int | None]:
        """Line and column of a declaration named ``name`` (``name = number`` for a field)."""
        rx = rf"\b{re.escape(name)}\s*=\s*{number}\b" if number is not None else rf"\b{re.escape(name)}\b"
        m = re.search(rx, self.text)
        if m is None:
            return None, None
        line = self.text.count("\n", 0, m.start()) + 1
        return line, m.start() - (self.text.rfind("\n", 0, m.start()) + 1) + 1

    def error(self, message: str, name: str, number: int | None = None) -> ProtoError:
        line, column = self.where(name, number)
        return ProtoError(message, file=self.path, line=line, column=column)

    def record(self) -> dict:
        """What conversion.json keeps of it (the path is added relative to the folder)."""
        return {"file": self.path.name, "sha256": self.sha256}


def read_proto(path: str | Path) -> UserProto:
    """Read a ``.proto`` file as data; one :class:`ProtoError` line for anything else."""
    path = Path(path)
    text = read_text(path, ProtoError, "a .proto schema", limit=TEXT_LIMIT)
    tree = _parse(text, path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    proto = UserProto(path, digest, "", {}, {}, text)
    package = ""
    for element in tree.file_elements:
        package = _file_element(proto, element, package)
    if tree.syntax not in (None, "proto2", "proto3"):
        raise ProtoError(f"syntax '{tree.syntax}' is not proto2 or proto3", file=path)
    if not proto.messages and not proto.enums:
        raise ProtoError("declares no message or enum: is this a .proto schema?", file=path)
    return UserProto(path, digest, package, proto.messages, proto.enums, text)


def _parse(text: str, path: Path):
    from antlr4.error.ErrorListener import ErrorListener
    from proto_schema_parser import parser

    class Raise(ErrorListener):
        def syntaxError(self, recognizer, offending, line, column, msg, e):  # noqa: N802
            raise ProtoError(f"syntax error: {msg}", file=path, line=line, column=column + 1)

    def quiet(p) -> None:
        p.removeErrorListeners()
        p.addErrorListener(Raise())

    try:
        return parser.Parser(setup_lexer=quiet, setup_parser=quiet).parse(text)
    except ProtoError:
        raise
    except (ValueError, TypeError, AttributeError) as e:  # the tree builder on odd input
        raise ProtoError(f"cannot be read as a .proto schema ({e})", file=path) from None
    except RecursionError:
        raise ProtoError("is nested too deeply to read", file=path) from None


def _file_element(proto: UserProto, element, package: str) -> str:
    from proto_schema_parser import ast

    if isinstance(element, ast.Package):
        return element.name
    if isinstance(element, ast.Message):
        _message(proto, element, package)
    elif isinstance(element, ast.Enum):
        _enum(proto, element.name, element)
    elif isinstance(element, ast.Import):
        raise proto.error(
            f"imports '{element.name}': imports are not followed; give one file that declares "
            "everything the net uses", "import",
        )
    elif isinstance(element, ast.Extension):
        raise proto.error("'extend' is not supported (a Caffe schema has none)", "extend")
    return package


def _message(proto: UserProto, msg, package: str) -> None:
    from proto_schema_parser import ast

    if msg.name in proto.messages:
        raise proto.error(f"message {msg.name} is declared twice", msg.name)
    rows: list[Row] = []
    elements = list(msg.elements)
    while elements:
        e = elements.pop(0)
        if isinstance(e, ast.Field):
            rows.append(_field(proto, msg.name, e, package))
        elif isinstance(e, ast.OneOf):
            elements[:0] = [x for x in e.elements if isinstance(x, ast.Field)]
        elif isinstance(e, ast.Enum):
            _enum(proto, f"{msg.name}.{e.name}", e)
        elif isinstance(e, ast.Message):
            raise proto.error(
                f"message {e.name} is nested in {msg.name}: nested messages are not supported; "
                "declare it at the top level", e.name,
            )
        elif isinstance(e, (ast.MapField, ast.Group)):
            raise proto.error(
                f"{msg.name}.{e.name}: map fields and groups are not supported", e.name, e.number
            )
    names: set[str] = set()
    numbers: set[int] = set()
    for _, _, name, number, _, _ in rows:
        if name in names or number in numbers:
            raise proto.error(
                f"{msg.name}.{name} = {number}: the name or the number is used twice in {msg.name}",
                name, number,
            )
        names.add(name)
        numbers.add(number)
    proto.messages[msg.name] = tuple(rows)


def _field(proto: UserProto, scope: str, f, package: str) -> Row:
    label = (f.cardinality.value.lower() if f.cardinality is not None else "optional")
    typ = f.type.lstrip(".")
    if package and typ.startswith(f"{package}."):
        typ = typ[len(package) + 1:]
    if not 0 < f.number < 1 << 29:
        raise proto.error(f"{scope}.{f.name}: field number {f.number} is out of range", f.name, f.number)
    return (label, typ, f.name, f.number, None, False)


def _enum(proto: UserProto, qual: str, enum) -> None:
    from proto_schema_parser import ast

    if qual in proto.enums:
        raise proto.error(f"enum {qual} is declared twice", qual.rpartition(".")[2])
    values = tuple((v.name, v.number) for v in enum.elements if isinstance(v, ast.EnumValue))
    if not values:
        raise proto.error(f"enum {qual} has no values", qual.rpartition(".")[2])
    proto.enums[qual] = values


def recorded_proto(outdir: Path, record: dict, given: Path | None, manifest: Path) -> UserProto | None:
    """The caffe.proto a folder was converted with (``sources.proto`` of its conversion.json),
    read again as data: from ``given`` (``--proto``) or where the record says; its sha256 must
    be the recorded one."""
    if not record:
        if given is not None:
            raise ProtoError(f"was not used to convert this model ({manifest} names no --proto)", file=given)
        return None
    path = given
    if path is None:
        if not record.get("path"):
            raise ProtoError(
                f"does not say where the caffe.proto ({record.get('file')}) is: pass --proto", file=manifest
            )
        path = Path(outdir) / record["path"]
        if not path.is_file():
            raise ProtoError(
                f"the caffe.proto this model was converted with is not at {path} any more: pass --proto",
                file=manifest,
            )
    proto = read_proto(path)
    if proto.sha256 != record.get("sha256"):
        raise ProtoError(
            f"is not the caffe.proto this model was converted with (sha256 {proto.sha256[:16]}, "
            f"{manifest.name} says {str(record.get('sha256'))[:16]})",
            file=path,
        )
    return proto
