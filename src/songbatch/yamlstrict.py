"""A strict YAML loader: plain values plus where each one was written.

PyYAML 6 implements YAML 1.1, which silently turns duplicate keys into the last value, `no` into
False, `010` into 8 and `1:30` into 90. We only use its parser (compose), reject the surprising
forms with a pointed error, and resolve plain scalars with the YAML 1.2 core schema ourselves.
Every problem becomes one ManifestError with a 1-based line and column and a field path.
"""

from __future__ import annotations

import difflib
import math
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from songbatch.errors import ManifestError

PathKey = str | int
FieldPath = tuple[PathKey, ...]
Position = tuple[int, int]  # 1-based (line, col)

# Lists and mappings inside each other; a manifest needs about five (chapters[0].voice.params).
MAX_DEPTH = 64

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"null|Null|NULL|~|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")

# YAML 1.1 forms that PyYAML (and many other tools) read differently from what people mean.
_YAML11_BOOL = re.compile(r"(?i)yes|no|on|off|y|n")
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


@dataclass(frozen=True)
class StrictDocument:
    """A loaded YAML mapping, with the 1-based position of every value and every key."""

    file: Path
    data: dict[str, Any]
    positions: dict[FieldPath, Position] = field(default_factory=dict)
    key_positions: dict[FieldPath, Position] = field(default_factory=dict)

    def position(self, path: FieldPath) -> Position:
        """Where the value at `path` was written, else its nearest written ancestor."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return (1, 1)

    def key_position(self, path: FieldPath) -> Position:
        """Where the key of `path` was written (unknown fields point here), else the value."""
        return self.key_positions.get(path) or self.position(path)

    def error(
        self,
        path: FieldPath,
        message: str,
        *,
        at_key: bool = False,
        error_cls: type[ManifestError] = ManifestError,
    ) -> ManifestError:
        """A ManifestError for the field at `path`, positioned where it was written."""
        line, col = self.key_position(path) if at_key else self.position(path)
        return error_cls(self.file, message, line=line, col=col, field=format_path(path) or None)


class _Problem(Exception):
    """Raised inside the walk; turned into a ManifestError with the file name at the top."""

    def __init__(self, message: str, mark: Any, path: FieldPath = ()) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses anchors, aliases and explicit tags.

    Nodes do not know their parents, so a stack of field paths follows the composition to name
    the field in those errors.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._paths: list[FieldPath] = [()]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        path = self._paths[-1]
        if parent is not None and index is not None:  # a mapping value or a list item
            path = (*path, index if isinstance(index, int) else str(index.value))
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if len(self._paths) > MAX_DEPTH:
            # The composer (and every walk after it) recurses per level: refuse before Python's
            # recursion limit turns a hostile document into an internal error.
            raise _Problem(
                f"nested more than {MAX_DEPTH} levels deep; no field needs that",
                event.start_mark,
                path[:1],
            )
        if isinstance(event, yaml.AliasEvent):
            raise _Problem(
                "aliases (*name) are not supported; repeat the value", event.start_mark, path
            )
        if getattr(event, "anchor", None) is not None:
            raise _Problem(
                "anchors (&name) are not supported; repeat the value", event.start_mark, path
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            raise _Problem(
                f"tags like {tag!r} are not supported; quote the value", event.start_mark, path
            )
        self._paths.append(path)
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._paths.pop()


def format_path(path: FieldPath) -> str:
    """('chapters', 2, 'title') -> 'chapters[2].title' (indexes count from 0)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def decode_utf8(data: bytes, what: str = "file") -> str:
    """Strict UTF-8 (BOM allowed); raises UnicodeError with a message naming the bad byte's line."""
    for bom in _UTF32_BOMS:
        if data.startswith(bom):
            raise TextEncodingError(f"{what} is UTF-32; save it as UTF-8", 0, data)
    for bom in _UTF16_BOMS:
        if data.startswith(bom):
            raise TextEncodingError(f"{what} is UTF-16; save it as UTF-8", 0, data)
    start = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise TextEncodingError(
            f"{what} is not valid UTF-8 (byte 0x{data[offset]:02X} at offset {offset}, "
            f"line {line}); save it as UTF-8",
            offset,
            data,
        ) from None
    if "\x00" in text:
        # UTF-16 without a BOM decodes as UTF-8 full of NULs.
        raise TextEncodingError(
            f"{what} contains NUL bytes (UTF-16?); save it as UTF-8", data.find(b"\x00"), data
        )
    return text


class TextEncodingError(UnicodeError):
    """Bytes that are not UTF-8 text; `line`/`col` (1-based) point at the first bad byte."""

    def __init__(self, message: str, offset: int, data: bytes) -> None:
        super().__init__(message)
        self.message = message
        line_start = data.rfind(b"\n", 0, offset) + 1
        self.line = data.count(b"\n", 0, offset) + 1
        # Column in characters: the bytes before the bad one on its line are valid UTF-8.
        prefix = data[line_start:offset].decode("utf-8-sig", errors="replace")  # BOM: no column
        self.col = len(prefix) + 1


def special_file_problem(path: Path) -> str | None:
    """What `path` is when it exists but is not a regular file (a folder, a FIFO, a device),
    found with stat() alone: opening a FIFO would block until something writes to it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # missing or unreachable: the caller's open says which
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def load_yaml(path: Path | str, error_cls: type[ManifestError] = ManifestError) -> StrictDocument:
    """Read and strictly parse a YAML file whose top level must be a mapping."""
    file = Path(path)
    problem = special_file_problem(file)
    if problem is not None:
        raise error_cls(file, problem)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise error_cls(file, f"cannot read: {exc.strerror or exc}") from None
    return parse_yaml(data, file, error_cls)


def parse_yaml(
    data: bytes | str, file: Path | str, error_cls: type[ManifestError] = ManifestError
) -> StrictDocument:
    """Strictly parse YAML bytes (or text); `file` is only used in error messages."""
    file = Path(file)
    try:
        text = data if isinstance(data, str) else decode_utf8(data, "file")
    except TextEncodingError as exc:
        raise error_cls(file, exc.message, line=exc.line, col=exc.col) from None
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
        if root is None:
            raise _Problem("file is empty; expected a mapping of fields (key: value)", None)
        if not isinstance(root, yaml.MappingNode):
            raise _Problem(
                f"the top level must be a mapping of fields (key: value), not {_node_kind(root)}",
                root.start_mark,
            )
        doc = StrictDocument(file, {})
        doc.data.update(_walk_mapping(root, (), doc))
        return doc
    except _Problem as exc:
        line, col = _mark_position(exc.mark)
        raise error_cls(
            file, exc.message, line=line, col=col, field=format_path(exc.path) or None
        ) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file, error_cls) from None
    except RecursionError:
        # MAX_DEPTH stops the composer first; this is for a Python whose stack is smaller.
        raise error_cls(file, "invalid YAML: nested too deeply") from None


def _mark_position(mark: Any) -> Position:
    return (1, 1) if mark is None else (mark.line + 1, mark.column + 1)


def _yaml_error(
    exc: yaml.YAMLError, text: str, file: Path, error_cls: type[ManifestError]
) -> ManifestError:
    """PyYAML's parser/scanner/reader errors as one line at the problem's mark."""
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        return error_cls(
            file, f"character #x{exc.character:04x} is not allowed", line=line, col=col
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if "'\\t'" in problem:
            problem = "tab character used for indentation; indent with spaces"
        elif exc.context:
            problem = f"{exc.context}: {problem}"
        line, col = _mark_position(mark)
        return error_cls(file, f"invalid YAML: {problem}", line=line, col=col)
    return error_cls(file, f"invalid YAML: {exc}")


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a single value"


def _walk(node: yaml.Node, path: FieldPath, doc: StrictDocument) -> Any:
    doc.positions[path] = _mark_position(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        return _walk_mapping(node, path, doc)
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), doc) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, path)


def _walk_mapping(node: yaml.MappingNode, path: FieldPath, doc: StrictDocument) -> dict[str, Any]:
    doc.positions[path] = _mark_position(node.start_mark)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _key(key_node, path)
        child = (*path, key)
        if key in out:
            first_line = doc.key_positions[child][0]
            raise _Problem(
                f"duplicate key {key!r} (first written on line {first_line})",
                key_node.start_mark,
                child,
            )
        doc.key_positions[child] = _mark_position(key_node.start_mark)
        out[key] = _walk(value_node, child, doc)
    return out


def _key(node: yaml.Node, path: FieldPath) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _Problem("keys must be plain names, not lists or mappings", node.start_mark, path)
    if node.style is None and node.value == "<<":
        raise _Problem(
            "merge keys (<<) are not supported; repeat the fields", node.start_mark, path
        )
    key = node.value if node.style is not None else _resolve_plain(node.value)
    if not isinstance(key, str):
        raise _Problem(
            f"keys must be strings, not {_type_name(key)} ({node.value!r}); quote it",
            node.start_mark,
            path,
        )
    return key


def _scalar(node: yaml.ScalarNode, path: FieldPath) -> Any:
    if node.style is not None:  # quoted, literal (|) or folded (>): always a string
        return node.value
    value: str = node.value
    if _YAML11_BOOL.fullmatch(value):
        raise _Problem(
            f"{value!r} is ambiguous (YAML 1.1 reads it as a boolean): "
            f'write true or false, or quote it ("{value}") if you mean the text',
            node.start_mark,
            path,
        )
    if _LEADING_ZERO.fullmatch(value):
        raise _Problem(
            f"{value!r} has a leading zero (YAML 1.1 reads it as an octal number): "
            f'quote it ("{value}") or write {value.lstrip("+-").lstrip("0_") or "0"}',
            node.start_mark,
            path,
        )
    if _SEXAGESIMAL.fullmatch(value):
        raise _Problem(
            f"{value!r} looks like a clock time (YAML 1.1 reads it as base-60 seconds): "
            'write seconds (90) or a duration string ("1m30s"), or quote it',
            node.start_mark,
            path,
        )
    return _resolve_plain(value)


def _resolve_plain(value: str) -> Any:
    """YAML 1.2 core schema resolution of a plain (unquoted) scalar."""
    if _NULL.fullmatch(value):
        return None
    if _TRUE.fullmatch(value):
        return True
    if _FALSE.fullmatch(value):
        return False
    if _INT10.fullmatch(value):
        return int(value, 10)
    if _INT8.fullmatch(value):
        return int(value[2:], 8)
    if _INT16.fullmatch(value):
        return int(value[2:], 16)
    if _FLOAT.fullmatch(value):
        return float(value)
    if _INF.fullmatch(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.fullmatch(value):
        return math.nan
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string"


# --- pydantic errors -> one ManifestError ------------------------------------------------------


def validation_error(
    exc: ValidationError,
    doc: StrictDocument,
    model: type[BaseModel],
    error_cls: type[ManifestError] = ManifestError,
    prefix: FieldPath = (),
) -> ManifestError:
    """The first pydantic error as a ManifestError at the offending field's line and column.

    `prefix` is prepended to pydantic's locations when `model` validated a sub-tree of `doc`.
    """
    errors = exc.errors(include_url=False)
    # A misspelt field also shows up as a missing one; the unknown name is the real cause.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc: FieldPath = tuple(part for part in err["loc"] if isinstance(part, (str, int)))
    path = (*prefix, *loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        known = sorted(_model_fields_at(model, loc[:-1]))
        message = f"unknown field {name!r}"
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        message += (
            f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
        )
        return doc.error(path, message, at_key=True, error_cls=error_cls)
    if kind == "missing":
        # Point at the mapping that lacks the field; the field path still names it.
        line, col = doc.position(path[:-1])
        return error_cls(
            doc.file, "required field is missing", line=line, col=col, field=format_path(path)
        )
    return doc.error(path, plain_message(err), error_cls=error_cls)


def plain_message(err: Any) -> str:
    """One pydantic error (an `ErrorDetails`) in YAML terms, with the value it got."""
    kind = err["type"]
    message = _PLAIN_MESSAGES.get(kind) or str(err["msg"]).removeprefix("Value error, ")
    if kind == "too_short":
        message = f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s)"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("literal_error", "enum"):
        message += f" (got {_type_name(err.get('input'))}: {_short(err.get('input'))})"
    elif kind in _RANGE_ERRORS or kind == "finite_number":
        message += f" (got {_short(err.get('input'))})"
    return message


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


# pydantic's wording names Python types (and our private class names); say it in YAML terms.
_PLAIN_MESSAGES = {
    "model_type": "expected a mapping of fields (key: value)",
    "model_attributes_type": "expected a mapping of fields (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _model_fields_at(model: type[BaseModel], loc: FieldPath) -> set[str]:
    """Field names of the (sub-)model that `loc` points into, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, str):
            sub = _find_model(current)
            if sub is None or part not in sub.model_fields:
                return set()
            current = sub.model_fields[part].annotation
        else:
            current = _list_item(current)
    found = _find_model(current)
    return set(found.model_fields) if found is not None else set()


def _find_model(tp: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like `Voice | None` or `list[Chapter]`."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType) or origin is typing.Annotated:
        for arg in typing.get_args(tp):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


def _list_item(tp: Any) -> Any:
    """The item type of `list[X]` or `list[X] | None`."""
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    for arg in typing.get_args(tp):
        if typing.get_origin(arg) is list:
            return typing.get_args(arg)[0]
    return Any


__all__ = [
    "FieldPath",
    "Position",
    "StrictDocument",
    "TextEncodingError",
    "decode_utf8",
    "format_path",
    "load_yaml",
    "parse_yaml",
    "plain_message",
    "special_file_problem",
    "validation_error",
]
