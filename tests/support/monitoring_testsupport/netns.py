"""A network namespace of the test's own, joined to the host by a veth pair, so one agent's
network can be cut (``ip link set <host end> down``) without touching anything else (the fault
suite and the fault matrix)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from monitoring_testsupport.paths import unique


@dataclass(frozen=True)
class Netns:
    """The namespace, the host end of the veth pair, and the host's address on it."""

    name: str
    host_if: str
    host_ip: str

    @property
    def wrap(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def link(self, up: bool) -> None:
        """Cut (``up=False``) or heal the link: only the host end of this namespace's own pair."""
        subprocess.run(["ip", "link", "set", self.host_if, "up" if up else "down"], check=True, timeout=10)


@contextmanager
def netns() -> Iterator[Netns]:
    """Create the namespace and veth pair; both are deleted on exit, whatever happened."""
    tag = unique("mx")[-8:]
    ns, host_if, peer_if = f"mx-{tag}", f"xh{tag}", f"xa{tag}"
    subnet = 10 + int(tag, 16) % 200
    host_ip, agent_ip = f"10.{subnet}.78.1", f"10.{subnet}.78.2"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
        ["ip", "link", "set", peer_if, "netns", ns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", ns, "addr", "add", f"{agent_ip}/30", "dev", peer_if],
        ["ip", "-n", ns, "link", "set", peer_if, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, text=True, timeout=10)
        yield Netns(ns, host_if, host_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
