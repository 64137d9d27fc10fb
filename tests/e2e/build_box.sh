#!/usr/bin/env bash
# Build (once, cached) the tiny Debian 12 Vagrant box the e2e test boots under qemu TCG.
#
#   tests/e2e/build_box.sh [CACHE_DIR]      (default /var/cache/labctl-test/box; needs root)
#
# Output in CACHE_DIR: labctl-e2e.box (libvirt provider, qcow2) plus vmlinuz/initrd.img, which the
# box's own Vagrantfile hands to libvirt for a direct kernel boot — the disk is a bare ext4 file
# system made with `mkfs.ext4 -d`, so no loop devices, partitions or bootloader are needed.
# The box carries what the offline steps need: systemd, openssh-server, sudo, nfs-kernel-server,
# and a `vagrant` user with Vagrant's public insecure key (Vagrant swaps it for a fresh key on up).
# The cache is keyed by this script's checksum: edit the script and the next run rebuilds.
set -euo pipefail

cache=${1:-/var/cache/labctl-test/box}
mirror=${LABCTL_E2E_MIRROR:-http://deb.debian.org/debian}
packages=linux-image-amd64,systemd-sysv,udev,dbus,openssh-server,sudo,nfs-kernel-server,iproute2,kmod,procps,iputils-ping
stamp=$(sha256sum "$0" | cut -c1-16)
if [[ -f $cache/labctl-e2e.box && "$(cat "$cache/stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "box cached: $cache/labctl-e2e.box"
  exit 0
fi

vagrant_pub=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[[ -n $vagrant_pub ]] || { echo "build_box: Vagrant's keys/vagrant.pub not found — install vagrant" >&2; exit 1; }

mkdir -p "$cache"
# Stage 1 (slow, cached on its own): the debootstrapped file system, untouched after debootstrap.
base=$cache/rootfs
base_stamp=$(echo "bookworm $packages" | sha256sum | cut -c1-16)
if [[ "$(cat "$cache/rootfs.stamp" 2>/dev/null)" != "$base_stamp" ]]; then
  echo "==> debootstrap bookworm into $base (a few minutes)"
  rm -rf "$base" "$base.tmp"
  debootstrap --variant=minbase --include="$packages" bookworm "$base.tmp" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || { tail -30 "$cache/debootstrap.log" >&2; exit 1; }
  for m in proc sys; do mountpoint -q "$base.tmp/$m" && umount "$base.tmp/$m"; done
  mv "$base.tmp" "$base"
  echo "$base_stamp" >"$cache/rootfs.stamp"
fi

# Stage 2: a configured copy of it, turned into the box.
work=$cache/work
rm -rf "$work" && mkdir -p "$work"
root=$work/rootfs
cp -a "$base" "$root"

echo "==> configure the guest"
echo labctl-e2e >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 labctl-e2e\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"  # no DNS in the test namespace; an empty file keeps sudo from stalling
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
# Vagrant's Debian guest plugin configures extra NICs through systemd-networkd when it is active;
# the first NIC (eth0 thanks to net.ifnames=0) is libvirt's management network, on DHCP.
cat >"$root/etc/systemd/network/10-mgmt.network" <<'NET'
[Match]
Name=eth0
[Network]
DHCP=ipv4
[DHCPv4]
# Every VM starts from the same image: identify by MAC, or dnsmasq hands them all one address.
ClientIdentifier=mac
# Vagrant sets the hostname; taking one from DHCP only stalls boot on systemd-hostnamed.
UseHostname=false
NET
# Under software emulation every service costs seconds of boot: mask the ones a lab VM never needs.
for unit in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer; do
  chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
done
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
chroot "$root" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
chroot "$root" useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant:vagrant' | chroot "$root" chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$vagrant_pub" "$root/home/vagrant/.ssh/authorized_keys"
cat >>"$root/etc/ssh/sshd_config" <<'SSHD'
UseDNS no
# Vagrant's insecure key is RSA; older Vagrant signs with ssh-rsa until it inserts its own key.
PubkeyAcceptedAlgorithms +ssh-rsa
SSHD
# A getty on the serial console: the boot log lands in the domain's console for debugging.
chroot "$root" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
# Each VM must get its own machine-id (systemd writes one on first boot when the file is empty).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin

echo "==> disk image"
cp -L "$root/vmlinuz" "$work/vmlinuz"
cp -L "$root/initrd.img" "$work/initrd.img"
virtual_gib=4
truncate -s ${virtual_gib}G "$work/root.raw"
mkfs.ext4 -q -L root -d "$root" "$work/root.raw"
qemu-img convert -O qcow2 "$work/root.raw" "$work/box.img"
rm -f "$work/root.raw"

echo "==> package the box"
cat >"$work/metadata.json" <<META
{"provider": "libvirt", "format": "qcow2", "virtual_size": $virtual_gib}
META
# The box's Vagrantfile is merged under the project's: it only says how this box boots.
cat >"$work/Vagrantfile" <<VF
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.kernel = "$cache/vmlinuz"
    lv.initrd = "$cache/initrd.img"
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0 quiet"
  end
end
VF
(cd "$work" && tar cf labctl-e2e.box metadata.json Vagrantfile box.img)
mv "$work/vmlinuz" "$work/initrd.img" "$work/labctl-e2e.box" "$cache/"
chmod 0644 "$cache/vmlinuz" "$cache/initrd.img" "$cache/labctl-e2e.box"
rm -rf "$work"
echo "$stamp" >"$cache/stamp"
echo "box built: $cache/labctl-e2e.box ($(du -h "$cache/labctl-e2e.box" | cut -f1))"
