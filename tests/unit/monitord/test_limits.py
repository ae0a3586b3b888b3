"""Per-agent limits: the fast paths (size gates) must refuse exactly what a field-by-field check refuses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.config import LimitsSection
from monitord.limits import KeyedRate, RateLimiter, connection_options, metrics_problem, registration_problem
from monitoring.v1 import monitoring_pb2 as pb

LIMITS = LimitsSection(max_string_bytes=64, max_label_bytes=16, max_labels=3, max_disks=4, max_interfaces=4)


def naive_problem(m: pb.MetricsData, limits: LimitsSection) -> bool:
    """Every bounded field, one by one, no shortcuts."""
    strings = [m.agent_id, m.hostname, m.source]
    strings += [s for d in m.disks for s in (d.mountpoint, d.device, d.fstype)]
    strings += [d.device for d in m.disk_io] + [i.name for i in m.network.interfaces]
    return (
        len(m.disks) > limits.max_disks
        or len(m.disk_io) > limits.max_disks
        or len(m.network.interfaces) > limits.max_interfaces
        or len(m.cpu.per_core_percent) > limits.max_cores
        or len(m.labels) > limits.max_labels
        or any(len(s.encode()) > limits.max_string_bytes for s in strings)
        or any(
            len(k.encode()) > limits.max_label_bytes or len(v.encode()) > limits.max_label_bytes
            for k, v in m.labels.items()
        )
    )


# Lengths around the caps, with multi-byte characters (a str's length is not its UTF-8 size).
text = st.text(alphabet=st.sampled_from("aé€😀"), max_size=70)


@st.composite
def records(draw: st.DrawFn) -> pb.MetricsData:
    m = pb.MetricsData(agent_id=draw(text), hostname=draw(text), source=draw(text), sequence=1)
    for _ in range(draw(st.integers(0, 5))):
        m.disks.add(mountpoint=draw(text), device=draw(text), fstype=draw(text), total_bytes=2**40)
    for _ in range(draw(st.integers(0, 5))):
        m.disk_io.add(device=draw(text))
    for _ in range(draw(st.integers(0, 5))):
        m.network.interfaces.add(name=draw(text))
    for _ in range(draw(st.integers(0, 4))):
        m.labels[draw(st.text(max_size=20))] = draw(st.text(max_size=20))
    return m


@settings(max_examples=400, deadline=None)
@given(records())
def test_fast_limit_checks_agree_with_the_field_by_field_check(m: pb.MetricsData) -> None:
    expected = naive_problem(m, LIMITS)
    assert (metrics_problem(m, LIMITS) is not None) == expected
    assert (metrics_problem(m, LIMITS, len(m.SerializeToString())) is not None) == expected


def test_rate_limiter_allows_a_two_second_burst_then_paces() -> None:
    now = [0.0]
    limiter = RateLimiter(10, clock=lambda: now[0])
    assert all(limiter.take() == 0 for _ in range(20))  # two seconds' worth
    assert abs(limiter.take() - 0.1) < 1e-9  # the next token is 0.1 s away
    now[0] += 0.1
    assert abs(limiter.take() - 0.1) < 1e-9  # still owed: paced at 10/s, not bursting again
    now[0] += 10
    assert limiter.take() == 0
    assert limiter.throttled == 2


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"hostname": "h" * 65}, "hostname longer than 64 bytes"),
        ({"agent_version": "ü" * 33}, "agent_version longer than 64 bytes"),
        ({"instance_id": "i" * 65}, "instance_id longer than 64 bytes"),
        ({"capabilities": [f"c{n}" for n in range(65)]}, "65 capabilities (limit 64)"),
        ({"capabilities": ["c" * 17]}, "a capability longer than 16 bytes"),
        ({"interval_seconds": math.nan}, "interval_seconds must be within 0..86400"),
        ({"interval_seconds": -1.0}, "interval_seconds must be within 0..86400"),
        ({"interval_seconds": math.inf}, "interval_seconds must be within 0..86400"),
    ],
)
def test_registration_fields_beyond_their_bounds_are_named(fields: dict[str, object], problem: str) -> None:
    assert registration_problem(pb.AgentRegistration(agent_id="a", **fields), LIMITS) == problem  # type: ignore[arg-type]


def test_a_registration_within_bounds_has_no_problem() -> None:
    r = pb.AgentRegistration(agent_id="a", hostname="h" * 64, capabilities=["c" * 16] * 64, interval_seconds=86_400)
    assert registration_problem(r, LIMITS) is None


def test_keyed_rate_allows_a_burst_then_the_rate_per_key() -> None:
    now = [0.0]
    rate = KeyedRate(per_minute=60, burst=3, max_keys=10, clock=lambda: now[0])
    assert [rate.allow("a") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("b")  # another key has its own bucket
    now[0] = 1.0  # one event per second comes back
    assert [rate.allow("a"), rate.allow("a")] == [True, False]


def test_keyed_rate_keeps_at_most_max_keys_forgetting_the_least_recent() -> None:
    now = [0.0]
    rate = KeyedRate(per_minute=1, burst=1, max_keys=2, clock=lambda: now[0])
    assert rate.allow("a") and rate.allow("b")
    assert not rate.allow("a")  # "a" is now the most recent, "b" the least
    assert rate.allow("c")  # a third key: "b" is forgotten ...
    assert rate.allow("b")  # ... and starts with a full bucket again


def test_connection_options_carry_the_configured_bounds() -> None:
    limits = LimitsSection(max_connections=7, handshake_timeout_seconds=1.5, idle_connection_seconds=30)
    assert dict(connection_options(limits)) == {
        "grpc.max_allowed_incoming_connections": 7,
        "grpc.server_handshake_timeout_ms": 1500,
        "grpc.max_connection_idle_ms": 30_000,
    }
