"""Command responses for people: exit status per final status, rendering."""

from __future__ import annotations

import io

import pytest

from monitord import command_records
from monitord.ctl import responses
from monitord.ctl.output import Output
from monitoring.v1 import monitoring_pb2 as pb


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (pb.SUCCEEDED, 0),
        (pb.FAILED, 1),
        (pb.TIMED_OUT, 124),
        (pb.REJECTED, 126),
        (pb.EXPIRED, 75),
        (pb.INVALID, 65),
    ],
)
def test_final_statuses_map_to_exit_codes(status: pb.CommandStatus.ValueType, code: int) -> None:
    assert command_records.is_final(status)
    assert responses.exit_status(status) == code


def test_delivered_is_not_final() -> None:
    assert not command_records.is_final(pb.DELIVERED)
    assert not command_records.is_final(pb.COMMAND_STATUS_UNSPECIFIED)
    assert set(pb.CommandStatus.values()) - command_records.FINAL_STATUSES == {
        pb.DELIVERED,
        pb.COMMAND_STATUS_UNSPECIFIED,
    }


def rendered(response: pb.CommandResponseMessage) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    output = Output(out, err)
    for chunk in responses.render(response):
        output.write(chunk.text, stderr=chunk.stream == "stderr")
    return out.getvalue(), err.getvalue()


def test_render_delivered() -> None:
    assert rendered(pb.CommandResponseMessage(agent_id="web-1", status=pb.DELIVERED)) == ("DELIVERED to web-1\n", "")


def test_render_ran_command_with_output_and_truncation() -> None:
    response = pb.CommandResponseMessage(
        agent_id="web-1",
        status=pb.SUCCEEDED,
        exit_code=0,
        duration_seconds=0.0123,
        stdout="line 1\nline 2",
        stderr="warning\n",
        stderr_truncated=True,
    )
    out, err = rendered(response)
    assert out == "SUCCEEDED exit 0 in 0.01s\nline 1\nline 2\n"
    assert err == "warning\n[stderr truncated by the agent]\n"
    failed = pb.CommandResponseMessage(status=pb.FAILED, exit_code=3, duration_seconds=1.5, stdout_truncated=True)
    assert rendered(failed) == ("FAILED exit 3 in 1.50s\n[stdout truncated by the agent]\n", "")
    timed_out = pb.CommandResponseMessage(status=pb.TIMED_OUT, exit_code=-9, duration_seconds=30, message="killed")
    assert rendered(timed_out)[0] == "TIMED_OUT exit -9 in 30.00s (killed)\n"


def test_render_refusals() -> None:
    rejected = pb.CommandResponseMessage(status=pb.REJECTED, message="unknown command 'x'", reported_by="agent")
    assert responses.summary(rejected) == "REJECTED: unknown command 'x' (reported by agent)"
    assert responses.summary(pb.CommandResponseMessage(status=pb.EXPIRED)) == "EXPIRED: no reason given"
    assert command_records.status_name(99) == "STATUS_99"  # type: ignore[arg-type]
