"""The sections of monitord's ``server`` section about who may connect and what they may send:
transport security, agent authentication, and the limits (re-exported by :mod:`monitord.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitoring_common.config_loader import InvalidField, setting


@dataclass(frozen=True)
class TlsSection:
    """Transport security of the gRPC endpoint (docs/security.md)."""

    mode: Literal["tls", "mtls", "plaintext"] = setting(
        "mtls",
        "tls: server certificate; mtls: agents must present a client certificate signed by client_ca_file; "
        "plaintext: no encryption (only when set explicitly; warned at every start).",
    )
    cert_file: str = setting("/etc/monitord/tls/server.crt", "PEM server certificate (chain).")
    key_file: str = setting("/etc/monitord/tls/server.key", "PEM private key of the server certificate.")
    client_ca_file: str = setting("/etc/monitord/tls/ca.crt", "PEM CA bundle that signs agent certificates (mtls).")

    def __post_init__(self) -> None:
        if self.mode != "plaintext":
            for name in ("cert_file", "key_file"):
                if not getattr(self, name):
                    raise InvalidField(name, f"required when mode is {self.mode} (or set mode: plaintext explicitly)")
        if self.mode == "mtls" and not self.client_ca_file:
            raise InvalidField("client_ca_file", "required when mode is mtls")


@dataclass(frozen=True)
class AuthSection:
    """Who may speak for which agent id."""

    require_identity: bool = setting(
        True,
        "Every agent must prove an identity: a client certificate (mtls) or a token. false allows "
        "anonymous agents (warned at every start).",
    )
    tokens_file: str = setting(
        "",
        "YAML file 'agent-id: sha256:<hex of the token>' for token authentication (agents send "
        "'authorization: Bearer <token>'); must not be readable by others.",
    )
    failure_burst: int = setting(
        10,
        "Wrong tokens a peer host (and, from hosts that failed too, an agent id) may send at once; beyond "
        "it further tokens are refused unchecked, with the same UNAUTHENTICATED answer.",
        min=1,
        max=10_000,
    )
    failures_per_second: float = setting(
        1.0, "How fast that allowance refills: checked token guesses per second, per host.", min=0.001, max=10_000
    )
    tracked_peers: int = setting(
        10_000,
        "Peer hosts (and agent ids) whose recent failures are remembered; beyond it the least recent is forgotten.",
        min=16,
        max=10_000_000,
    )


@dataclass(frozen=True)
class LimitsSection:
    """Bounds on what one agent may send, and on connections that have not authenticated (docs/security.md)."""

    max_agents: int = setting(
        20_000, "Concurrent agent streams; more are refused (RESOURCE_EXHAUSTED).", min=1, max=1_000_000
    )
    messages_per_second: float = setting(
        200.0,
        "Per-agent message rate; beyond it (after a burst of 2 s worth) the stream is read more slowly.",
        min=0.1,
        max=1_000_000,
    )
    max_labels: int = setting(64, "Labels per record.", min=0, max=10_000)
    max_label_bytes: int = setting(256, "Bytes per label key or value.", min=1, max=65_536)
    max_disks: int = setting(256, "Filesystems and disk devices per record.", min=0, max=100_000)
    max_interfaces: int = setting(256, "Network interfaces per record.", min=0, max=100_000)
    max_cores: int = setting(4096, "Per-core CPU values per record.", min=0, max=1_000_000)
    max_output_bytes: int = setting(
        1_048_576, "stdout plus stderr of one command response.", min=1024, max=64 * 1024 * 1024
    )
    max_string_bytes: int = setting(1024, "Any other string field (ids, names, mount points).", min=16, max=65_536)
    max_capabilities: int = setting(64, "Capabilities one agent may announce in RegisterAgent.", min=0, max=10_000)
    registrations_per_minute: float = setting(
        30.0,
        "RegisterAgent calls per agent id and minute (after a burst of 10); more are refused "
        "(RESOURCE_EXHAUSTED) and the agent backs off.",
        min=1,
        max=1_000_000,
    )
    max_connections: int = setting(
        25_000,
        "HTTP/2 connections held at once, authenticated or not; more are closed as they arrive. "
        "Keep it above max_agents.",
        min=1,
        max=1_000_000,
    )
    handshake_timeout_seconds: float = setting(
        10.0, "A connection must finish its TLS and HTTP/2 handshake within this, or it is closed.", min=0.1, max=300
    )
    idle_connection_seconds: float = setting(
        60.0,
        "A connection with no call open for this long is closed: nobody holds a connection "
        "without a call (an agent always has its stream open).",
        min=1,
        max=86_400,
    )
