"""Two Vagrant VMs on an isolated private network, for the tests that need separate machines.

Everything runs inside a network namespace of our own (scripts/vm-host.sh): libvirt's daemons,
``vagrant``, ``ssh`` to the guests and a Kafka broker (scripts/kafka.sh, listening on the private
network's host address 192.168.56.1). The host reaches that address through the namespace's veth,
so the test reads Kafka with its own consumer; the guests reach nothing else. The box is
scripts/vm-box.sh's (debootstrap, cached), the packages and the development CA are synced to
/dist and installed offline by tests/system/scenario.sh (Vagrantfile: roles ``server``, ``agent``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from monitoring_testsupport.paths import KAFKA_SH, REPO
from monitoring_testsupport.procs import COLLECTED

VM_HOST = REPO / "scripts/vm-host.sh"
VM_BOX = REPO / "scripts/vm-box.sh"
DEV_CA = REPO / "scripts/dev-ca.sh"
KAFKA = "192.168.56.1:9092"  # the broker in the namespace, as the guests and the host see it
SERVER = "192.168.56.11:50051"
AGENT_ID = "vagrant-agent"
SCENARIO = "/vagrant/tests/system/scenario.sh"


def run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=REPO)


def must(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> str:
    result = run(argv, timeout, env)
    assert result.returncode == 0, f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class VmLab:
    """The two VMs ``server`` and ``agent`` once ``vagrant up`` has provisioned them."""

    work: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, step: str, started: float) -> float:
        self.timings[step] = round(time.monotonic() - started, 1)
        print(f"vm step {step}: {self.timings[step]} s")
        return self.timings[step]

    def inside(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run([str(VM_HOST), "exec", *argv], timeout, self.env)

    def vagrant(self, *args: str, timeout: float = 1200) -> str:
        result = self.inside("vagrant", *args, timeout=timeout)
        assert result.returncode == 0, f"vagrant {' '.join(args)} exited {result.returncode}:\n{result.stdout[-4000:]}"
        return result.stdout

    def ssh(self, vm: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        options = ["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        return self.inside("ssh", "-F", str(self.work / "ssh_config"), *options, vm, command, timeout=timeout)

    def sudo(self, vm: str, command: str, timeout: float = 120) -> str:
        result = self.ssh(vm, f"sudo {command}", timeout)
        assert result.returncode == 0, f"{vm}: {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def scenario(self, vm: str, step: str, timeout: float = 300) -> str:
        """One step of tests/system/scenario.sh on ``vm`` (the environment of the Vagrantfile's roles)."""
        env = " ".join(
            f"{k}={v}"
            for k, v in {
                "PKG_DIR": "/dist",
                "CA_DIR": "/dist/ca",
                "VERSION_OLD": self.env["VERSION_OLD"],
                "VERSION_NEW": self.env["VERSION_NEW"],
                "KAFKA_BOOTSTRAP": KAFKA,
                "LISTEN_PORT": "50051",
                "SERVER": SERVER,
                "AGENT_ID": AGENT_ID,
            }.items()
        )
        result = self.ssh(vm, f"sudo env {env} {SCENARIO} {step}", timeout)
        output = result.stdout + result.stderr
        print(f"--- scenario step {step} on {vm}:\n{output}")
        assert result.returncode == 0 and "FAIL" not in output, output
        return output

    def journal(self, vm: str, unit: str, *args: str) -> str:
        return self.sudo(vm, f"journalctl -u {unit} --no-pager -o cat {shlex.join(args)}")

    def collected(self) -> int:
        """The highest sequence the agent logged as collected, over all its boots."""
        return max((int(n) for n in COLLECTED.findall(self.journal("agent", "monitor-agentd"))), default=0)

    def boot_id(self, vm: str) -> str | None:
        result = self.ssh(vm, "cat /proc/sys/kernel/random/boot_id", timeout=30)
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None

    def reboot(self, vm: str, timeout: float = 600) -> float:
        """``systemctl reboot`` in the guest; returns the seconds until it answers ssh with a new boot id."""
        old = self.boot_id(vm)
        assert old, f"{vm} does not answer ssh"
        started = time.monotonic()
        # In the background, so ssh returns before sshd goes down.
        self.sudo(vm, "systemd-run --quiet --on-active=1 systemctl reboot", timeout=30)
        while time.monotonic() - started < timeout:
            time.sleep(2)
            now = self.boot_id(vm)
            if now and now != old:
                seconds = self.timed(f"reboot {vm}", started)
                boot = self.ssh(vm, "systemd-analyze time", timeout=30).stdout.strip().splitlines()
                print(f"{vm}: {boot[0] if boot else 'systemd-analyze time: not yet'}")
                return seconds
        raise AssertionError(f"{vm} not back within {timeout}s after systemctl reboot")

    def interface(self, vm: str) -> str:
        """The domain's interface on the private network (the one ``domif-setlink`` cuts)."""
        for line in must(["virsh", "-q", "domiflist", f"monitord_{vm}"]).splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "monitord-test":
                return fields[0]
        raise AssertionError(f"monitord_{vm} has no interface on monitord-test")

    def set_link(self, vm: str, up: bool) -> None:
        must(["virsh", "-q", "domif-setlink", f"monitord_{vm}", self.interface(vm), "up" if up else "down"])


def _kafka(command: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """scripts/kafka.sh COMMAND for the broker in the namespace (listening on the private network)."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    env |= {
        "KAFKA_DATA_DIR": str(data_dir),
        "KAFKA_LISTEN_HOST": "0.0.0.0",
        "KAFKA_ADVERTISED_HOST": KAFKA.split(":")[0],
        "KAFKA_PORT": KAFKA.split(":")[1],
        "KAFKA_CONTROLLER_PORT": "9093",
    }
    return run([str(VM_HOST), "exec", str(KAFKA_SH), command], 300, env)


@contextmanager
def vm_lab(work: Path, packages: Path, version_old: str, version_new: str) -> Iterator[VmLab]:
    """Host, box, Kafka and ``vagrant up server agent``; everything is torn down afterwards."""
    dist = work / "dist"
    dist.mkdir()
    for deb in packages.glob(f"*_{version_old}_amd64.deb"):
        (dist / deb.name).write_bytes(deb.read_bytes())
    must([str(DEV_CA), str(dist / "ca"), "monitord-server", AGENT_ID])
    env = dict(os.environ)
    env |= {
        "VAGRANT_DOTFILE_PATH": str(work / ".vagrant"),
        # No version or box-update checks: nothing is fetched (the namespace has no route out anyway).
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "MONITORD_VM_BOX": "monitord/debian12",
        "MONITORD_VM_DIST": str(dist),
        "KAFKA_BOOTSTRAP": KAFKA,
        "VERSION_OLD": version_old,
        "VERSION_NEW": version_new,
    }
    lab = VmLab(work, env)
    started = time.monotonic()
    must([str(VM_HOST), "deps"], 900)
    must([str(VM_HOST), "start"], 120)
    env["MONITORD_LIBVIRT_DRIVER"] = must([str(VM_HOST), "driver"]).strip()
    lab.timed("libvirt in the namespace", started)
    try:
        started = time.monotonic()
        must([str(VM_BOX), "--add"], 1800)
        lab.timed("box (built once per recipe)", started)
        started = time.monotonic()
        kafka = _kafka("start", work / "kafka")
        assert kafka.returncode == 0, f"Kafka in the namespace did not start:\n{kafka.stdout}\n{kafka.stderr}"
        lab.timed("Kafka in the namespace", started)
        started = time.monotonic()
        up = lab.vagrant("up", "server", "agent")
        lab.timed("vagrant up server agent (provisioned)", started)
        print("\n".join(line for line in up.splitlines() if "ok:" in line))
        (work / "ssh_config").write_text(lab.vagrant("ssh-config", "server", "agent"))
        yield lab
    finally:
        lab.inside("vagrant", "destroy", "-f", timeout=300)
        if (work / "kafka").exists():
            _kafka("stop", work / "kafka")
        run([str(VM_HOST), "stop"], 120)
        print("vm step times (s):", lab.timings)
