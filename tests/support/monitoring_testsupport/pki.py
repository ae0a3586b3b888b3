"""A development PKI (scripts/dev-ca.sh) and the monitord/agent config sections that use it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from monitoring_testsupport.paths import REPO


def make_pki(out: Path, *agents: str) -> Path:
    """A CA, a server certificate for ``localhost`` and one client certificate per agent id in ``out``."""
    result = subprocess.run(
        [str(REPO / "scripts/dev-ca.sh"), str(out), "localhost", *agents],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return out


def server_tls(pki: Path, mode: str, **auth: Any) -> dict[str, Any]:
    """monitord's ``server`` section for TLS ``mode`` (tls or mtls) with identities required."""
    tls = {
        "mode": mode,
        "cert_file": str(pki / "server.crt"),
        "key_file": str(pki / "server.key"),
        "client_ca_file": str(pki / "ca.crt"),
    }
    return {"server": {"tls": tls, "auth": {"require_identity": True, **auth}}}


def agent_tls(pki: Path, mode: str, cert_for: str = "agent-a", token_file: str = "") -> dict[str, Any]:
    """The agent's ``connection`` section for TLS ``mode``, its certificate or token file."""
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
    """``127.0.0.1:PORT`` as ``localhost:PORT``, the name in the server certificate."""
    return address.replace("127.0.0.1", "localhost")
