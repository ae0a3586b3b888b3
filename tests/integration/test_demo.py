"""The README's first command: the demo runs, metrics visibly flow, and it stops cleanly."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from monitoring_testsupport import REPO, KafkaBroker, free_port

pytestmark = pytest.mark.kafka


def test_demo_flows_and_stops_cleanly(kafka: KafkaBroker) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka.bootstrap, "DEMO_PORT": str(free_port()), "DEMO_INTERVAL": "0.5"}
    result = subprocess.run(
        [str(REPO / "scripts/demo"), "--duration", "8"], env=env, capture_output=True, text=True, timeout=120
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Mode: Bidirectional streaming (no polling)" in out
    for agent in ("agent-001", "agent-002", "agent-003"):
        # The analyzer joins its group while the agents start, so it may not see the very first records.
        assert re.search(rf"\[analyzer\] \[{agent} #\d+\] CPU", out), out[-4000:]
        assert f"✓ Stream ended for agent '{agent}'" in out
    assert "monitord stopped" in out and out.rstrip().endswith("[demo] stopped.")
