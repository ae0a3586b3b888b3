#!/usr/bin/env bash
# Build (once) and print the path of a Debian 12 root filesystem for the booted-systemd test:
# debootstrap bookworm with systemd and Python 3.11, cached outside the repository in
# ${MONITORD_ROOTFS_CACHE:-~/.cache/monitord/rootfs}/bookworm (a ready marker guards reuse).
# Needs root, debootstrap and network access to Debian's package archive (its default mirror).
set -euo pipefail
cache="${MONITORD_ROOTFS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/rootfs}"
root="$cache/bookworm"
if [ -f "$root/.monitord-ready" ]; then
    echo "$root"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "rootfs.sh: must run as root" >&2; exit 1; }
mkdir -p "$cache"
# One build at a time (scripts/test starts one in the background): a second caller waits for it.
exec 9>"$cache/.lock"
flock 9
if [ -f "$root/.monitord-ready" ]; then
    echo "$root"
    exit 0
fi
rm -rf "$root.tmp"
echo "rootfs.sh: debootstrap bookworm into $root (a few minutes, once)" >&2
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3.11,adduser,procps,iproute2,less,man-db \
    bookworm "$root.tmp" >"$cache/debootstrap.log" 2>&1 || {
    tail -30 "$cache/debootstrap.log" >&2
    echo "rootfs.sh: debootstrap failed (log: $cache/debootstrap.log)" >&2
    exit 1
}
# A booted container needs no getty, and the machine id is set per boot.
rm -f "$root.tmp/etc/machine-id" && touch "$root.tmp/etc/machine-id"
chroot "$root.tmp" systemctl mask getty@tty1.service console-getty.service systemd-timesyncd.service >/dev/null 2>&1 || true
chroot "$root.tmp" apt-get clean
touch "$root.tmp/.monitord-ready"
mv "$root.tmp" "$root"
echo "$root"
