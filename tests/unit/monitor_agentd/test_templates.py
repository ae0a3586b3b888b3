"""Argv templates: arguments bound literally to a definition's placeholders."""

from __future__ import annotations

from monitor_agentd.config import CommandSpec, ParamSpec
from monitor_agentd.templates import bind

ECHO = CommandSpec(argv=("/bin/echo", "hello {name}"), params=(ParamSpec(name="name", pattern="[a-z.]+"),))


def test_bind_inserts_values_literally() -> None:
    assert bind(ECHO, ["a.b"]) == ["/bin/echo", "hello a.b"]
    literal = CommandSpec(argv=("/bin/echo", "{v}"), params=(ParamSpec(name="v", pattern=r".*"),))
    assert bind(literal, [r"\1 $HOME"]) == ["/bin/echo", r"\1 $HOME"]
