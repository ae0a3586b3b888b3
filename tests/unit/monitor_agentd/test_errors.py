"""One root error for the whole package."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import monitor_agentd
from monitor_agentd.errors import AgentError, CommandRefused, CredentialsError, LinkFailed, StateDirError


def test_every_exception_class_in_the_package_derives_from_agent_error() -> None:
    found = []
    for info in pkgutil.walk_packages(monitor_agentd.__path__, "monitor_agentd."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found.append(cls)
                assert issubclass(cls, AgentError), f"{cls.__module__}.{cls.__name__}"
    assert set(found) >= {AgentError, CommandRefused, CredentialsError, LinkFailed, StateDirError}


def test_retriable_says_whether_trying_again_can_help() -> None:
    assert LinkFailed("x").retriable and not LinkFailed("x").immediate
    assert LinkFailed("x", immediate=True).immediate
    assert not StateDirError("x").retriable and not CredentialsError("x").retriable
