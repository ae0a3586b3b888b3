"""What the analyzer does when a rule fires: send the command, and later report how it went.

A firing becomes a CommandMessage (``requested_by: analyzer:<rule>``) produced to the commands
topic with the same helper monitorctl uses. The command id is remembered, so that when its final
CommandResponseMessage comes by on command-responses (which the analyzer reads anyway) it can be
reported next to the rule that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf import json_format

from monitord.analysis.evaluator import Firing, RuleEvaluator
from monitord.command_records import first_line, is_final, new_command, status_name
from monitord.errors import KafkaUnavailable
from monitoring.v1 import monitoring_pb2 as pb

log = logging.getLogger(__name__)

#: Commands awaiting their final response that are remembered; beyond it the oldest is forgotten.
MAX_PENDING = 10_000


class CommandSink(Protocol):
    """Where commands go (:class:`monitord.command_records.CommandProducer`, or a fake)."""

    def send(self, command: pb.CommandMessage) -> None: ...
    def poll(self) -> None: ...
    def flush(self, timeout: float) -> None: ...


@dataclass(frozen=True)
class RuleEvent:
    """Something to print: ``text`` for people, ``fields`` (plus ``type`` = ``kind``) for --json."""

    kind: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pending:
    rule: str
    agent_id: str


class RuleActions:
    """Turns firings into commands and final responses into ``RULE ... →`` reports."""

    def __init__(
        self,
        evaluator: RuleEvaluator,
        sink: CommandSink,
        *,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._evaluator = evaluator
        self._sink = sink
        self._clock = clock
        self._new_id = new_id
        self._max_pending = max_pending
        self._pending: dict[str, _Pending] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def on_metrics(self, agent_id: str, metrics: pb.MetricsData) -> list[RuleEvent]:
        """Evaluate a new record; send a command for every rule that fires."""
        return [self._fire(firing) for firing in self._evaluator.observe(agent_id, metrics)]

    def _fire(self, firing: Firing) -> RuleEvent:
        rule = firing.rule
        command = new_command(
            command_id=self._new_id(),
            agent_id=firing.agent_id,
            command=rule.command,
            args=rule.command_args(firing.agent_id),
            timeout_seconds=rule.timeout_seconds,
            ttl_seconds=rule.ttl_seconds,
            requested_by=f"analyzer:{rule.name}",
            now=self._clock(),
        )
        head = f"RULE {rule.name} fired for {firing.agent_id}: {firing.describe()}"
        fields: dict[str, Any] = {
            "rule": rule.name,
            "agent_id": firing.agent_id,
            "metric": rule.metric,
            "value": firing.value,
            "op": rule.op,
            "threshold": rule.threshold,
            "samples": firing.samples,
            "command": json_format.MessageToDict(command),
        }
        try:
            self._sink.send(command)
        except KafkaUnavailable as exc:
            log.warning("Rule %s: could not send command to agent '%s': %s", rule.name, firing.agent_id, exc)
            return RuleEvent(
                "rule_fired", f"{head} → command {rule.command} NOT SENT: {exc}", {**fields, "error": str(exc)}
            )
        self._pending[command.command_id] = _Pending(rule.name, firing.agent_id)
        while len(self._pending) > self._max_pending:
            forgotten = next(iter(self._pending))
            del self._pending[forgotten]
            log.debug("Forgot command %s: no final response among the last %d", forgotten, self._max_pending)
        return RuleEvent("rule_fired", f"{head} → command {rule.command} {command.command_id}", fields)

    def on_response(self, response: pb.CommandResponseMessage) -> RuleEvent | None:
        """The report for a final response to a command a rule sent; None for anything else."""
        if not is_final(response.status):
            return None
        pending = self._pending.pop(response.command_id, None)
        if pending is None:
            return None
        status = status_name(response.status)
        outcome = status
        if response.status in (pb.SUCCEEDED, pb.FAILED, pb.TIMED_OUT):
            outcome += f" exit {response.exit_code}"
            detail = first_line(response)
        else:
            detail = response.message
        if detail:
            outcome += f": {detail}"
        text = f"RULE {pending.rule} on {pending.agent_id}: command {response.command_id} → {outcome}"
        return RuleEvent(
            "rule_result",
            text,
            {"rule": pending.rule, "agent_id": pending.agent_id, "response": json_format.MessageToDict(response)},
        )

    def tick(self) -> None:
        """Let the producer report deliveries (call often)."""
        self._sink.poll()

    def close(self, timeout: float) -> None:
        """Wait (bounded) until the commands sent are in Kafka."""
        try:
            self._sink.flush(timeout)
        except KafkaUnavailable as exc:
            log.error("Commands sent by rules may be lost: %s", exc)
