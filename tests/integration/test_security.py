"""TLS, mutual TLS and tokens end to end with real processes; impersonation and anonymity refused."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from monitoring.v1 import monitoring_pb2 as pb
from monitoring.v1 import monitoring_pb2_grpc as pb_grpc
from monitoring_testsupport import (
    BIN,
    KafkaBroker,
    free_port,
    read_records,
    scrape,
    start_agent,
    start_monitord,
    unique,
    write_yaml,
)
from monitoring_testsupport.pki import agent_tls, localhost, make_pki, server_tls

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"), "agent-a", "agent-b")


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
    server.wait_for(r"✗ UNAUTHENTICATED: \S+ claiming agent 'agent-u' \(token belongs to another agent\)")
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


# -- what a certificate names, wrong tokens, throttling, health and reflection (issue 14) ---------


def sign(pki: Path, name: str, cn: str, san: str) -> tuple[bytes, bytes]:
    """(key, certificate) PEM of a client certificate the dev CA signs, with subject CN ``cn`` and
    subjectAltName ``san`` (openssl syntax)."""
    base = pki / f"extra-{name}"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{base}.key")
    openssl("req", "-new", "-key", f"{base}.key", "-subj", f"/CN={cn}", "-out", f"{base}.csr")
    Path(f"{base}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=clientAuth\n")
    ca = ["-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial"]
    openssl("x509", "-req", "-in", f"{base}.csr", *ca, "-days", "2", "-extfile", f"{base}.ext", "-out", f"{base}.crt")
    return Path(f"{base}.key").read_bytes(), Path(f"{base}.crt").read_bytes()


def channel(address: str, pki: Path, client: tuple[bytes, bytes] | None = None) -> grpc.Channel:
    key, chain = client or (None, None)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes(), key, chain))


def register(ch: grpc.Channel, agent_id: str, token: str | None = None) -> tuple[grpc.StatusCode, str]:
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    try:
        pb_grpc.MonitoringServiceStub(ch).RegisterAgent(
            pb.AgentRegistration(agent_id=agent_id), metadata=metadata, timeout=10
        )
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def open_stream(ch: grpc.Channel, agent_id: str, token: str) -> tuple[grpc.StatusCode, str]:
    """Open a stream as ``agent_id`` with ``token``: its status when the server ends it at once."""
    call = pb_grpc.MonitoringServiceStub(ch).StreamCommunication(
        iter(()), metadata=[("agent-id", agent_id), ("authorization", f"Bearer {token}")], timeout=10
    )
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_certificate_names_only_cn_dns_and_agent_uris(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    """A SAN email, IP or plain URI names no agent (finding 6): only CN, SAN DNS and
    ``monitord-agent:<id>`` do, and only as valid ids."""
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "mtls"))
    mail = sign(pki, "mail", "cn-mail", "email:agent-m@example,URI:agent-m,IP:127.0.0.9")
    with channel(address, pki, mail) as ch:
        assert register(ch, "agent-m@example")[0] == grpc.StatusCode.PERMISSION_DENIED
        assert register(ch, "agent-m")[0] == grpc.StatusCode.PERMISSION_DENIED
        assert register(ch, "127.0.0.9")[0] == grpc.StatusCode.PERMISSION_DENIED
        assert register(ch, "cn-mail")[0] == grpc.StatusCode.OK
    named = sign(pki, "named", "cn-named", "DNS:dns-agent,URI:monitord-agent:uri-agent")
    with channel(address, pki, named) as ch:
        assert [register(ch, a)[0] for a in ("cn-named", "dns-agent", "uri-agent")] == [grpc.StatusCode.OK] * 3
    server.wait_for(r"✗ PERMISSION_DENIED: \S+ tried to act as agent 'agent-m@example' \(certificate is for cn-mail\)")


@pytest.fixture
def token_server(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> Iterator[tuple[Any, str]]:
    tokens = write_yaml(
        tmp_path / "tokens.yaml",
        {
            "agent-t": "sha256:" + hashlib.sha256(b"secret-t").hexdigest(),
            "agent-u": "sha256:" + hashlib.sha256(b"secret-u").hexdigest(),
        },
    )
    tokens.chmod(0o600)
    # failures_per_second near 0: the budget does not refill during the test, so counts are exact.
    extra = server_tls(pki, "tls", tokens_file=str(tokens), failure_burst=10, failures_per_second=0.001)
    yield start_monitord(tmp_path, kafka.bootstrap, extra=extra)


def test_wrong_tokens_are_answered_alike_throttled_and_counted(
    kafka: KafkaBroker, tmp_path: Path, pki: Path, token_server: tuple[Any, str]
) -> None:
    """Finding 7: another agent's token and an unknown one get the same answer; 200 guesses on one
    channel are checked only within the failure budget, logged within the log budget and shown in
    /metrics; a good agent streaming meanwhile loses nothing."""
    server, address = token_server
    good = tmp_path / "good.token"
    good.write_text("secret-t\n")
    agent = start_agent(
        tmp_path,
        localhost(address),
        "agent-t",
        iterations=20,
        interval=0.2,
        config=agent_tls(pki, "tls", token_file=str(good)),
    )
    agent.wait_for(r"\[2\] Streamed metrics", timeout=60)
    with channel(address, pki) as ch:
        foreign, unknown = register(ch, "agent-t", "secret-u"), register(ch, "agent-t", "guess")
        assert foreign == unknown == (grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")
        answers = [open_stream(ch, "agent-t", f"guess-{n}") for n in range(200)]
        assert set(answers) == {(grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")}
        # Over budget even the right token is refused unchecked, so a guess that hits is not told apart.
        assert register(ch, "agent-t", "secret-t") == (grpc.StatusCode.UNAUTHENTICATED, "invalid credentials")
    assert agent.wait(60) == 0, agent.text()
    found = read_records(kafka.bootstrap, "monitoring-data", ["agent-t"], expect=20, settle=0.5)
    assert {r.message.sequence for r in found} >= set(range(1, 21))  # type: ignore[attr-defined]
    samples = scrape(re.search(r"Prometheus metrics on (http://\S+/metrics)", server.text()).group(1))  # type: ignore[union-attr]
    checked = samples["monitord_auth_failures_total{reason=unknown_token}"]
    assert samples["monitord_auth_failures_total{reason=foreign_token}"] == 1
    assert checked + 1 == 10  # the burst, then nothing refills
    assert samples["monitord_auth_throttled_total"] == 2 + 200 + 1 - 10
    assert samples["monitord_auth_tracked_peers"] == 1
    lines = [line for line in server.text().splitlines() if "✗ UNAUTHENTICATED" in line]
    assert 10 <= len(lines) <= 2 * (10 + 2), lines  # one line per guess would be 203


def test_health_and_reflection_follow_the_configured_auth(token_server: tuple[Any, str], pki: Path) -> None:
    """Finding 8 (part): with tokens required, health Check answers anyone (probes), while health
    Watch and reflection need a valid token."""
    server, address = token_server
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with channel(address, pki) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        with pytest.raises(grpc.RpcError) as watch:
            next(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10))
        assert watch.value.code() == grpc.StatusCode.UNAUTHENTICATED
        authorized = [("authorization", "Bearer secret-u")]
        first = next(health.Watch(health_pb2.HealthCheckRequest(service=""), metadata=authorized, timeout=10))
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        with pytest.raises(grpc.RpcError) as anonymous:
            list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (listed,) = reflection.ServerReflectionInfo(iter([request]), metadata=authorized, timeout=10)
        assert "monitoring.v1.MonitoringService" in {s.name for s in listed.list_services_response.service}
    server.wait_for(
        r"✗ UNAUTHENTICATED: \S+ claiming any agent \(reflection or health Watch\) \(no client certificate or token\)"
    )


def test_reflection_with_a_verified_client_certificate(kafka: KafkaBroker, tmp_path: Path, pki: Path) -> None:
    """In mtls mode the handshake already demands a certificate the CA signed: that is the credential."""
    server, address = start_monitord(tmp_path, kafka.bootstrap, extra=server_tls(pki, "mtls"))
    cert = ((pki / "agents/agent-a.key").read_bytes(), (pki / "agents/agent-a.crt").read_bytes())
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with channel(address, pki, cert) as ch:
        (listed,) = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(iter([request]), timeout=10)
        assert "grpc.health.v1.Health" in {s.name for s in listed.list_services_response.service}
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
    assert "UNAUTHENTICATED" not in server.text()
