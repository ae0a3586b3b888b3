"""monitorctl's readers: reading a (compacted) topic to its end, bounded."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from monitord.ctl.kafka_io import assign_at_end, read_to_end
from monitord.errors import KafkaUnavailable
from monitoring_testsupport.fakes.ctl import FakeConsumer, FakeKafka


def test_read_to_end_handles_compaction_gaps_and_is_bounded() -> None:
    kafka = FakeKafka(partitions=1)
    for _ in range(3):
        kafka.append("agent-status", b"a", b"{}")
    log = kafka.logs["agent-status"][0]
    log[1]._offset, log[2]._offset = 5, 9  # compacted: offsets 0, 5, 9; high watermark 10

    class Compacted(FakeConsumer):
        def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
            return 0, 10

    assert [m.offset() for m in read_to_end(Compacted(kafka), "agent-status", 10, kafka.clock)] == [0, 5, 9]

    class Short(FakeConsumer):  # the broker claims more records than ever arrive
        def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
            return 0, 50

    with pytest.raises(KafkaUnavailable, match="within 3s"):
        list(read_to_end(Short(kafka), "agent-status", 3, kafka.clock))


def test_assign_at_end_positions_every_topic_at_its_high_watermark() -> None:
    kafka = FakeKafka(partitions=2)
    kafka.append("command-responses", b"a", b"{}")
    kafka.append("agent-status", b"a", b"{}")
    kafka.append("agent-status", b"a", b"{}")
    consumer = FakeConsumer(kafka)
    assign_at_end(consumer, ("command-responses", "agent-status"), 10)
    partition = next(p for p, log in enumerate(kafka.logs["agent-status"]) if log)
    assert consumer.positions[("agent-status", partition)] == 2
    assert sorted(consumer.positions) == [
        ("agent-status", 0),
        ("agent-status", 1),
        ("command-responses", 0),
        ("command-responses", 1),
    ]
    assert consumer.consume(10, 0) == []
