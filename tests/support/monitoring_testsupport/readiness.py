"""Readiness a test can observe from outside a process: sd_notify messages, /metrics, gRPC health.

Daemons are started with ``$NOTIFY_SOCKET`` pointing at a :class:`NotifyListener`, exactly as
systemd does for ``Type=notify`` units, so "ready" means what it means in production: the daemon
said ``READY=1``. Counters and gauges are read from the daemon's Prometheus endpoint.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families


class NotifyListener:
    """An abstract-namespace datagram socket collecting sd_notify messages in a thread."""

    def __init__(self) -> None:
        self.name = f"@monitoring-test-{os.getpid()}-{id(self):x}-{time.monotonic_ns()}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.name[1:])
        self._sock.settimeout(0.2)
        self._messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode(errors="replace").splitlines() if "=" in line)
            with self._cond:
                self._messages.append(fields)
                self._cond.notify_all()

    @property
    def messages(self) -> list[dict[str, str]]:
        with self._cond:
            return list(self._messages)

    def count(self, key: str, value: str | None = None) -> int:
        """How many messages carried ``key`` (with ``value``, if given)."""
        return sum(1 for m in self.messages if key in m and (value is None or m[key] == value))

    def last(self, key: str) -> str | None:
        """The latest value sent for ``key`` (e.g. ``STATUS``)."""
        for m in reversed(self.messages):
            if key in m:
                return m[key]
        return None

    def wait(
        self, predicate: Callable[[list[dict[str, str]]], bool], timeout: float, alive: Callable[[], bool]
    ) -> bool:
        """Wait until ``predicate(messages)`` holds; False on timeout or when ``alive()`` turns false."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._messages):
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return predicate(self._messages)
                self._cond.wait(min(left, 0.1))
            return True

    def close(self) -> None:
        self._closed = True
        self._sock.close()


def scrape(url: str, timeout: float = 10.0) -> dict[str, float]:
    """Every sample of a Prometheus endpoint, read with Prometheus's own parser, keyed by
    ``name{label=value,...}`` (histogram buckets get ``[le=...]``)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "le")
            key = s.name + (f"{{{labels}}}" if labels else "")
            if "le" in s.labels:
                key += f"[le={s.labels['le']}]"
            samples[key] = s.value
    return samples


def health_status(address: str, service: str = "", timeout: float = 5.0) -> int:
    """The gRPC health status of ``service`` at ``address`` (plaintext), e.g.
    ``health_pb2.HealthCheckResponse.SERVING``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status)
