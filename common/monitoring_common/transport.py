"""gRPC transport settings both ends must agree on, defined once: compression and keepalive.

The server's keepalive policy and the agent's keepalive bounds are two halves of one contract: an
agent pinging more often than the server tolerates gets ``too_many_pings`` and a closed
connection, so both derive from the constants here.
"""

from __future__ import annotations

from typing import Literal

import grpc

#: Stream compression an operator can choose (agent.yaml ``connection.compression``,
#: monitord.yaml ``server.compression``).
CompressionName = Literal["none", "gzip"]
COMPRESSION: dict[str, grpc.Compression] = {
    "none": grpc.Compression.NoCompression,
    "gzip": grpc.Compression.Gzip,
}

#: The server pings an idle agent this often ...
SERVER_KEEPALIVE_SECONDS = 30
#: ... and drops it when no answer comes within this.
SERVER_KEEPALIVE_TIMEOUT_SECONDS = 10
#: The server tolerates agent pings down to this interval (the agent's keepalive minimum).
MIN_CLIENT_PING_INTERVAL_SECONDS = 10

#: Server-side HTTP/2 keepalive options (grpc.aio.server(options=...)).
SERVER_KEEPALIVE_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", SERVER_KEEPALIVE_SECONDS * 1000),
    ("grpc.keepalive_timeout_ms", SERVER_KEEPALIVE_TIMEOUT_SECONDS * 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_SECONDS * 1000),
    ("grpc.http2.max_ping_strikes", 2),
]


def client_keepalive_options(keepalive_seconds: float, timeout_seconds: float) -> list[tuple[str, int]]:
    """Agent-side channel options: pings every ``keepalive_seconds`` (never below the server's
    minimum), no retries by the channel (reconnecting is the agent's job, with its own backoff)."""
    return [
        ("grpc.keepalive_time_ms", int(max(keepalive_seconds, MIN_CLIENT_PING_INTERVAL_SECONDS) * 1000)),
        ("grpc.keepalive_timeout_ms", int(timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
    ]
