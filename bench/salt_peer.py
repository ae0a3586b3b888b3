"""SaltStack `test.ping` round trip, the peer baseline of bench/command_latency.py.

Runs with the Python of Salt's own venv (scripts/salt-peer.sh prints it), never the project's:

    "$(scripts/salt-peer.sh)" bench/salt_peer.py --minions 1 --samples 50

Starts one salt-master and ``--minions`` salt-minion processes on 127.0.0.1 (free ports, every
directory under a temp dir, auto_accept, default transport ZeroMQ, default minion settings), waits
until every minion answers, then times ``LocalClient(mopts=...).cmd(minion_id, "test.ping")`` one
call at a time, round-robin over the minions: job publish on the master's bus, the minion runs the
function, the return comes back through the master's event bus to the client. Prints one JSON
object on stdout: {"salt": version, "minions": n, "latencies_ms": [...], "lost": n, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import salt.client
import salt.config
import salt.exceptions
import salt.version
import yaml

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(path: Path, data: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes and all their descendants, MiB."""
    seen, todo, total = set(), list(pids), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return total / 1024


def paths(d: Path, role: str) -> dict[str, object]:
    """Everything a master or minion writes, under its own directory."""
    return {
        "root_dir": str(d),
        "pki_dir": str(d / "pki"),
        "cachedir": str(d / "cache"),
        "sock_dir": str(d / "sock"),
        "pidfile": str(d / f"salt-{role}.pid"),
        "log_file": str(d / f"{role}.log"),
        "file_roots": {"base": [str(d / "srv")]},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minions", type=int, default=1)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=10.0, help="LocalClient cmd timeout per call, s")
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--settle", type=float, default=10.0, help="idle seconds after all minions answer")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="salt-peer-"))
    publish_port, ret_port = free_port(), free_port()
    common = {"user": "root", "log_level": "warning", "log_level_logfile": "warning"}
    mdir = tmp / "master"
    master_conf = write(
        mdir / "master",
        {
            **common,
            "id": "bench-master",
            "interface": "127.0.0.1",
            "publish_port": publish_port,
            "ret_port": ret_port,
            **paths(mdir, "master"),
            "key_logfile": str(mdir / "key.log"),
            "auto_accept": True,
            "pillar_roots": {"base": [str(mdir / "pillar")]},
        },
    )
    ids = [f"minion-{i:04d}" for i in range(args.minions)]
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path) -> None:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    result: dict[str, object] = {"salt": salt.version.__version__, "minions": args.minions, "tmp": str(tmp)}
    try:
        start([str(BIN / "salt-master"), "-c", str(mdir)], mdir / "stdout.log")
        for mid in ids:
            d = tmp / mid
            write(
                d / "minion",
                {
                    **common,
                    "id": mid,
                    "master": "127.0.0.1",
                    "master_port": ret_port,
                    "publish_port": publish_port,
                    **paths(d, "minion"),
                },
            )
            start([str(BIN / "salt-minion"), "-c", str(d)], d / "stdout.log")
        t0 = time.monotonic()
        # The client reads the master's rotating key (cachedir/.root_key) when it is created.
        ready = [mdir / "cache" / ".root_key", mdir / "sock" / "workers.ipc", mdir / "sock" / "publish_pull.ipc"]
        while not all(f.exists() for f in ready):
            if time.monotonic() - t0 > 120 or procs[0].poll() is not None:
                raise SystemExit(f"salt-master did not come up; logs in {tmp}")
            time.sleep(0.2)
        opts = salt.config.master_config(str(master_conf))
        client = salt.client.LocalClient(mopts=opts)
        answered: set[str] = set()
        while answered != set(ids):
            if time.monotonic() - t0 > args.start_timeout:
                raise SystemExit(f"only {len(answered)}/{len(ids)} minions answered after {args.start_timeout}s")
            dead = [pr.args for pr in procs if pr.poll() is not None]
            if dead:
                raise SystemExit(f"salt process exited during start: {dead[0]}; logs in {tmp}")
            missing = sorted(set(ids) - answered)
            try:
                ret = client.cmd(missing, "test.ping", tgt_type="list", timeout=5)
            except salt.exceptions.SaltClientError:  # master not listening yet
                time.sleep(0.5)
                continue
            answered |= {m for m, v in ret.items() if v is True}
            print(f"salt-peer: {len(answered)}/{len(ids)} minions answer", file=sys.stderr, flush=True)
        result["start_s"] = time.monotonic() - t0
        time.sleep(args.settle)  # let the start-up load (key exchange, minion forks) die down
        result["rss_mib_master"] = rss_mib([procs[0].pid])
        result["rss_mib_minions"] = rss_mib([pr.pid for pr in procs[1:]])
        latencies: list[float] = []
        lost = 0
        for i in range(-args.warmup, args.samples):
            mid = ids[i % len(ids)]
            sent = time.perf_counter()
            ret = client.cmd(mid, "test.ping", timeout=args.timeout)
            took = (time.perf_counter() - sent) * 1000
            if ret.get(mid) is not True:
                lost += 1
            elif i >= 0:
                latencies.append(took)
        result["latencies_ms"] = latencies
        result["lost"] = lost
        # Everyone at once, like the monitord broadcast column.
        sent = time.perf_counter()
        ret = client.cmd("*", "test.ping", timeout=max(args.timeout, 60))
        result["broadcast_s"] = time.perf_counter() - sent
        result["broadcast_answered"] = sum(v is True for v in ret.values())
    finally:
        for pr in procs:
            if pr.poll() is None:
                os.killpg(pr.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for pr in procs:
            try:
                pr.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(pr.pid, signal.SIGKILL)
                pr.wait(5)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
