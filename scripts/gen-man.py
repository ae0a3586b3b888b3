#!/usr/bin/env python3
"""Write the man pages into packaging/man/ from the parsers and config schemas (one source).

    .venv/bin/python scripts/gen-man.py            # regenerate
    .venv/bin/python scripts/gen-man.py --check    # exit 1 if a committed page is out of date

Pages: monitord(8), monitor-agentd(8), monitorctl(1), monitor-analyzer(1), monitord.yaml(5),
agent.yaml(5). The packages install them under /usr/share/man; the units point at them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitor_agentd.cli import parser as agent_parser
from monitor_agentd.config import AgentConfig
from monitord.analysis.cli import parser as analyzer_parser
from monitord.cli import parser as monitord_parser
from monitord.config import MonitordConfig
from monitord.ctl.cli import parser as ctl_parser
from monitoring_common.manpage import command_page, config_page

OUT = Path(__file__).resolve().parents[1] / "packaging" / "man"

MONITORD_SEE_ALSO = (
    "monitord.yaml(5), monitorctl(1), monitor-analyzer(1), monitor-agentd(8), systemctl(1), journalctl(1)"
)
AGENT_SEE_ALSO = "agent.yaml(5), monitord(8), monitorctl(1), systemctl(1), journalctl(1)"


def pages() -> dict[str, str]:
    return {
        "monitord.8": command_page(
            monitord_parser(),
            8,
            "central monitoring server: agent streams in, Apache Kafka out",
            [
                (
                    "Operation",
                    """Agents register (RegisterAgent) and keep one bidirectional gRPC stream
(StreamCommunication). Metrics and command responses are written to Kafka
(topics monitoring-data and command-responses, key = agent id) and an agent gets a positive
ack only after Kafka confirmed the record (acks=all). Commands produced to the commands
topic are pushed to the agent's open stream at once, or held until it connects.

Started by systemd (monitord.service, Type=notify): READY=1 once the producer exists and the
gRPC port listens; STATUS= shows agents connected, records/s, forwarded, failed and the Kafka
state; WATCHDOG=1 while the Kafka poll thread is alive.""",
                ),
                (
                    "Signals",
                    """* SIGTERM, SIGINT: refuse new streams, report NOT_SERVING to health checks, tell every
agent to reconnect elsewhere, finish acks within server.shutdown_grace_seconds, flush Kafka, exit 0.
A second signal exits at once.
* SIGHUP: re-read the configuration; live settings apply, restart-only ones are logged; an invalid
file is rejected and the running configuration stays (systemctl reload monitord).""",
                ),
                (
                    "Endpoints",
                    """* gRPC on server.listen: monitoring.v1.MonitoringService, grpc.health.v1.Health
(SERVING while Kafka takes records) and server reflection (grpcurl list/describe work).
* Prometheus metrics on metrics.listen (default 127.0.0.1:9750, path /metrics).""",
                ),
                ("Files", "  /etc/monitord/monitord.yaml   configuration, see monitord.yaml(5)"),
                (
                    "Exit status",
                    "0 stopped cleanly; 69 could not start (address in use, TLS files unusable); "
                    "78 invalid configuration (one line FILE:LINE: key: problem on stderr).",
                ),
                ("See also", MONITORD_SEE_ALSO + "; docs/operations.md in the source tree."),
            ],
        ),
        "monitor-agentd.8": command_page(
            agent_parser(),
            8,
            "monitoring agent: host metrics over one persistent gRPC stream",
            [
                (
                    "Operation",
                    """Collects CPU, memory, disk and network metrics every collection.interval_seconds, writes
each record to a CRC-framed spool under agent.state_dir before sending it, and keeps one stream to
the first reachable server of agent.servers. Records leave the spool only when monitord acknowledged
them (Kafka has them); after a reconnect the rest are sent again in order. Reconnects use exponential
backoff with full jitter. Commands arriving on the stream run as the agent's own user: built-ins
(ping, info, collect, set-interval) and the argv templates of commands.definitions.""",
                ),
                (
                    "Signals",
                    """* SIGTERM, SIGINT: send a STOPPING heartbeat, close the stream gracefully; unacknowledged
records stay in the spool and are sent after the next start.
* SIGHUP: re-read the configuration (intervals, servers, backoff, command allow-list, log level).""",
                ),
                (
                    "Files",
                    """  /etc/monitor-agentd/agent.yaml   configuration, see agent.yaml(5)
  /var/lib/monitor-agentd/         state directory: spool segments, sequence, command ids; private to the agent's user (see EXIT STATUS)""",
                ),
                (
                    "Exit status",
                    "0 ok; 69 could not start (metrics address in use); 73 state directory unusable or in "
                    "use by another agent; 75 stopped with metrics unacknowledged (--iterations); "
                    "78 invalid configuration, or an unsafe state directory (owned by another user, "
                    "writable by group or others, or a symbolic link where a state file should be).",
                ),
                ("See also", AGENT_SEE_ALSO),
            ],
        ),
        "monitorctl.1": command_page(
            ctl_parser(),
            1,
            "operator command line: commands, agents and metrics through Kafka",
            [
                (
                    "Examples",
                    """  monitorctl send --wait web-1 ping
  monitorctl send --timeout 30 web-1 disk-report /var
  monitorctl agents --all --json
  monitorctl tail --agent web-1 --count 5""",
                ),
                ("See also", "monitord(8), monitord.yaml(5), monitor-agentd(8)"),
            ],
        ),
        "monitor-analyzer.1": command_page(
            analyzer_parser(),
            1,
            "analysis consumer: prints records and fires rule commands",
            [("See also", "monitord(8), monitorctl(1), monitord.yaml(5)")],
        ),
        "monitord.yaml.5": config_page(
            MonitordConfig,
            "monitord.yaml",
            "configuration of monitord, monitorctl and monitor-analyzer",
            """/etc/monitord/monitord.yaml is YAML. Every key is optional; unknown keys, wrong types and
out-of-range values are refused with one line naming the file, line and key (exit status 78).
monitord --check-config validates a file without starting. Keys are listed as section.key with
their type and default.""",
            [("See also", MONITORD_SEE_ALSO)],
        ),
        "agent.yaml.5": config_page(
            AgentConfig,
            "agent.yaml",
            "configuration of monitor-agentd",
            """/etc/monitor-agentd/agent.yaml is YAML. Every key is optional; unknown keys, wrong types and
out-of-range values are refused with one line naming the file, line and key (exit status 78).
monitor-agentd --check-config validates a file without starting. Keys are listed as section.key with
their type and default.""",
            [("See also", AGENT_SEE_ALSO)],
        ),
    }


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"gen-man: out of date: {', '.join(stale)} (run scripts/gen-man.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
