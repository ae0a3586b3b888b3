"""Who is calling: a token or a client certificate must name the agent id the call acts as."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import grpc
import pytest

from monitord.auth import Authenticator, hash_token, load_tokens, server_credentials
from monitord.config import AuthSection, ServerSection, TlsSection
from monitord.errors import AuthConfigError
from monitoring_testsupport.fakes.monitord import Aborted, FakeContext

TOKENS = {"web-1": hashlib.sha256(b"secret-1").hexdigest(), "web-2": hashlib.sha256(b"secret-2").hexdigest()}


def check(agent_id: str, ctx: FakeContext, *, require: bool = True) -> grpc.StatusCode | None:
    auth = Authenticator(ServerSection(auth=AuthSection(require_identity=require)), TOKENS)
    try:
        asyncio.run(auth.check(ctx, agent_id))  # type: ignore[arg-type]
    except Aborted as exc:
        return exc.code  # type: ignore[no-any-return]
    return None


def bearer(token: str) -> FakeContext:
    return FakeContext(metadata=[("authorization", f"Bearer {token}")])


def certificate(*names: bytes, san: tuple[bytes, ...] = ()) -> FakeContext:
    return FakeContext(auth={"x509_common_name": list(names), "x509_subject_alternative_name": list(san)})


def test_token_identity(caplog: pytest.LogCaptureFixture) -> None:
    assert check("web-1", bearer("secret-1")) is None
    with caplog.at_level(logging.WARNING):
        assert check("web-1", bearer("secret-2")) == grpc.StatusCode.PERMISSION_DENIED
        assert check("web-1", bearer("guess")) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        "✗ PERMISSION_DENIED: ipv4:127.0.0.1:5555 tried to act as agent 'web-1' (token belongs to another agent)"
        in (caplog.text)
    )
    assert "✗ UNAUTHENTICATED: ipv4:127.0.0.1:5555 claiming agent 'web-1' (unknown token)" in caplog.text


def test_certificate_identity() -> None:
    assert check("web-1", certificate(b"web-1")) is None
    assert check("web-1", certificate(b"other", san=(b"monitord-agent:web-1",))) is None
    assert check("web-1", certificate(b"web-2")) == grpc.StatusCode.PERMISSION_DENIED


def test_no_identity() -> None:
    assert check("web-1", FakeContext()) == grpc.StatusCode.UNAUTHENTICATED
    assert check("web-1", FakeContext(), require=False) is None
    assert check("web-1", FakeContext(metadata=[("authorization", "Basic x")]), require=False) is None


def test_reconfigure_applies_new_tokens() -> None:
    auth = Authenticator(ServerSection(), {})
    auth.reconfigure(ServerSection(), {"web-1": hash_token("new")})
    asyncio.run(auth.check(bearer("new"), "web-1"))  # type: ignore[arg-type]


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
