"""monitorctl's readers: reading a (compacted) topic to its end, bounded."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from monitord.ctl.kafka_io import read_to_end
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
