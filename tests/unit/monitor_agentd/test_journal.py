"""The command journal: replay after a restart, torn tails, corrupt entries, bounds, compaction."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import pytest

from monitor_agentd.errors import UnsafeStateDir
from monitor_agentd.journal import CommandJournal
from monitoring.v1 import monitoring_pb2 as pb


def response(
    command_id: str, status: pb.CommandStatus.ValueType = pb.DELIVERED, stdout: str = ""
) -> pb.CommandResponseMessage:
    return pb.CommandResponseMessage(
        command_id=command_id, command="sleep", status=status, requested_by="ops", stdout=stdout
    )


def opened(path: Path, **kwargs: int) -> CommandJournal:
    journal = CommandJournal(path, clock=lambda: 1000.0, **kwargs)  # type: ignore[arg-type]
    journal.load()
    return journal


def keys(journal: CommandJournal) -> list[tuple[str, str]]:
    return [(r.command_id, pb.CommandStatus.Name(r.status)) for r in journal.unacknowledged()]


def test_a_restart_knows_what_was_accepted_answered_and_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "journal"
    journal = opened(path)
    journal.record(response("done"))
    journal.record(response("done", pb.SUCCEEDED, "out"))
    journal.ack("done", pb.DELIVERED)
    journal.record(response("running"))
    journal.ack("running", pb.DELIVERED)
    journal.ack("running", pb.DELIVERED)  # a repeated ack changes nothing
    journal.close()

    again = opened(path)
    assert again.seen("done") and again.seen("running") and not again.seen("other")
    assert keys(again) == [("done", "SUCCEEDED")]
    latest = again.latest("done")
    assert latest is not None and latest.stdout == "out"
    [interrupted] = again.interrupted()
    assert (interrupted.command_id, interrupted.command, interrupted.accepted_at) == ("running", "sleep", 1000.0)
    assert "Command journal: 1 unacknowledged response on disk will be sent first" in caplog.text
    again.record(response("running", pb.FAILED))
    assert again.interrupted() == []
    again.record(response("running"))  # a late DELIVERED (a duplicate answered) never hides the final
    latest = again.latest("running")
    assert latest is not None and latest.status == pb.FAILED


def test_torn_tail_is_cut_and_writing_continues(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = opened(path)
    journal.record(response("c1"))
    journal.close()
    intact = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x00\x00\x00\x40torn")  # a header promising 64 bytes, then too few
    again = opened(path)
    assert again.repaired_bytes == 8 and path.stat().st_size == intact and again.seen("c1")
    again.record(response("c2"))
    again.close()
    assert keys(opened(path)) == [("c1", "DELIVERED"), ("c2", "DELIVERED")]


def test_a_bad_crc_cuts_an_undecodable_entry_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal"
    journal = opened(path)
    journal.record(response("c1"))
    journal.close()
    garbage = b"X" + struct.pack(">d", 0.0) + b"?"  # intact framing, unknown kind
    with path.open("ab") as f:
        f.write(struct.pack(">II", len(garbage), zlib.crc32(garbage)) + garbage)
    journal = opened(path)
    assert journal.skipped == 1 and "Command journal: skipped a corrupt entry at byte" in caplog.text
    journal.record(response("c2"))
    journal.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # c2's CRC no longer matches
    path.write_bytes(bytes(data))
    again = opened(path)
    assert again.seen("c1") and not again.seen("c2") and again.repaired_bytes > 0
    assert "cut" in caplog.text and "torn or corrupt tail" in caplog.text


def test_bounds_keep_running_commands_and_the_newest_finals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal"
    journal = opened(path, remember_finals=2, remember_ids=4)
    journal.record(response("running"))
    for i in range(5):
        journal.record(response(f"c{i}"))
        journal.record(response(f"c{i}", pb.SUCCEEDED))
    assert [journal.latest(f"c{i}") is not None for i in range(5)] == [False, False, False, True, True]
    assert journal.latest("running") is not None  # never forgotten while it runs
    assert "Command journal full: the unacknowledged SUCCEEDED response to command c0" in caplog.text
    assert [journal.seen(f"c{i}") for i in range(5)] == [False, True, True, True, True]
    journal.close()
    again = opened(path, remember_finals=2, remember_ids=4)
    assert [e.command_id for e in again.interrupted()] == ["running"]
    assert keys(again) == [
        ("running", "DELIVERED"),
        *((f"c{i}", s) for i in (3, 4) for s in ("DELIVERED", "SUCCEEDED")),
    ]


def test_responses_are_bounded_in_bytes(tmp_path: Path) -> None:
    journal = opened(tmp_path / "journal", max_bytes=3100)  # three of them
    for i in range(5):
        journal.record(response(f"c{i}", pb.SUCCEEDED, "x" * 1000))
    assert [journal.latest(f"c{i}") is not None for i in range(5)] == [False, False, True, True, True]
    assert all(journal.seen(f"c{i}") for i in range(5))


def test_the_file_is_compacted_and_keeps_what_matters(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = opened(path, remember_finals=3)
    sizes = []
    for i in range(200):
        journal.record(response(f"c{i}"))
        journal.record(response(f"c{i}", pb.SUCCEEDED, "y" * 20_000))
        journal.ack(f"c{i}", pb.DELIVERED)
        journal.ack(f"c{i}", pb.SUCCEEDED)
        sizes.append(path.stat().st_size)
    assert max(sizes) < 3 * 1024 * 1024 and sizes[-1] < sizes[0] * 200 / 2  # rewritten, not grown forever
    journal.record(response("last", pb.FAILED))
    journal.close()
    again = opened(path, remember_finals=3)
    assert keys(again) == [("last", "FAILED")]
    assert all(again.seen(f"c{i}") for i in range(200)) and again.latest("c198") is not None
    assert again.latest("c100") is None


def test_commands_seen_of_an_older_agent_is_taken_over_once(tmp_path: Path) -> None:
    legacy = tmp_path / "commands-seen"
    legacy.write_text("old1\nold2\n")
    journal = CommandJournal(tmp_path / "journal")
    journal.load(legacy=legacy)
    assert journal.seen("old1") and journal.seen("old2") and not legacy.exists()
    journal.close()
    again = CommandJournal(tmp_path / "journal")
    again.load(legacy=legacy)
    assert again.seen("old1") and again.latest("old1") is None


def test_unwritable_journal_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = CommandJournal(tmp_path / "missing-dir" / "journal")
    journal.load()
    journal.record(response("c1"))
    assert journal.seen("c1") and keys(journal) == [("c1", "DELIVERED")]
    assert "Command journal: cannot read" in caplog.text and "kept in memory only" in caplog.text


def test_unreadable_journal_is_logged_and_the_agent_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "journal").mkdir()  # not a file
    journal = opened(tmp_path / "journal")
    assert "Command journal: cannot read" in caplog.text and journal.unacknowledged() == []


def test_memory_only_without_a_path() -> None:
    journal = CommandJournal(None)
    journal.load()
    journal.record(response("c1"))
    journal.ack("c1", pb.DELIVERED)
    assert journal.seen("c1") and journal.unacknowledged() == [] and journal.interrupted() == []


def precious(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    return victim


def test_a_link_at_the_journal_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = precious(tmp_path)
    (tmp_path / "journal").symlink_to(victim)
    with pytest.raises(UnsafeStateDir, match=r"/journal is a symbolic link: refusing to follow it"):
        opened(tmp_path / "journal")
    assert victim.read_text() == "precious\n"


def test_compaction_never_writes_through_a_planted_temp_link(tmp_path: Path) -> None:
    victim = precious(tmp_path)
    path = tmp_path / "journal"
    journal = opened(path, remember_finals=3)
    (tmp_path / "journal.tmp").symlink_to(victim)
    for i in range(100):
        journal.record(response(f"c{i}", pb.SUCCEEDED, "y" * 20_000))
    (tmp_path / "journal.tmp").symlink_to(victim)  # again, after a compaction
    for i in range(100, 200):
        journal.record(response(f"c{i}", pb.SUCCEEDED, "y" * 20_000))
    journal.close()
    assert victim.read_text() == "precious\n"
    assert path.stat().st_size < 3 * 1024 * 1024 and opened(path, remember_finals=3).latest("c199") is not None


def test_a_journal_larger_than_it_can_grow_is_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal"
    with path.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: 200 MB of nothing
    journal = CommandJournal(path)
    assert journal.max_file_bytes < 200 * 1024 * 1024
    journal.load()
    assert "Command journal: cannot read" in caplog.text and "a journal grows to" in caplog.text
    journal.record(response("c1"))  # kept in memory; the file is left as it was
    assert journal.seen("c1") and path.stat().st_size == 200 * 1024 * 1024


def test_invalid_ids_and_too_many_running_commands_in_the_file_are_not_believed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal"
    journal = opened(path, remember_finals=5)
    journal.record(response("bad\x1b[31mid"))
    for i in range(20):
        journal.record(response(f"r{i}"))  # DELIVERED: running
    journal.close()
    again = opened(path, remember_finals=5)
    assert again.skipped == 1 and not again.seen("bad\x1b[31mid") and "\x1b" not in caplog.text
    assert [e.command_id for e in again.interrupted()] == [f"r{i}" for i in range(15, 20)]
    assert all(again.seen(f"r{i}") for i in range(20))  # none of them runs again
