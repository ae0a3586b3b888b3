"""The analyzer loop: rules run on new records only, text and JSON output."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest

from monitord import records
from monitord.analysis.consumer import Analyzer, AnalyzerOptions
from monitord.config import KafkaSection
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.analysis import FakeClock, FakeSink, actions, record, rule


class FakeMsg:
    def __init__(self, topic: str, message: Any, agent_id: str) -> None:
        self._topic = topic
        self._key, self._value, self._headers = records.encode(message, agent_id=agent_id, server_id="t")

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def topic(self) -> str:
        return self._topic


class FakeConsumer:
    """Hands out the queued messages, then stops the analyzer."""

    def __init__(self, messages: list[FakeMsg], stop: threading.Event) -> None:
        self.messages = messages
        self.stop = stop

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        pass

    def poll(self, timeout: float) -> FakeMsg | None:
        if self.messages:
            return self.messages.pop(0)
        self.stop.set()
        return None

    def close(self) -> None:
        pass


@pytest.mark.parametrize("json_output", [False, True])
def test_analyzer_runs_rules_on_new_records_only(json_output: bool) -> None:
    sink, clock = FakeSink(), FakeClock()
    acts = actions(sink, clock, rule(for_samples=2, cooldown_seconds=3600))
    messages = [
        FakeMsg("monitoring-data", record(1, 95), "web-1"),
        FakeMsg("monitoring-data", record(1, 95), "web-1"),  # duplicate: dropped before the rules
        FakeMsg("monitoring-data", record(2, 95), "web-1"),
        FakeMsg("monitoring-data", record(3, 95), "web-1"),
        FakeMsg(
            "command-responses",
            pb.CommandResponseMessage(command_id="id1", command="info", status=pb.DELIVERED),
            "web-1",
        ),
        FakeMsg(
            "command-responses",
            pb.CommandResponseMessage(command_id="id1", command="info", status=pb.SUCCEEDED, stdout="ok"),
            "web-1",
        ),
    ]
    stop = threading.Event()
    out = io.StringIO()
    opts = AnalyzerOptions(summary_interval=3600, json_output=json_output)
    Analyzer(KafkaSection(), opts, out, consumer_factory=lambda _conf: FakeConsumer(messages, stop), rules=acts).run(
        stop
    )
    assert len(sink.sent) == 1 and sink.polls >= 6 and sink.flushed is not None
    if json_output:
        types = [json.loads(line)["type"] for line in out.getvalue().splitlines()]
        assert types == [
            "metrics",
            "metrics",
            "rule_fired",
            "metrics",
            "command_response",
            "command_response",
            "rule_result",
            "summary",
        ]
        return
    lines = out.getvalue().splitlines()
    assert lines[2] == "RULE hot fired for web-1: cpu.percent 95 > 90 for 2 samples → command info id1"
    assert "[web-1] command id1 (info) → DELIVERED" in lines
    assert "[web-1] command id1 (info) → SUCCEEDED exit 0 (0.00s)" in lines
    assert "RULE hot on web-1: command id1 → SUCCEEDED exit 0: ok" in lines
