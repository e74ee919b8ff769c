"""Reading net descriptions (``.prototxt``) in all three generations of Caffe's format.

``read_prototxt`` parses the text with our schema, reports problems with file, line, column
and layer, and upgrades V0 (``layers { layer { type: "conv" } }``) and V1
(``layers { type: CONVOLUTION }``) nets into the V2 form (``layer { type: "Convolution" }``)
the way Caffe's ``upgrade_proto.cpp`` does, so the rest of caffe2torch sees one form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from ..errors import TEXT_LIMIT, PrototxtError, read_input
from .schema import pb
from .upgrade import upgrade_net

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


@dataclass
class NetText:
    """A net read from a prototxt, in V2 form."""

    path: Path
    net: "pb.NetParameter"  # type: ignore[name-defined]
    format: str  # "V0", "V1" or "V2"
    layer_lines: list[int | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
    expect_name = False
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
            expect_name = False
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
            last_ident = m.group()
            continue
        # ':' keeps ``name:`` pending; anything else resets it.
        if m.group() != ":":
            expect_name = False
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
    net = pb.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as e:
        raise _parse_error(path, str(e), blocks) from None
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
    return NetText(path=path, net=net, format=fmt, layer_lines=lines, notes=notes)


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
