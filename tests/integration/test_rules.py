"""Analyzer rules against real processes: a real agent's metrics make a rule fire exactly once.

The analyzer is pointed at a commands topic of this test's own: the real monitord routes the
shared ``commands`` topic to connected agents, and a real agent answering first would make the
correlation check below depend on a race. Here the only answer is the one the test produces.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from monitord import records
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport import BIN, KafkaBroker, Proc, read_records, start_agent, start_monitord, unique, write_yaml

pytestmark = pytest.mark.kafka

SAMPLES = 15


@pytest.fixture
def commands_topic(kafka: KafkaBroker) -> Iterator[str]:
    """A fresh commands topic, deleted afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    topic = unique("rule-commands")
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    try:
        yield topic
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_rule_fires_once_per_cooldown_and_reports_the_response(
    kafka: KafkaBroker, tmp_path: Path, commands_topic: str
) -> None:
    started = time.monotonic()
    _server, address = start_monitord(tmp_path, kafka.bootstrap)
    agent_id = unique("rule-agent")
    config = write_yaml(
        tmp_path / "analyzer-monitord.yaml",
        {"kafka": {"bootstrap_servers": kafka.bootstrap, "topics": {"commands": commands_topic}}},
    )
    rules = write_yaml(
        tmp_path / "rules.yaml",
        {
            "rules": [
                {
                    "name": "cpu-any",
                    "metric": "cpu.percent",
                    "op": ">",
                    "threshold": 1,
                    "for_samples": 2,
                    "command": "info",
                    "args": ["{agent_id}", "--verbose"],
                    "timeout_seconds": 7,
                    "cooldown_seconds": 3600,
                }
            ]
        },
    )
    analyzer = Proc(
        "analyzer",
        [
            str(BIN / "monitor-analyzer"),
            "--config",
            str(config),
            "--rules",
            str(rules),
            "--group",
            unique("rules-analyzer"),
            "--from-beginning",
            "--agent",
            agent_id,
            "--summary-interval",
            "600",
        ],
        tmp_path / "analyzer.log",
    ).start()
    analyzer.wait_for(r"1 rules loaded from ")
    agent = start_agent(tmp_path, address, agent_id, iterations=SAMPLES, interval=0.2)
    assert agent.wait(60) == 0, agent.text()
    analyzer.wait_for(rf"\[{agent_id} #{SAMPLES}\]", timeout=30)  # every sample was evaluated

    fired = re.findall(
        rf"^RULE cpu-any fired for {agent_id}: cpu\.percent [\d.]+ > 1 for 2 samples → command info ([0-9a-f]{{32}})$",
        analyzer.text(),
        re.MULTILINE,
    )
    assert len(fired) == 1, analyzer.text()
    command_id = fired[0]

    found = read_records(kafka.bootstrap, commands_topic, [agent_id], expect=1, settle=2.0)
    assert len(found) == 1, found
    [record] = found
    command = record.message
    assert isinstance(command, pb.CommandMessage) and record.server_id == "monitor-analyzer"
    assert (command.command_id, command.agent_id, command.command) == (command_id, agent_id, "info")
    assert list(command.args) == [agent_id, "--verbose"]
    assert (command.requested_by, command.timeout_seconds, command.ttl_seconds) == ("analyzer:cpu-any", 7, 300)

    # Play the agent: DELIVERED, then SUCCEEDED; the analyzer ties the final one to the rule.
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    common: dict[str, Any] = {"command_id": command_id, "agent_id": agent_id, "command": "info"}
    for response in (
        pb.CommandResponseMessage(status=pb.DELIVERED, **common),
        pb.CommandResponseMessage(status=pb.SUCCEEDED, exit_code=0, stdout="all good\nsecond line\n", **common),
    ):
        key, value, headers = records.encode(response, agent_id=agent_id, server_id="test")
        producer.produce("command-responses", value=value, key=key, headers=list[Any](headers))
    assert producer.flush(10) == 0
    analyzer.wait_for(rf"(?m)^RULE cpu-any on {agent_id}: command {command_id} → SUCCEEDED exit 0: all good$", 30)
    assert analyzer.text().count(f"RULE cpu-any on {agent_id}") == 1
    analyzer.stop()
    print(f"analyzer rule scenario: {time.monotonic() - started:.1f}s")
