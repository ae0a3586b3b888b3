"""Real daemon processes for tests and benchmarks: the operator's entry points, not mocks.

Every daemon is started with ``$NOTIFY_SOCKET`` set, as systemd would for a ``Type=notify`` unit,
so :meth:`Proc.wait_ready` waits for the daemon's own ``READY=1`` and tests can read its
``STATUS=``; monitord also serves /metrics on a port of its own (:attr:`Monitord.metrics_url`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring_testsupport.paths import BIN, free_port, unique, write_yaml
from monitoring_testsupport.readiness import NotifyListener, scrape

#: What a mock agent logs once a collected record is in its spool (``[n] Streamed`` / ``[n] Spooled``).
COLLECTED = re.compile(r"\[(\d+)\] (?:Streamed|Spooled)")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (now) or VmHWM (peak) of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


#: Every process a test started; the autouse fixture in conftest.py stops them after each test.
STARTED: list[Proc] = []


@dataclass
class Proc:
    """A child process whose combined output goes to a log file, and whose sd_notify messages
    arrive at :attr:`notify`."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    #: Stopped by the per-test reaper (False for processes a module-scoped fixture owns).
    reap: bool = True
    notify: NotifyListener | None = None

    def start(self) -> Proc:
        self.notify = NotifyListener()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": self.notify.name, **self.env}
        env.pop("JOURNAL_STREAM", None)
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        if self.reap:
            STARTED.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _failure(self, what: str, timeout: float) -> AssertionError:
        if self.popen is not None and self.popen.poll() is not None:
            return AssertionError(f"{self.name} exited ({self.popen.returncode}) before {what}:\n{self.text()[-3000:]}")
        return AssertionError(f"{self.name}: no {what} within {timeout}s:\n{self.text()[-3000:]}")

    def wait_ready(self, timeout: float = 30.0, count: int = 1) -> None:
        """Wait for the ``count``-th ``READY=1`` (start-up, then one after each reload)."""
        assert self.notify is not None, "start() first"
        if not self.notify.wait(lambda m: sum(x.get("READY") == "1" for x in m) >= count, timeout, self.running):
            raise self._failure("READY=1" if count == 1 else f"READY=1 #{count}", timeout)

    def wait_status(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait until a ``STATUS=`` line matches ``pattern`` (a regex); returns it."""
        assert self.notify is not None, "start() first"
        rx = re.compile(pattern)
        found: list[str] = []

        def seen(messages: list[dict[str, str]]) -> bool:
            found[:] = [m["STATUS"] for m in messages if "STATUS" in m and rx.search(m["STATUS"])]
            return bool(found)

        if not self.notify.wait(seen, timeout, self.running):
            raise self._failure(f"STATUS matching {pattern!r} (last: {self.notify.last('STATUS')!r})", timeout)
        return found[-1]

    def wait_for(self, pattern: str, timeout: float = 30.0, count: int = 1) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) occurs ``count`` times in the output (for assertions on
        what the daemon logs; readiness is :meth:`wait_ready`)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            matches = list(rx.finditer(self.text()))
            if len(matches) >= count:
                return matches[count - 1]
            if not self.running() or time.monotonic() > deadline:
                raise self._failure(repr(pattern), timeout)
            time.sleep(0.05)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.text()[-3000:]}") from None

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self.notify is not None:
            self.notify.close()
        return self.popen.returncode


@dataclass
class Monitord(Proc):
    """A monitord process with its Prometheus endpoint."""

    address: str = ""
    metrics_url: str = ""

    def metrics(self) -> dict[str, float]:
        return scrape(self.metrics_url)

    def wait_metric(self, name: str, predicate: Callable[[float], bool], timeout: float = 30.0) -> float:
        """Wait until the sample ``name`` (e.g. ``monitord_connected_agents``) satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline and self.running():
            try:
                value = self.metrics().get(name)
            except OSError:
                value = None
            if value is not None and predicate(value):
                return value
            time.sleep(0.05)
        raise self._failure(f"{name} as wanted (last value {value})", timeout)

    def wait_agents(self, count: int, timeout: float = 60.0) -> None:
        """Wait until at least ``count`` agent streams are open."""
        self.wait_metric("monitord_connected_agents", lambda v: v >= count, timeout)

    def wait_commands_ready(self, timeout: float = 60.0) -> None:
        """Wait until the commands consumer holds its partitions (commands produced earlier would be
        skipped: the consumer starts at the end of the topic)."""
        self.wait_metric("monitord_commands_partitions_assigned", lambda v: v > 0, timeout)


def start_monitord(
    tmp: Path,
    bootstrap: str,
    *,
    name: str = "monitord",
    extra: dict[str, Any] | None = None,
    reap: bool = True,
    port: int | None = None,
    wait_commands: bool = False,
) -> tuple[Monitord, str]:
    """Start monitord on a free port; returns (process, "127.0.0.1:PORT") once it is READY."""
    port = port or free_port()
    metrics_port = free_port()
    cfg: dict[str, Any] = {
        "server": {
            "listen": f"127.0.0.1:{port}",
            "server_id": unique(name),
            "shutdown_grace_seconds": 5,
            "tls": {"mode": "plaintext"},
            "auth": {"require_identity": False},
        },
        "kafka": {"bootstrap_servers": bootstrap, "linger_ms": 1},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
    }
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    path = write_yaml(tmp / f"{name}.yaml", cfg)
    address = f"127.0.0.1:{port}"
    listen = cfg["metrics"].get("listen") or ""
    proc = Monitord(
        name,
        [str(BIN / "monitord"), "--config", str(path)],
        tmp / f"{name}.log",
        reap=reap,
        address=address,
        metrics_url=f"http://{listen}/metrics" if listen else "",
    )
    proc.start()
    proc.wait_ready()
    if wait_commands:
        proc.wait_commands_ready()
    return proc, address


def start_agent(
    tmp: Path,
    server: str,
    agent_id: str,
    *,
    iterations: int = 10,
    interval: float = 0.2,
    extra_args: list[str] | None = None,
    config: dict[str, Any] | None = None,
    reap: bool = True,
    wrap: list[str] | None = None,
) -> Proc:
    """Start a mock-mode agent process (not waiting: an agent is READY before it connects)."""
    cfg = config or {}
    cfg.setdefault("agent", {}).setdefault("state_dir", str(tmp / f"state-{agent_id}"))
    cfg.setdefault("connection", {}).setdefault("tls", {"mode": "plaintext"})
    cfg_path = write_yaml(tmp / f"agent-{agent_id}.yaml", cfg)
    argv = [
        *(wrap or []),
        str(BIN / "monitor-agentd"),
        "--config",
        str(cfg_path),
        "--server",
        server,
        "--agent-id",
        agent_id,
        "--mode",
        "mock",
        "--iterations",
        str(iterations),
        "--interval",
        str(interval),
        *(extra_args or []),
    ]
    return Proc(f"agent {agent_id}", argv, tmp / f"agent-{agent_id}.log", reap=reap).start()


def fleet_argv(
    address: str, prefix: str, count: int, iterations: int, interval: float, state_root: Path, **opts: Any
) -> list[str]:
    """The command line of :mod:`monitoring_testsupport.fleet` (``--opt value`` from ``opts``)."""
    argv = [
        sys.executable,
        "-m",
        "monitoring_testsupport.fleet",
        "--server",
        address,
        "--prefix",
        prefix,
        "--count",
        str(count),
        "--iterations",
        str(iterations),
        "--interval",
        str(interval),
        "--state-root",
        str(state_root),
    ]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def start_fleet(
    tmp: Path, address: str, prefix: str, count: int, iterations: int, interval: float, **opts: Any
) -> Proc:
    """``count`` real Agent objects in one process (:mod:`monitoring_testsupport.fleet`). It
    reports ``STATUS=fleet: N/N connected`` once every agent has a stream."""
    argv = fleet_argv(address, prefix, count, iterations, interval, tmp / f"state-{prefix}", **opts)
    return Proc(f"fleet {prefix}", argv, tmp / f"fleet-{prefix}.log").start()
