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
