"""Commands as records: building, encoding, producing; what responses mean."""

from __future__ import annotations

from monitord import command_records
from monitoring.v1 import monitoring_pb2 as pb


def test_first_line() -> None:
    assert command_records.first_line(pb.CommandResponseMessage(stdout="\n  pong \nmore")) == "pong"
    assert command_records.first_line(pb.CommandResponseMessage(stderr="oops\n")) == "oops"
    assert command_records.first_line(pb.CommandResponseMessage()) == ""
