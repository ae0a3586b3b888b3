"""TLS, mutual TLS and tokens end to end with real processes; impersonation and anonymity refused."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from monitoring_testsupport import (
    BIN,
    REPO,
    KafkaBroker,
    free_port,
    read_records,
    start_agent,
    start_monitord,
    unique,
    write_yaml,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    result = subprocess.run(
        [str(REPO / "scripts/dev-ca.sh"), str(out), "localhost", "agent-a", "agent-b"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return out


def server_tls(pki: Path, mode: str, **auth: Any) -> dict[str, Any]:
    tls = {
        "mode": mode,
        "cert_file": str(pki / "server.crt"),
        "key_file": str(pki / "server.key"),
        "client_ca_file": str(pki / "ca.crt"),
    }
    return {"server": {"tls": tls, "auth": {"require_identity": True, **auth}}}


def agent_tls(pki: Path, mode: str, cert_for: str = "agent-a", token_file: str = "") -> dict[str, Any]:
    return {
        "connection": {
            "tls": {
                "mode": mode,
                "ca_file": str(pki / "ca.crt"),
                "cert_file": str(pki / f"agents/{cert_for}.crt"),
                "key_file": str(pki / f"agents/{cert_for}.key"),
                "server_name": "localhost",
                "token_file": token_file,
            },
            "ack_timeout_seconds": 4,
            "backoff_max_seconds": 1,
        }
    }


def localhost(address: str) -> str:
    return address.replace("127.0.0.1", "localhost")


def test_mutual_tls_end_to_end(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "mtls"))
    agent_id = "agent-a"
    agent = start_agent(
        tmp_path, localhost(address), agent_id, iterations=5, interval=0.2, config=agent_tls(pki, "mtls")
    )
    assert agent.wait(60) == 0, agent.text()
    assert "TLS is off" not in server.text()
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=5, settle=0.5)
    assert {r.message.sequence for r in found} >= {1, 2, 3, 4, 5}  # type: ignore[attr-defined]


def test_certificate_of_another_agent_is_permission_denied(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "mtls"))
    impostor = start_agent(
        tmp_path,
        localhost(address),
        "agent-b",
        iterations=1,
        interval=0.2,
        config=agent_tls(pki, "mtls", cert_for="agent-a"),
    )
    assert impostor.wait(60) == 75, impostor.text()  # never acknowledged
    assert "PERMISSION_DENIED" in impostor.text()
    server.wait_for(r"✗ PERMISSION_DENIED: ipv[46]:\S+ tried to act as agent 'agent-b' \(certificate is for .*agent-a")


def test_tokens_authenticate_and_bind_identity(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    tokens = write_yaml(
        tmp_path / "tokens.yaml",
        {
            "agent-t": "sha256:" + hashlib.sha256(b"secret-t").hexdigest(),
            "agent-u": "sha256:" + hashlib.sha256(b"secret-u").hexdigest(),
        },
    )
    tokens.chmod(0o600)
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "tls", tokens_file=str(tokens)))
    good, bad = tmp_path / "good.token", tmp_path / "bad.token"
    good.write_text("secret-t\n")
    bad.write_text("not-a-token\n")
    ok = start_agent(
        tmp_path,
        localhost(address),
        "agent-t",
        iterations=3,
        interval=0.2,
        config=agent_tls(pki, "tls", token_file=str(good)),
    )
    assert ok.wait(60) == 0, ok.text()
    other = start_agent(
        tmp_path,
        localhost(address),
        "agent-u",
        iterations=1,
        interval=0.2,
        config=agent_tls(pki, "tls", token_file=str(good)),
    )
    assert other.wait(60) == 75
    server.wait_for(r"✗ PERMISSION_DENIED: \S+ tried to act as agent 'agent-u' \(token belongs to another agent\)")
    wrong = start_agent(
        tmp_path,
        localhost(address),
        "agent-v",
        iterations=1,
        interval=0.2,
        config=agent_tls(pki, "tls", token_file=str(bad)),
    )
    assert wrong.wait(60) == 75
    server.wait_for(r"✗ UNAUTHENTICATED: \S+ claiming agent 'agent-v' \(unknown token\)")


def test_no_credentials_is_unauthenticated(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "tls"))
    anonymous = start_agent(
        tmp_path, localhost(address), unique("anon"), iterations=1, interval=0.2, config=agent_tls(pki, "tls")
    )
    assert anonymous.wait(60) == 75
    assert "UNAUTHENTICATED" in anonymous.text()
    server.wait_for(r"✗ UNAUTHENTICATED: ipv[46]:\S+ claiming agent 'anon-\w+' \(no client certificate or token\)")


def test_plaintext_is_explicit_and_warned(tmp_path: Path) -> None:
    # Without TLS files the default (mtls) cannot start: plaintext is never silent.
    result = subprocess.run(
        [str(BIN / "monitord"), "--listen", "127.0.0.1:1", "--check-config"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0  # the defaults are valid ...
    missing = subprocess.run(
        [str(BIN / "monitord"), "--listen", f"127.0.0.1:{free_port()}", "--kafka-bootstrap", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        missing.returncode == 69 and "cannot read TLS file /etc/monitord/tls/" in missing.stderr
    )  # ... but need certs
    bad = write_yaml(tmp_path / "bad.yaml", {"server": {"tls": {"mode": "tls", "cert_file": ""}}})
    refused = subprocess.run(
        [str(BIN / "monitord"), "--config", str(bad), "--check-config"], capture_output=True, text=True
    )
    assert refused.returncode == 78 and "server.tls.cert_file: required when mode is tls" in refused.stderr


def test_kafka_secrets_file_is_checked(tmp_path: Path) -> None:
    secrets = tmp_path / "kafka-secrets.yaml"
    secrets.write_text("sasl.password: hunter2\n")
    secrets.chmod(0o644)
    cfg = write_yaml(
        tmp_path / "m.yaml",
        {
            "server": {"tls": {"mode": "plaintext"}},
            "kafka": {"secrets_file": str(secrets), "client": {"sasl.username": "x"}},
        },
    )
    from monitord.config import MonitordConfig
    from monitord.kafka_clients import kafka_client_settings
    from monitoring_common.config_loader import load_file

    settings = kafka_client_settings(load_file(cfg, MonitordConfig).kafka)
    assert settings == {"sasl.username": "x", "sasl.password": "hunter2"}
    secrets.unlink()
    result = subprocess.run(
        [str(BIN / "monitorctl"), "--config", str(cfg), "agents"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 78 and "kafka-secrets.yaml" in result.stderr


def test_reload_applies_a_new_tokens_file(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    """SIGHUP re-reads the tokens file: an agent refused before is accepted after, no restart."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("agent-x: sha256:" + hashlib.sha256(b"x").hexdigest() + "\n")
    tokens.chmod(0o600)
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "tls", tokens_file=str(tokens)))
    token = tmp_path / "w.token"
    token.write_text("w\n")
    config = agent_tls(pki, "tls", token_file=str(token))
    refused = start_agent(tmp_path, localhost(address), "agent-w", iterations=1, interval=0.2, config=config)
    assert refused.wait(60) == 75
    tokens.write_text(tokens.read_text() + "agent-w: sha256:" + hashlib.sha256(b"w").hexdigest() + "\n")
    server.signal(signal.SIGHUP)
    server.wait_for(r"✓ Configuration reloaded")
    accepted = start_agent(tmp_path, localhost(address), "agent-w", iterations=2, interval=0.2, config=config)
    assert accepted.wait(60) == 0, accepted.text()
    assert server.popen is not None and server.popen.poll() is None
