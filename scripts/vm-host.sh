#!/usr/bin/env bash
# The VM host for the Vagrant tests: libvirt's daemons inside a network namespace of our own, so
# the VMs and their traffic stay in it (the namespace has no route out: a guest cannot reach the
# internet, and every libvirt network is isolated besides).
#
#   scripts/vm-host.sh deps        install Debian's packages for it (root; only what is missing)
#   scripts/vm-host.sh start       netns + veth to this host, virtlogd/virtlockd/libvirtd in it,
#                                  storage pool "default" (idempotent)
#   scripts/vm-host.sh stop        destroy the domains and networks, stop the daemons, delete the netns
#   scripts/vm-host.sh exec CMD..  run CMD inside the namespace (e.g. vagrant up)
#   scripts/vm-host.sh driver      print the libvirt domain type to use: kvm if KVM accelerates
#                                  (a vmx/svm CPU and /dev/kvm), qemu (TCG emulation) otherwise
#
# Environment: VM_NETNS (default monvm), VM_VETH_HOST / VM_VETH_NS (the veth addresses, default
# 10.213.0.1/24 and 10.213.0.2/24), VM_TEST_HOST (the private network's host address, 192.168.56.1,
# routed to the namespace). PID 1 need not be systemd: the daemons are started directly.
set -euo pipefail
ns="${VM_NETNS:-monvm}"
host_ip="${VM_VETH_HOST:-10.213.0.1/24}"
ns_ip="${VM_VETH_NS:-10.213.0.2/24}"
test_host="${VM_TEST_HOST:-192.168.56.1}"
test_net=monitord-test
run_dir=/run/monitord-vm-host
die() { echo "vm-host.sh: $*" >&2; exit 1; }
inside() { ip netns exec "$ns" "$@"; }

deps() {
    local missing=() pkg
    for pkg in qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients vagrant vagrant-libvirt \
        dnsmasq-base iptables ebtables extlinux syslinux-common debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them as root"
    echo "vm-host.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: the packages must not start their daemons here (they run in the namespace).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    { apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; } ||
        { rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    rm -f /usr/sbin/policy-rc.d
}

driver() {
    if [ -c /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then echo kvm; else echo qemu; fi
}

daemon_running() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

start() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    mkdir -p "$run_dir"
    if ! ip netns list | grep -qw "$ns"; then
        ip netns add "$ns"
        inside ip link set lo up
        ip link add "$ns-h" type veth peer name "$ns-n"
        ip link set "$ns-n" netns "$ns"
        ip addr add "$host_ip" dev "$ns-h"
        ip link set "$ns-h" up
        inside ip addr add "$ns_ip" dev "$ns-n"
        inside ip link set "$ns-n" up
    fi
    local d
    for d in virtlogd virtlockd libvirtd; do
        daemon_running "$d" && continue
        inside "/usr/sbin/$d" --daemon --pid-file "$run_dir/$d.pid" || die "$d did not start"
    done
    local end=$((SECONDS + 30))
    until virsh -q -c qemu:///system version >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && die "libvirtd does not answer (qemu:///system)"
        sleep 0.5
    done
    if ! virsh -q pool-info default >/dev/null 2>&1; then
        mkdir -p /var/lib/libvirt/images
        virsh -q pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
        virsh -q pool-autostart default >/dev/null
    fi
    # libvirt's package defines a NAT network "default": not here (every network must be isolated).
    if virsh -q net-info default >/dev/null 2>&1; then
        virsh -q net-destroy default >/dev/null 2>&1 || true
        virsh -q net-undefine default >/dev/null
    fi
    # The private network of the Vagrantfile, defined here so it is isolated (no <forward>: no NAT, no
    # routing out) and up before Kafka binds to its address; vagrant-libvirt reuses it by name.
    if ! virsh -q net-info "$test_net" >/dev/null 2>&1; then
        virsh -q net-define /dev/stdin >/dev/null <<EOF
<network>
  <name>$test_net</name>
  <bridge name='virbr56' stp='on' delay='0'/>
  <ip address='$test_host' netmask='255.255.255.0'>
    <dhcp><range start='${test_host%.*}.1' end='${test_host%.*}.254'/></dhcp>
  </ip>
</network>
EOF
    fi
    [[ " $(virsh -q net-list --name | tr "\n" " ") " == *" $test_net "* ]] || virsh -q net-start "$test_net" >/dev/null
    [[ $(virsh -q pool-info default) == *running* ]] || virsh -q pool-start default >/dev/null
    # The test network's host address (libvirt's bridge in the namespace), reachable from here for
    # the test's own Kafka consumer; nothing is forwarded beyond the namespace.
    ip route replace "$test_host/32" via "${ns_ip%/*}" dev "$ns-h"
    echo "vm-host.sh: libvirt in netns $ns (domain type $(driver)); host side ${host_ip%/*}, namespace side ${ns_ip%/*}" >&2
}

stop() {
    local dom net d
    if virsh -q version >/dev/null 2>&1; then
        for dom in $(virsh -q list --all --name); do
            virsh -q destroy "$dom" >/dev/null 2>&1 || true
        done
        for net in $(virsh -q net-list --name); do
            virsh -q net-destroy "$net" >/dev/null 2>&1 || true
        done
    fi
    for d in libvirtd virtlockd virtlogd; do
        if daemon_running "$d"; then
            kill "$(cat "$run_dir/$d.pid")" 2>/dev/null || true
        fi
        rm -f "$run_dir/$d.pid"
    done
    ip link del "$ns-h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}

case "${1:-}" in
    deps) deps ;;
    start) start ;;
    stop) stop ;;
    driver) driver ;;
    exec) shift; [ $# -gt 0 ] || die "exec needs a command"; inside "$@" ;;
    -h | --help | "") sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] ;;
    *) die "unknown command $1 (deps, start, stop, exec, driver)" ;;
esac
