"""The lifecycle: start in steps (a failed start stops what it started), serve, reload, shut down
in order (agents redirected, producer flushed)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from monitord.app import Monitord
from monitord.config import AuthSection, CommandsSection, KafkaSection, MonitordConfig, ServerMetricsSection
from monitord.errors import StartupError
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_common.config_loader import ConfigError
from monitoring_testsupport import free_port
from monitoring_testsupport.fakes.kafka_admin import AdminFactory, healthy
from monitoring_testsupport.fakes.monitord import (
    WAIT,
    AgentCall,
    ConsumerFactory,
    ProducerFactory,
    plaintext_config,
    until,
)


def make(cfg: MonitordConfig, producers: ProducerFactory | None = None, admins: AdminFactory | None = None) -> Monitord:
    return Monitord(
        cfg, producer_factory=producers or ProducerFactory(), consumer_factory=ConsumerFactory(), admin_factory=admins
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_listen_address_in_use_is_a_startup_error_and_the_producer_is_stopped() -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            cfg = plaintext_config(listen=f"127.0.0.1:{taken.getsockname()[1]}")
            server = make(cfg)
            with pytest.raises(StartupError, match=r"cannot listen on 127\.0\.0\.1"):
                await server.start()
        assert not server.bridge.delivery_path_alive()  # the poll thread was stopped
        with pytest.raises(Exception, match="shutting down"):
            server.bridge.produce_nowait("t", b"k", b"v", [])
        await server.shutdown()  # a no-op after a failed start

    asyncio.run(scenario())


def test_a_failed_bind_closes_the_metrics_endpoint_started_before() -> None:
    async def scenario() -> None:
        metrics_port = free_port()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            cfg = dataclasses.replace(
                plaintext_config(listen=f"127.0.0.1:{taken.getsockname()[1]}"),
                metrics=ServerMetricsSection(listen=f"127.0.0.1:{metrics_port}"),
            )
            server = make(cfg)
            with pytest.raises(StartupError, match="cannot listen on"):
                await server.start()
        assert not server.bridge.delivery_path_alive()
        assert port_is_free(metrics_port)  # the metrics endpoint was closed

    asyncio.run(scenario())


def test_metrics_address_in_use_is_a_startup_error() -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            cfg = dataclasses.replace(
                plaintext_config(), metrics=ServerMetricsSection(listen=f"127.0.0.1:{taken.getsockname()[1]}")
            )
            server = make(cfg)
            with pytest.raises(StartupError, match="metrics endpoint cannot listen"):
                await server.start()
        assert not server.bridge.delivery_path_alive()
        assert port_is_free(int(cfg.server.listen.rsplit(":", 1)[1]))  # gRPC was never bound

    asyncio.run(scenario())


def test_an_unreadable_tokens_file_is_a_startup_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = plaintext_config(auth=AuthSection(tokens_file=str(tmp_path / "missing.yaml")))
        server = make(cfg)
        with pytest.raises(StartupError, match="cannot read tokens file"):
            await server.start()
        assert not server.bridge.delivery_path_alive()

    asyncio.run(scenario())


def test_a_producer_that_cannot_be_created_is_an_error_and_nothing_keeps_running() -> None:
    async def scenario() -> None:
        server = make(plaintext_config(), ProducerFactory(fail=RuntimeError("no librdkafka")))
        with pytest.raises(RuntimeError, match="no librdkafka"):
            await server.start()
        assert not server.bridge.delivery_path_alive()

    asyncio.run(scenario())


def test_shutdown_redirects_agents_then_flushes(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        producers = ProducerFactory()
        server = make(plaintext_config(), producers)
        async with server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            agent = AgentCall(channel, "web-1")
            agent.send(pb.AgentMessage(heartbeat=pb.AgentHeartbeat()))
            await until(lambda: len(server.sessions) == 1, what="the stream")
            assert server.healthy() and "1 agents connected" in server.status_line()
            shutdown = asyncio.create_task(server.shutdown())
            control = await agent.read()
            assert control.control.action == pb.ServerControl.RECONNECT
            agent.close()  # what the agent does when told to reconnect elsewhere
            await asyncio.wait_for(shutdown, WAIT)
            assert await asyncio.wait_for(agent.call.code(), WAIT) == grpc.StatusCode.OK
        reasons = [s.reason for s in producers.producer.on("agent-status")]  # type: ignore[attr-defined]
        assert reasons == ["", "server shutting down"]
        assert not server.bridge.delivery_path_alive()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "✓ Stream ended for agent 'web-1' (0 metrics received); redirected: server shutting down" in caplog.text
    assert "monitord stopped (0 forwarded, 0 failed, 0 left undelivered)" in caplog.text


def test_metrics_status_and_health_follow_the_kafka_state() -> None:
    """Degraded (a partition without leader) still serves; brokers that stop answering are down."""

    async def scenario() -> None:
        kafka = KafkaSection(down_after_seconds=3, metadata_interval_seconds=1)
        cfg = dataclasses.replace(
            plaintext_config(), kafka=kafka, metrics=ServerMetricsSection(listen=f"127.0.0.1:{free_port()}")
        )
        admins = AdminFactory({"monitoring-data": [(-1, [1, 2, 3], []), *healthy(2)], "agent-status": healthy()})
        async with make(cfg, ProducerFactory(), admins) as server:
            assert server.metrics is not None
            url = f"http://127.0.0.1:{server.metrics.port}/metrics"
            await until(lambda: "degraded" in server.status_line(), what="the first metadata answer")
            assert server.status_line().endswith(
                "Kafka degraded (1 partition without leader, 1 partition under min ISR, topic missing: command-responses)"
            )
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=WAIT).read().decode())
            for name in (
                "monitord_connected_agents 0.0",
                "monitord_kafka_state 1.0",
                "monitord_kafka_up 1.0",
                "monitord_kafka_partitions 6.0",
                'monitord_kafka_partitions_impaired{problem="no_leader"} 1.0',
                "monitord_commands_held 0.0",
            ):
                assert name in text
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)

                async def status() -> int:
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
                    return int(reply.status)

                assert await status() == health_pb2.HealthCheckResponse.SERVING  # degraded still serves
                admins.admin.unreachable = True
                deadline = asyncio.get_running_loop().time() + 3 * WAIT
                while await status() != health_pb2.HealthCheckResponse.NOT_SERVING:
                    assert asyncio.get_running_loop().time() < deadline, "health never said NOT_SERVING"
                    await asyncio.sleep(0.01)
                line = server.status_line()
                assert "Kafka DOWN (no broker answered for " in line and "; 1 partition without leader" in line

    asyncio.run(scenario())


def test_serve_reloads_on_request_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        cfg = plaintext_config()
        async with make(cfg) as server:
            stop, reload = asyncio.Event(), asyncio.Event()
            reloaded: list[str] = []

            def reloader() -> MonitordConfig:
                reloaded.append("yes")
                return dataclasses.replace(
                    cfg,
                    server=dataclasses.replace(cfg.server, listen="127.0.0.1:1", log_each_record=False),
                    commands=CommandsSection(max_args=3),
                )

            serving = asyncio.create_task(server.serve(stop, reload, reloader))
            reload.set()
            await until(lambda: reloaded == ["yes"], what="the reload")
            await until(lambda: not server.cfg.server.log_each_record, what="the new config in force")
            assert server.cfg.server.listen == cfg.server.listen  # only a restart changes it
            assert server.cfg.commands.max_args == 3
            stop.set()
            await asyncio.wait_for(serving, WAIT)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "Reload: server.listen changed; that takes effect only after a restart" in caplog.text
    assert "✓ Configuration reloaded" in caplog.text


def test_a_reload_with_a_bad_tokens_file_keeps_the_running_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        cfg = plaintext_config()
        async with make(cfg) as server:
            bad = dataclasses.replace(
                cfg, server=dataclasses.replace(cfg.server, auth=AuthSection(tokens_file=str(tmp_path / "none")))
            )
            server.apply(bad)
            assert server.cfg is cfg

            def broken() -> MonitordConfig:
                raise ConfigError("monitord.yaml", 3, "server.listen", "expected HOST:PORT")

            server.reload(broken)
            assert server.cfg is cfg

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert caplog.text.count("Reload rejected, the running configuration stays in force") == 2
