"""The analysis consumer loop: one line per metrics record, a per-agent summary now and then.

It is synchronous on purpose: a single consumer thread, nothing else to multiplex. With threshold
rules (``--rules``) each new metrics record is also handed to :class:`RuleActions`, which may send
commands, and each command response to it, which reports the outcome of the rules' commands.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from google.protobuf import json_format

from monitord import records
from monitord.analysis.rule_actions import RuleActions, RuleEvent
from monitord.analysis.summary import AgentFigures
from monitord.command_records import status_name
from monitord.config import KafkaSection
from monitord.kafka_clients import GroupConsumerFactory, GroupConsumerLike, group_consumer_config
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalyzerOptions:
    """How the analyzer reads and prints."""

    group_id: str = "monitor-analyzer"
    from_beginning: bool = False
    summary_interval: float = 30.0
    json_output: bool = False
    agent_filter: str | None = None


def consumer_config(kafka: KafkaSection, opts: AnalyzerOptions) -> dict[str, Any]:
    return group_consumer_config(
        kafka,
        group_id=opts.group_id,
        client_id="monitor-analyzer",
        offset_reset="earliest" if opts.from_beginning else "latest",
    )


def describe_response(r: pb.CommandResponseMessage) -> str:
    """``SUCCEEDED exit 0 (0.01s)``, ``DELIVERED``, ``REJECTED: unknown command``."""
    status = status_name(r.status)
    if r.status in (pb.SUCCEEDED, pb.FAILED, pb.TIMED_OUT):
        return f"{status} exit {r.exit_code} ({r.duration_seconds:.2f}s)"
    return f"{status}: {r.message}" if r.message and r.status != pb.DELIVERED else status


class Analyzer:
    """Consume, de-duplicate by (agent id, sequence), print, summarise."""

    def __init__(
        self,
        kafka: KafkaSection,
        opts: AnalyzerOptions,
        out: TextIO,
        consumer_factory: GroupConsumerFactory | None = None,
        rules: RuleActions | None = None,
    ) -> None:
        if consumer_factory is None:
            from confluent_kafka import Consumer

            consumer_factory = Consumer
        self._kafka = kafka
        self._opts = opts
        self._out = out
        self._consumer: GroupConsumerLike = consumer_factory(consumer_config(kafka, opts))
        self._rules = rules
        self.agents: dict[str, AgentFigures] = {}

    def run(self, stop: threading.Event) -> None:
        topics = [self._kafka.topics.metrics, self._kafka.topics.command_responses]
        self._consumer.subscribe(
            topics, on_assign=lambda _c, parts: log.info("Assigned %d partitions of %s", len(parts), ", ".join(topics))
        )
        log.info(
            "Analyzer consuming %s from %s (group %s)",
            ", ".join(topics),
            self._kafka.bootstrap_servers,
            self._opts.group_id,
        )
        next_summary = time.monotonic() + self._opts.summary_interval
        try:
            while not stop.is_set():
                msg = self._consumer.poll(0.5)
                if msg is not None:
                    self._handle(msg)
                if self._rules is not None:
                    self._rules.tick()
                if time.monotonic() >= next_summary:
                    self.print_summary()
                    next_summary = time.monotonic() + self._opts.summary_interval
        finally:
            self.print_summary()
            self._consumer.close()
            if self._rules is not None:
                self._rules.close(timeout=10.0)

    def _handle(self, msg: Any) -> None:
        if msg.error():
            log.warning("Kafka consumer error: %s", msg.error())
            return
        try:
            record = records.decode(msg.key(), msg.value(), msg.headers())
        except records.RecordDecodeError as exc:
            log.warning("Skipping undecodable record at %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            return
        if self._opts.agent_filter and record.agent_id != self._opts.agent_filter:
            return
        message = record.message
        if isinstance(message, pb.MetricsData):
            figures = self.agents.setdefault(record.agent_id, AgentFigures())
            if figures.observe(message.sequence, message.cpu.percent, message.memory.percent):
                self._emit("metrics", message, records.describe_metrics(message))
                if self._rules is not None:
                    for event in self._rules.on_metrics(record.agent_id, message):
                        self._emit_event(event)
        elif isinstance(message, pb.CommandResponseMessage):
            self._emit(
                "command_response",
                message,
                f"[{record.agent_id}] command {message.command_id} ({message.command}) → {describe_response(message)}",
            )
            result = self._rules.on_response(message) if self._rules is not None else None
            if result is not None:
                self._emit_event(result)

    def _emit(self, kind: str, message: Any, text: str) -> None:
        if self._opts.json_output:
            body = json_format.MessageToDict(message)
            print(json.dumps({"type": kind, "record": body}), file=self._out, flush=True)
        else:
            print(text, file=self._out, flush=True)

    def _emit_event(self, event: RuleEvent) -> None:
        if self._opts.json_output:
            print(json.dumps({"type": event.kind, **event.fields}), file=self._out, flush=True)
        else:
            print(event.text, file=self._out, flush=True)

    def print_summary(self) -> None:
        if not self.agents:
            return
        if self._opts.json_output:
            summary = {
                a: {
                    "records": f.records,
                    "last_sequence": f.last_sequence,
                    "missing": f.missing,
                    "duplicates": f.duplicates,
                }
                for a, f in sorted(self.agents.items())
            }
            print(json.dumps({"type": "summary", "agents": summary}), file=self._out, flush=True)
        else:
            print(f"── Summary: {len(self.agents)} agents ──", file=self._out)
            for agent_id, figures in sorted(self.agents.items()):
                print(figures.line(agent_id), file=self._out)
            self._out.flush()
        for figures in self.agents.values():
            figures.window_records = 0
