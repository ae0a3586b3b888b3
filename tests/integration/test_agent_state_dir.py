"""The agent is not fooled by its state directory: real agent processes, real monitord, real Kafka.

Links planted where the agent keeps its files point at a victim file; the victim must stay as it
was, and the agent either runs (its records reach Kafka) or refuses to start with exit 78 and a
line naming the file. A directory others could write to, or that belongs to another user, is
refused the same way; huge state files cost no memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitoring_common.exits import EX_CONFIG, EX_OK
from monitoring_testsupport import KafkaBroker, read_records, sequences, start_agent, start_monitord, unique

pytestmark = pytest.mark.kafka

NOBODY = 65534
VICTIM_TEXT = "precious: must never be written through a link\n"
#: No server is needed to be refused at start.
NOWHERE = "127.0.0.1:9"


def victim(tmp: Path) -> Path:
    path = tmp / "victim"
    path.write_text(VICTIM_TEXT)
    return path


def segment(seq: int) -> str:
    return f"seg-{seq:020d}.log"


def test_links_planted_in_a_linked_state_dir_are_never_followed_and_records_flow(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    agent_id = unique("state-links")
    target = victim(tmp_path)
    # systemd's DynamicUser= layout: the configured path is root's link to a private directory.
    real = tmp_path / "private" / agent_id
    (real / "spool").mkdir(parents=True, mode=0o700)
    (tmp_path / "private").chmod(0o700)
    state = tmp_path / f"state-{agent_id}"
    state.symlink_to(real)
    planted = ["spool/acked.tmp", f"spool/{segment(1)}", f"spool/{segment(3)}", "connection", "connection.tmp"]
    for name in [*planted, "command-journal.tmp"]:
        (real / name).symlink_to(target)
    (real / "commands-seen").write_text("old-command-1\n")  # an older agent's ids: migrated, compacted
    agent = start_agent(tmp_path, address, agent_id, iterations=6, interval=0.2)
    assert agent.wait(90) == EX_OK, agent.text()
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=6)
    assert sequences(found, agent_id) == list(range(1, 7))
    assert target.read_text() == VICTIM_TEXT
    assert not any(p.is_symlink() for p in real.rglob("*"))  # every planted link was replaced or removed
    assert not (real / "commands-seen").exists() and (real / "command-journal").stat().st_size > 0
    assert "Spool: removing" in agent.text() and "is a symbolic link: refusing to follow it" in agent.text()
    server.stop()


@pytest.mark.parametrize("name", ["lock", "command-journal", "spool/acked"])
def test_a_link_at_a_state_file_is_refused_with_exit_78(kafka: KafkaBroker, tmp_path: Path, name: str) -> None:
    agent_id = unique("state-refused")
    target = victim(tmp_path)
    state = tmp_path / f"state-{agent_id}"
    (state / "spool").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    (state / name).symlink_to(target)
    agent = start_agent(tmp_path, NOWHERE, agent_id, iterations=3)
    assert agent.wait(60) == EX_CONFIG, agent.text()
    assert f"monitor-agentd cannot start: {state / name} is a symbolic link: refusing to follow it" in agent.text()
    assert target.read_text() == VICTIM_TEXT


@pytest.mark.parametrize(
    ("mode", "owner", "problem"),
    [
        (0o777, 0, r"is writable by group and others (mode 0777)"),
        (0o1733, 0, r"is writable by group and others (mode 1733)"),  # sticky like /tmp: still refused
        (0o770, 0, r"is writable by its group (mode 0770)"),
        (0o700, NOBODY, f"is owned by uid {NOBODY} (nobody), not by the agent's user (uid 0 (root))"),
    ],
)
def test_a_state_dir_others_could_write_to_is_refused_with_exit_78(
    kafka: KafkaBroker, tmp_path: Path, mode: int, owner: int, problem: str
) -> None:
    agent_id = unique("state-unsafe")
    state = tmp_path / f"state-{agent_id}"
    state.mkdir()
    state.chmod(mode)
    os.chown(state, owner, owner)
    agent = start_agent(tmp_path, NOWHERE, agent_id, iterations=3)
    assert agent.wait(60) == EX_CONFIG, agent.text()
    assert f"monitor-agentd cannot start: state directory {state} {problem}: refusing to use it" in agent.text()
    assert list(state.iterdir()) == []  # nothing was created in it


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_huge_state_files_cost_no_memory_and_records_flow(kafka: KafkaBroker, tmp_path: Path) -> None:
    server, address = start_monitord(tmp_path, kafka.bootstrap)
    agent_id = unique("state-huge")
    state = tmp_path / f"state-{agent_id}"
    (state / "spool").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    huge = 300 * 1024 * 1024  # sparse files: no disk, but a reader that reads them whole needs 300 MB
    with (state / "spool" / segment(1)).open("wb") as f:
        f.write(b"\xff\xff\xff\xf0\x00\x00\x00\x00")  # a frame that promises 4 GB
        f.truncate(huge)
    for name in ("command-journal", "connection", "spool/acked", "commands-seen"):
        with (state / name).open("wb") as f:
            f.truncate(huge)
    agent = start_agent(tmp_path, address, agent_id, iterations=0, interval=0.2)
    found = read_records(kafka.bootstrap, "monitoring-data", [agent_id], expect=5, settle=0)
    assert sequences(found, agent_id)[:5] == list(range(1, 6)), agent.text()
    assert agent.running(), agent.text()
    assert peak_rss_kb(agent.pid) < 250 * 1024, agent.text()[-3000:]
    text = agent.text()
    assert "Spool segment seg-00000000000000000001.log: cut 314572800 bytes of torn or corrupt tail" in text
    assert "a journal grows to" in text  # not read: this run keeps its journal in memory only
    assert "Ignoring the unreadable last connection number" in text and "\\x00" * 20 in text
    assert len(text) < 100_000
    agent.stop()
    server.stop()
