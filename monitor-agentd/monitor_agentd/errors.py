"""monitor-agentd's exception hierarchy: subclasses say whether retrying can help."""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    retriable: bool = False


class LinkFailed(AgentError):
    """The connection to a server failed or ended; the reconnect loop tries again after a backoff."""

    retriable = True


class StateDirError(AgentError):
    """The state directory cannot be used (permissions, or another agent holds it): exit 73."""
