#!/usr/bin/env bash
# scripts/kafka.sh - a real Apache Kafka 4.x broker (KRaft, combined
# broker+controller, no ZooKeeper) for development, demos and tests.
#
# Kafka is obtained only as Maven artifacts (scripts/kafka/pom.xml, fetched with
# `mvn dependency:copy-dependencies` into a cache outside the repository) and
# run with plain `java`.  Run `scripts/kafka.sh -h` for the interface.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
RES_DIR=$SCRIPT_DIR/kafka

usage() {
    cat <<EOF
Usage: $PROG [-h] COMMAND [ARGS]

Runs a single-node Apache Kafka broker (KRaft, broker+controller in one JVM)
on 127.0.0.1 for development and tests.  Kafka comes from Maven artifacts
(scripts/kafka/pom.xml), cached outside the repository.

Commands:
  fetch            Download the Kafka jars with Maven into the cache (only if
                   the cache is not complete yet).
  start            Fetch if needed, write server.properties, format the KRaft
                   storage (first time only), start the broker in the
                   background, wait until it answers Kafka requests, create
                   the topics.  Idempotent: a running broker is left alone
                   (its topics are still ensured).
  stop             Stop the broker of the data dir (SIGTERM, then SIGKILL after
                   \$KAFKA_STOP_TIMEOUT s).  Succeeds if nothing was running.
  status           Exit 0 if the broker is running, 3 if not.
  create-topics    Create the topics (idempotent, --if-not-exists).
  list-topics      List the topics of the cluster.
  logs [-f] [N]    Show the last N (default 100) lines of the broker log;
                   -f follows it.
  bootstrap        Print the bootstrap address (host:port).
  classpath        Print the Java classpath of the Kafka jars.
  tool CLASS ARGS  Run a Kafka tool class with that classpath, e.g.
                     $PROG tool org.apache.kafka.tools.ConsoleProducer \\
                       --bootstrap-server \$($PROG bootstrap) --topic commands

Environment:
  KAFKA_VERSION          Kafka version to fetch (default 4.1.1).
  KAFKA_CACHE            Cache dir (default \${XDG_CACHE_HOME:-\$HOME/.cache}/monitord/kafka-\$KAFKA_VERSION).
  KAFKA_PORT             Broker port on 127.0.0.1 (default 9092).
  KAFKA_LISTEN_HOST      Address the broker listens on (default 127.0.0.1; 0.0.0.0 to serve
                         other machines, e.g. the Vagrant agent VMs).
  KAFKA_ADVERTISED_HOST  Address clients are told to use (default: KAFKA_LISTEN_HOST, or
                         127.0.0.1 when that is 0.0.0.0).
  KAFKA_CONTROLLER_PORT  KRaft controller port (default KAFKA_PORT+1).
  KAFKA_DATA_DIR         server.properties, KRaft log dirs, pid file, broker log
                         (default \$KAFKA_CACHE/data-\$KAFKA_PORT).  Use another
                         port + data dir to run a second, private broker.
  KAFKA_HEAP_OPTS        Broker heap (default "-Xms256m -Xmx768m").
  KAFKA_OPTS             Extra JVM options for the broker.
  KAFKA_TOOL_OPTS        Extra JVM options for the tool JVMs (topics, tool).
  KAFKA_START_TIMEOUT    Seconds to wait for the broker to be ready (default 90).
  KAFKA_STOP_TIMEOUT     Seconds to wait after SIGTERM before SIGKILL (default 30).
  KAFKA_NODE_ID          KRaft node id (default 1).
  KAFKA_QUORUM_VOTERS    controller.quorum.voters (default: this node alone,
                         KAFKA_NODE_ID@127.0.0.1:KAFKA_CONTROLLER_PORT).
  KAFKA_CLUSTER_ID       Cluster id used when formatting (default: a random one,
                         kept in the data dir).  Nodes of one cluster share it.
  KAFKA_REPLICATION_FACTOR  Replication factor of the topics and of Kafka's
                         internal topics (default 1).
  KAFKA_MIN_ISR          min.insync.replicas (default 1).
  KAFKA_EXTRA_PROPERTIES Extra server.properties lines, appended as given.
                         (scripts/kafka-cluster.sh sets these for a 3-node cluster.)
  KAFKA_TOPICS           Space-separated NAME[:PARTITIONS[:compact]] list
                         (default "$DEFAULT_TOPICS");
                         set it to "" to create no topics.
  KAFKA_HOME             Use this unpacked Apache Kafka 4.x distribution
                         (\$KAFKA_HOME/libs) instead of Maven; nothing is fetched.
  KAFKA_BOOTSTRAP        Use this existing cluster: start/stop start/stop nothing,
                         start and create-topics create the topics there.
  KAFKA_COMMAND_CONFIG   Optional client properties file (security settings) for
                         the topic commands against KAFKA_BOOTSTRAP.

Exit status: 0 ok, 1 error, 2 usage error, 3 not running (status).
EOF
}

DEFAULT_TOPICS="monitoring-data:3 command-responses:3 commands:3 agent-status:3:compact"

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
die_usage() {
    printf '%s: %s (see %s -h)\n' "$PROG" "$*" "$PROG" >&2
    exit 2
}
info() { printf '%s: %s\n' "$PROG" "$*" >&2; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# ---------------------------------------------------------------- settings
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_CACHE=${KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/kafka-$KAFKA_VERSION}
KAFKA_PORT=${KAFKA_PORT:-9092}
valid_port() { is_uint "$1" && ((${#1} <= 5 && 10#$1 > 0 && 10#$1 < 65536)); }
valid_port "$KAFKA_PORT" || die "KAFKA_PORT must be a port number (1-65535), got '$KAFKA_PORT'"
KAFKA_PORT=$((10#$KAFKA_PORT))
KAFKA_LISTEN_HOST=${KAFKA_LISTEN_HOST:-127.0.0.1}
if [[ -z ${KAFKA_ADVERTISED_HOST:-} ]]; then
    if [[ $KAFKA_LISTEN_HOST == 0.0.0.0 ]]; then KAFKA_ADVERTISED_HOST=127.0.0.1; else KAFKA_ADVERTISED_HOST=$KAFKA_LISTEN_HOST; fi
fi
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
valid_port "$KAFKA_CONTROLLER_PORT" ||
    die "KAFKA_CONTROLLER_PORT must be a port number (1-65535), got '$KAFKA_CONTROLLER_PORT'"
KAFKA_CONTROLLER_PORT=$((10#$KAFKA_CONTROLLER_PORT))
((KAFKA_CONTROLLER_PORT != KAFKA_PORT)) || die "KAFKA_CONTROLLER_PORT must differ from KAFKA_PORT ($KAFKA_PORT)"
KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-$KAFKA_CACHE/data-$KAFKA_PORT}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
is_uint "$KAFKA_START_TIMEOUT" || die "KAFKA_START_TIMEOUT must be a number of seconds, got '$KAFKA_START_TIMEOUT'"
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
is_uint "$KAFKA_STOP_TIMEOUT" || die "KAFKA_STOP_TIMEOUT must be a number of seconds, got '$KAFKA_STOP_TIMEOUT'"
KAFKA_TOPICS=${KAFKA_TOPICS-$DEFAULT_TOPICS}
KAFKA_HOME=${KAFKA_HOME:-}
KAFKA_NODE_ID=${KAFKA_NODE_ID:-1}
is_uint "$KAFKA_NODE_ID" || die "KAFKA_NODE_ID must be a number, got '$KAFKA_NODE_ID'"
KAFKA_QUORUM_VOTERS=${KAFKA_QUORUM_VOTERS:-$KAFKA_NODE_ID@127.0.0.1:$KAFKA_CONTROLLER_PORT}
KAFKA_CLUSTER_ID=${KAFKA_CLUSTER_ID:-}
KAFKA_REPLICATION_FACTOR=${KAFKA_REPLICATION_FACTOR:-1}
is_uint "$KAFKA_REPLICATION_FACTOR" || die "KAFKA_REPLICATION_FACTOR must be a number, got '$KAFKA_REPLICATION_FACTOR'"
KAFKA_MIN_ISR=${KAFKA_MIN_ISR:-1}
is_uint "$KAFKA_MIN_ISR" || die "KAFKA_MIN_ISR must be a number, got '$KAFKA_MIN_ISR'"
KAFKA_EXTRA_PROPERTIES=${KAFKA_EXTRA_PROPERTIES:-}
KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-}
KAFKA_COMMAND_CONFIG=${KAFKA_COMMAND_CONFIG:-}

# Make relative paths absolute: the broker runs with the data dir as its cwd.
abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}
KAFKA_CACHE=$(abspath "$KAFKA_CACHE")
KAFKA_DATA_DIR=$(abspath "$KAFKA_DATA_DIR")
[[ -z $KAFKA_HOME ]] || KAFKA_HOME=$(abspath "$KAFKA_HOME")
[[ -z $KAFKA_COMMAND_CONFIG ]] || KAFKA_COMMAND_CONFIG=$(abspath "$KAFKA_COMMAND_CONFIG")

LIBS_DIR=$KAFKA_CACHE/libs
FETCH_MARKER=$KAFKA_CACHE/.fetch-complete
PROPS_FILE=$KAFKA_DATA_DIR/server.properties
LOG_DIRS=$KAFKA_DATA_DIR/kraft-logs
PID_FILE=$KAFKA_DATA_DIR/kafka.pid
LOG_FILE=$KAFKA_DATA_DIR/kafka.log
CLUSTER_ID_FILE=$KAFKA_DATA_DIR/cluster.id
BROKER_LOG4J=$RES_DIR/log4j2.xml
TOOLS_LOG4J=$RES_DIR/tools-log4j2.xml
HELPER_SRC=$RES_DIR/TopicsTool.java

# JVM options for short-lived tool JVMs: small heap, fast start-up.
TOOL_JVM_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$TOOLS_LOG4J")

# ---------------------------------------------------------------- helpers
have() { command -v "$1" >/dev/null 2>&1; }

require_java() {
    have java || die "java not found on PATH (Kafka $KAFKA_VERSION needs Java 17 or newer)"
    local line major
    line=$(java -version 2>&1 | head -n 1) || die "'java -version' failed: $line"
    major=$(sed -E -n 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/p' <<<"$line")
    [[ -n $major ]] || { info "warning: cannot parse java version from: $line"; return 0; }
    # Old scheme "1.8.0_x" -> 8.
    if [[ ${major%% *} == 1 ]]; then major=${major#* }; else major=${major%% *}; fi
    ((major >= 17)) || die "java at $(command -v java) is version $major; Kafka 4.x needs Java 17 or newer"
}

require_mvn() {
    have mvn || die "mvn (Apache Maven) not found on PATH; it is needed to fetch Kafka $KAFKA_VERSION (or set KAFKA_HOME to an unpacked Kafka distribution)"
}

# Run "$@" while holding an exclusive lock on file $1 (if flock exists).
with_lock() {
    local lockfile=$1
    shift
    if have flock; then
        (
            exec 9>"$lockfile"
            flock -w 600 9 || die "could not lock $lockfile within 600 s"
            "$@"
        )
    else
        "$@"
    fi
}

# The cache is complete when the marker exists and was written for this
# KAFKA_VERSION and the current pom.xml (editing the pom triggers a new fetch).
pom_sum() { cksum <"$RES_DIR/pom.xml" | tr -s ' ' '-'; }
libs_complete() {
    [[ -f $FETCH_MARKER && -d $LIBS_DIR ]] &&
        grep -qxF "kafka.version=$KAFKA_VERSION" "$FETCH_MARKER" &&
        grep -qxF "pom=$(pom_sum)" "$FETCH_MARKER"
}

do_fetch_locked() {
    libs_complete && return 0 # somebody else finished while we waited
    require_mvn
    local tmp mvnlog start end
    tmp=$(mktemp -d "$KAFKA_CACHE/fetch.XXXXXX")
    mvnlog=$KAFKA_CACHE/fetch.log
    # Run Maven on a copy of the pom inside the cache so that nothing (target/)
    # is ever written into the repository.
    cp "$RES_DIR/pom.xml" "$tmp/pom.xml"
    info "fetching Kafka $KAFKA_VERSION with Maven into $LIBS_DIR ..."
    start=$SECONDS
    if ! (cd "$tmp" && mvn -B -q -Dstyle.color=never -f "$tmp/pom.xml" \
        "-Dkafka.version=$KAFKA_VERSION" -DincludeScope=runtime \
        "-DoutputDirectory=$tmp/libs" dependency:copy-dependencies) >"$mvnlog" 2>&1; then
        tail -n 40 "$mvnlog" >&2 || true
        rm -rf "$tmp"
        die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $mvnlog). Is org.apache.kafka:kafka_2.13:$KAFKA_VERSION a released version?"
    fi
    compgen -G "$tmp/libs/kafka_2.13-*.jar" >/dev/null ||
        { rm -rf "$tmp"; die "Maven succeeded but no kafka_2.13 jar is in $tmp/libs (see $mvnlog)"; }
    rm -f "$FETCH_MARKER"
    rm -rf "$LIBS_DIR"
    mv "$tmp/libs" "$LIBS_DIR"
    rm -rf "$tmp"
    printf 'kafka.version=%s\npom=%s\nfetched=%s\n' "$KAFKA_VERSION" "$(pom_sum)" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$FETCH_MARKER"
    end=$SECONDS
    info "fetched Kafka $KAFKA_VERSION ($(find "$LIBS_DIR" -name '*.jar' | wc -l) jars) in $((end - start)) s"
}

# Make sure a Kafka classpath exists; sets CP.
ensure_libs() {
    if [[ -n $KAFKA_HOME ]]; then
        [[ -d $KAFKA_HOME/libs ]] || die "KAFKA_HOME=$KAFKA_HOME has no libs/ directory (expected an unpacked Apache Kafka distribution)"
        compgen -G "$KAFKA_HOME/libs/kafka_2.13-*.jar" >/dev/null ||
            die "KAFKA_HOME=$KAFKA_HOME: no libs/kafka_2.13-*.jar found (expected an unpacked Apache Kafka 4.x distribution)"
        CP="$KAFKA_HOME/libs/*"
        return 0
    fi
    if ! libs_complete; then
        mkdir -p "$KAFKA_CACHE"
        with_lock "$KAFKA_CACHE/.fetch.lock" do_fetch_locked
    fi
    CP="$LIBS_DIR/*"
}

# Compile the one-JVM topic helper into the cache (needs javac). Sets HELPER_CP,
# or leaves it empty if javac is unavailable (then TopicCommand is run per topic).
HELPER_CP=
ensure_helper() {
    HELPER_CP=
    have javac || return 0
    local key dir
    key=$({
        cat "$HELPER_SRC"
        printf '%s\n' "$CP"
        ls "${CP%\*}" 2>/dev/null
    } | cksum | tr -s ' ' '-')
    dir=$KAFKA_CACHE/helper/$key
    if [[ ! -f $dir/TopicsTool.class ]]; then
        mkdir -p "$KAFKA_CACHE/helper"
        local tmp
        tmp=$(mktemp -d "$KAFKA_CACHE/helper/build.XXXXXX")
        if javac -nowarn -d "$tmp" -cp "$CP" "$HELPER_SRC" >"$tmp/javac.log" 2>&1; then
            rm -f "$tmp/javac.log"
            mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp" # lost a race: fine
        else
            info "warning: could not compile $HELPER_SRC (falling back to one TopicCommand JVM per topic):"
            cat "$tmp/javac.log" >&2
            rm -rf "$tmp"
            return 0
        fi
    fi
    HELPER_CP=$dir
}

run_tool() { # CLASS ARGS...
    # shellcheck disable=SC2086 # KAFKA_TOOL_OPTS is a list of JVM options
    java "${TOOL_JVM_OPTS[@]}" ${KAFKA_TOOL_OPTS:-} -cp "$CP" "$@"
}

bootstrap_address() {
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        printf '%s\n' "$KAFKA_BOOTSTRAP"
    else
        printf '%s:%s\n' "$KAFKA_ADVERTISED_HOST" "$KAFKA_PORT"
    fi
}

# True if something accepts TCP connections on host:port.
# shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
tcp_open() {
    local host=$1 port=$2
    if have timeout; then
        timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
    else
        bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
    fi
}

# Command line of a pid ('' if gone or a zombie).
pid_cmdline() {
    local pid=$1
    if [[ -r /proc/$pid/cmdline ]]; then
        local state
        state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 0
        [[ $state == Z ]] && return 0
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true
    else
        ps -p "$pid" -o args= 2>/dev/null || true
    fi
}

# Is pid $1 the broker of this data dir?
is_our_broker() {
    local cmd
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    kill -0 "$1" 2>/dev/null || return 1
    cmd=$(pid_cmdline "$1")
    [[ $cmd == *kafka.Kafka*"$PROPS_FILE"* ]]
}

# Print the pid of the broker of this data dir, or nothing.
broker_pid() {
    local pid=
    if [[ -f $PID_FILE ]]; then
        pid=$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)
        if is_our_broker "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
    fi
    # Pid file lost or stale: look for a broker started with our server.properties.
    if [[ -d /proc ]]; then
        local f p
        while IFS= read -r f; do
            p=${f#/proc/}
            p=${p%/cmdline}
            if is_our_broker "$p"; then
                printf '%s\n' "$p"
                return 0
            fi
        done < <(grep -lsF -- "$PROPS_FILE" /proc/[0-9]*/cmdline 2>/dev/null || true)
    fi
    return 0
}

log_tail() {
    local n=${1:-60}
    if [[ -f $LOG_FILE ]]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$LOG_FILE" >&2
        tail -n "$n" "$LOG_FILE" >&2 || true
        printf -- '-----\n' >&2
    fi
}

write_server_properties() {
    mkdir -p "$LOG_DIRS"
    local tmp=$PROPS_FILE.tmp.$$
    cat >"$tmp" <<EOF
# Generated by scripts/kafka.sh - rewritten on every start; edits are lost.
# KRaft: broker and controller in one JVM, no ZooKeeper (a single node unless
# KAFKA_QUORUM_VOTERS names more).
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_QUORUM_VOTERS
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$KAFKA_LISTEN_HOST:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_ADVERTISED_HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$LOG_DIRS

# A single broker: replication factor 1 everywhere (KAFKA_REPLICATION_FACTOR).
default.replication.factor=$KAFKA_REPLICATION_FACTOR
min.insync.replicas=$KAFKA_MIN_ISR
offsets.topic.replication.factor=$KAFKA_REPLICATION_FACTOR
transaction.state.log.replication.factor=$KAFKA_REPLICATION_FACTOR
transaction.state.log.min.isr=$KAFKA_MIN_ISR
share.coordinator.state.topic.replication.factor=$KAFKA_REPLICATION_FACTOR
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
# A replica that was not in sync never becomes leader: no acknowledged record is lost.
unclean.leader.election.enable=false

# Dev/test behaviour.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
num.partitions=1
# After a crash/SIGKILL the restarted broker must wait for its old
# registration to expire: keep that short (defaults 2000/9000 ms).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000

# Small footprint for a 2-core dev box.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
share.coordinator.state.topic.num.partitions=10
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.segment.bytes=67108864
log.retention.hours=24
log.retention.bytes=1073741824
log.retention.check.interval.ms=300000
EOF
    [[ -z $KAFKA_EXTRA_PROPERTIES ]] || printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$tmp"
    mv -f "$tmp" "$PROPS_FILE"
}

format_storage_if_needed() {
    if [[ -f $LOG_DIRS/meta.properties ]]; then
        return 0
    fi
    local cid out
    if [[ -n $KAFKA_CLUSTER_ID ]]; then
        cid=$KAFKA_CLUSTER_ID
    elif [[ -s $CLUSTER_ID_FILE ]]; then
        cid=$(<"$CLUSTER_ID_FILE")
    else
        # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding.
        # It must not start with '-', or the format tool would read it as an option.
        cid=-
        while [[ $cid == -* ]]; do
            cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        done
        printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
    fi
    info "formatting KRaft storage in $LOG_DIRS (cluster id $cid)"
    if ! out=$(run_tool kafka.tools.StorageTool format --config "$PROPS_FILE" --cluster-id "$cid" --ignore-formatted 2>&1); then
        printf '%s\n' "$out" >&2
        die "formatting the KRaft storage in $LOG_DIRS failed"
    fi
    [[ -f $LOG_DIRS/meta.properties ]] || { printf '%s\n' "$out" >&2; die "formatting did not create $LOG_DIRS/meta.properties"; }
}

# Wait until the broker process logged that it started (or died / timed out).
# $1 = pid, $2 = deadline (in $SECONDS).  Returns 0 ready, 1 died, 2 timeout.
wait_started() {
    local pid=$1 deadline=$2
    while :; do
        if ! is_our_broker "$pid"; then
            return 1
        fi
        if [[ -f $LOG_FILE ]] && grep -q 'Kafka Server started' "$LOG_FILE"; then
            return 0
        fi
        ((SECONDS < deadline)) || return 2
        sleep 0.3
    done
}

# Topic creation (and readiness check) against $(bootstrap_address).
# $1 = milliseconds to wait for the cluster to answer.
ensure_topics() {
    local wait_ms=${1:-30000} bs specs=() spec
    bs=$(bootstrap_address)
    read -r -a specs <<<"$KAFKA_TOPICS" || true
    for spec in "${specs[@]}"; do
        [[ $spec =~ ^[A-Za-z0-9._-]+(:[0-9]+(:compact)?)?$ ]] ||
            die "bad entry '$spec' in KAFKA_TOPICS (want NAME[:PARTITIONS[:compact]])"
    done
    ensure_helper
    if [[ -n $HELPER_CP ]]; then
        local rc=0
        # shellcheck disable=SC2086
        java "${TOOL_JVM_OPTS[@]}" ${KAFKA_TOOL_OPTS:-} -cp "$HELPER_CP:$CP" TopicsTool \
            --bootstrap "$bs" --command-config "$KAFKA_COMMAND_CONFIG" --wait-ms "$wait_ms" \
            --replication-factor "$KAFKA_REPLICATION_FACTOR" \
            ${specs[@]+"${specs[@]}"} || rc=$?
        case $rc in
            0) ;;
            3) return 3 ;;
            *) die "creating topics on $bs failed" ;;
        esac
    else
        local cc=() deadline=$((SECONDS + (wait_ms + 999) / 1000))
        [[ -z $KAFKA_COMMAND_CONFIG ]] || cc=(--command-config "$KAFKA_COMMAND_CONFIG")
        # Readiness: retry --list until it succeeds.
        until run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" ${cc[@]+"${cc[@]}"} --list >/dev/null 2>&1; do
            ((SECONDS < deadline)) || return 3
            sleep 1
        done
        local name parts
        for spec in ${specs[@]+"${specs[@]}"}; do
            IFS=: read -r -a parts <<<"$spec"
            name=${parts[0]}
            local args=(--bootstrap-server "$bs" ${cc[@]+"${cc[@]}"} --create --if-not-exists
                --topic "$name" --partitions "${parts[1]:-1}" --replication-factor "$KAFKA_REPLICATION_FACTOR")
            [[ ${parts[2]:-} != compact ]] || args+=(--config cleanup.policy=compact)
            run_tool org.apache.kafka.tools.TopicCommand "${args[@]}" ||
                die "creating topic '$name' on $bs failed"
        done
    fi
}

# Stop pid $1 (SIGTERM, wait, SIGKILL).
stop_pid() {
    local pid=$1 deadline
    info "stopping Kafka broker (pid $pid, data dir $KAFKA_DATA_DIR)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while is_our_broker "$pid"; do
        if ((SECONDS >= deadline)); then
            info "broker did not exit within ${KAFKA_STOP_TIMEOUT} s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            local _
            for _ in $(seq 1 50); do
                is_our_broker "$pid" || break
                sleep 0.1
            done
            is_our_broker "$pid" && die "broker pid $pid survived SIGKILL"
            break
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------- commands
cmd_fetch() {
    if [[ -n $KAFKA_HOME ]]; then
        ensure_libs
        info "KAFKA_HOME is set: using $KAFKA_HOME/libs, nothing to fetch"
        return 0
    fi
    require_java
    if libs_complete; then
        info "Kafka $KAFKA_VERSION already fetched in $LIBS_DIR"
    fi
    ensure_libs
    ensure_helper
}

cmd_start() {
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        info "KAFKA_BOOTSTRAP is set: using the existing cluster at $KAFKA_BOOTSTRAP, not starting a broker"
        require_java
        ensure_libs
        ensure_topics $((KAFKA_START_TIMEOUT * 1000)) ||
            die "cluster at $KAFKA_BOOTSTRAP did not answer within ${KAFKA_START_TIMEOUT} s"
        return 0
    fi
    require_java
    ensure_libs
    ensure_helper
    mkdir -p "$KAFKA_DATA_DIR"
    with_lock "$KAFKA_DATA_DIR/.lock" start_locked
}

start_locked() {
    local t0=$SECONDS deadline=$((SECONDS + KAFKA_START_TIMEOUT)) pid rc
    pid=$(broker_pid)
    if [[ -n $pid ]]; then
        [[ -f $PID_FILE ]] || printf '%s\n' "$pid" >"$PID_FILE"
        rc=0
        wait_started "$pid" "$deadline" || rc=$?
        if ((rc == 0)); then
            local left=$((deadline - SECONDS))
            ((left > 5)) || left=5
            if ensure_topics $((left * 1000)); then
                info "Kafka broker already running (pid $pid) at $(bootstrap_address), data dir $KAFKA_DATA_DIR"
                return 0
            fi
        fi
        log_tail 60
        die "a Kafka broker is running for $KAFKA_DATA_DIR (pid $pid) but is not healthy; try '$PROG stop' then '$PROG start'"
    fi

    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if tcp_open 127.0.0.1 "$port"; then
            die "port 127.0.0.1:$port is already in use by another process (not the broker of $KAFKA_DATA_DIR); choose another KAFKA_PORT / KAFKA_CONTROLLER_PORT or stop that process"
        fi
    done

    write_server_properties
    format_storage_if_needed

    # Keep the previous run's log as kafka.log.1.
    [[ ! -f $LOG_FILE ]] || mv -f "$LOG_FILE" "$LOG_FILE.1"
    info "starting Kafka broker on 127.0.0.1:$KAFKA_PORT (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT), data dir $KAFKA_DATA_DIR"
    local launcher=()
    have setsid && launcher=(setsid)
    (
        cd "$KAFKA_DATA_DIR"
        # shellcheck disable=SC2086 # heap/extra options are word lists
        exec "${launcher[@]}" nohup java $KAFKA_HEAP_OPTS \
            -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
            -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
            "-Dlog4j2.configurationFile=$BROKER_LOG4J" "-Dkafka.logs.dir=$KAFKA_DATA_DIR" \
            $KAFKA_OPTS -cp "$CP" kafka.Kafka "$PROPS_FILE"
    ) </dev/null >>"$LOG_FILE" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"

    rc=0
    wait_started "$pid" "$deadline" || rc=$?
    case $rc in
        0) ;;
        1)
            log_tail 60
            rm -f "$PID_FILE"
            die "the Kafka broker exited during start-up (log: $LOG_FILE)"
            ;;
        *)
            log_tail 60
            stop_pid "$pid"
            rm -f "$PID_FILE"
            die "the Kafka broker did not start within ${KAFKA_START_TIMEOUT} s (KAFKA_START_TIMEOUT); it was stopped (log: $LOG_FILE)"
            ;;
    esac

    local left=$((deadline - SECONDS))
    ((left > 5)) || left=5
    rc=0
    ensure_topics $((left * 1000)) || rc=$?
    if ((rc != 0)); then
        log_tail 60
        stop_pid "$pid"
        rm -f "$PID_FILE"
        die "the Kafka broker did not answer requests within ${KAFKA_START_TIMEOUT} s; it was stopped (log: $LOG_FILE)"
    fi
    info "Kafka broker started (pid $pid) at $(bootstrap_address) in $((SECONDS - t0)) s"
}

cmd_stop() {
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        info "KAFKA_BOOTSTRAP is set: using the existing cluster at $KAFKA_BOOTSTRAP, nothing to stop"
        return 0
    fi
    if [[ ! -d $KAFKA_DATA_DIR ]]; then
        info "no Kafka broker running (no data dir $KAFKA_DATA_DIR)"
        return 0
    fi
    with_lock "$KAFKA_DATA_DIR/.lock" stop_locked
}

stop_locked() {
    local pid
    pid=$(broker_pid)
    if [[ -z $pid ]]; then
        rm -f "$PID_FILE"
        info "no Kafka broker running for $KAFKA_DATA_DIR"
        return 0
    fi
    local t0=$SECONDS
    stop_pid "$pid"
    rm -f "$PID_FILE"
    info "Kafka broker stopped in $((SECONDS - t0)) s"
}

cmd_status() {
    if [[ -n $KAFKA_BOOTSTRAP ]]; then
        local first=${KAFKA_BOOTSTRAP%%,*}
        local host=${first%:*} port=${first##*:}
        host=${host#\[}
        host=${host%\]}
        if tcp_open "$host" "$port"; then
            echo "using existing cluster at $KAFKA_BOOTSTRAP (reachable)"
            return 0
        fi
        echo "using existing cluster at $KAFKA_BOOTSTRAP (NOT reachable)"
        return 3
    fi
    local pid
    pid=$(broker_pid)
    if [[ -n $pid ]]; then
        echo "running: pid $pid, bootstrap 127.0.0.1:$KAFKA_PORT, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, data dir $KAFKA_DATA_DIR"
        return 0
    fi
    echo "not running (data dir $KAFKA_DATA_DIR)"
    return 3
}

cmd_logs() {
    local follow=0 n=100
    while (($#)); do
        case $1 in
            -f | --follow) follow=1 ;;
            -n) shift; n=${1:-}; ;;
            *) n=$1 ;;
        esac
        shift
    done
    is_uint "$n" || die_usage "logs: line count must be a number, got '$n'"
    [[ -z $KAFKA_BOOTSTRAP ]] || die "KAFKA_BOOTSTRAP is set ($KAFKA_BOOTSTRAP): there is no local broker log"
    [[ -f $LOG_FILE ]] || die "no broker log at $LOG_FILE (has the broker ever been started with this KAFKA_DATA_DIR?)"
    if ((follow)); then
        exec tail -n "$n" -F "$LOG_FILE"
    fi
    tail -n "$n" "$LOG_FILE"
}

cmd_create_topics() {
    if [[ -z $KAFKA_BOOTSTRAP ]] && [[ -z $(broker_pid) ]] && ! tcp_open 127.0.0.1 "$KAFKA_PORT"; then
        die "no Kafka broker is running at 127.0.0.1:$KAFKA_PORT (data dir $KAFKA_DATA_DIR); run '$PROG start' first"
    fi
    require_java
    ensure_libs
    local rc=0
    ensure_topics 30000 || rc=$?
    ((rc == 0)) || die "Kafka at $(bootstrap_address) did not answer within 30 s (is it running? '$PROG start')"
}

cmd_list_topics() {
    require_java
    ensure_libs
    local cc=()
    [[ -z $KAFKA_COMMAND_CONFIG ]] || cc=(--command-config "$KAFKA_COMMAND_CONFIG")
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_address)" ${cc[@]+"${cc[@]}"} --list
}

main() {
    (($#)) || { usage >&2; exit 2; }
    local cmd=$1
    shift
    case $cmd in
        -h | --help | help) usage ;;
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        create-topics) cmd_create_topics ;;
        list-topics) cmd_list_topics ;;
        logs) cmd_logs "$@" ;;
        bootstrap) bootstrap_address ;;
        classpath)
            ensure_libs
            printf '%s\n' "$CP"
            ;;
        tool)
            (($#)) || die_usage "tool: missing CLASS"
            require_java
            ensure_libs
            run_tool "$@"
            ;;
        *) die_usage "unknown command '$cmd'" ;;
    esac
}

main "$@"
