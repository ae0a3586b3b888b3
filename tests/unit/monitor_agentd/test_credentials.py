"""Channel credentials from agent.yaml's tls section."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor_agentd import credentials
from monitor_agentd.config import AgentTlsSection
from monitor_agentd.errors import CredentialsError


def test_plaintext_has_no_channel_credentials() -> None:
    creds = credentials.load(AgentTlsSection(mode="plaintext"))
    assert creds.channel is None and creds.metadata == () and creds.options == ()


def test_token_becomes_a_bearer_header(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    creds = credentials.load(AgentTlsSection(mode="plaintext", token_file=str(token)))
    assert creds.metadata == (("authorization", "Bearer s3cret"),)


def test_empty_token_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    with pytest.raises(CredentialsError, match="is empty"):
        credentials.load(AgentTlsSection(mode="plaintext", token_file=str(token)))


def test_tls_with_system_roots_and_a_server_name_override() -> None:
    creds = credentials.load(AgentTlsSection(mode="tls", ca_file="", server_name="monitord.example"))
    assert creds.channel is not None
    assert creds.options == (("grpc.ssl_target_name_override", "monitord.example"),)


def test_mtls_reads_the_ca_key_and_certificate(tmp_path: Path) -> None:
    for name in ("ca.crt", "agent.key", "agent.crt"):
        (tmp_path / name).write_text("-----BEGIN X-----\n")
    tls = AgentTlsSection(
        mode="mtls",
        ca_file=str(tmp_path / "ca.crt"),
        key_file=str(tmp_path / "agent.key"),
        cert_file=str(tmp_path / "agent.crt"),
    )
    assert credentials.load(tls).channel is not None


def test_missing_file_is_named(tmp_path: Path) -> None:
    tls = AgentTlsSection(mode="mtls", ca_file="", key_file=str(tmp_path / "nope.key"))
    with pytest.raises(CredentialsError, match=f"cannot read client key {tmp_path}/nope.key"):
        credentials.load(tls)
