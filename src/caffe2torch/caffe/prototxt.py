"""Reading net descriptions (``.prototxt``) in all three generations of Caffe's format.

``read_prototxt`` parses the text with our schema, reports problems with file, line, column
and layer, and upgrades V0 (``layers { layer { type: "conv" } }``) and V1
(``layers { type: CONVOLUTION }``) nets into the V2 form (``layer { type: "Convolution" }``)
the way Caffe's ``upgrade_proto.cpp`` does, so the rest of caffe2torch sees one form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from google.protobuf import text_format

from ..errors import TEXT_LIMIT, PrototxtError, read_input
from ..layers import layer_class
from .schema import active, base, pb
from .upgrade import upgrade_net

MAX_SKIPPED = 1000  # unknown fields skipped in one net (--ignore-unknown-fields) at most

_SOLVER_KEYS = {
    "net", "net_param", "train_net", "test_net", "base_lr", "lr_policy", "max_iter",
    "solver_mode", "snapshot_prefix", "test_iter", "test_interval", "momentum", "solver_type",
}


@dataclass
class Block:
    """A top-level ``layer``/``layers`` block of the text, in file order."""

    field: str
    line: int
    end_line: int
    name: str | None = None
    type: str | None = None  # a V2 layer's ``type: "..."``


@dataclass(frozen=True)
class Unread:
    """A field the text sets that caffe2torch does not read: declared only in the user's
    caffe.proto (``declared``), or nowhere (skipped with ``--ignore-unknown-fields``).
    ``layer_line`` is the first line of the layer block holding it (None: outside layers)."""

    line: int
    column: int
    what: str  # "field 'my_gain' of PriorBoxParameter", "value DEF of PoolingParameter.PoolMethod"
    declared: bool
    layer_line: int | None = None
    layer: str | None = None
    # The layer's type when caffe2torch converts no such type: the field (a LayerParameter
    # field, its parameters) goes with the layer, which stops the conversion by its type if kept.
    unknown_type: str | None = None


@dataclass
class NetText:
    """A net read from a prototxt, in V2 form."""

    path: Path
    net: "pb.NetParameter"  # type: ignore[name-defined]
    format: str  # "V0", "V1" or "V2"
    layer_lines: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)  # see :class:`Unread`

    def line_of(self, index: int) -> int | None:
        return self.layer_lines[index] if 0 <= index < len(self.layer_lines) else None


_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<open>\{|<)
      | (?P<close>\}|>)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<nl>\n)
      | (?P<other>[^\s])""",
    re.VERBOSE,
)


def scan_blocks(text: str) -> list[Block]:
    """Find the top-level message blocks (``layer {...}``, ``layers {...}``) and their names.

    A light tokenizer aware of strings and comments; it only needs to be right for text that
    protobuf's parser accepted, and is used to put line numbers and layer names in messages.
    """
    blocks: list[Block] = []
    depth = 0
    line = 1
    last_ident: str | None = None
    current: Block | None = None
    expect_name = expect_type = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "nl":
            line += 1
            continue
        if kind == "comment":
            continue
        if kind == "string":
            line += m.group().count("\n")
            if expect_name and current is not None and current.name is None:
                current.name = _unquote(m.group())
            if expect_type and current is not None and current.type is None:
                current.type = _unquote(m.group())
            expect_name = expect_type = False
            continue
        if kind == "open":
            if depth == 0 and last_ident is not None:
                current = Block(last_ident, line, 1 << 30)  # end set on close
                blocks.append(current)
            depth += 1
            last_ident = None
            expect_name = False
            continue
        if kind == "close":
            depth = max(depth - 1, 0)
            if depth == 0 and current is not None:
                current.end_line = line
                current = None
            last_ident = None
            continue
        if kind == "ident":
            expect_name = depth >= 1 and m.group() == "name"
            expect_type = depth == 1 and m.group() == "type"
            last_ident = m.group()
            continue
        # ':' keeps ``name:`` pending; anything else resets it.
        if m.group() != ":":
            expect_name = expect_type = False
    return blocks


def _unquote(s: str) -> str:
    body = s[1:-1]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return body


_NO_FIELD = re.compile(r'Message type "caffe\.(\w+)" has no field named "(\w+)"')
_NO_ENUM = re.compile(r'Enum type "caffe\.([\w.]+)" has no value named (\w+)')
_PARSE_POS = re.compile(r"^(\d+):(\d+) : (.*)$", re.S)
_ECHOED_LINE = re.compile(r"^'.*?': (.*)$", re.S)  # protobuf repeats the whole line first


def _explain(message: str) -> str:
    m = _NO_FIELD.search(message)
    if m:
        return f"unknown field '{m.group(2)}' in {m.group(1)}"
    m = _NO_ENUM.search(message)
    if m:
        if m.group(1) == "V1LayerParameter.LayerType":
            return f"unknown V1 layer type {m.group(2)}"
        return f"'{m.group(2)}' is not a value of {m.group(1)}"
    message = message.rstrip(".")
    return "syntax error: " + message[:1].lower() + message[1:]


def read_prototxt(path: str | Path, text: str | None = None) -> NetText:
    """Parse a net prototxt and upgrade it to the V2 form. Raises :class:`PrototxtError`."""
    path = Path(path)
    if text is None:
        raw = read_input(
            path, PrototxtError, "a .prototxt file", limit=TEXT_LIMIT,
            why_limit="no net description is that large (the largest real ones are a few MB)",
        )
        if b"\0" in raw[:4096]:
            raise PrototxtError(
                "binary data where a text prototxt was expected (a .caffemodel?)", file=path
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise PrototxtError("not UTF-8 text", file=path, line=line) from None
    blocks = scan_blocks(text)
    state = active()
    net, text, unread = _parse(path, text, blocks, pb.NetParameter, state.ignore_unknown_fields)
    if state.foreign:  # where the net sets what only the user's caffe.proto declares
        unread += [replace(u, declared=True) for u in _parse(path, text, blocks, base.NetParameter, True)[2]]
    if not len(net.layer) and not len(net.layers):
        raise PrototxtError("no layers: this file does not describe a net", file=path)
    if len(net.layer) and len(net.layers):
        raise PrototxtError(
            "mixes V2 'layer' and V1/V0 'layers' blocks; use one format", file=path
        )
    layer_blocks = [b for b in blocks if b.field in ("layer", "layers")]
    lines: list[int | None] = [b.line for b in layer_blocks]
    if len(lines) != max(len(net.layer), len(net.layers)):  # pragma: no cover - scanner guard
        lines = [None] * max(len(net.layer), len(net.layers))
    try:
        net, fmt, lines, notes = upgrade_net(net, lines)
    except PrototxtError as e:
        raise e.located(file=path) from None
    unread.sort(key=lambda u: (u.line, u.column))
    return NetText(path=path, net=net, format=fmt, layer_lines=lines, notes=notes, unread=unread)


def _parse(path: Path, text: str, blocks: list[Block], cls, skip: bool):
    """``text`` parsed into a ``cls``; with ``skip``, each unknown field (or enum value) is
    recorded and blanked out of the text, and the text parsed again. Returns the message, the
    text as parsed and what was skipped."""
    skipped: list[Unread] = []
    while True:
        net = cls()
        try:
            text_format.Parse(text, net)
            return net, text, skipped
        except text_format.ParseError as e:
            found = _unknown(text, str(e), blocks)
            if found is not None and not (skip or found[0].unknown_type):
                found = None
            if found is None:
                raise _parse_error(path, str(e), blocks) from None
            if len(skipped) == MAX_SKIPPED:
                raise PrototxtError(
                    f"sets more than {MAX_SKIPPED} unknown fields: is it a net of this schema?",
                    file=path,
                ) from None
            unread, start, end = found
            skipped.append(unread)
            text = text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def _offset(text: str, line: int, column: int) -> int:
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return start + column - 1


_FIELD_BEFORE = re.compile(r"([A-Za-z_]\w*)\s*:\s*$")


def _unknown(text: str, message: str, blocks: list[Block]) -> tuple[Unread, int, int] | None:
    """The unknown field (or enum value) a parse error is about, and the span of its field in
    the text (name to end of value); None for any other error."""
    m = _PARSE_POS.match(message)
    if m is None:
        return None
    line, column = int(m.group(1)), int(m.group(2))
    at = _offset(text, line, column)
    field_m, enum_m = _NO_FIELD.search(message), _NO_ENUM.search(message)
    if field_m:
        name = field_m.group(2)
        if not text.startswith(name, at):
            return None
        what, start = f"field '{name}' of {field_m.group(1)}", at
    elif enum_m:
        before = _FIELD_BEFORE.search(text, max(0, at - 200), at)
        if before is None:  # a value in a list: not skipped
            return None
        what, start = f"value {enum_m.group(2)} of {enum_m.group(1)} (field '{before.group(1)}')", before.start()
    else:
        return None
    block = next((b for b in blocks if b.field in ("layer", "layers") and b.line <= line <= b.end_line), None)
    unknown_type = None
    if block is not None and block.type and layer_class(block.type) is None and field_m:
        unknown_type = block.type if field_m.group(1) == "LayerParameter" else None
    unread = Unread(
        line, column, what, False, block.line if block else None, block.name if block else None,
        unknown_type,
    )
    return unread, start, _field_end(text, start + _name_len(text, start))


def _name_len(text: str, start: int) -> int:
    m = re.compile(r"[A-Za-z_]\w*").match(text, start)
    return m.end() - start if m else 0


_SCALAR = re.compile(r"[^\s,;{}\[\]<>#:\"']+")
_QUOTED = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'")


def _skip_space(text: str, i: int) -> int:
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        else:
            break
    return i


def _field_end(text: str, i: int) -> int:
    """Where the field whose name ends at ``i`` ends (its value, and a ',' or ';' after it)."""
    i = _skip_space(text, i)
    if text.startswith(":", i):
        i = _skip_space(text, i + 1)
    if text[i : i + 1] in ("{", "<", "["):
        i = _close(text, i)
    elif text[i : i + 1] in ("\"", "'"):
        while (m := _QUOTED.match(text, i)) is not None:  # adjacent strings are one value
            i = m.end()
            j = _skip_space(text, i)
            if text[j : j + 1] not in ("\"", "'"):
                break
            i = j
    elif (m := _SCALAR.match(text, i)) is not None:
        i = m.end()
    j = _skip_space(text, i)
    return j + 1 if text[j : j + 1] in (",", ";") else i


def _close(text: str, i: int) -> int:
    """The end of the bracketed value opening at ``i`` (strings and comments skipped)."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "{<[":
            depth += 1
        elif c in "}>]":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in "\"'":
            m = _QUOTED.match(text, i)
            i = m.end() - 1 if m else i
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) - 1 if end < 0 else end
        i += 1
    return i


def _parse_error(path: Path, message: str, blocks: list[Block]) -> PrototxtError:
    m = _PARSE_POS.match(message)
    line = column = None
    if m:
        line, column, message = int(m.group(1)), int(m.group(2)), m.group(3)
    echoed = _ECHOED_LINE.match(message)
    if echoed:
        message = echoed.group(1)
    field_m = _NO_FIELD.search(message)
    if field_m and field_m.group(1) == "NetParameter" and field_m.group(2) in _SOLVER_KEYS:
        return PrototxtError(
            "this is a solver file, not a net: pass the net prototxt it names",
            file=path,
            line=line,
        )
    layer = None
    if line is not None:
        for b in blocks:
            if b.field in ("layer", "layers") and b.line <= line <= b.end_line:
                layer = b.name
                break
    return PrototxtError(_explain(message), file=path, line=line, column=column, layer=layer)
