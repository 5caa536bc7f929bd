"""Caffe prototxt text: the `Layer` record, rendering and a small parser (no protobuf needed).

Protobuf text format as Caffe's `NetParameter` files use it: `key: value` scalars (numbers,
"quoted strings", bare enum tokens such as MAX, true / false), `key { ... }` messages, a repeated
field written once per value, `#` comments. Without the schema the parser cannot tell a repeated
field from a single one, so every field of a parsed message is a list of its values; compare two
texts by parsing both (`parse_net`) and normalizing both (`nets.caffe_defaults.normalize_layer`).

    >>> net = parse_net('layer { name: "pool1" type: "Pooling" bottom: "x" top: "pool1" '
    ...                 'pooling_param { pool: MAX kernel_size: 2 stride: 2 } }')
    >>> net["layer"][0]["pooling_param"][0]["pool"]
    ['MAX']
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: A parsed message: field name -> its values in file order (sub-messages are Messages again).
Message = dict[str, list[Any]]


class Token(str):
    """A prototxt enum value (MAX, SUM, ACROSS_CHANNELS): written without quotes."""


@dataclass
class Layer:
    """One Caffe `LayerParameter`: name, type, bottoms, tops, then the other fields in order.

    `fields` maps a field name to a scalar, a dict (a sub-message) or a list (a repeated field,
    one value or message per entry), e.g. {"param": [{"lr_mult": 0}],
    "convolution_param": {"num_output": 21, "kernel_size": 4}}.
    """

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    fields: dict[str, Any] = field(default_factory=dict)


class PrototxtError(ValueError):
    """Prototxt text that cannot be parsed; the message names the source and the line."""


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a prototxt scalar")


def render_field(key: str, value: object, indent: str = "", *, inline: bool = False) -> list[str]:
    """One field as prototxt lines: `key: value`, `key { ... }`; a list repeats the field.

    inline: write a sub-message on one line (`key { a: 1 b: 2 }`), as tools/caffe_oracle does.
    """
    if isinstance(value, (list, tuple)):
        return [line for v in value for line in render_field(key, v, indent, inline=inline)]
    if isinstance(value, dict):
        if inline:
            inner = " ".join(item for k, v in value.items() for item in render_field(k, v, inline=True))
            return [f"{indent}{key} {{ {inner} }}"]
        inner = [line for k, v in value.items() for line in render_field(k, v, indent + "  ")]
        return [f"{indent}{key} {{", *inner, f"{indent}}}"]
    return [f"{indent}{key}: {_scalar(value)}"]


def render_layer(layer: Layer, *, inline: bool = False) -> list[str]:
    """A `layer { ... }` block as lines (`inline`: each sub-message on one line)."""
    lines = ["layer {", f"  name: {_scalar(layer.name)}", f"  type: {_scalar(layer.type)}"]
    lines += [f"  bottom: {_scalar(b)}" for b in layer.bottoms]
    lines += [f"  top: {_scalar(t)}" for t in layer.tops]
    for key, value in layer.fields.items():
        lines += render_field(key, value, "  ", inline=inline)
    lines.append("}")
    return lines


def render_net(name: str, layers: list[Layer], *, header: list[str] = (), extra: dict[str, Any] | None = None,
               inline: bool = False) -> str:
    """A whole `NetParameter`: `# header` comment lines, `name`, `extra` fields, then the layers."""
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append(f"name: {_scalar(name)}")
    for key, value in (extra or {}).items():
        lines += render_field(key, value, inline=inline)
    for layer in layers:
        lines += render_layer(layer, inline=inline)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}:;,<>\[\]])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?|[-+]?(?:inf|nan))
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _unquote(text: str) -> str:
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _tokens(text: str, source: str):
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PrototxtError(f"{source}:{line}: unexpected character {text[pos]!r}")
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind == "newline":
            line += 1
        elif kind not in ("space", "comment"):
            yield kind, value, line


def _number(text: str) -> int | float:
    t = text.rstrip("fF") if not text.lower().endswith(("inf", "nan")) else text
    try:
        return int(t)
    except ValueError:
        return float(t)


def parse_net(text: str, source: str = "<prototxt>") -> Message:
    """Parse prototxt `text` into a Message (every field a list of values, in file order).

    Scalars become int / float (numbers), str (quoted strings), bool (true / false) or `Token`
    (other bare words: enum values). Raises `PrototxtError` naming `source` and the line.
    """
    toks = list(_tokens(text, source))
    pos = 0

    def message(closing: str | None) -> Message:
        nonlocal pos
        out: Message = {}
        while pos < len(toks):
            kind, value, line = toks[pos]
            if closing is not None and kind == "punct" and value == closing:
                pos += 1
                return out
            if kind != "word":
                raise PrototxtError(f"{source}:{line}: expected a field name, found {value!r}")
            pos += 1
            if pos >= len(toks):
                raise PrototxtError(f"{source}:{line}: field {value!r} has no value")
            k2, v2, l2 = toks[pos]
            if k2 == "punct" and v2 == ":":
                pos += 1
                if pos < len(toks) and toks[pos][0] == "punct" and toks[pos][1] in "{<":
                    out.setdefault(value, []).append(sub(toks[pos][1]))
                else:
                    out.setdefault(value, []).append(scalar(value, l2))
            elif k2 == "punct" and v2 in "{<":
                out.setdefault(value, []).append(sub(v2))
            else:
                raise PrototxtError(f"{source}:{l2}: expected ':' or '{{' after {value!r}, found {v2!r}")
            if pos < len(toks) and toks[pos][0] == "punct" and toks[pos][1] in ";,":
                pos += 1
        if closing is not None:
            raise PrototxtError(f"{source}: end of text inside a message (missing {closing!r})")
        return out

    def sub(opening: str) -> Message:
        nonlocal pos
        pos += 1
        return message("}" if opening == "{" else ">")

    def scalar(key: str, line: int) -> Any:
        nonlocal pos
        if pos >= len(toks):
            raise PrototxtError(f"{source}:{line}: field {key!r} has no value")
        kind, value, l3 = toks[pos]
        pos += 1
        if kind == "string":
            parts = [_unquote(value)]
            while pos < len(toks) and toks[pos][0] == "string":  # adjacent strings concatenate
                parts.append(_unquote(toks[pos][1]))
                pos += 1
            return "".join(parts)
        if kind == "number":
            return _number(value)
        if kind == "word":
            return {"true": True, "false": False}.get(value, Token(value))
        raise PrototxtError(f"{source}:{l3}: expected a value for {key!r}, found {value!r}")

    return message(None)


def layers_of(net: Message) -> list[Layer]:
    """The `layer` entries of a parsed net as `Layer`s (fields other than name/type/bottom/top
    keep their parsed list form)."""
    out = []
    for entry in net.get("layer", []):
        fields = {k: v for k, v in entry.items() if k not in ("name", "type", "bottom", "top")}
        out.append(Layer(name=entry.get("name", [""])[0], type=entry.get("type", [""])[0],
                         bottoms=list(entry.get("bottom", [])), tops=list(entry.get("top", [])), fields=fields))
    return out


# ---------------------------------------------------------------------------------------------
# Meaning: Caffe's defaults
# ---------------------------------------------------------------------------------------------
#: Caffe's default values (caffe.proto) of the fields these nets write, per sub-message of a
#: layer: a field holding its default means the same as no field at all. `loss_param.normalize`
#: true is the default normalization (VALID); `param` is ParamSpec (lr_mult / decay_mult 1).
CAFFE_DEFAULTS: dict[str, dict[str, Any]] = {
    "param": {"lr_mult": 1, "decay_mult": 1},
    "convolution_param": {"pad": 0, "stride": 1, "group": 1, "dilation": 1, "bias_term": True, "axis": 1},
    "pooling_param": {"pool": "MAX", "pad": 0, "stride": 1},
    "lrn_param": {"local_size": 5, "alpha": 1.0, "beta": 0.75, "k": 1.0, "norm_region": "ACROSS_CHANNELS"},
    "dropout_param": {"dropout_ratio": 0.5},
    "crop_param": {"axis": 2},
    "eltwise_param": {"operation": "SUM"},
    "scale_param": {"axis": 1, "num_axes": 1, "bias_term": False},
    "concat_param": {"axis": 1},
    "loss_param": {"normalize": True},
}


def normalized(layer: Message) -> Message:
    """A parsed layer with every field that holds Caffe's default removed (see CAFFE_DEFAULTS),
    and trailing all-default `param` entries dropped, so that two texts meaning the same net
    compare equal: `stride: 1` vs no stride, `param { lr_mult: 1 decay_mult: 1 }` vs no param."""
    out: Message = {}
    for key, values in layer.items():
        defaults = CAFFE_DEFAULTS.get(key)
        if defaults is None:
            out[key] = values
            continue
        kept = [{k: v for k, v in msg.items() if k not in defaults or v != [defaults[k]]}
                if isinstance(msg, dict) else msg for msg in values]
        if key == "param":
            while kept and kept[-1] == {}:
                kept.pop()
        elif kept == [{}]:
            kept = []
        if kept:
            out[key] = kept
    return out
