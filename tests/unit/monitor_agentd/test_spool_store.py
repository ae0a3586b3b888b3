"""The on-disk spool: framed appends, reopen, torn-tail repair, release of acknowledged segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor_agentd.errors import UnsafeStateDir
from monitor_agentd.spool_store import SpoolStore
from monitoring.v1 import monitoring_pb2 as pb


def payload(seq: int) -> bytes:
    return pb.MetricsData(agent_id="a", sequence=seq).SerializeToString()


def fill(directory: Path, last: int, *, segment_records: int = 3) -> SpoolStore:
    store = SpoolStore(directory, segment_records=segment_records, fsync=True)
    assert list(store.open()) == []
    for seq in range(1, last + 1):
        store.append(seq, payload(seq))
    return store


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("seg-*.log"))


def test_append_then_reopen_yields_every_record(tmp_path: Path) -> None:
    store = fill(tmp_path, 7)
    location = store.append(8, payload(8))
    assert store.read(location) == payload(8)
    store.close()
    assert segments(tmp_path) == [f"seg-{first:020d}.log" for first in (1, 4, 7)]

    again = SpoolStore(tmp_path, segment_records=3)
    found = list(again.open())
    assert [seq for seq, _, _ in found] == list(range(1, 9))
    assert all(again.read(loc) == data for _, data, loc in found)
    assert again.last_sequence == 8 and again.repaired_bytes == 0
    again.close()


def test_torn_tail_is_cut_and_counted(tmp_path: Path) -> None:
    fill(tmp_path, 2, segment_records=10).close()
    segment = tmp_path / segments(tmp_path)[0]
    intact = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(b"\x00\x00\x00\x40garbage")  # a header promising 64 bytes, then too few
    store = SpoolStore(tmp_path, segment_records=10)
    assert [seq for seq, _, _ in store.open()] == [1, 2]
    assert store.repaired_bytes == 11 and segment.stat().st_size == intact
    store.append(3, payload(3))  # appends continue after the repaired end
    store.close()
    assert [seq for seq, _, _ in SpoolStore(tmp_path).open()] == [1, 2, 3]


def test_corrupt_record_cuts_the_rest_of_the_segment(tmp_path: Path) -> None:
    fill(tmp_path, 3, segment_records=10).close()
    segment = tmp_path / segments(tmp_path)[0]
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the last record's CRC no longer matches
    segment.write_bytes(bytes(data))
    store = SpoolStore(tmp_path)
    assert [seq for seq, _, _ in store.open()] == [1, 2]
    assert store.repaired_bytes > 0


def test_release_persists_the_ack_and_deletes_whole_segments(tmp_path: Path) -> None:
    store = fill(tmp_path, 7)
    store.release_through(4)
    assert (tmp_path / "acked").read_text() == "4\n"
    assert segments(tmp_path) == [f"seg-{first:020d}.log" for first in (4, 7)]
    store.release_through(2)  # never backwards
    assert store.acked == 4
    store.release_through(7)
    assert segments(tmp_path) == [f"seg-{7:020d}.log"]  # the segment being written stays
    store.close()

    again = SpoolStore(tmp_path, segment_records=3)
    assert list(again.open()) == []  # everything acknowledged; the old segment goes
    assert again.last_sequence == 7 and segments(tmp_path) == []


def test_unreadable_acked_file_counts_as_nothing_acked(tmp_path: Path) -> None:
    fill(tmp_path, 2).close()
    (tmp_path / "acked").write_text("not a number\n")
    assert [seq for seq, _, _ in SpoolStore(tmp_path).open()] == [1, 2]


def precious(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    return victim


def test_a_link_named_like_a_segment_is_removed_never_read_or_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = precious(tmp_path)
    spool = tmp_path / "spool"
    fill(spool, 2, segment_records=10).close()
    (spool / f"seg-{3:020d}.log").symlink_to(victim)  # where the next segment would go, too
    store = SpoolStore(spool, segment_records=1)
    assert [seq for seq, _, _ in store.open()] == [1, 2]
    assert "Spool: removing" in caplog.text and "is a symbolic link" in caplog.text
    (spool / f"seg-{4:020d}.log").symlink_to(victim)  # planted while running
    store.append(3, payload(3))
    store.append(4, payload(4))  # the link is replaced by a fresh segment
    store.close()
    assert victim.read_text() == "precious\n"
    assert [seq for seq, _, _ in SpoolStore(spool).open()] == [1, 2, 3, 4]


def test_a_link_at_acked_tmp_is_replaced_and_one_at_acked_refused(tmp_path: Path) -> None:
    victim = precious(tmp_path)
    spool = tmp_path / "spool"
    store = fill(spool, 4)
    (spool / "acked.tmp").symlink_to(victim)
    store.release_through(2)
    store.close()
    assert victim.read_text() == "precious\n" and (spool / "acked").read_text() == "2\n"
    (spool / "acked").unlink()
    (spool / "acked").symlink_to(victim)
    with pytest.raises(UnsafeStateDir, match=r"spool/acked is a symbolic link: refusing to follow it"):
        list(SpoolStore(spool).open())
    assert victim.read_text() == "precious\n"


def test_a_huge_acked_file_or_frame_length_costs_no_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fill(tmp_path, 2, segment_records=10).close()
    (tmp_path / "acked").write_bytes(b"7" * 5_000_000)
    segment = tmp_path / segments(tmp_path)[0]
    with segment.open("ab") as f:
        f.write(b"\xff\xff\xff\xf0\x00\x00\x00\x00")  # a frame promising 4 GB
        f.truncate(50_000_000)  # sparse: a big file, never read whole
    store = SpoolStore(tmp_path)
    assert [seq for seq, _, _ in store.open()] == [1, 2]  # acked unreadable: nothing acknowledged
    assert "ignoring the unreadable acked sequence" in caplog.text and "7" * 100 not in caplog.text
    assert store.repaired_bytes > 49_000_000
