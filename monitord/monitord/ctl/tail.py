"""``monitorctl tail``: follow the metrics topic, one line (or JSON object) per record.

Records are shown as they are in Kafka: a record an agent sent twice (a replay after a reconnect)
is shown twice; the analyzer is the place that de-duplicates.
"""

from __future__ import annotations

import logging

from monitord import records
from monitord.ctl.kafka_io import assign, poll_batch
from monitord.ctl.output import Output
from monitord.kafka_clients import KafkaClients
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.exits import EX_OK

log = logging.getLogger(__name__)


def run_tail(
    clients: KafkaClients, out: Output, *, agent_id: str | None, from_beginning: bool, count: int | None
) -> int:
    """Print metrics records until ``count`` were shown (None: until interrupted)."""
    consumer = clients.consumer()
    topic = clients.kafka.topics.metrics
    wanted_key = agent_id.encode() if agent_id is not None else None
    shown = 0
    try:
        assign(consumer, topic, clients.timeout, "beginning" if from_beginning else "end")
        while count is None or shown < count:
            for msg in poll_batch(consumer, 0.5):
                key = msg.key()
                if wanted_key is not None and key is not None and key != wanted_key:
                    continue  # cheap: the key is the agent id, no need to decode
                try:
                    record = records.decode(key, msg.value(), msg.headers(), default_type=pb.MetricsData)
                except records.RecordDecodeError as exc:
                    log.warning(
                        "Skipping undecodable record at %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), exc
                    )
                    continue
                metrics = record.message
                if not isinstance(metrics, pb.MetricsData) or (agent_id is not None and record.agent_id != agent_id):
                    continue
                if out.json_mode:
                    out.record("metrics", metrics)
                else:
                    out.line(records.describe_metrics(metrics))
                shown += 1
                if count is not None and shown >= count:
                    break
    finally:
        consumer.close()
    return EX_OK
