"""Separate machines: monitord and monitor-agentd on two Vagrant VMs, mutual TLS across their network.

What only separate hosts show: the agent streams across a real network into Kafka; the agent's VM
rebooted while monitord is away → the enabled agent comes back at boot and replays its spool; the
link between the VMs cut for 30 s → noticed, then nothing lost; the server's VM rebooted → the
agent reconnects and commands flow again. After every step the whole history is read back from
Kafka: every sequence the agent's journal says it collected is there, first occurrences in order.

The VMs boot under QEMU emulation where KVM does not accelerate (scripts/vm-host.sh driver), in a
network namespace of their own with Kafka next to them (monitoring_testsupport.vms). Needs root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring_testsupport import NEW_VERSION, OLD_VERSION, command_responses, produce_command, statuses
from monitoring_testsupport.matrix.history import read_history
from monitoring_testsupport.matrix.invariants import metrics, metrics_complete, order
from monitoring_testsupport.vms import AGENT_ID, KAFKA, SERVER, VmLab, vm_lab

# The first test carries the setup: packages, box (built once per recipe), two emulated VMs booted.
pytestmark = [pytest.mark.system, pytest.mark.kafka, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, packages: Path) -> Iterator[VmLab]:
    with vm_lab(tmp_path_factory.mktemp("vms"), packages, f"{OLD_VERSION}-1", f"{NEW_VERSION}-1") as booted:
        yield booted


def assert_nothing_lost(lab: VmLab, step: str, timeout: float = 180) -> int:
    """Every sequence the agent logged as collected is in Kafka, first occurrences in order."""
    collected = lab.collected()
    assert collected > 0, "the agent's journal shows no collected metrics"
    deadline = time.monotonic() + timeout
    while True:
        recs = read_history(KAFKA, [AGENT_ID], {}, topics=["monitoring-data"])["monitoring-data"]
        if metrics_complete(recs, {AGENT_ID: collected}) or time.monotonic() > deadline:
            break
        time.sleep(2)
    lost, ordered = metrics(recs, {AGENT_ID: collected}), order(recs, [AGENT_ID])
    print(f"{step}: collected #1..#{collected}, {len(recs)} records in Kafka, {lost.text}, {ordered.text}")
    assert lost.ok, f"{step}: {lost.text} of {collected}: {lost.values}"
    assert ordered.ok, f"{step}: {ordered.text}: {ordered.values['examples']}"
    return collected


def test_agent_streams_across_the_vm_network(lab: VmLab) -> None:
    started = time.monotonic()
    deadline = started + 120
    while lab.collected() < 5:
        assert time.monotonic() < deadline, "the agent collected fewer than 5 metrics in 120 s"
        time.sleep(2)
    assert_nothing_lost(lab, "streaming")
    lab.timed("first metrics in Kafka", started)
    assert f"from agent '{AGENT_ID}'" in lab.journal("server", "monitord", "-g", "Forwarded metrics")
    lab.scenario("server", "journal")  # monitord's journald lines and priorities, on the server VM


def test_agent_vm_reboot_replays_its_spool(lab: VmLab) -> None:
    lab.sudo("server", "systemctl stop monitord")
    before = lab.collected()
    deadline = time.monotonic() + 60
    while lab.collected() < before + 5:  # metrics collected while monitord is away: spooled
        assert time.monotonic() < deadline, "the agent stopped collecting while monitord was away"
        time.sleep(2)
    lab.reboot("agent")
    lab.sudo("server", "systemctl start monitord")
    lab.scenario("agent", "booted")  # enabled → back at boot; shut down with a spool, replayed it
    assert_nothing_lost(lab, "agent VM rebooted")


def test_link_cut_for_30s_is_noticed_and_nothing_is_lost(lab: VmLab) -> None:
    cut_at = float(lab.sudo("agent", "date +%s.%N").strip())
    lab.set_link("agent", up=False)
    time.sleep(30)
    lab.set_link("agent", up=True)
    started = time.monotonic()
    lines: list[str] = []
    failures: list[int] = []
    while time.monotonic() - started < 120:
        result = lab.ssh("agent", f"sudo journalctl -u monitor-agentd --no-pager -o short-unix --since @{int(cut_at)}")
        lines = result.stdout.splitlines()
        failures = [i for i, line in enumerate(lines) if f"Connection to {SERVER} failed" in line]
        if failures and any("✓ Agent registered" in line for line in lines[failures[0] :]):
            break
        time.sleep(3)
    assert failures, "the agent never noticed the 30 s cut:\n" + "\n".join(lines[-40:])
    assert any("✓ Agent registered" in line for line in lines[failures[0] :]), "no reconnect after the cut"
    noticed = float(lines[failures[0]].split()[0]) - cut_at
    print(f"the agent noticed the cut after {noticed:.1f} s: {lines[failures[0]]}")
    assert noticed < 30, "the agent noticed the cut only after the link was back"
    lab.timed("reconnected after the link came back", started)
    assert_nothing_lost(lab, "link cut for 30 s")


def test_server_vm_reboot_agent_reconnects_and_commands_flow(lab: VmLab) -> None:
    lab.reboot("server")
    started = time.monotonic()
    assert lab.sudo("server", "systemctl is-enabled monitord").strip() == "enabled"
    response: list[str] = []
    while time.monotonic() - started < 180 and "SUCCEEDED" not in response:
        command_id = produce_command(KAFKA, AGENT_ID, "ping")
        response = statuses(command_responses(KAFKA, AGENT_ID, command_id, timeout=20))
    assert "SUCCEEDED" in response, f"no ping answered within 180 s of the server's reboot: {response}"
    lab.timed("ping answered after the server's reboot", started)
    assert "✓ Agent registered: vagrant-agent" in lab.journal("server", "monitord", "-b", "0")
    assert_nothing_lost(lab, "server VM rebooted")
