"""Who is calling: a token or a client certificate must name the agent id the call acts as;
wrong tokens are answered alike, counted and throttled per peer host and per agent id."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import grpc
import pytest

from monitord.auth import BAD_TOKEN, Authenticator, certificate_names, hash_token, load_tokens, server_credentials
from monitord.auth_throttle import FailureBudget, peer_host
from monitord.config import AuthSection, ServerSection, TlsSection
from monitord.errors import AuthConfigError
from monitoring_testsupport.fakes.monitord import Aborted, FakeContext

TOKENS = {"web-1": hashlib.sha256(b"secret-1").hexdigest(), "web-2": hashlib.sha256(b"secret-2").hexdigest()}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authenticator(*, require: bool = True, clock: Clock | None = None, **auth: object) -> Authenticator:
    section = AuthSection(require_identity=require, **auth)  # type: ignore[arg-type]
    return Authenticator(ServerSection(auth=section), TOKENS, clock=clock or Clock())


def answer(auth: Authenticator, agent_id: str, ctx: FakeContext) -> tuple[grpc.StatusCode, str] | None:
    try:
        asyncio.run(auth.check(ctx, agent_id))  # type: ignore[arg-type]
    except Aborted as exc:
        return exc.code, exc.details
    return None


def check(agent_id: str, ctx: FakeContext, *, require: bool = True) -> grpc.StatusCode | None:
    result = answer(authenticator(require=require), agent_id, ctx)
    return None if result is None else result[0]


def bearer(token: str, peer: str = "ipv4:127.0.0.1:5555") -> FakeContext:
    return FakeContext(metadata=[("authorization", f"Bearer {token}")], peer=peer)


def certificate(*names: bytes, dns: tuple[bytes, ...] = (), uri: tuple[bytes, ...] = ()) -> FakeContext:
    auth = {"x509_common_name": list(names), "peer_dns": list(dns), "peer_uri": list(uri), "x509_pem_cert": [b"pem"]}
    return FakeContext(auth=auth)


def test_foreign_and_unknown_tokens_are_answered_alike(caplog: pytest.LogCaptureFixture) -> None:
    auth = authenticator()
    assert answer(auth, "web-1", bearer("secret-1")) is None
    with caplog.at_level(logging.WARNING):
        foreign = answer(auth, "web-1", bearer("secret-2"))
        unknown = answer(auth, "web-1", bearer("guess"))
    assert foreign == unknown == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    assert "✗ UNAUTHENTICATED: ipv4:127.0.0.1:5555 claiming agent 'web-1' (token belongs to another agent)" in (
        caplog.text
    )
    assert "✗ UNAUTHENTICATED: ipv4:127.0.0.1:5555 claiming agent 'web-1' (unknown token)" in caplog.text
    assert auth.stats.failures_by_reason == {"foreign_token": 1, "unknown_token": 1}
    # An agent id without a token answers the same, too.
    assert answer(auth, "web-9", bearer("secret-1")) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)


def test_certificate_identity() -> None:
    assert check("web-1", certificate(b"web-1")) is None
    assert check("web-1", certificate(b"other", uri=(b"monitord-agent:web-1",))) is None
    assert check("web-1", certificate(b"other", dns=(b"web-1",))) is None
    assert check("web-1", certificate(b"web-2")) == grpc.StatusCode.PERMISSION_DENIED


def test_certificate_names_only_cn_dns_and_agent_uris() -> None:
    # What grpc's auth context holds for a certificate with every kind of SAN (measured with grpcio 1.85).
    auth = {
        "x509_common_name": [b"cn-one"],
        "peer_dns": [b"dns-one", b"*.wild"],
        "peer_email": [b"web-1@example"],
        "peer_ip": [b"127.0.0.9"],
        "peer_uri": [b"web-1", b"monitord-agent:uri-agent", b"monitord-agent:bad id", b"spiffe://x/web-1"],
        "x509_subject_alternative_name": [b"dns-one", b"web-1@example", b"web-1", b"127.0.0.9"],
    }
    assert certificate_names(auth) == {"cn-one", "dns-one", "uri-agent"}
    for san in ("peer_email", "peer_ip", "x509_subject_alternative_name"):
        only = FakeContext(auth={"x509_common_name": [b"cn"], san: [b"web-1@example"], "x509_pem_cert": [b"pem"]})
        assert check("web-1@example", only) == grpc.StatusCode.PERMISSION_DENIED
    assert check("web-1", certificate(b"cn", uri=(b"web-1",))) == grpc.StatusCode.PERMISSION_DENIED
    # A CN that is not a valid id names nobody: the certificate proves nothing (no credentials).
    assert check("web-1", FakeContext(auth={"x509_common_name": [b"web 1\n"]})) == grpc.StatusCode.UNAUTHENTICATED


def test_no_identity() -> None:
    assert check("web-1", FakeContext()) == grpc.StatusCode.UNAUTHENTICATED
    assert check("web-1", FakeContext(), require=False) is None
    assert check("web-1", FakeContext(metadata=[("authorization", "Basic x")]), require=False) is None


def test_guessing_is_throttled_per_peer(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    auth = authenticator(clock=clock, failure_burst=10, failures_per_second=1.0)
    with caplog.at_level(logging.WARNING):
        answers = [answer(auth, "web-1", bearer(f"guess-{n}")) for n in range(200)]
        assert set(answers) == {(grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)}
        # Over budget, even the right token is refused unchecked: a guesser learns nothing.
        assert answer(auth, "web-1", bearer("secret-1")) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
    assert auth.stats.failures_by_reason["unknown_token"] == 10
    assert auth.stats.throttled == 191
    assert caplog.text.count("✗ UNAUTHENTICATED") == 10 + 2  # the log budgets, not one line per guess
    clock.now += 1
    assert answer(auth, "web-1", bearer("secret-1")) is None  # one more check a second
    # Another host is not held back by this one's failures, not even for the same agent id.
    assert answer(auth, "web-1", bearer("secret-1", peer="ipv4:10.0.0.8:1")) is None
    assert auth.stats.tracked_peers == 1


def test_guessing_one_agent_from_many_hosts_is_throttled_per_agent() -> None:
    clock = Clock()
    auth = authenticator(clock=clock, failure_burst=5, failures_per_second=1.0)
    hosts = [f"ipv4:10.0.{n // 250}.{n % 250}:4000" for n in range(100)]
    for host in hosts:  # each host within its own budget (5 at once): 500 guesses at web-1
        for _ in range(5):
            answer(auth, "web-1", bearer("guess", peer=host))
    # The first host spends the agent's budget; after that a host is checked only while it has
    # no recent failure of its own: once per burst / rate seconds instead of 5 at once, then 1/s.
    assert auth.stats.failures_by_reason["unknown_token"] == 5 + 99
    assert auth.stats.throttled == 500 - 104
    # A host that never failed still gets its token checked: the agent itself is not locked out.
    assert answer(auth, "web-1", bearer("secret-1", peer="ipv4:192.0.2.1:1")) is None


def test_reflection_and_watch_need_a_credential() -> None:
    auth = authenticator()

    def caller(ctx: FakeContext) -> grpc.StatusCode | None:
        try:
            asyncio.run(auth.check_caller(ctx))  # type: ignore[arg-type]
        except Aborted as exc:
            return exc.code  # type: ignore[no-any-return]
        return None

    assert caller(FakeContext()) == grpc.StatusCode.UNAUTHENTICATED
    assert caller(bearer("guess")) == grpc.StatusCode.UNAUTHENTICATED
    assert caller(bearer("secret-2")) is None  # any agent's token
    assert caller(certificate(b"anyone")) is None  # a verified client certificate
    assert authenticator(require=False).stats.throttled == 0
    open_auth = authenticator(require=False)
    asyncio.run(open_auth.check_caller(FakeContext()))  # type: ignore[arg-type]


def test_peer_hosts() -> None:
    assert peer_host("ipv4:10.0.0.7:51234") == "10.0.0.7"
    assert peer_host("ipv6:[2001:db8::1]:51234") == peer_host("ipv6:[2001:db8::ffff]:1") == "2001:db8::/64"
    assert peer_host("ipv6:[::ffff:10.0.0.7]:1") == "10.0.0.7"
    assert peer_host("unix:/run/monitord.sock") == peer_host("unix:/tmp/other") == "unix"


def test_failure_table_is_bounded() -> None:
    clock = Clock()
    budget = FailureBudget(burst=2, per_second=1.0, capacity=16, clock=clock)
    for n in range(1000):
        budget.charge(f"host-{n}")
    assert len(budget) == 16
    budget.charge("host-999")
    assert budget.exhausted("host-999") and not budget.exhausted("host-0")  # forgotten: a fresh budget
    clock.now += 10
    assert budget.clean("host-999") and len(budget) == 15  # refilled entries are dropped


def test_reconfigure_applies_new_tokens_and_keeps_spent_budgets() -> None:
    auth = Authenticator(ServerSection(), {})
    for _ in range(20):
        answer(auth, "web-1", bearer("guess"))
    auth.reconfigure(ServerSection(), {"web-1": hash_token("new")})
    assert answer(auth, "web-1", bearer("new")) == (grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)  # still throttled
    fresh = Authenticator(ServerSection(), {})
    fresh.reconfigure(ServerSection(), {"web-1": hash_token("new")})
    asyncio.run(fresh.check(bearer("new"), "web-1"))  # type: ignore[arg-type]


def test_load_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert load_tokens("") == {}
    path = tmp_path / "tokens.yaml"
    path.write_text(f"web-1: sha256:{TOKENS['web-1'].upper()}\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert load_tokens(str(path)) == {"web-1": TOKENS["web-1"]}
    assert "Tokens file" in caplog.text and "is readable by other users" in caplog.text
    for text, problem in [("web-1: sha256:abc\n", "is not 'sha256:<64 hex digits>'"), ("- x\n", "expected a mapping")]:
        path.write_text(text)
        with pytest.raises(AuthConfigError, match=problem):
            load_tokens(str(path))
    with pytest.raises(AuthConfigError, match="cannot read tokens file"):
        load_tokens(str(tmp_path / "missing.yaml"))


def test_server_credentials(tmp_path: Path) -> None:
    assert server_credentials(ServerSection(tls=TlsSection(mode="plaintext"))) is None
    missing = TlsSection(mode="tls", cert_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem"))
    with pytest.raises(AuthConfigError, match="cannot read TLS file"):
        server_credentials(ServerSection(tls=missing))
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_bytes(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    mtls = TlsSection(
        mode="mtls",
        cert_file=str(tmp_path / "c.pem"),
        key_file=str(tmp_path / "k.pem"),
        client_ca_file=str(tmp_path / "ca.pem"),
    )
    assert isinstance(server_credentials(ServerSection(tls=mtls)), grpc.ServerCredentials)
