#!/usr/bin/env bash
# scripts/kafka-cluster.sh - a 3-node Apache Kafka 4.x cluster (KRaft, each node
# a combined broker+controller) on 127.0.0.1 for tests and benchmarks.  Each node
# is one scripts/kafka.sh broker with its own port and data dir, so the jars,
# the start-up checks and the topic helper are the same as for the single node
# (which stays the default for the demo and the fast tests).
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
KAFKA_SH=$SCRIPT_DIR/kafka.sh
NODES=(1 2 3)

usage() {
    cat <<EOF
Usage: $PROG [-h] COMMAND [NODE]

Runs a 3-node Kafka cluster (KRaft, broker+controller per node) on 127.0.0.1,
topics with replication factor 3 and min.insync.replicas=2, unclean leader
election off.  NODE is 1, 2 or 3.

Commands:
  start            Start every node not running (in parallel: a node needs a
                   quorum of controllers to start), then create the topics.
  start NODE       Start that node (the quorum must have another node up).
  stop             Stop every node (SIGTERM, then SIGKILL, as kafka.sh stop).
  stop NODE        Stop that node (SIGTERM, controlled shutdown).
  kill NODE        SIGKILL that node (a crash: no controlled shutdown).
  status           One line per node; exit 0 if all run, 3 if not all.
  bootstrap        Print the bootstrap servers (host:port,host:port,host:port).
  logs NODE [N]    The last N lines of the node's broker log.
  ports            Print "NODE PORT CONTROLLER_PORT" per node.

Environment (besides kafka.sh's KAFKA_VERSION, KAFKA_CACHE, KAFKA_HOME, ...):
  KAFKA_CLUSTER_PORTS       Broker ports of nodes 1-3 (default "9192 9193 9194").
  KAFKA_CLUSTER_CONTROLLER_PORTS  Controller ports (default "9195 9196 9197").
  KAFKA_CLUSTER_DIR         Data dirs node-1..node-3 and the cluster id
                            (default \$KAFKA_CACHE/cluster-<port of node 1>).
  KAFKA_CLUSTER_TOPICS      Topics as KAFKA_TOPICS (default
                            "$DEFAULT_TOPICS").
  KAFKA_CLUSTER_HEAP_OPTS   Heap per node (default "-Xms128m -Xmx512m").
  KAFKA_CLUSTER_EXTRA_PROPERTIES  Extra server.properties lines for every node.

Exit status: 0 ok, 1 error, 2 usage error, 3 not (all) running (status).
EOF
}

DEFAULT_TOPICS="monitoring-data:6 command-responses:6 commands:6 agent-status:6:compact"

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
die_usage() {
    printf '%s: %s (see %s -h)\n' "$PROG" "$*" "$PROG" >&2
    exit 2
}
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/kafka-$KAFKA_VERSION}
read -r -a PORTS <<<"${KAFKA_CLUSTER_PORTS:-9192 9193 9194}"
read -r -a CPORTS <<<"${KAFKA_CLUSTER_CONTROLLER_PORTS:-9195 9196 9197}"
((${#PORTS[@]} == 3 && ${#CPORTS[@]} == 3)) ||
    die "KAFKA_CLUSTER_PORTS and KAFKA_CLUSTER_CONTROLLER_PORTS must name 3 ports each"
CLUSTER_DIR=${KAFKA_CLUSTER_DIR:-$KAFKA_CACHE/cluster-${PORTS[0]}}
case $CLUSTER_DIR in /*) ;; *) CLUSTER_DIR=$PWD/$CLUSTER_DIR ;; esac
TOPICS=${KAFKA_CLUSTER_TOPICS-$DEFAULT_TOPICS}
HEAP=${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx512m}
unset KAFKA_BOOTSTRAP # the cluster is ours, never an external one

voters() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:${CPORTS[n - 1]}"); done
    (
        IFS=,
        printf '%s\n' "${out[*]}"
    )
}

bootstrap() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("127.0.0.1:${PORTS[n - 1]}"); done
    (
        IFS=,
        printf '%s\n' "${out[*]}"
    )
}

# One cluster id for all nodes, made once.
cluster_id() {
    local file=$CLUSTER_DIR/cluster.id cid=-
    mkdir -p "$CLUSTER_DIR"
    if [[ ! -s $file ]]; then
        while [[ $cid == -* ]]; do
            cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        done
        printf '%s\n' "$cid" >"$file"
    fi
    cat "$file"
}

check_node() {
    [[ ${1:-} =~ ^[123]$ ]] || die_usage "NODE must be 1, 2 or 3, got '${1:-}'"
}

# Run kafka.sh COMMAND as node $1.
node_sh() {
    local n=$1
    shift
    KAFKA_PORT=${PORTS[n - 1]} KAFKA_CONTROLLER_PORT=${CPORTS[n - 1]} \
        KAFKA_DATA_DIR=$CLUSTER_DIR/node-$n KAFKA_NODE_ID=$n KAFKA_QUORUM_VOTERS=$(voters) \
        KAFKA_CLUSTER_ID=$(cluster_id) KAFKA_REPLICATION_FACTOR=3 KAFKA_MIN_ISR=2 \
        KAFKA_HEAP_OPTS=$HEAP KAFKA_EXTRA_PROPERTIES=${KAFKA_CLUSTER_EXTRA_PROPERTIES:-} \
        KAFKA_TOPICS="" "$KAFKA_SH" "$@"
}

node_pid() {
    local f=$CLUSTER_DIR/node-$1/kafka.pid pid
    [[ -f $f ]] || return 0
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$CLUSTER_DIR/node-$1/server.properties" &&
        printf '%s\n' "$pid"
    return 0
}

cmd_start_all() {
    local n pids=() rc=0
    "$KAFKA_SH" fetch >/dev/null
    cluster_id >/dev/null
    for n in "${NODES[@]}"; do
        node_sh "$n" start &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || rc=1; done
    ((rc == 0)) || die "not every node started (logs: $PROG logs NODE)"
    KAFKA_BOOTSTRAP=$(bootstrap) KAFKA_TOPICS=$TOPICS KAFKA_REPLICATION_FACTOR=3 \
        "$KAFKA_SH" create-topics || die "creating the topics failed"
    info "cluster running at $(bootstrap)"
}

cmd_kill() {
    local n=$1 pid
    pid=$(node_pid "$n")
    [[ -n $pid ]] || { info "node $n is not running"; return 0; }
    info "killing node $n (pid $pid) with SIGKILL"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$CLUSTER_DIR/node-$n/kafka.pid"
}

cmd_status() {
    local n pid rc=0
    for n in "${NODES[@]}"; do
        pid=$(node_pid "$n")
        if [[ -n $pid ]]; then
            echo "node $n: running, pid $pid, 127.0.0.1:${PORTS[n - 1]} (controller ${CPORTS[n - 1]})"
        else
            echo "node $n: not running, 127.0.0.1:${PORTS[n - 1]}"
            rc=3
        fi
    done
    return "$rc"
}

main() {
    (($#)) || { usage >&2; exit 2; }
    local cmd=$1 node=${2:-}
    case $cmd in
        -h | --help | help) usage ;;
        start)
            if [[ -n $node ]]; then check_node "$node"; node_sh "$node" start; else cmd_start_all; fi
            ;;
        stop)
            if [[ -n $node ]]; then
                check_node "$node"
                node_sh "$node" stop
            else
                for node in "${NODES[@]}"; do node_sh "$node" stop & done
                wait
            fi
            ;;
        kill) check_node "$node"; cmd_kill "$node" ;;
        status) cmd_status ;;
        bootstrap) bootstrap ;;
        logs) check_node "$node"; shift 2; node_sh "$node" logs "$@" ;;
        ports) for node in "${NODES[@]}"; do echo "$node ${PORTS[node - 1]} ${CPORTS[node - 1]}"; done ;;
        *) die_usage "unknown command '$cmd'" ;;
    esac
}

main "$@"
