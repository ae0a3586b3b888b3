"""Argv templates: the arguments of a command bound to a configured definition, validated one by one.

A definition (:class:`config.CommandSpec`) names a program and its argv, with ``{param}``
placeholders; :func:`bind` checks each argument against its parameter and inserts it literally into
its element. No shell is involved, so no argument can become code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from monitor_agentd.config import PLACEHOLDER, CommandSpec
from monitor_agentd.errors import CommandRefused


def bind(spec: CommandSpec, args: Sequence[str]) -> list[str]:
    """The argv for ``args`` under ``spec``, or :class:`CommandRefused` naming the offending parameter."""
    if len(args) != len(spec.params):
        names = " ".join(p.name.upper() for p in spec.params) or "no arguments"
        raise CommandRefused(f"expects {len(spec.params)} argument(s) ({names}), got {len(args)}")
    values: dict[str, str] = {}
    for param, value in zip(spec.params, args, strict=True):
        if "\x00" in value:
            raise CommandRefused(f"argument {param.name}: contains a NUL byte")
        if len(value) > param.max_length:
            raise CommandRefused(f"argument {param.name}: longer than {param.max_length} characters")
        if value.startswith("-") and not param.allow_option_like:
            raise CommandRefused(f"argument {param.name}: option-like values (starting with '-') are not allowed")
        if ".." in value and not param.allow_dotdot:
            raise CommandRefused(f"argument {param.name}: '..' is not allowed")
        if not re.fullmatch(param.pattern, value, flags=re.DOTALL):
            raise CommandRefused(f"argument {param.name}: does not match {param.pattern!r}")
        values[param.name] = value
    # A function replacement inserts the value literally (no backslash or group processing).
    return [PLACEHOLDER.sub(lambda m: values[m.group(1)], element) for element in spec.argv]
