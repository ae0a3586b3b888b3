"""What the tests and the benchmarks share (installed editable by scripts/bootstrap).

Real parts only: a Kafka broker run by scripts/kafka.sh, the daemons' own entry points as child
processes whose readiness is observed the way systemd observes it (sd_notify), their /metrics,
and readers of what landed in Kafka.
"""

from monitoring_testsupport.commands import FINAL_STATUSES, command_responses, produce_command, statuses
from monitoring_testsupport.kafka import (
    KafkaBroker,
    bench_broker,
    loss_report,
    read_records,
    sequences,
    stop_and_check_agent,
)
from monitoring_testsupport.kafka_cluster import KafkaCluster
from monitoring_testsupport.paths import BIN, KAFKA_SH, NEW_VERSION, OLD_VERSION, REPO, free_port, unique, write_yaml
from monitoring_testsupport.procs import (
    STARTED,
    Monitord,
    Proc,
    fleet_argv,
    rss_kib,
    start_agent,
    start_fleet,
    start_monitord,
)
from monitoring_testsupport.readiness import NotifyListener, health_status, scrape

__all__ = [
    "BIN",
    "FINAL_STATUSES",
    "KAFKA_SH",
    "NEW_VERSION",
    "OLD_VERSION",
    "REPO",
    "STARTED",
    "KafkaBroker",
    "KafkaCluster",
    "Monitord",
    "NotifyListener",
    "Proc",
    "bench_broker",
    "command_responses",
    "fleet_argv",
    "free_port",
    "health_status",
    "loss_report",
    "produce_command",
    "read_records",
    "rss_kib",
    "scrape",
    "sequences",
    "start_agent",
    "start_fleet",
    "start_monitord",
    "statuses",
    "stop_and_check_agent",
    "unique",
    "write_yaml",
]
