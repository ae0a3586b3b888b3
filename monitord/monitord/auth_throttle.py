"""How many failed token checks a peer host, and an agent id, may cause: bounded guessing.

Each key (a peer host, or an agent id that has a token) has a token bucket of failures: ``burst``
at once, refilled at ``per_second``. While a peer's bucket is empty its token is not even
compared: the call gets the same answer as a wrong token, so a guesser cannot tell a checked
guess from an unchecked one and is held to ``burst + per_second * t`` checked guesses. An agent
id's bucket bounds guesses at that id from many addresses; it holds back only peers that have
failed recently themselves, so a guesser cannot lock a well-behaved agent out of its own id.

The tables are bounded (least recently failed key evicted first). A peer host is the address
without its port; IPv6 addresses count per /64, since one host usually owns the whole prefix.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from monitord.config import AuthSection


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class FailureBudget:
    """Token buckets of failures keyed by a string, at most ``capacity`` of them."""

    def __init__(self, burst: int, per_second: float, capacity: int, clock: Callable[[], float]) -> None:
        self._burst, self._rate, self._capacity, self._clock = float(burst), per_second, capacity, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self._burst
        now = self._clock()
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if bucket.tokens >= self._burst:
            del self._buckets[key]  # a full bucket is the same as none: keep the table small
        return bucket.tokens

    def exhausted(self, key: str) -> bool:
        """No failure left for ``key`` now."""
        return self._level(key) < 1

    def clean(self, key: str) -> bool:
        """``key`` has had no failure recently (its bucket is full)."""
        return self._level(key) >= self._burst

    def charge(self, key: str) -> None:
        """One failure for ``key``."""
        level = self._level(key)
        self._buckets[key] = _Bucket(max(0.0, level - 1), self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)


class AuthThrottle:
    """The per-peer and per-agent failure budgets of :class:`monitord.auth.Authenticator`."""

    def __init__(self, cfg: AuthSection, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.reconfigure(cfg)

    def reconfigure(self, cfg: AuthSection) -> None:
        """New bounds (a reload); what was counted so far is forgotten."""
        self.peers = FailureBudget(cfg.failure_burst, cfg.failures_per_second, cfg.tracked_peers, self._clock)
        self.agents = FailureBudget(cfg.failure_burst, cfg.failures_per_second, cfg.tracked_peers, self._clock)

    def refused(self, peer_host: str, agent_id: str | None) -> bool:
        """Whether to answer without checking the credential: ``peer_host`` is over its budget, or
        ``agent_id`` is and this peer has failed recently too."""
        if self.peers.exhausted(peer_host):
            return True
        return agent_id is not None and self.agents.exhausted(agent_id) and not self.peers.clean(peer_host)

    def failed(self, peer_host: str, agent_id: str | None) -> None:
        """A checked credential was wrong (``agent_id``: the id it claimed, if it has a token)."""
        self.peers.charge(peer_host)
        if agent_id is not None:
            self.agents.charge(agent_id)


def peer_host(peer: str) -> str:
    """The budget key of a gRPC peer string: ``ipv4:10.0.0.7:5123`` -> ``10.0.0.7``,
    ``ipv6:[2001:db8::1]:5123`` -> ``2001:db8::/64``, ``unix:/run/x.sock`` -> ``unix``."""
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0] or rest
    if scheme == "ipv6":
        host = rest.rpartition(":")[0].strip("[]") or rest
        try:
            address = ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            return host
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return scheme  # unix, unix-abstract: the local host, one key
