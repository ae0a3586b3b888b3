"""End to end on a booted systemd host: the .deb packages in a Debian 12 systemd-nspawn container.

The container (debootstrap, cached outside the repository by scripts/rootfs.sh) boots a real
systemd 252; the packages built by scripts/build-packages are installed offline with dpkg; the
steps of tests/system/scenario.sh (the same script the Vagrant VMs run) are executed inside it
with `nsenter`, and Kafka on the host is checked between them. Needs root.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitoring_testsupport import NEW_VERSION as NEW
from monitoring_testsupport import OLD_VERSION as OLD
from monitoring_testsupport import REPO, KafkaBroker, free_port, read_records, unique

pytestmark = [pytest.mark.system, pytest.mark.kafka]


def run(argv: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload, no-any-return]


def test_packages_build_and_lint_clean(packages: Path) -> None:
    debs = sorted(packages.glob(f"*_{OLD}-1_amd64.deb"))
    rpms = sorted(packages.glob(f"*-{OLD}-1.x86_64.rpm"))
    assert [p.name.split("_")[0] for p in debs] == ["monitor-agentd", "monitord"]
    assert len(rpms) == 2
    lintian = run(["lintian", "--fail-on", "error", *map(str, debs)])
    assert lintian.returncode == 0, lintian.stdout + lintian.stderr
    rpmlint = run(["rpmlint", "-c", str(REPO / "packaging/rpmlint.toml"), *map(str, rpms)])
    assert rpmlint.returncode == 0 and " 0 errors" in rpmlint.stdout, rpmlint.stdout
    agent_files = run(["dpkg-deb", "-c", str(debs[0])]).stdout
    assert "confluent_kafka" not in agent_files and "/monitord/" not in agent_files  # no server, no Kafka client
    print(lintian.stdout[-2000:], rpmlint.stdout.splitlines()[-1])


@dataclass
class Booted:
    root: Path
    pid: int
    env: dict[str, str]

    def step(self, name: str, timeout: float = 300) -> str:
        env_args = [f"{k}={v}" for k, v in self.env.items()]
        result = run(
            ["nsenter", "-t", str(self.pid), "-a", "env", *env_args, "/root/scenario.sh", name], timeout=timeout
        )
        output = result.stdout + result.stderr
        print(f"--- scenario step {name}:\n{output}")
        assert result.returncode == 0 and "FAIL" not in output, output
        return output


def _init_pid(nspawn: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = run(["pgrep", "-P", str(nspawn.pid)]).stdout.split()
        if children:
            return int(children[0])
        assert nspawn.poll() is None, "systemd-nspawn exited during boot"
        time.sleep(0.2)
    raise AssertionError("no init process in the container")


def _wait_for_manager(nspawn: subprocess.Popen[bytes], pid: int, timeout: float = 60.0) -> None:
    """Wait until the container's systemd listens on its private socket (systemctl's way in):
    before that, ``systemctl`` fails with "Failed to connect to bus"."""
    socket = Path(f"/proc/{pid}/root/run/systemd/private")
    deadline = time.monotonic() + timeout
    while not socket.exists():
        assert nspawn.poll() is None, "systemd-nspawn exited during boot"
        assert time.monotonic() < deadline, f"no {socket} within {timeout}s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, packages: Path, kafka: KafkaBroker) -> Iterator[Booted]:
    cached = run([str(REPO / "scripts/rootfs.sh")], timeout=1800)
    assert cached.returncode == 0, cached.stderr
    root = tmp_path_factory.mktemp("host") / "root"
    assert run(["cp", "-a", "--reflink=auto", cached.stdout.strip(), str(root)]).returncode == 0
    (root / "root/pkgs").mkdir()
    for deb in packages.glob("*.deb"):
        shutil.copy(deb, root / "root/pkgs")
    shutil.copy(REPO / "tests/system/scenario.sh", root / "root/scenario.sh")
    machine = unique("monitest")[:20]
    log = (tmp_path_factory.getbasetemp() / f"{machine}.console").open("wb")
    nspawn = subprocess.Popen(
        ["systemd-nspawn", "--register=no", "--keep-unit", "--boot", f"--machine={machine}", "-D", str(root)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        pid = _init_pid(nspawn)
        _wait_for_manager(nspawn, pid)
        boot = run(["nsenter", "-t", str(pid), "-a", "systemctl", "is-system-running", "--wait"], timeout=120)
        assert boot.stdout.strip() in ("running", "degraded"), boot.stdout + boot.stderr
        env = {
            "PKG_DIR": "/root/pkgs",
            "KAFKA_BOOTSTRAP": kafka.bootstrap,
            "LISTEN_PORT": str(free_port()),
            "AGENT_ID": unique("nspawn"),
            "VERSION_OLD": f"{OLD}-1",
            "VERSION_NEW": f"{NEW}-1",
        }
        yield Booted(root, pid, env)
    finally:
        if nspawn.poll() is None:
            subprocess.run(
                ["nsenter", "-t", str(_init_pid(nspawn)), "-a", "systemctl", "poweroff"], capture_output=True
            )
            try:
                nspawn.wait(60)
            except subprocess.TimeoutExpired:
                nspawn.kill()
                nspawn.wait(10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_install_offline(host: Booted) -> None:
    host.step("install")


def test_enable_now_streams_metrics_to_kafka(host: Booted, kafka: KafkaBroker) -> None:
    host.step("start")
    found = read_records(kafka.bootstrap, "monitoring-data", [host.env["AGENT_ID"]], expect=3, settle=0)
    assert len(found) >= 3 and found[0].message.source == "real"  # type: ignore[attr-defined]


def test_journal_priorities(host: Booted) -> None:
    host.step("journal")


def test_status_line(host: Booted) -> None:
    host.step("status")


def test_reload_changes_interval_without_dropping_the_stream(host: Booted) -> None:
    host.step("reload")


def test_watchdog_restarts_a_stopped_agent(host: Booted) -> None:
    host.step("watchdog")


def test_broken_config_fails_with_78_without_restart_loop(host: Booted) -> None:
    host.step("badconfig")


def test_upgrade_keeps_edited_config(host: Booted, kafka: KafkaBroker) -> None:
    host.step("upgrade")


def test_exposure_scores_and_verify(host: Booted) -> None:
    out = host.step("security")
    print("\n".join(line for line in out.splitlines() if line.startswith("exposure")))


def test_purge_removes_state(host: Booted) -> None:
    host.step("purge")
