"""Man pages (roff, man macros) generated from the argparse parsers and the config schemas, so the
pages cannot drift from the code: ``scripts/gen-man.py`` writes them, a test checks they are
current and render with ``man -l``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from monitoring_common.config_loader import field_docs

DATE = "2026-11-27"
SOURCE = "monitord 0.1"
MANUAL = "monitord manual"


def esc(text: str) -> str:
    """Escape free text for roff: backslashes, hyphens as minus, no control character at line start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)  # plain ASCII roff
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def _header(name: str, section: int, summary: str) -> list[str]:
    return [
        f'.TH {esc(name.upper())} {section} "{DATE}" "{SOURCE}" "{MANUAL}"',
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
    ]


def _sections(extra: Sequence[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for title, body in extra:
        lines.append(f".SH {title.upper()}")
        for para in body.strip().split("\n\n"):
            if para.startswith("  "):  # an indented block: shown verbatim
                lines += [".PP", ".nf", ".RS 4", esc("\n".join(p[2:] for p in para.split("\n"))), ".RE", ".fi"]
            elif para.startswith("* "):
                for item in para.split("\n* "):
                    lines += [".IP \\(bu 2", esc(item.removeprefix("* ").replace("\n", " "))]
            else:
                lines += [".PP", esc(para.replace("\n", " "))]
    return lines


def _option_label(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{esc(action.metavar or action.dest)}\\fR"  # type: ignore[arg-type]
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in action.option_strings)
    if action.nargs == 0:
        return names
    value = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices else action.dest)
    return f"{names} \\fI{esc(str(value))}\\fR"


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        lines += [".TP", _option_label(action), esc((action.help or "").replace("%%", "%"))]
    return lines


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().removeprefix("usage: ").strip()
    return " ".join(usage.split())


def command_page(
    parser: argparse.ArgumentParser, section: int, summary: str, extra: Sequence[tuple[str, str]] = ()
) -> str:
    """A page for a program: synopsis and options from its parser (sub-commands included)."""
    name = parser.prog
    lines = _header(name, section, summary)
    lines += [".SH SYNOPSIS", esc(_usage(parser)), ".SH DESCRIPTION", esc(parser.description or "")]
    lines += [".SH OPTIONS", *_options(parser)]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sub in subs:
        lines.append(".SH SUBCOMMANDS")
        for sub_name, sub_parser in sub.choices.items():
            lines += [f".SS {esc(sub_name)}", esc(_usage(sub_parser)), ".PP"]
            lines += [esc(sub_parser.description or ""), *_options(sub_parser)]
    lines += _sections(extra)
    return "\n".join(lines) + "\n"


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "" or value is None:
        return '""' if value == "" else "null"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(str, value)) + "]" if value else "[]"
    if hasattr(value, "items"):
        return "{}" if not value else str(dict(value))
    return str(value)


def config_page(schema: type[Any], name: str, summary: str, intro: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    """A page for a YAML file: every key of ``schema`` with its type, default and documentation."""
    lines = _header(name, 5, summary)
    lines += [".SH DESCRIPTION", *_sections([("", intro)])[1:]]
    hints = typing.get_type_hints(schema)
    for section in dataclasses.fields(schema):
        lines += [f".SH {esc(section.name.upper())}", esc(section.metadata.get("doc", ""))]
        lines += _keys(hints[section.name], section.name)
    lines += _sections(extra)
    return "\n".join(lines) + "\n"


def _keys(cls: type[Any], prefix: str) -> Iterable[str]:
    for key, type_name, default, doc in field_docs(cls, f"{prefix}."):
        yield ".TP"
        yield f"\\fB{esc(key)}\\fR (\\fI{esc(type_name)}\\fR, default \\fB{esc(_default(default))}\\fR)"
        yield esc(doc)
