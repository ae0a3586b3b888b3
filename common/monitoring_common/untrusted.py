"""Text from untrusted sources (Kafka records, peers not yet authenticated) made safe to log.

Anything a sender chose -- an agent id, a command name, a record key -- goes through :func:`shown`
before it reaches a log line: control characters and non-ASCII are escaped (one line per log
record, no terminal escapes) and the result is cut at a bound, so a megabyte field costs a
hundred bytes of log, not a megabyte.
"""

from __future__ import annotations

#: Characters of an untrusted value a log line shows at most (before escaping).
SHOWN_CHARS = 96


def shown(value: str | bytes | None, limit: int = SHOWN_CHARS) -> str:
    """``value`` escaped for a log line and cut after ``limit`` characters (the rest is counted)."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    head = text[:limit].encode("unicode_escape").decode("ascii")
    if len(text) > limit:
        return f"{head}…(+{len(text) - limit} chars)"
    return head
