"""monitor-agentd's exception hierarchy: subclasses say whether retrying can help."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    retriable: bool = False


class LinkFailed(AgentError):
    """The connection to a server failed or ended; the reconnect loop tries again after a backoff."""

    retriable = True

    def __init__(self, reason: str, *, immediate: bool = False) -> None:
        super().__init__(reason)
        #: The server asked us to go elsewhere: reconnect without waiting.
        self.immediate = immediate


class StateDirError(AgentError):
    """The state directory cannot be used (permissions, or another agent holds it): exit 73."""


class UnsafeStateDir(StateDirError):
    """The state directory, or a file in it, could be redirected by someone else (not owned by the
    agent's user or root, writable by group or others, a planted link): exit 78, no restart."""


class CredentialsError(AgentError):
    """A certificate, key or token file named in agent.yaml cannot be used (exit 78 at start)."""


class CommandRefused(AgentError):
    """A command is not allowed as asked (unknown, bad arguments, too many running); the text says
    why and is sent back to the server as the REJECTED response's message."""
