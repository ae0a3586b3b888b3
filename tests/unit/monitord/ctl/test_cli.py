"""monitorctl's command line: options, usage errors (64), configuration errors (78)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord import records
from monitord.ctl import cli
from monitord.ctl.cli import parse_args
from monitoring.v1 import monitoring_pb2 as pb
from monitoring_testsupport.fakes.ctl import NOW, FakeKafka, output


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 64
    return capsys.readouterr().err


def test_send_defaults() -> None:
    args = parse_args(["send", "web-1", "uptime"])
    assert (args.subcommand, args.agent, args.command, args.args) == ("send", "web-1", "uptime", [])
    assert (args.timeout, args.ttl, args.wait, args.wait_timeout) == (0, 0, False, 60.0)
    assert (args.encoding, args.requested_by, args.json, args.config, args.kafka_bootstrap) == (
        "json",
        None,
        False,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["echo", "--", "-n", "x"], ["-n", "x"]),
        (["echo", "-n", "x"], ["-n", "x"]),
        (["echo", "a", "--", "b"], ["a", "--", "b"]),
        (["echo", "--wait"], ["--wait"]),  # after COMMAND everything belongs to the command
        (["du", "--timeout", "5", "/var"], ["--timeout", "5", "/var"]),
    ],
)
def test_send_args_after_command_pass_through(argv: list[str], expected: list[str]) -> None:
    args = parse_args(["send", "--timeout", "7", "web-1", *argv])
    assert args.args == expected
    assert args.timeout == 7 and args.wait is False


def test_send_options() -> None:
    args = parse_args(
        [
            "send",
            "--timeout",
            "10",
            "--ttl",
            "120",
            "--wait",
            "--wait-timeout",
            "2.5",
            "--requested-by",
            "alice",
            "--encoding",
            "protobuf",
            "web-1",
            "set-interval",
            "5",
        ]
    )
    assert (args.timeout, args.ttl, args.wait, args.wait_timeout) == (10, 120, True, 2.5)
    assert (args.requested_by, args.encoding, args.command, args.args) == ("alice", "protobuf", "set-interval", ["5"])


def test_common_options_before_or_after_the_subcommand() -> None:
    before = parse_args(["--json", "--config", "a.yaml", "--kafka-bootstrap", "k:1", "agents"])
    after = parse_args(["agents", "--json", "--config", "a.yaml", "--kafka-bootstrap", "k:1"])
    for args in (before, after):
        assert (args.json, args.config, args.kafka_bootstrap) == (True, "a.yaml", "k:1")
    assert parse_args(["--log-level", "debug", "tail"]).log_level == "debug"
    assert parse_args(["tail"]).log_level == "warning"


def test_agents_and_tail_options() -> None:
    assert parse_args(["agents"]).all is False and parse_args(["agents", "--all"]).all is True
    tail = parse_args(["tail", "--agent", "web-1", "--from-beginning", "--count", "3"])
    assert (tail.agent, tail.from_beginning, tail.count) == ("web-1", True, 3)
    assert parse_args(["tail"]).count is None


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["send", "web-1"], "required"),
        (["send", "--timeout", "-1", "web-1", "x"], "between 0 and"),
        (["send", "--ttl", "soon", "web-1", "x"], "expected an integer"),
        (["send", "--timeout", str(2**32), "web-1", "x"], "between 0 and"),
        (["send", "--wait-timeout", "0", "web-1", "x"], "must be > 0"),
        (["send", "--encoding", "xml", "web-1", "x"], "invalid choice"),
        (["send", "", "ping"], "AGENT must not be empty"),
        (["send", "web-1", " "], "COMMAND must not be empty"),
        (["tail", "--count", "0"], "between 1 and"),
        (["agents", "--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_64(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(argv, capsys)
    assert fragment in err and "usage: monitorctl" in err


def test_help_documents_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["send", "--help"]):
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 0
        out = capsys.readouterr().out
        for code, word in [
            (0, "SUCCEEDED"),
            (1, "FAILED"),
            (124, "TIMED_OUT"),
            (126, "REJECTED"),
            (75, "EXPIRED"),
            (65, "INVALID"),
            (69, "--wait-timeout"),
            (64, "usage"),
            (78, "configuration"),
        ]:
            assert any(line.strip().startswith(f"{code} ") and word in line for line in out.splitlines()), (code, out)
    assert cli.__doc__ is not None and all(f"{code} " in cli.__doc__ for code in (0, 1, 124, 126, 75, 65, 69, 64, 78))


def test_config_errors_exit_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "monitord.yaml"
    bad.write_text("kafka:\n  topics:\n    commands: ''\n")
    for argv, where in [
        (["--config", str(bad), "agents"], f"{bad}:3: kafka.topics.commands: must not be empty"),
        (["--config", str(tmp_path / "absent.yaml"), "agents"], "file not found"),
        (["--kafka-bootstrap", "nowhere", "agents"], "command line: --kafka-bootstrap: expected HOST:PORT"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 78
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("monitorctl: configuration error: ") and where in err[0], err


def test_kafka_settings_come_from_the_file_with_override(tmp_path: Path) -> None:
    path = tmp_path / "monitord.yaml"
    path.write_text("kafka:\n  bootstrap_servers: a:1\n  topics:\n    commands: cmds\n")
    kafka = cli.kafka_settings(parse_args(["--config", str(path), "agents"]))
    assert (kafka.bootstrap_servers, kafka.topics.commands) == ("a:1", "cmds")
    kafka = cli.kafka_settings(parse_args(["--config", str(path), "--kafka-bootstrap", "b:2", "agents"]))
    assert (kafka.bootstrap_servers, kafka.topics.commands) == ("b:2", "cmds")


def test_default_requester(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    assert cli.default_requester() == "monitorctl:alice"


def test_missing_topic_is_69() -> None:
    kafka = FakeKafka()
    del kafka.logs["commands"]
    o, out, err = output()
    args = cli.parse_args(["send", "web-1", "ping"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "id") == 69
    assert out.getvalue() == "" and "topic 'commands': Unknown topic" in err.getvalue()


def test_run_passes_generated_id_and_requester(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "bob")
    kafka = FakeKafka()
    o, out, _ = output()
    args = cli.parse_args(["send", "web-1", "echo", "--", "-n", "x"])
    assert cli.run(args, kafka.clients(), o, clock=kafka.clock, wall=lambda: NOW, new_id=lambda: "abc123") == 0
    command = records.decode(kafka.produced[0].key(), kafka.produced[0].value(), kafka.produced[0].headers()).message
    assert isinstance(command, pb.CommandMessage)
    assert (command.command_id, command.requested_by, list(command.args)) == ("abc123", "monitorctl:bob", ["-n", "x"])
    assert out.getvalue() == "abc123\n"
