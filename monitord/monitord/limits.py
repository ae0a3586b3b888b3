"""Per-agent limits: a message rate (backpressure, not drops) and bounds on every growing field."""

from __future__ import annotations

import time
from collections.abc import Callable

from monitord.config import LimitsSection
from monitoring.v1 import monitoring_pb2 as pb


class RateLimiter:
    """Token bucket: ``rate`` messages per second with a burst of two seconds' worth. When empty,
    the reader sleeps what :meth:`take` says, so the stream is read more slowly and gRPC flow
    control pushes back."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = 2 * rate
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self.throttled = 0

    def take(self) -> float:
        """Take a token: 0 if one was there, else the seconds to wait (the token is then owed)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate) - 1
        self._last = now
        if self._tokens >= 0:
            return 0.0
        self.throttled += 1
        return -self._tokens / self.rate


def _too_long(limits: LimitsSection, *values: str) -> bool:
    # A str of n characters is at most 4n UTF-8 bytes: encode only the ones that could be too long.
    cap = limits.max_string_bytes
    return any(len(v) * 4 > cap and len(v.encode()) > cap for v in values)


def _labels_problem(labels: dict[str, str] | object, limits: LimitsSection) -> str | None:
    items = list(labels.items()) if hasattr(labels, "items") else []
    if any(len(k.encode()) > limits.max_label_bytes or len(v.encode()) > limits.max_label_bytes for k, v in items):
        return f"a label longer than {limits.max_label_bytes} bytes"
    return None


def metrics_problem(m: pb.MetricsData, limits: LimitsSection, size: int | None = None) -> str | None:
    """Why ``m`` exceeds the limits, or None. ``size``: its serialized size, if known."""
    if len(m.disks) > limits.max_disks or len(m.disk_io) > limits.max_disks:
        return f"more than {limits.max_disks} disks"
    if len(m.network.interfaces) > limits.max_interfaces:
        return f"more than {limits.max_interfaces} network interfaces"
    if len(m.cpu.per_core_percent) > limits.max_cores:
        return f"more than {limits.max_cores} CPU cores"
    if len(m.labels) > limits.max_labels:
        return f"{len(m.labels)} labels (limit {limits.max_labels})"
    # No string is longer than the (sub)message holding it: the common case walks no fields.
    cap = limits.max_string_bytes
    if (m.ByteSize() if size is None else size) > cap:
        if _too_long(limits, m.agent_id, m.hostname, m.source):
            return f"a string field longer than {cap} bytes"
        if any(d.ByteSize() > cap and _too_long(limits, d.mountpoint, d.device, d.fstype) for d in m.disks) or any(
            d.ByteSize() > cap and _too_long(limits, d.device) for d in m.disk_io
        ):
            return f"a disk name longer than {cap} bytes"
        if any(i.ByteSize() > cap and _too_long(limits, i.name) for i in m.network.interfaces):
            return f"an interface name longer than {cap} bytes"
    return _labels_problem(m.labels, limits) if m.labels else None


def response_problem(r: pb.CommandResponseMessage, limits: LimitsSection) -> str | None:
    """Why ``r`` exceeds the limits, or None."""
    if len(r.stdout.encode()) + len(r.stderr.encode()) > limits.max_output_bytes:
        return f"output larger than {limits.max_output_bytes} bytes"
    if _too_long(limits, r.command_id, r.agent_id, r.command, r.requested_by, r.reported_by):
        return f"a string field longer than {limits.max_string_bytes} bytes"
    if len(r.message.encode()) > 4 * limits.max_string_bytes:
        return "message too long"
    return None


#: Longest heartbeat interval an agent may announce (a day): beyond it, staleness means nothing.
MAX_INTERVAL_SECONDS = 86_400.0


def registration_problem(r: pb.AgentRegistration, limits: LimitsSection) -> str | None:
    """Why the registration ``r`` exceeds the limits, or None (its agent id is checked before)."""
    cap = limits.max_string_bytes
    for name in ("hostname", "agent_version", "instance_id"):
        if _too_long(limits, getattr(r, name)):
            return f"{name} longer than {cap} bytes"
    if len(r.capabilities) > limits.max_capabilities:
        return f"{len(r.capabilities)} capabilities (limit {limits.max_capabilities})"
    if any(len(c.encode()) > limits.max_label_bytes for c in r.capabilities):
        return f"a capability longer than {limits.max_label_bytes} bytes"
    if not 0 <= r.interval_seconds <= MAX_INTERVAL_SECONDS:  # also refuses NaN
        return f"interval_seconds must be within 0..{MAX_INTERVAL_SECONDS:g}"
    return None


class KeyedRate:
    """Token buckets by key (an agent id), ``per_minute`` events with a burst of ``burst``; at
    most ``max_keys`` buckets are kept (the least recently used is forgotten: a full bucket again),
    so many distinct keys cost bounded memory."""

    def __init__(
        self, per_minute: float, burst: int, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._max_keys, self._clock = per_minute / 60.0, float(burst), max_keys, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def allow(self, key: str) -> bool:
        """Take one event for ``key``: False when its bucket is empty (nothing is taken then)."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        allowed = tokens >= 1
        self._buckets[key] = (tokens - 1 if allowed else tokens, now)  # re-inserted: most recent last
        while len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]
        return allowed


def connection_options(limits: LimitsSection) -> list[tuple[str, int]]:
    """gRPC server options bounding connections: how many, how long to handshake, how long idle."""
    return [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout_seconds * 1000)),
        ("grpc.max_connection_idle_ms", int(limits.idle_connection_seconds * 1000)),
    ]
