"""Channel security towards monitord: TLS roots, the agent's client certificate, or its token.

Files are read at every connection attempt, so rotated certificates and tokens are picked up on
the next reconnect without a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from monitor_agentd.config import AgentTlsSection
from monitor_agentd.errors import CredentialsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """What a channel and its calls need."""

    channel: grpc.ChannelCredentials | None  # None: plaintext
    metadata: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, str], ...]


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {what} {path}: {exc.strerror}") from None


def load(tls: AgentTlsSection) -> Credentials:
    """Build the credentials ``tls`` describes; :class:`CredentialsError` names an unreadable file."""
    metadata: tuple[tuple[str, str], ...] = ()
    if tls.token_file:
        token = _read(tls.token_file, "token file").decode(errors="replace").strip()
        if not token:
            raise CredentialsError(f"token file {tls.token_file} is empty")
        metadata = (("authorization", f"Bearer {token}"),)
    if tls.mode == "plaintext":
        return Credentials(None, metadata, ())
    roots = _read(tls.ca_file, "CA file") if tls.ca_file else None
    key = chain = None
    if tls.mode == "mtls":
        key, chain = _read(tls.key_file, "client key"), _read(tls.cert_file, "client certificate")
    channel = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)
    options = (("grpc.ssl_target_name_override", tls.server_name),) if tls.server_name else ()
    return Credentials(channel, metadata, options)
