"""monitord configuration: one frozen dataclass per section of /etc/monitord/monitord.yaml.

Every key is documented here (``setting(doc=...)``); etc/monitord/monitord.yaml mirrors this file and
tests/unit/test_example_configs.py checks that the two agree.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from monitord.config_server import AuthSection as AuthSection
from monitord.config_server import LimitsSection as LimitsSection
from monitord.config_server import TlsSection as TlsSection
from monitoring_common import untrusted
from monitoring_common.config_loader import InvalidField, setting, split_hostport
from monitoring_common.sections import LoggingSection, MetricsSection
from monitoring_common.transport import CompressionName

DEFAULT_PATH = "/etc/monitord/monitord.yaml"


@dataclass(frozen=True)
class ServerSection:
    """The gRPC endpoint agents connect to."""

    listen: str = setting("0.0.0.0:50051", "HOST:PORT the gRPC server listens on ([::]:50051 for IPv6).")
    server_id: str = setting(
        "", "Name of this monitord instance in acks, logs and Kafka headers. Empty: the host name."
    )
    max_inflight_per_stream: int = setting(
        1000,
        "Records of one agent stream handed to Kafka but not yet acknowledged; when reached, "
        "the server stops reading that stream (gRPC flow control pushes back on the agent).",
        min=1,
        max=1_000_000,
    )
    max_inflight_total: int = setting(
        200_000, "Records of all streams handed to Kafka but not yet acknowledged.", min=1, max=10_000_000
    )
    max_message_bytes: int = setting(
        4 * 1024 * 1024, "Largest gRPC message accepted from an agent, in bytes.", min=1024, max=64 * 1024 * 1024
    )
    shutdown_grace_seconds: float = setting(
        10.0, "On SIGTERM: how long in-flight deliveries may take before streams are cancelled.", min=0, max=300
    )
    tls: TlsSection = setting(factory=TlsSection, doc="Transport security.")
    auth: AuthSection = setting(factory=AuthSection, doc="Agent authentication.")
    limits: LimitsSection = setting(factory=LimitsSection, doc="Per-agent limits.")
    compression: CompressionName = setting(
        "none",
        "Compression of what monitord sends to agents (acks and commands are small: off by default). "
        "What agents send is decompressed whatever they chose.",
    )
    log_each_record: bool = setting(
        True,
        "Log one line per forwarded record (the seed's 'Forwarded metrics #N ...' line). Turn off on busy servers.",
    )

    def __post_init__(self) -> None:
        split_hostport("listen", self.listen)

    @property
    def effective_server_id(self) -> str:
        return self.server_id or socket.gethostname()


@dataclass(frozen=True)
class TopicsSection:
    """Kafka topic names."""

    metrics: str = setting("monitoring-data", "Topic for MetricsData records.", min=1)
    command_responses: str = setting("command-responses", "Topic for CommandResponseMessage records.", min=1)
    commands: str = setting("commands", "Topic monitord consumes commands from.", min=1)
    agent_status: str = setting("agent-status", "Compacted topic of agent presence events.", min=1)


@dataclass(frozen=True)
class KafkaSection:
    """How monitord talks to Kafka."""

    bootstrap_servers: str = setting("127.0.0.1:9092", "Comma-separated HOST:PORT list of Kafka brokers.", min=1)
    topics: TopicsSection = setting(factory=TopicsSection, doc="Topic names.")
    value_encoding: Literal["protobuf", "json"] = setting(
        "protobuf", "Record value format: serialized protobuf, or proto3 JSON (readable with any Kafka tool)."
    )
    delivery_timeout_ms: int = setting(
        0,
        "How long the producer keeps retrying a record before it is reported failed and the agent "
        "gets a negative ack (librdkafka message.timeout.ms). 0: never -- a record waits however long "
        "Kafka is away, which keeps every agent's records in order (the in-flight bounds push back "
        "instead); a timeout lets a resent record land behind newer ones.",
        min=0,
        max=3_600_000,
    )
    linger_ms: float = setting(5.0, "Producer batching delay (librdkafka linger.ms).", min=0, max=1000)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = setting(
        "zstd", "Compression codec of produced batches."
    )
    queue_max_messages: int = setting(
        200_000, "librdkafka's local produce queue bound (queue.buffering.max.messages).", min=1000, max=10_000_000
    )
    down_after_seconds: float = setting(
        10.0,
        "Kafka counts as down (health NOT_SERVING) once records waited this long without any confirmation, "
        "or no broker answered metadata requests for this long (whatever delivery_timeout_ms is).",
        min=1,
        max=3600,
    )
    up_after_seconds: float = setting(
        3.0,
        "Hysteresis: down ends after confirmations for this long (none waiting over half of it), "
        "degraded after clean metadata for this long.",
        min=0,
        max=600,
    )
    metadata_interval_seconds: float = setting(
        5.0,
        "How often cluster metadata is read: partitions of monitord's topics without a leader or under "
        "min.insync.replicas make the state degraded. Shorter than down_after_seconds.",
        min=1,
        max=300,
    )
    client: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}),
        doc="librdkafka properties for every Kafka client of monitord, monitor-analyzer and monitorctl "
        "(security.protocol, sasl.mechanism, sasl.username, ssl.ca.location, ...); not acks, "
        "enable.idempotence or the timeouts (refused, as in producer).",
    )
    secrets_file: str = setting(
        "",
        "YAML file of further client properties kept out of this file (e.g. sasl.password); it must not "
        "be readable by others (warned at start).",
    )
    producer: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}),
        doc="Extra librdkafka producer properties passed through verbatim (e.g. security.protocol); "
        "those the delivery promise depends on (acks, enable.idempotence, message.timeout.ms, ...) are refused.",
    )

    def __post_init__(self) -> None:
        for part in self.bootstrap_servers.split(","):
            split_hostport("bootstrap_servers", part.strip())
        for name, extra in (("producer", self.producer), ("client", self.client)):
            for key in sorted(DELIVERY_PROPERTIES.keys() & set(extra)):
                raise InvalidField(name, f"{key} cannot be set: {DELIVERY_PROPERTIES[key]}")
        if self.metadata_interval_seconds >= self.down_after_seconds:  # idle, answers would come too late
            raise InvalidField("metadata_interval_seconds", "must be shorter than down_after_seconds")


#: librdkafka properties the delivery promise depends on (docs/delivery.md): never passed through.
DELIVERY_PROPERTIES = MappingProxyType(
    {
        "acks": "monitord acknowledges a record only once every in-sync replica has it (acks=all)",
        "request.required.acks": "monitord acknowledges a record only once every in-sync replica has it (acks=all)",
        "enable.idempotence": "the idempotent producer keeps each agent's records in order without duplicates",
        "message.timeout.ms": "use kafka.delivery_timeout_ms",
        "delivery.timeout.ms": "use kafka.delivery_timeout_ms",
        "transactional.id": "monitord's producer is not transactional",
    }
)


@dataclass(frozen=True)
class CommandsSection:
    """Commands consumed from Kafka and pushed to agents."""

    enabled: bool = setting(True, "Consume the commands topic and deliver commands to connected agents.")
    default_ttl_seconds: float = setting(
        300.0, "A command without expires_at/ttl_seconds expires this long after monitord read it.", min=1, max=604_800
    )
    max_ttl_seconds: float = setting(86_400.0, "Upper bound of any command's lifetime.", min=1, max=604_800)
    max_pending_per_agent: int = setting(
        100,
        "Commands held for one agent that is not connected; beyond it the oldest is dropped (EXPIRED).",
        min=1,
        max=100_000,
    )
    max_pending_total: int = setting(100_000, "Commands held for all agents.", min=1, max=10_000_000)
    max_pending_bytes: int = setting(
        64 * 1024 * 1024,
        "Bytes of held commands (their encoded size), all agents; beyond it the oldest of the largest queue goes.",
        min=1024,
        max=16 * 1024**3,
    )
    max_record_bytes: int = setting(
        65_536,
        "A commands record larger than this is INVALID (refused before it is decoded).",
        min=1024,
        max=10_485_760,
    )
    max_name_chars: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_NAME_CHARS, "A command whose name is longer is INVALID.", min=1, max=4096
    )
    max_requested_by_chars: int = setting(
        untrusted.DEFAULT_MAX_REQUESTED_BY_CHARS, "A command whose requested_by is longer is INVALID.", min=1, max=4096
    )
    max_args: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_ARGS, "A command with more arguments is INVALID.", min=0, max=10_000
    )
    max_arg_bytes: int = setting(
        untrusted.DEFAULT_MAX_COMMAND_ARG_BYTES, "A command with a longer argument is INVALID.", min=1, max=1_048_576
    )
    consumer_group_prefix: str = setting(
        "monitord-commands",
        "Consumer group the instances share to divide the writing of monitord's own answers (EXPIRED,"
        " INVALID) by partition; each member is static (group.instance.id = server id).",
        min=1,
    )
    answer_grace_seconds: float = setting(
        3.0,
        "A held command is answered EXPIRED this long after its deadline (time for a DELIVERED on its way).",
        min=0,
        max=600,
    )
    duty_session_timeout_ms: int = setting(
        10_000,
        "Session timeout in that group: how long a crashed instance's partitions wait for it to come back.",
        min=6_000,
        max=300_000,
    )
    fetch_wait_max_ms: int = setting(10, "Consumer fetch wait (latency of command delivery).", min=0, max=10_000)


@dataclass(frozen=True)
class ServerMetricsSection(MetricsSection):
    """Prometheus metrics endpoint (text format at http://LISTEN/metrics); on localhost by default."""

    listen: str = setting(
        "127.0.0.1:9750", "HOST:PORT to serve /metrics on; empty: off. Keep it on localhost or a management network."
    )


@dataclass(frozen=True)
class MonitordConfig:
    """The whole of monitord.yaml."""

    server: ServerSection = setting(factory=ServerSection, doc="gRPC server.")
    kafka: KafkaSection = setting(factory=KafkaSection, doc="Kafka connection and topics.")
    commands: CommandsSection = setting(factory=CommandsSection, doc="Command delivery.")
    logging: LoggingSection = setting(factory=LoggingSection, doc="Logging.")
    metrics: ServerMetricsSection = setting(factory=ServerMetricsSection, doc="Prometheus metrics.")
