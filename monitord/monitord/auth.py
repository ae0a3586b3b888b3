"""Who is calling: transport credentials and agent identity.

An agent proves its identity with a client certificate (mutual TLS: the certificate's CN, a SAN
DNS name, or a SAN URI ``monitord-agent:<id>``) or with a token (call metadata
``authorization: Bearer <token>``, checked against SHA-256 hashes in ``server.auth.tokens_file``).
The identity must equal the agent id it registers and streams as: otherwise PERMISSION_DENIED;
no credentials at all -> UNAUTHENTICATED (unless ``require_identity: false``). Both are logged
with the peer address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import grpc
import yaml

from monitord.config import ServerSection
from monitord.errors import AuthConfigError

log = logging.getLogger(__name__)

SAN_URI_PREFIX = "monitord-agent:"


def warn_if_world_readable(path: str, what: str) -> None:
    """Secrets must not be readable by others: say so at start if they are."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning("%s %s is readable by other users (mode %o): chmod o-r it", what, path, stat.S_IMODE(mode))


def load_tokens(path: str) -> dict[str, str]:
    """``agent id -> sha256 hex`` from the tokens file (values written ``sha256:<hex>``)."""
    if not path:
        return {}
    warn_if_world_readable(path, "Tokens file")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AuthConfigError(f"cannot read tokens file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise AuthConfigError(f"tokens file {path}: expected a mapping 'agent-id: sha256:<hex>'")
    tokens: dict[str, str] = {}
    for agent_id, value in data.items():
        digest = str(value).removeprefix("sha256:").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise AuthConfigError(f"tokens file {path}: entry {agent_id!r} is not 'sha256:<64 hex digits>'")
        tokens[str(agent_id)] = digest
    return tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def server_credentials(cfg: ServerSection) -> grpc.ServerCredentials | None:
    """TLS credentials for the listening port; None for plaintext."""
    tls = cfg.tls
    if tls.mode == "plaintext":
        return None
    try:
        key, chain = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
        roots = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise AuthConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
    warn_if_world_readable(tls.key_file, "TLS private key")
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=roots, require_client_auth=tls.mode == "mtls")


class Authenticator:
    """Decides, per call, whether the caller may act as the agent id it claims."""

    def __init__(self, cfg: ServerSection, tokens: Mapping[str, str]) -> None:
        self._require = cfg.auth.require_identity
        self._tokens = dict(tokens)

    def reconfigure(self, cfg: ServerSection, tokens: Mapping[str, str]) -> None:
        self._require = cfg.auth.require_identity
        self._tokens = dict(tokens)

    def identities(self, context: grpc.aio.ServicerContext) -> tuple[set[str], str | None]:
        """(names the client certificate proves, the token presented or None)."""
        names: set[str] = set()
        auth = context.auth_context() or {}
        for key in ("x509_common_name", "x509_subject_alternative_name"):
            for raw in auth.get(key, ()):
                value = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
                names.add(value.removeprefix(SAN_URI_PREFIX))
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :].strip()
        return names, token

    async def check(self, context: grpc.aio.ServicerContext, agent_id: str) -> None:
        """Abort the call unless the caller proved it is ``agent_id`` (or anonymity is allowed)."""
        names, token = self.identities(context)
        peer = context.peer()
        if token is not None:
            digest = hash_token(token)
            expected = self._tokens.get(agent_id)
            if expected is not None and hmac.compare_digest(expected, digest):
                return
            if any(hmac.compare_digest(d, digest) for d in self._tokens.values()):
                await self._deny(context, peer, agent_id, "token belongs to another agent")
            await self._unauthenticated(context, peer, agent_id, "unknown token")
        if names:
            if agent_id in names:
                return
            await self._deny(context, peer, agent_id, f"certificate is for {', '.join(sorted(names))}")
        if self._require:
            await self._unauthenticated(context, peer, agent_id, "no client certificate or token")

    @staticmethod
    async def _deny(context: grpc.aio.ServicerContext, peer: str, agent_id: str, why: str) -> None:
        log.warning("✗ PERMISSION_DENIED: %s tried to act as agent '%s' (%s)", peer, agent_id, why)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"not allowed to act as agent {agent_id!r}")

    @staticmethod
    async def _unauthenticated(context: grpc.aio.ServicerContext, peer: str, agent_id: str, why: str) -> None:
        log.warning("✗ UNAUTHENTICATED: %s claiming agent '%s' (%s)", peer, agent_id, why)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
