#!/usr/bin/env bash
# Build (once per recipe) and print the path of a Debian 12 Vagrant box for the libvirt provider,
# made from debootstrap: no box is downloaded. Cached outside the repository in
# ${MONITORD_BOX_CACHE:-~/.cache/monitord/box}/debian12-<recipe hash>.box; a change to this script
# changes the hash, so the box is rebuilt. Needs root, debootstrap, extlinux (syslinux's MBR),
# qemu-img and Debian's package archive (its default mirror); the guest itself never needs a network
# beyond its test network: its APT sources are empty and its timers that fetch are masked.
#
# The image: minbase + Debian's cloud kernel (virtio drivers, fewer modules), systemd,
# openssh-server, sudo, rsync, Python 3.11; user "vagrant" with Vagrant's insecure public key
# (shipped in the vagrant package) and passwordless sudo; DHCP on every ethernet interface by
# systemd-networkd; an ed25519 SSH host key generated at first boot; tuned for boots under
# emulation (an initramfs of the virtio modules only, no fsck, no e2scrub/fstrim/man-db); one ext4
# partition booted by extlinux with the syslinux MBR (no nbd, no partition devices needed: the
# partition is reached through a loop device at its offset); raw disk -> qcow2.
#
#   scripts/vm-box.sh            # prints the .box path (builds it first if needed)
#   scripts/vm-box.sh --add      # ... and adds it to Vagrant as monitord/debian12 if not there yet
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MONITORD_BOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/box}"
name=monitord/debian12
recipe=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
box="$cache/debian12-$recipe.box"
size_gb=4
die() { echo "vm-box.sh: $*" >&2; exit 1; }

add_box() {  # vagrant box add, unless this recipe's box is already there
    local stamp="$cache/added-$recipe"
    if [ -f "$stamp" ] && vagrant box list 2>/dev/null | grep -q "^$name "; then
        return 0
    fi
    vagrant box add --force --name "$name" "$box" >&2
    # vagrant-libvirt keeps a copy of a box's image in the storage pool and would reuse the old one.
    local vol
    for vol in $(virsh -q vol-list default 2>/dev/null | awk '/monitord-VAGRANTSLASH-debian12/ {print $1}'); do
        virsh -q vol-delete --pool default "$vol" >/dev/null
    done
    touch "$stamp"
}

mkdir -p "$cache"
# One build at a time (scripts/test starts one in the background): a second caller waits for it.
exec 9>"$cache/.lock"
flock 9
if [ -f "$box" ]; then
    [ "${1:-}" = --add ] && add_box
    echo "$box"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "must run as root"
for cmd in debootstrap extlinux qemu-img sfdisk losetup mkfs.ext4; do
    command -v "$cmd" >/dev/null || die "$cmd is not installed (scripts/vm-host.sh deps)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
pub=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[ -f "$mbr" ] || die "$mbr missing (apt-get install syslinux-common)"
[ -n "$pub" ] || die "Vagrant's insecure public key not found (apt-get install vagrant)"

work=$(mktemp -d "$cache/build.XXXXXX")
mnt="$work/mnt"
loop=""
cleanup() {
    mountpoint -q "$mnt" && umount -R "$mnt"
    [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

root="$work/root"
echo "vm-box.sh: debootstrap bookworm (a few minutes, once per recipe $recipe)" >&2
debootstrap --variant=minbase \
    --include=linux-image-cloud-amd64,systemd,systemd-sysv,dbus,udev,kmod,initramfs-tools,openssh-server,sudo,rsync,iproute2,procps,python3.11,adduser,less,ca-certificates \
    bookworm "$root" >"$work/debootstrap.log" 2>&1 || {
    tail -30 "$work/debootstrap.log" >&2
    die "debootstrap failed"
}

# Offline guest: no APT sources, nothing that fetches on a timer.
: >"$root/etc/apt/sources.list"
rm -f "$root"/etc/apt/sources.list.d/*
chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer systemd-timesyncd.service >/dev/null 2>&1 || true
# Boot time under emulation (TCG, no KVM here): nothing at boot that a test VM does not need.
chroot "$root" systemctl mask e2scrub_reap.service e2scrub_all.timer fstrim.timer man-db.timer \
    systemd-networkd-wait-online.service >/dev/null 2>&1 || true
# A small initramfs: only what finds and mounts a virtio root disk (the default takes most modules).
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
printf '%s\n' virtio_pci virtio_blk virtio_scsi ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u -k all >/dev/null 2>&1 || die "update-initramfs failed"
echo debian12 >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian12\n' >"$root/etc/hosts"
# The machine id is made at first boot (DHCP client ids derive from it): no copy under dbus either.
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id" && touch "$root/etc/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"

# DHCP on every ethernet interface Vagrant does not configure (it writes 50-vagrant-<dev>.network
# for the private networks, which sorts first), with the MAC as client id.
cat >"$root/etc/systemd/network/99-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=ipv4

[DHCPv4]
ClientIdentifier=mac
EOF
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1

# SSH host keys are made at first boot, so every VM from this box has its own.
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target ssh.service
EOF
chroot "$root" systemctl enable ssh-hostkeys.service ssh.service >/dev/null 2>&1
printf "UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n" >"$root/etc/ssh/sshd_config.d/vagrant.conf"

# The vagrant user: insecure key, passwordless sudo.
chroot "$root" useradd -m -s /bin/bash vagrant
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$pub" "$root/home/vagrant/.ssh/authorized_keys"
echo "vagrant ALL=(ALL) NOPASSWD: ALL" >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
chroot "$root" apt-get clean

# The disk: one bootable partition from 1 MiB, ext4 without the features extlinux cannot read.
raw="$work/disk.raw"
truncate -s "${size_gb}G" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup --find --show --offset $((2048 * 512)) "$raw")
mkfs.ext4 -q -L root -O ^64bit,^metadata_csum "$loop"
uuid=$(blkid -s UUID -o value "$loop")
mkdir -p "$mnt"
mount "$loop" "$mnt"
cp -a "$root/." "$mnt/"
echo "UUID=$uuid / ext4 errors=remount-ro 0 0" >"$mnt/etc/fstab"  # no fsck at boot: a throwaway test disk
kernel=$(cd "$mnt/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=initrd.img-${kernel#vmlinuz-}
[ -f "$mnt/boot/$initrd" ] || die "no initramfs for $kernel"
mkdir -p "$mnt/boot/extlinux"
cat >"$mnt/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
    LINUX /boot/$kernel
    INITRD /boot/$initrd
    APPEND root=UUID=$uuid ro console=ttyS0,115200 quiet
EOF
extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
umount "$mnt"
losetup -d "$loop"
loop=""
dd if="$mbr" of="$raw" bs=440 count=1 conv=notrunc status=none

boxdir="$work/box"
mkdir -p "$boxdir"
qemu-img convert -O qcow2 "$raw" "$boxdir/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" >"$boxdir/metadata.json"
cat >"$boxdir/Vagrantfile" <<'EOF'
# monitord/debian12: built by scripts/vm-box.sh from debootstrap (libvirt provider).
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", type: "rsync"
  config.vm.provider :libvirt do |lv|
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
EOF
tar -C "$boxdir" -cf "$box.tmp" metadata.json Vagrantfile box.img
mv "$box.tmp" "$box"
# Boxes of older recipes (about 800 MB each) are not used again.
for old in "$cache"/debian12-*.box "$cache"/added-*; do
    case "$old" in "$box" | "$cache/added-$recipe") ;; *) rm -f "$old" ;; esac
done
echo "vm-box.sh: $box ($(du -h "$box" | cut -f1))" >&2
[ "${1:-}" = --add ] && add_box
echo "$box"
