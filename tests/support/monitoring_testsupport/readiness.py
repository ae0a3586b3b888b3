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


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """The samples of a Prometheus text exposition, ``name{labels}`` → value."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


def health_status(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The gRPC health status of ``service`` at ``address`` (plaintext), e.g. ``SERVING``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
