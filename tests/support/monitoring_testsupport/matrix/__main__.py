"""``python -m monitoring_testsupport.matrix``: the fault matrix outside pytest.

``--soak MINUTES --seed S`` runs random cells (faults drawn from the same set) one after another
until the time is up; the seed reproduces the sequence of faults and the workload's choices.
Without ``--soak`` every fault runs once, in order. Kafka: $KAFKA_BOOTSTRAP's cluster or a broker
started here; cells that stop Kafka get a broker of their own; broker-fault cells get a 3-node
cluster, started with the first of them.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from monitoring_testsupport import procs
from monitoring_testsupport.kafka import KafkaBroker, bench_broker
from monitoring_testsupport.kafka_cluster import KafkaCluster
from monitoring_testsupport.matrix.cell import CellSettings, run_cell
from monitoring_testsupport.matrix.faults import FAULTS, Fault
from monitoring_testsupport.matrix.invariants import CellResult
from monitoring_testsupport.matrix.table import render, write_json
from monitoring_testsupport.paths import free_port


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring_testsupport.matrix", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="random cells until MINUTES have passed")
    parser.add_argument("--seed", type=int, default=1, help="reproduces the faults and the workload (default 1)")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="only these faults (repeatable)")
    parser.add_argument(
        "--delivery-timeout-ms",
        type=int,
        metavar="MS",
        help="monitord's kafka.delivery_timeout_ms in every cell (to measure what a local timeout costs)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs and state here (default: a temporary directory)")
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> list[Fault] | None:
    """Every fault once, in order; None for a soak (random faults until the time is up)."""
    return None if args.soak else [FAULTS[name] for name in args.fault or FAULTS]


def _one(
    fault: Fault, shared: KafkaBroker, cluster: KafkaCluster, root: Path, settings: CellSettings, label: str
) -> CellResult:
    root.mkdir(parents=True)
    if fault.cluster:
        cluster.start()  # the first time, or a node a failed cell left down
        cluster.wait_in_sync(("monitoring-data", "command-responses", "commands", "agent-status"))
        return run_cell(fault, cluster.bootstrap, root, settings, cluster=cluster, label=label)
    if not fault.private_kafka:
        return run_cell(fault, shared.bootstrap, root, settings, label=label)
    broker = KafkaBroker(free_port(), root / "private-kafka")
    broker.start()
    try:
        return run_cell(fault, broker.bootstrap, root, settings, broker=broker, label=label)
    finally:
        broker.stop()
        procs.STARTED.clear()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp:
        work = args.workdir or Path(tmp)
        shared, started_here = bench_broker(work)
        cluster = KafkaCluster(work / "kafka-cluster")
        results: list[CellResult] = []
        deadline = time.monotonic() + (args.soak or 0) * 60
        try:
            plan = _plan(args)
            names = sorted(args.fault or FAULTS)
            n = 0
            while (plan is not None and n < len(plan)) or (plan is None and time.monotonic() < deadline):
                fault = plan[n] if plan is not None else FAULTS[rng.choice(names)]
                n += 1
                label = f"#{n} {fault.name}" if plan is None else fault.name
                print(f"cell {label} ...", file=sys.stderr, flush=True)
                settings = CellSettings(seed=rng.randrange(2**32), delivery_timeout_ms=args.delivery_timeout_ms)
                results.append(_one(fault, shared, cluster, work / f"cell-{n:03d}", settings, label))
                print(render(results[-1:], title=label), file=sys.stderr, flush=True)
                procs.STARTED.clear()
        finally:
            if started_here:
                shared.stop()
            cluster.stop()
        title = f"fault matrix (seed {args.seed}" + (f", soak {args.soak:g} min)" if args.soak else ")")
        print(render(results, title=title))
        if args.json:
            write_json(results, args.json)
        return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
