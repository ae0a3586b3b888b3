"""Strict YAML -> frozen dataclass loading, shared by both daemons.

Every config section is a frozen dataclass whose fields are declared with :func:`setting`, which
carries the field's documentation and its allowed range. :func:`load_file` walks the YAML node tree
(not the constructed dict) so that every error can name the file, the dotted key and the line:
``/etc/monitord/monitord.yaml:12: kafka.linger_ms: must be >= 0, got -5``. The same loader serves
start-up, ``--check-config`` and reload, so they can never disagree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from yaml.constructor import SafeConstructor

from monitoring_common.errors import CommonError

T = TypeVar("T")

_UNSET: Any = object()


class ConfigError(CommonError):
    """A configuration file is unreadable or invalid; the message is one line for an operator."""

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem
        where = f"{source}:{line}" if line is not None else source
        # One line, whatever the file contained: keys and values are shown escaped if need be.
        shown_key = key if key.isprintable() else repr(key)
        shown_problem = problem if problem.isprintable() else problem.encode("unicode_escape").decode()
        super().__init__(f"{where}: {shown_key}: {shown_problem}" if key else f"{where}: {shown_problem}")


class InvalidField(CommonError, ValueError):
    """Raised by a section's ``__post_init__`` for a value that is well-typed but wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def setting(
    default: Any = _UNSET,
    doc: str = "",
    *,
    factory: Any = None,
    min: float | None = None,
    max: float | None = None,
) -> Any:
    """Declare a config field with its documentation and bounds (used by the loader and the docs)."""
    meta = {"doc": doc, "min": min, "max": max}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is _UNSET:
        raise TypeError("setting() needs a default or a factory")
    return dataclasses.field(default=default, metadata=meta)


def split_hostport(field: str, value: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 in brackets), raising :class:`InvalidField` naming ``field``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidField(field, f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def load_file(path: str | Path, schema: type[T], *, missing_ok: bool = False) -> T:
    """Load and validate ``path`` into ``schema``; a missing file gives defaults if ``missing_ok``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return schema()
        raise ConfigError(source, None, "", "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, "", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(source, None, "", f"cannot read: {exc.strerror}") from None
    return load_text(text, schema, source)


def load_text(text: str, schema: type[T], source: str = "<string>") -> T:
    """Validate YAML ``text`` into ``schema``; raises :class:`ConfigError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, line, "", f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, None, "", f"invalid YAML: {exc}") from None
    if node is None or _is_null(node):
        return schema()
    return _Builder(source).build_dataclass(node, schema, "")


def field_docs(schema: type[Any], prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type name, default, doc) for every leaf field: the source for docs and man pages."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows.extend(field_docs(typing.cast(type, hint), key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else typing.cast(Any, f.default_factory)()
        rows.append((key, _type_name(hint), default, f.metadata.get("doc", "")))
    return rows


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    if origin in (tuple, list):
        return f"list of {_type_name(get_args(hint)[0])}"
    if origin in (dict, Mapping):
        value_hint = get_args(hint)[1]
        return f"mapping of name to {'section' if dataclasses.is_dataclass(value_hint) else 'string'}"
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in get_args(hint) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(hint, str(hint))


_NODE_KIND = {
    "tag:yaml.org,2002:str": "string",
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:bool": "boolean",
    "tag:yaml.org,2002:null": "null",
}


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.constructor = SafeConstructor()

    def error(self, node: yaml.Node | None, key: str, problem: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(self.source, line, key, problem)

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        kind = _NODE_KIND.get(node.tag, "value")
        return ("an " if kind[0] in "aeiou" else "a ") + kind

    def build_dataclass(self, node: yaml.Node, schema: type[T], prefix: str) -> T:
        where = prefix.rstrip(".") or "(top level)"
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, f"expected a mapping, got {self.describe(node)}")
        fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
        hints = typing.get_type_hints(schema)
        values: dict[str, Any] = {}
        nodes: dict[str, yaml.Node] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise self.error(key_node, where, "keys must be plain strings")
            name = key_node.value
            dotted = prefix + name
            if name in seen:
                raise self.error(key_node, dotted, "duplicate key")
            seen.add(name)
            f = fields.get(name)
            if f is None:
                raise self.error(key_node, dotted, f"unknown key (expected one of: {', '.join(fields)})")
            values[name] = self.build_value(value_node, hints[name], dotted, f.metadata)
            nodes[name] = value_node
        try:
            return schema(**values)
        except InvalidField as exc:  # value checks in __post_init__
            raise self.error(nodes.get(exc.field, node), prefix + exc.field, exc.problem) from None
        except ValueError as exc:
            raise self.error(node, where, str(exc)) from None

    def build_value(self, node: yaml.Node, hint: Any, key: str, meta: Mapping[str, Any]) -> Any:
        origin = get_origin(hint)
        if origin in (types.UnionType, typing.Union):
            args = [a for a in get_args(hint) if a is not type(None)]
            if _is_null(node):
                return None
            return self.build_value(node, args[0], key, meta)
        if dataclasses.is_dataclass(hint):
            if _is_null(node):
                return typing.cast(type, hint)()
            return self.build_dataclass(node, typing.cast(type, hint), key + ".")
        if origin in (tuple, list):
            if not isinstance(node, yaml.SequenceNode):
                raise self.error(node, key, f"expected a list, got {self.describe(node)}")
            item_hint = get_args(hint)[0]
            items = [self.build_value(n, item_hint, f"{key}[{i}]", meta) for i, n in enumerate(node.value)]
            return tuple(items)
        if origin in (dict, Mapping):
            if not isinstance(node, yaml.MappingNode):
                raise self.error(node, key, f"expected a mapping, got {self.describe(node)}")
            value_hint = get_args(hint)[1]
            out: dict[str, Any] = {}
            for k, v in node.value:
                sub = f"{key}.{k.value}" if isinstance(k, yaml.ScalarNode) else key
                if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                    raise self.error(k, key, "keys must be plain strings")
                if k.value in out:
                    raise self.error(k, sub, "duplicate key")
                if dataclasses.is_dataclass(value_hint):
                    out[k.value] = self.build_value(v, value_hint, sub, meta)
                    continue
                if not isinstance(v, yaml.ScalarNode) or _is_null(v):
                    raise self.error(v, sub, f"expected a scalar value, got {self.describe(v)}")
                out[k.value] = str(self.constructor.construct_object(v))
            return types.MappingProxyType(out)
        return self.build_scalar(node, hint, key, meta)

    def build_scalar(self, node: yaml.Node, hint: Any, key: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, key, f"expected {self.expected(hint)}, got {self.describe(node)}")
        value = self.constructor.construct_object(node)
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            if value not in choices:
                raise self.error(node, key, f"must be one of {', '.join(map(str, choices))}; got {value!r}")
            return value
        ok = (
            (hint is str and isinstance(value, str))
            or (hint is bool and isinstance(value, bool))
            or (hint is int and isinstance(value, int) and not isinstance(value, bool))
            or (hint is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        )
        if not ok:
            raise self.error(node, key, f"expected {self.expected(hint)}, got {self.describe(node)} ({node.value!r})")
        if hint is float:
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise self.error(node, key, "must be a finite number")
        lo, hi = meta.get("min"), meta.get("max")
        if hint in (int, float):
            if lo is not None and value < lo:
                raise self.error(node, key, f"must be >= {lo}, got {value}")
            if hi is not None and value > hi:
                raise self.error(node, key, f"must be <= {hi}, got {value}")
        elif hint is str and lo is not None and len(value) < lo:
            raise self.error(node, key, "must not be empty" if lo == 1 else f"must be at least {lo} characters")
        return value

    @staticmethod
    def expected(hint: Any) -> str:
        return {str: "a string", int: "an integer", float: "a number", bool: "a boolean (true/false)"}.get(
            hint, _type_name(hint)
        )
