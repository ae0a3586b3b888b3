"""The spool: bounded, ordered, replayed after a rewind; on disk through its store."""

from __future__ import annotations

from pathlib import Path

from monitor_agentd.spool import Spool
from monitor_agentd.spool_store import SpoolStore
from monitoring.v1 import monitoring_pb2 as pb


def _record(seq: int) -> pb.MetricsData:
    return pb.MetricsData(agent_id="a", sequence=seq)


def _drain(spool: Spool) -> list[int]:
    out = []
    while (r := spool.next_to_send()) is not None:
        out.append(r.sequence)
    return out


def test_spool_sends_in_order_and_replays_unacked_after_rewind() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 6):
        spool.add(_record(s))
    assert _drain(spool) == [1, 2, 3, 4, 5]
    assert spool.ack(1, 2) == 2
    spool.rewind()
    assert _drain(spool) == [3, 4, 5]
    assert spool.acked == 2 and len(spool) == 3


def test_spool_hold_stops_until_rewind() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 4):
        spool.add(_record(s))
    assert spool.next_to_send().sequence == 1  # type: ignore[union-attr]
    spool.hold()
    assert spool.next_to_send() is None
    spool.rewind()
    assert _drain(spool) == [1, 2, 3]


def test_spool_bound_drops_oldest_and_counts() -> None:
    spool = Spool(max_records=3)
    for s in range(1, 6):
        spool.add(_record(s))
    assert spool.dropped == 2
    assert _drain(spool) == [3, 4, 5]


def test_spool_ack_ranges_and_last_acked() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 11):
        spool.add(_record(s))
    assert spool.ack(3, 4) == 2
    assert spool.ack(1, 1_000_000) == 8  # a range wider than the spool
    assert spool.ack(5, 5) == 0  # already gone
    assert len(spool) == 0 and spool.acked == 10 and spool.last_acked == 1_000_000


def test_spool_discard_counts_as_dropped() -> None:
    spool = Spool(max_records=100)
    for s in range(1, 4):
        spool.add(_record(s))
    spool.discard(2, 5)
    assert spool.dropped == 2 and _drain(spool) == [1]


def test_spool_on_disk_survives_a_restart_and_reads_back_old_records(tmp_path: Path) -> None:
    spool = Spool(100, SpoolStore(tmp_path, segment_records=10, fsync=False), memory_records=2)
    assert spool.load() == 0
    for s in range(1, 6):
        spool.add(_record(s))
    spool.ack(1, 2)
    spool.close()

    again = Spool(100, SpoolStore(tmp_path, segment_records=10, fsync=False), memory_records=2)
    assert again.load() == 5  # the sequence continues after the last one spooled
    assert again.replayed_from_disk == 3 and again.last_acked == 2 and again.repaired_bytes == 0
    assert _drain(again) == [3, 4, 5]
    again.rewind()
    again.close()
    memory_only = Spool(1, memory_records=1)
    assert memory_only.load() == 0 and memory_only.repaired_bytes == 0


def test_spool_reads_evicted_records_back_from_disk(tmp_path: Path) -> None:
    spool = Spool(100, SpoolStore(tmp_path, fsync=False), memory_records=1)
    spool.load()
    for s in range(1, 4):
        spool.add(_record(s))
    assert _drain(spool) == [1, 2, 3]  # 1 and 2 no longer parsed in memory
    spool.close()


def test_more_records_on_disk_than_the_bound_are_not_all_loaded(tmp_path: Path) -> None:
    spool = Spool(100, SpoolStore(tmp_path, fsync=False))
    spool.load()
    for s in range(1, 11):
        spool.add(_record(s))
    spool.close()
    again = Spool(3, SpoolStore(tmp_path, fsync=False))
    assert again.load() == 10
    assert len(again) == 3 and again.dropped == 7 and _drain(again) == [8, 9, 10]
    again.close()
