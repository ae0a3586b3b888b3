"""One place configures every Kafka client: the same properties for monitord, the analyzer and monitorctl."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from monitord.analysis.consumer import AnalyzerOptions
from monitord.analysis.consumer import consumer_config as analyzer_config
from monitord.answer_duty import duty_config
from monitord.command_intake import consumer_config as intake_config
from monitord.config import KafkaSection, MonitordConfig
from monitord.kafka_clients import (
    KafkaClients,
    error_text,
    exception_text,
    kafka_client_settings,
    librdkafka_logger,
    producer_config,
)
from monitoring_common.config_loader import ConfigError, InvalidField

SECURE = KafkaSection(client={"security.protocol": "SASL_SSL"})  # type: ignore[arg-type]


def test_producer_is_idempotent_with_acks_all() -> None:
    conf = producer_config(KafkaSection(producer={"security.protocol": "SSL"}), "monitord-x")  # type: ignore[arg-type]
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["security.protocol"] == "SSL" and conf["client.id"] == "monitord-x"
    assert conf["message.timeout.ms"] == 0 and conf["compression.type"] == "zstd"  # 0: never time out locally


@pytest.mark.parametrize("section", ["producer", "client"])
@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("acks", "acks=all"),
        ("request.required.acks", "acks=all"),
        ("enable.idempotence", "in order"),
        ("message.timeout.ms", "use kafka.delivery_timeout_ms"),
        ("delivery.timeout.ms", "use kafka.delivery_timeout_ms"),
        ("transactional.id", "not transactional"),
    ],
)
def test_properties_the_delivery_promise_depends_on_cannot_be_passed_through(section: str, key: str, why: str) -> None:
    with pytest.raises(InvalidField, match=f"{key} cannot be set: .*{why}") as raised:
        KafkaSection(**{section: {key: "1"}})  # type: ignore[arg-type]
    assert raised.value.field == section


def test_every_consumer_starts_from_the_client_settings() -> None:
    intake = intake_config(MonitordConfig(kafka=SECURE))
    assert intake["security.protocol"] == "SASL_SSL"
    assert intake["enable.auto.commit"] is False  # it assigns every partition itself: no group, no commits
    assert intake["fetch.wait.max.ms"] == 10 and intake["fetch.min.bytes"] == 1 and intake["socket.nagle.disable"]
    assert intake["client.id"].endswith("-commands")
    duty = duty_config(MonitordConfig(kafka=SECURE))
    assert duty["security.protocol"] == "SASL_SSL" and duty["group.id"] == "monitord-commands"
    assert duty["group.instance.id"] and duty["session.timeout.ms"] == 10_000 and duty["enable.auto.commit"] is False
    analyzer = analyzer_config(SECURE, AnalyzerOptions(group_id="g", from_beginning=True))
    assert analyzer == {
        "security.protocol": "SASL_SSL",
        "bootstrap.servers": "127.0.0.1:9092",
        "group.id": "g",
        "client.id": "monitor-analyzer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    }
    assert analyzer_config(SECURE, AnalyzerOptions())["auto.offset.reset"] == "latest"


def test_tool_clients_assign_and_never_commit() -> None:
    made: list[dict[str, Any]] = []

    def factory(conf: dict[str, Any]) -> Any:
        made.append(conf)
        return object()

    logger = logging.getLogger("test.librdkafka")
    clients = KafkaClients(SECURE, factory, factory, client_id="monitorctl", logger=logger)
    clients.consumer()
    clients.producer()
    reader, producer = made
    assert reader["group.id"] == "monitorctl" and reader["enable.auto.commit"] is False
    assert reader["enable.auto.offset.store"] is False and reader["logger"] is logger
    assert producer["acks"] == "all" and producer["security.protocol"] == "SASL_SSL"
    bare = KafkaClients(KafkaSection(), factory, factory)
    bare.consumer()
    assert "logger" not in made[-1]


def test_secrets_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("sasl.password: hunter2\n")
    secrets.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        settings = kafka_client_settings(KafkaSection(secrets_file=str(secrets), client={"a": "b"}))  # type: ignore[arg-type]
    assert settings == {"a": "b", "sasl.password": "hunter2"}
    assert "readable by other users" in caplog.text
    secrets.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        kafka_client_settings(KafkaSection(secrets_file=str(secrets)))
    with pytest.raises(ConfigError, match="cannot read Kafka secrets"):
        kafka_client_settings(KafkaSection(secrets_file=str(tmp_path / "missing.yaml")))


def test_librdkafka_lines_are_capped_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    logger = librdkafka_logger("unit")
    assert librdkafka_logger("unit") is logger and len(logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger="monitord.librdkafka.unit"):
        logger.error("FAIL|rdkafka#producer-1| connection refused")
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_error_texts() -> None:
    class Err:
        def str(self) -> str:
            return "Local: Broker transport failure"

    assert error_text(Err()) == "Local: Broker transport failure"
    assert error_text("plain") == "plain"
    assert exception_text(RuntimeError(Err())) == "Local: Broker transport failure"
    assert exception_text(RuntimeError()) == ""
