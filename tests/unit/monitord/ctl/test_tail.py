"""``monitorctl tail``: metrics lines, filtered and counted (fake Kafka)."""

from __future__ import annotations

import json
from typing import Any

from monitord.config import KafkaSection
from monitord.ctl.tail import run_tail
from monitord.kafka_clients import KafkaClients
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.ctl import FakeConsumer, FakeKafka, FakeMessage, output


def metrics(agent_id: str, sequence: int) -> pb.MetricsData:
    m = pb.MetricsData(agent_id=agent_id, sequence=sequence)
    m.cpu.percent = 10.0 + sequence
    m.memory.percent = 50.0
    return m


def test_tail_count_and_agent_filter() -> None:
    kafka = FakeKafka(partitions=1)
    for seq in range(1, 4):
        kafka.add("monitoring-data", metrics("web-1", seq), "web-1")
        kafka.add("monitoring-data", metrics("web-2", seq), "web-2")
    o, out, _ = output()
    assert run_tail(kafka.clients(), o, agent_id="web-2", from_beginning=True, count=2) == 0
    assert out.getvalue().splitlines() == [
        "[web-2 #1] CPU 11.0% | Memory 50.0% | Load 0.00 | Net rx 0.0 MB tx 0.0 MB",
        "[web-2 #2] CPU 12.0% | Memory 50.0% | Load 0.00 | Net rx 0.0 MB tx 0.0 MB",
    ]


def test_tail_from_the_end_shows_only_new_records() -> None:
    kafka = FakeKafka()
    kafka.add("monitoring-data", metrics("web-1", 1), "web-1")
    consumers: list[FakeConsumer] = []

    class LateRecord(FakeConsumer):
        def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
            if not kafka.produced:  # a record arriving after tail started
                kafka.produced.append(kafka.add("monitoring-data", metrics("web-1", 2), "web-1"))
            return super().consume(num_messages, timeout)

    def consumer(conf: dict[str, Any]) -> FakeConsumer:
        consumers.append(LateRecord(kafka))
        return consumers[-1]

    o, out, _ = output(json_mode=True)
    assert (
        run_tail(
            KafkaClients(KafkaSection(), consumer, kafka.producer), o, agent_id=None, from_beginning=False, count=1
        )
        == 0
    )
    [line] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["type"] == "metrics" and line["record"]["sequence"] == "2"
    assert consumers[0].closed
