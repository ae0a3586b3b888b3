#!/bin/bash
# The booted-host scenario, run as root ON the host under test (an nspawn container or a Vagrant
# VM): one step per invocation, so the driver can check Kafka between steps.
#
#   scenario.sh STEP        single host (nspawn, and the Vagrantfile's agent-<distro> VMs):
#                             install start journal status reload watchdog badconfig upgrade
#                             security purge   (or: all)
#                           two VMs (tests/system/test_vms.py): server, agent (install, mutual
#                             TLS across the network, enable --now), journal (on the server),
#                             booted (on the agent after a reboot)
#
# Environment: PKG_DIR (directory with the .deb files: version 1 as *_1.deb names are picked by
# VERSION_OLD / VERSION_NEW), KAFKA_BOOTSTRAP (HOST:PORT reachable from this host), LISTEN_PORT
# (monitord's port), AGENT_ID; for server/agent also CA_DIR (scripts/dev-ca.sh CA_DIR
# monitord-server AGENT_ID) and SERVER (monitord's HOST:PORT, agent). Every check prints "ok: ..."
# or "FAIL: ..." and a failure exits 1.
set -uo pipefail
: "${PKG_DIR:?}" "${KAFKA_BOOTSTRAP:?}" "${LISTEN_PORT:?}" "${AGENT_ID:?}" "${VERSION_OLD:?}" "${VERSION_NEW:?}"
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0

# Debian/Ubuntu hosts get the .deb files, RHEL/Rocky the .rpm files.
FORMAT="${PKG_FORMAT:-$(command -v dpkg >/dev/null 2>&1 && echo deb || echo rpm)}"

pkg_files() {  # pkg_files VERSION: both package files of that version
    if [ "$FORMAT" = deb ]; then
        echo "$PKG_DIR/monitord_$1_amd64.deb $PKG_DIR/monitor-agentd_$1_amd64.deb"
    else
        echo "$PKG_DIR/monitord-$1.x86_64.rpm $PKG_DIR/monitor-agentd-$1.x86_64.rpm"
    fi
}
pkg_install() { if [ "$FORMAT" = deb ]; then dpkg -i $(pkg_files "$1"); else rpm -Uvh $(pkg_files "$1"); fi; }
owned() { if [ "$FORMAT" = deb ]; then dpkg -S "$1"; else rpm -qf "$1"; fi; }
pkg_list() { if [ "$FORMAT" = deb ]; then dpkg -L monitord monitor-agentd; else rpm -ql monitord monitor-agentd; fi; }

ok() { echo "ok: $*"; }
fail() {  # the last journal lines of both services go with the failure, for the CI log
    echo "FAIL: $*"
    journalctl -u monitord -u monitor-agentd -n 12 --no-pager -o short-monotonic 2>/dev/null || true
    exit 1
}
prop() { systemctl show -p "$2" --value "$1"; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit="$1" what="$2"; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && fail "$what (waited ${limit}s)"
        sleep 0.5
    done
    ok "$what"
}
# Under pipefail, "journalctl | grep -q" fails when grep matches and exits while journalctl still
# writes (SIGPIPE, 141): the more the journal holds after the match, the likelier. So every grep
# after journalctl here reads to the end (>/dev/null, not -q).
journal_has() { journalctl -u "$1" --no-pager -o cat "${@:3}" | grep -E -- "$2" >/dev/null; }
# A line of UNIT from any boot but this one, by boot id (whatever order journalctl gives boots).
journal_had() {
    local boot
    boot=$(tr -d - </proc/sys/kernel/random/boot_id)
    journalctl -u "$1" --no-pager -o json --output-fields=MESSAGE | grep -v "\"_BOOT_ID\":\"$boot\"" | grep -E -- "$2" >/dev/null
}

step_install() {
    pkg_install "$VERSION_OLD" || fail "offline installation of both packages ($FORMAT)"
    ok "installed offline from local $FORMAT files"
    for unit in monitord monitor-agentd; do
        [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = disabled ] || fail "$unit enabled automatically"
        [ "$(prop "$unit" ActiveState)" = inactive ] || fail "$unit started automatically"
    done
    ok "services neither enabled nor started by the installation"
    [ "$(stat -c '%a %U:%G' /etc/monitord/monitord.yaml)" = "640 root:monitord" ] || fail "monitord.yaml mode/owner"
    [ "$(stat -c '%a %U:%G' /etc/monitor-agentd/agent.yaml)" = "640 root:monitor-agentd" ] || fail "agent.yaml mode/owner"
    ok "config files 0640 root:<service group>"
    for f in $(pkg_list | grep -E '^/usr/(bin|lib/systemd)/'); do
        owned "$f" >/dev/null 2>&1 || fail "$f not owned by a package"
    done
    ok "installed files owned by the packages"
    # The operator's edits (kept across the upgrade step).
    # (the first "  listen:" is server.listen; metrics.listen keeps its default 127.0.0.1:9750)
    sed -i "s/^  bootstrap_servers: .*/  bootstrap_servers: \"$KAFKA_BOOTSTRAP\"/; 0,/^  listen: .*/s//  listen: \"127.0.0.1:$LISTEN_PORT\"/" \
        /etc/monitord/monitord.yaml
    sed -i "s/^    - \"127.0.0.1:50051\"/    - \"127.0.0.1:$LISTEN_PORT\"/; s/^  id: \"\"/  id: \"$AGENT_ID\"/; s/^  interval_seconds: 10.0/  interval_seconds: 1.0/" \
        /etc/monitor-agentd/agent.yaml
    # Plaintext on the container's loopback (TLS and tokens are covered by tests/integration/test_security.py).
    sed -i 's/^    mode: mtls/    mode: plaintext/; s/^    require_identity: true/    require_identity: false/' \
        /etc/monitord/monitord.yaml /etc/monitor-agentd/agent.yaml
    echo "# edited by the operator" >>/etc/monitor-agentd/agent.yaml
    monitord --check-config --config /etc/monitord/monitord.yaml >/dev/null || fail "edited monitord.yaml invalid"
    monitor-agentd --check-config --config /etc/monitor-agentd/agent.yaml >/dev/null || fail "edited agent.yaml invalid"
    ok "configured for Kafka $KAFKA_BOOTSTRAP, port $LISTEN_PORT, agent $AGENT_ID"
}

step_start() {
    systemctl enable --now monitord monitor-agentd || fail "systemctl enable --now"
    # Type=notify: 'active' is reached only after READY=1.
    for unit in monitord monitor-agentd; do
        [ "$(prop "$unit" ActiveState)/$(prop "$unit" SubState)" = active/running ] || fail "$unit not active after start"
    done
    ok "both active (Type=notify: after READY=1)"
    journal_has monitord "Mode: Bidirectional streaming \(no polling\)" || fail "monitord start log"
    wait_for 30 "agent streaming to monitord" journal_has monitord "✓ Forwarded metrics #3 from agent '$AGENT_ID' to Kafka"
    # The packaged config serves Prometheus metrics on localhost.
    scrape() { exec 3<>/dev/tcp/127.0.0.1/9750 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3; }
    local metrics
    metrics="$(scrape)"
    grep -q '^monitord_connected_agents 1.0' <<<"$metrics" || fail "monitord metrics on 127.0.0.1:9750"
    # The standard process_* family too, although the unit hides /proc/stat (ProcSubset=pid).
    grep -q '^process_resident_memory_bytes ' <<<"$metrics" || fail "process_* metrics under the unit's hardening"
    ok "Prometheus metrics served on 127.0.0.1:9750 (1 agent connected, process_* included)"
}

step_journal() {
    journalctl -u monitord -p info..info --no-pager -o cat | grep "✓ Agent registered: $AGENT_ID" >/dev/null \
        || fail "info-priority lines in the journal"
    ok "journalctl -u monitord shows info lines at priority 6"
    # A warning: a rejected reload (invalid file) is logged at error priority, the old config stays.
    cp /etc/monitord/monitord.yaml /root/monitord.yaml.good
    echo "bogus: 1" >>/etc/monitord/monitord.yaml
    systemctl reload monitord
    wait_for 15 "rejected reload logged as an error" journal_has monitord "Reload rejected" -p err
    cp /root/monitord.yaml.good /etc/monitord/monitord.yaml
    if journalctl -u monitord -p warning --no-pager -o cat | grep "Forwarded metrics" >/dev/null; then
        fail "journalctl -p warning shows info lines"
    fi
    ok "journalctl -u monitord -p warning shows only warnings and worse"
    [ "$(prop monitord ActiveState)" = active ] || fail "monitord died on a bad reload"
    ok "monitord still active after the rejected reload"
}

step_status() {
    wait_for 15 "systemctl status shows monitord's STATUS line" \
        sh -c "systemctl status monitord --no-pager | grep -q 'Status: \"1 agents connected'"
    wait_for 15 "systemctl status shows the agent's STATUS line" \
        sh -c "systemctl status monitor-agentd --no-pager | grep -q 'Status: \"streaming to'"
    systemctl status monitord monitor-agentd --no-pager | grep -E "Status:"
}

step_reload() {
    local pid
    pid="$(prop monitor-agentd MainPID)"
    sed -i 's/^  interval_seconds: 1.0/  interval_seconds: 0.5/' /etc/monitor-agentd/agent.yaml
    systemctl reload monitor-agentd || fail "systemctl reload monitor-agentd"
    wait_for 15 "new interval in effect" journal_has monitor-agentd "Configuration reloaded \(interval 0.5s"
    [ "$(prop monitor-agentd MainPID)" = "$pid" ] || fail "agent restarted instead of reloading"
    sleep 3
    if journalctl -u monitord --no-pager -o cat --since "-5s" | grep "Agent '$AGENT_ID' disconnected" >/dev/null; then
        fail "the stream was dropped by the reload"
    fi
    ok "same process, stream kept"
}

step_watchdog() {
    mkdir -p /run/systemd/system/monitor-agentd.service.d
    printf '[Service]\nWatchdogSec=4\n' >/run/systemd/system/monitor-agentd.service.d/test-watchdog.conf
    systemctl daemon-reload
    systemctl restart monitor-agentd
    local pid
    pid="$(prop monitor-agentd MainPID)"
    kill -STOP "$pid"
    wait_for 40 "watchdog fired for the stopped agent" journal_has monitor-agentd "Failed with result 'watchdog'"
    wait_for 30 "agent restarted and healthy" sh -c "[ \"\$(systemctl show -p SubState --value monitor-agentd)\" = running ] && [ \"\$(systemctl show -p MainPID --value monitor-agentd)\" != $pid ]"
    rm -f /run/systemd/system/monitor-agentd.service.d/test-watchdog.conf
    systemctl daemon-reload
}

step_badconfig() {
    cp /etc/monitor-agentd/agent.yaml /root/agent.yaml.good
    echo "bogus_key: 1" >>/etc/monitor-agentd/agent.yaml
    systemctl restart monitor-agentd && fail "restart with a broken config succeeded"
    sleep 6
    [ "$(prop monitor-agentd ActiveState)" = failed ] || fail "agent not failed: $(prop monitor-agentd ActiveState)"
    [ "$(prop monitor-agentd ExecMainStatus)" = 78 ] || fail "exit status $(prop monitor-agentd ExecMainStatus), not 78"
    [ "$(prop monitor-agentd NRestarts)" = 0 ] || fail "restart loop: NRestarts=$(prop monitor-agentd NRestarts)"
    ok "broken config: failed, exit status 78, no restart"
    journal_has monitor-agentd "agent.yaml:[0-9]+: bogus_key: unknown key" || fail "config error not in the journal"
    cp /root/agent.yaml.good /etc/monitor-agentd/agent.yaml
    systemctl reset-failed monitor-agentd
    systemctl start monitor-agentd || fail "start after fixing the config"
    ok "fixed config starts again"
}

step_upgrade() {
    pkg_install "$VERSION_NEW" || fail "upgrade to $VERSION_NEW"
    grep -q "# edited by the operator" /etc/monitor-agentd/agent.yaml || fail "edited agent.yaml replaced"
    grep -q "127.0.0.1:$LISTEN_PORT" /etc/monitord/monitord.yaml || fail "edited monitord.yaml replaced"
    ok "upgrade kept the edited configuration"
    for unit in monitord monitor-agentd; do
        [ "$(prop "$unit" ActiveState)" = active ] || fail "$unit not active after upgrade (try-restart)"
    done
    ok "services restarted (try-restart) and active after the upgrade"
    wait_for 30 "agent streaming again after the upgrade" sh -c \
        "journalctl -u monitord --no-pager -o cat --since '-20s' | grep -q \"Forwarded metrics #[0-9]* from agent '$AGENT_ID'\""
}

step_security() {
    local unit limit score
    for pair in monitord:1.5 monitor-agentd:2.5; do
        unit="${pair%%:*}"; limit="${pair##*:}"
        score="$(systemd-analyze security "$unit.service" --no-pager | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
        echo "exposure $unit: $score (limit $limit)"
        awk -v s="$score" -v l="$limit" 'BEGIN { exit !(s != "" && s <= l) }' || fail "$unit exposure $score > $limit"
    done
    ok "systemd-analyze security within limits"
    for page in monitord.8 monitord.yaml.5 monitorctl.1 monitor-analyzer.1 monitor-agentd.8 agent.yaml.5; do
        man -w "${page##*.}" "${page%.*}" >/dev/null || fail "man page $page not installed"
        [ -n "$(MANWIDTH=80 man "${page##*.}" "${page%.*}" 2>/dev/null)" ] || fail "man $page renders nothing"
    done
    ok "man pages installed and rendering (the units' Documentation=)"
    systemd-analyze verify "$(systemctl show -p FragmentPath --value monitord)" \
        "$(systemctl show -p FragmentPath --value monitor-agentd)" \
        || fail "systemd-analyze verify"
    ok "systemd-analyze verify clean"
}

step_purge() {
    [ -d /var/lib/monitor-agentd/spool ] || fail "no agent state before purge"
    if [ "$FORMAT" = rpm ]; then
        # RPM has no purge: erasing keeps /var/lib state and edited configs (as .rpmsave).
        rpm -e monitor-agentd monitord || fail "rpm -e"
        [ -e /usr/bin/monitord ] && fail "/usr/bin/monitord left after rpm -e"
        systemctl is-active --quiet monitord monitor-agentd && fail "services still running after rpm -e"
        ok "rpm -e stopped the services and removed the programs (state kept: rpm has no purge)"
        return
    fi
    apt-get purge -y -q monitor-agentd monitord >/dev/null || fail "apt-get purge"
    for path in /var/lib/monitor-agentd /var/lib/monitord /etc/monitord /etc/monitor-agentd /usr/bin/monitord; do
        [ -e "$path" ] && fail "$path left after purge"
    done
    systemctl is-active --quiet monitord monitor-agentd && fail "services still running after purge"
    ok "purge stopped the services and removed state and configuration"
}

# -- Two VMs: monitord and monitor-agentd on separate hosts, mutual TLS across the network. --

tls_files() {  # tls_files DIR GROUP CERT KEY: the CA and one certificate, the key readable by GROUP only
    install -d -m 0750 -g "$2" "$1"
    install -m 0644 "$CA_DIR/ca.crt" "$1/ca.crt"
    install -m 0644 "$3" "$1/$(basename "$3")"
    install -m 0640 -g "$2" "$4" "$1/$(basename "$4")"
}

step_server() {
    : "${CA_DIR:?}"
    dpkg -i "$PKG_DIR/monitord_${VERSION_OLD}_amd64.deb" >/dev/null || fail "dpkg -i monitord"
    tls_files /etc/monitord/tls monitord "$CA_DIR/server.crt" "$CA_DIR/server.key"
    sed -i "s/^  bootstrap_servers: .*/  bootstrap_servers: \"$KAFKA_BOOTSTRAP\"/; 0,/^  listen: .*/s//  listen: \"0.0.0.0:$LISTEN_PORT\"/" \
        /etc/monitord/monitord.yaml
    monitord --check-config --config /etc/monitord/monitord.yaml >/dev/null || fail "monitord.yaml invalid"
    systemctl enable --now monitord >/dev/null 2>&1 || fail "systemctl enable --now monitord"
    [ "$(prop monitord ActiveState)" = active ] || fail "monitord not active"
    ok "monitord installed offline, mTLS on 0.0.0.0:$LISTEN_PORT, Kafka $KAFKA_BOOTSTRAP, enabled and active"
}

step_agent() {
    : "${CA_DIR:?}" "${SERVER:?}"
    dpkg -i "$PKG_DIR/monitor-agentd_${VERSION_OLD}_amd64.deb" >/dev/null || fail "dpkg -i monitor-agentd"
    local certs
    certs=$(mktemp -d)
    cp "$CA_DIR/agents/$AGENT_ID.crt" "$certs/agent.crt" && cp "$CA_DIR/agents/$AGENT_ID.key" "$certs/agent.key"
    tls_files /etc/monitor-agentd/tls monitor-agentd "$certs/agent.crt" "$certs/agent.key"
    rm -rf "$certs"
    # Keepalive at monitord's lower bounds, so a cut link is noticed within 15 s; backoff capped at
    # 10 s, so the agent is back within seconds of monitord's host (the test reboots it).
    sed -i "s/^    - \"127.0.0.1:50051\"/    - \"$SERVER\"/; s/^  id: \"\"/  id: \"$AGENT_ID\"/; s/^  interval_seconds: 10.0/  interval_seconds: 1.0/;
            s/^    server_name: \"\"/    server_name: \"monitord-server\"/; s/^  keepalive_seconds: .*/  keepalive_seconds: 10.0/;
            s/^  keepalive_timeout_seconds: .*/  keepalive_timeout_seconds: 5.0/; s/^  backoff_max_seconds: .*/  backoff_max_seconds: 10.0/" \
        /etc/monitor-agentd/agent.yaml
    monitor-agentd --check-config --config /etc/monitor-agentd/agent.yaml >/dev/null || fail "agent.yaml invalid"
    systemctl enable --now monitor-agentd >/dev/null 2>&1 || fail "systemctl enable --now monitor-agentd"
    [ "$(prop monitor-agentd ActiveState)" = active ] || fail "monitor-agentd not active"
    ok "monitor-agentd installed offline, mTLS to $SERVER as $AGENT_ID, enabled and active"
}

step_booted() {  # on the agent VM after a reboot while monitord was away
    [ "$(systemctl is-enabled monitor-agentd)" = enabled ] || fail "monitor-agentd not enabled"
    wait_for 60 "monitor-agentd active at boot" sh -c '[ "$(systemctl show -p ActiveState --value monitor-agentd)" = active ]'
    journal_had monitor-agentd "Stopping with [1-9][0-9]* metrics unacknowledged; they stay spooled on disk" \
        || fail "no earlier boot's journal has a shutdown with spooled metrics"
    ok "shut down with metrics spooled (journal of an earlier boot)"
    journal_has monitor-agentd "Spool: [1-9][0-9]* unacknowledged records on disk" -b 0 \
        || fail "this boot's journal has no spool replay"
    wait_for 120 "registered again at boot, replaying the spool" journal_has monitor-agentd "✓ Agent registered" -b 0
}

case "${1:-}" in
    install|start|journal|status|reload|watchdog|badconfig|upgrade|security|purge|server|agent|booted) "step_$1" ;;
    all) for s in install start journal status reload watchdog badconfig upgrade security purge; do
             echo "== $s"; "step_$s"; done ;;
    *) echo "usage: scenario.sh STEP|all" >&2; exit 2 ;;
esac
