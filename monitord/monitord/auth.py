"""Who is calling: transport credentials and agent identity.

An agent proves its identity with a client certificate (mutual TLS) or with a token (call metadata
``authorization: Bearer <token>``, checked against SHA-256 hashes in ``server.auth.tokens_file``).
A certificate names exactly: its subject CN, its SAN DNS names, and its SAN URIs
``monitord-agent:<id>`` -- each only if it satisfies the id rule
(:data:`monitoring_common.untrusted.ID`); SAN email, IP and other URIs name nobody. grpc's auth
context gives the SAN types apart (``peer_dns``, ``peer_uri``, ``peer_email``, ``peer_ip``); the
untyped ``x509_subject_alternative_name`` list is never read.

The identity must equal the agent id the call acts as. A wrong token -- unknown, or another
agent's -- gets UNAUTHENTICATED with one message, and counts against the peer host's and the
agent id's failure budget (:mod:`monitord.auth_throttle`); over budget, tokens are refused
unchecked with the same answer. A verified certificate for another agent is PERMISSION_DENIED (a
CA-issued certificate is not a guess). No credentials -> UNAUTHENTICATED (unless
``require_identity: false``). Every refusal is counted for /metrics and logged within a budget,
with what the caller chose escaped (:func:`monitoring_common.untrusted.shown`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import grpc
import yaml

from monitord.auth_throttle import AuthThrottle, peer_host
from monitord.config import ServerSection
from monitord.errors import AuthConfigError
from monitord.stats import AuthStats
from monitoring_common.untrusted import LogBudget, is_id, shown

log = logging.getLogger(__name__)

SAN_URI_PREFIX = "monitord-agent:"
#: What a caller with a wrong token hears, whoever's token it was and whether it was checked at all.
BAD_TOKEN = "invalid credentials"
NO_CREDENTIALS = "no client certificate or token"
#: What a reflection or health Watch call claims (a valid credential of any agent).
ANY_AGENT = "any agent (reflection or health Watch)"
#: A token compared against nothing, so an unknown agent id costs what a known one does.
_NO_DIGEST = "0" * 64


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

    def __init__(
        self,
        cfg: ServerSection,
        tokens: Mapping[str, str],
        stats: AuthStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats if stats is not None else AuthStats()
        self._throttle = AuthThrottle(cfg.auth, clock)
        self._bounds = _bounds(cfg)
        # Failures are logged at most 10 lines per 10 s, throttled calls 2: a guesser costs the
        # journal a few lines a second whatever its rate (the counts are in /metrics).
        self._failure_log = LogBudget(clock=clock)
        self._throttle_log = LogBudget(lines=2, clock=clock)
        self.reconfigure(cfg, tokens)

    def reconfigure(self, cfg: ServerSection, tokens: Mapping[str, str]) -> None:
        if _bounds(cfg) != self._bounds:  # an unchanged reload keeps the budgets spent so far
            self._throttle.reconfigure(cfg.auth)
            self._bounds = _bounds(cfg)
        self._require = cfg.auth.require_identity
        self._tokens = dict(tokens)
        self._digests = frozenset(self._tokens.values())

    @property
    def required(self) -> bool:
        """Whether callers must prove an identity (``server.auth.require_identity``)."""
        return self._require

    def identities(self, context: grpc.aio.ServicerContext) -> tuple[set[str], str | None]:
        """(agent ids the client certificate proves, the token presented or None)."""
        auth = context.auth_context() or {}
        names = certificate_names(auth)
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
            known = agent_id in self._tokens
            host = peer_host(peer)
            if self._throttle.refused(host, agent_id if known else None):
                await self._throttled(context, peer, _agent(agent_id))
            digest = hash_token(token)
            if hmac.compare_digest(self._tokens.get(agent_id, _NO_DIGEST), digest) and known:
                return
            reason = "foreign_token" if digest in self._digests else "unknown_token"
            self._throttle.failed(host, agent_id if known else None)
            why = "token belongs to another agent" if reason == "foreign_token" else "unknown token"
            await self._unauthenticated(context, peer, _agent(agent_id), reason, why, BAD_TOKEN)
        if names:
            if agent_id in names:
                return
            self.stats.note_failure("certificate_mismatch")
            self._failure_log.log(
                log,
                logging.WARNING,
                "✗ PERMISSION_DENIED: %s tried to act as agent '%s' (certificate is for %s)",
                shown(peer),
                shown(agent_id),
                shown(", ".join(sorted(names))),
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the client certificate is for another agent")
        if self._require:
            await self._unauthenticated(
                context, peer, _agent(agent_id), "no_credentials", NO_CREDENTIALS, NO_CREDENTIALS
            )

    async def check_caller(self, context: grpc.aio.ServicerContext) -> None:
        """Abort the call unless the caller holds some valid credential -- any agent's token, or a
        verified client certificate -- when identities are required (reflection, health Watch)."""
        if not self._require:
            return
        _, token = self.identities(context)
        peer = context.peer()
        if token is not None:
            host = peer_host(peer)
            if self._throttle.refused(host, None):
                await self._throttled(context, peer, ANY_AGENT)
            if hash_token(token) in self._digests:
                return
            self._throttle.failed(host, None)
            await self._unauthenticated(context, peer, ANY_AGENT, "unknown_token", "unknown token", BAD_TOKEN)
        if (context.auth_context() or {}).get("x509_pem_cert"):
            return
        await self._unauthenticated(context, peer, ANY_AGENT, "no_credentials", NO_CREDENTIALS, NO_CREDENTIALS)

    async def _throttled(self, context: grpc.aio.ServicerContext, peer: str, claim: str) -> None:
        self.stats.throttled += 1
        self._throttle_log.log(
            log,
            logging.WARNING,
            "✗ UNAUTHENTICATED: %s claiming %s (too many wrong tokens: refused unchecked)",
            shown(peer),
            claim,
        )
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)

    async def _unauthenticated(
        self, context: grpc.aio.ServicerContext, peer: str, claim: str, reason: str, why: str, answer: str
    ) -> None:
        self.stats.note_failure(reason)
        self.stats.tracked_peers = len(self._throttle.peers)
        self._failure_log.log(log, logging.WARNING, "✗ UNAUTHENTICATED: %s claiming %s (%s)", shown(peer), claim, why)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, answer)


def _agent(agent_id: str) -> str:
    return f"agent '{shown(agent_id)}'"


def _bounds(cfg: ServerSection) -> tuple[int, float, int]:
    return cfg.auth.failure_burst, cfg.auth.failures_per_second, cfg.auth.tracked_peers


def certificate_names(auth: Mapping[str, Iterable[bytes | str]]) -> set[str]:
    """The agent ids a verified client certificate names: CN, SAN DNS names, SAN URIs
    ``monitord-agent:<id>`` -- each only if it is a valid id. Nothing else counts."""
    values = [*auth.get("x509_common_name", ()), *auth.get("peer_dns", ())]
    for uri in auth.get("peer_uri", ()):
        text = _text(uri)
        if text.startswith(SAN_URI_PREFIX):
            values.append(text[len(SAN_URI_PREFIX) :])
    return {name for name in map(_text, values) if is_id(name)}


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
