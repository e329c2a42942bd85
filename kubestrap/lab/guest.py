"""Files baked into the base image so a VM applies its seed disk at boot.

The seed disk is a tiny ext4 image labelled ``KSEED`` attached read-only to each VM. At every boot,
before networkd and sshd start, ``kubestrap-lab-seed`` copies from it the hostname, root's
authorized_keys, the SSH host key, the networkd files (NICs matched by MAC) and the lab's CNI configuration
(kubestrap/lab/podnet.py); /etc/hosts is written on first boot only.
"""

from __future__ import annotations

SEED_LABEL = "KSEED"

SEED_SCRIPT = r"""#!/bin/sh
# kubestrap lab: apply this VM's seed disk (label KSEED) at boot. Written by kubestrap.lab.
set -eu
dev=""
i=0
while [ $i -lt 100 ]; do
    dev=$(blkid -L KSEED 2>/dev/null || true)
    [ -n "$dev" ] && break
    i=$((i + 1))
    sleep 0.2
done
if [ -z "$dev" ]; then
    echo "kubestrap-lab-seed: no disk labelled KSEED after 20 s; nothing applied" >&2
    exit 0
fi
mnt=/run/kubestrap-seed
mkdir -p "$mnt"
mount -o ro "$dev" "$mnt"
trap 'umount "$mnt"' EXIT
name=$(cat "$mnt/hostname")
printf '%s\n' "$name" > /etc/hostname
hostname "$name"
# /etc/hosts only on first boot: later boots keep what the roles under test wrote there
if ! grep -q "[[:space:]]$name\$" /etc/hosts 2>/dev/null; then
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$name" > /etc/hosts
fi
# D-Bus must report the VM's own machine-id, not the one frozen into the base image
if [ -d /var/lib/dbus ]; then
    ln -sf /etc/machine-id /var/lib/dbus/machine-id
fi
install -d -m 0700 /root/.ssh
install -m 0600 "$mnt/authorized_keys" /root/.ssh/authorized_keys
install -m 0600 "$mnt/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$mnt/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d /etc/systemd/network
rm -f /etc/systemd/network/*-kubestrap-*.network
for f in "$mnt"/network/*.network; do
    install -m 0644 "$f" /etc/systemd/network/
done
# the lab's pod network (kubestrap/lab/podnet.py): what a user bringing their own CNI would have installed
if [ -d "$mnt/cni" ]; then
    install -d /etc/cni/net.d
    for f in "$mnt"/cni/*.conflist; do
        [ -e "$f" ] && install -m 0644 "$f" /etc/cni/net.d/
    done
fi
echo "kubestrap-lab-seed: applied seed for $name"
"""

SEED_UNIT = """[Unit]
Description=kubestrap lab: apply this VM's seed disk (hostname, SSH keys, node network)
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service network-pre.target ssh.service sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kubestrap-lab-seed

[Install]
WantedBy=sysinit.target
"""

SSHD_DROPIN = """# kubestrap lab: key-only root login, one host key provided by the seed disk.
PermitRootLogin prohibit-password
PasswordAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
"""

FSTAB = "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"

# Lab VMs boot qemu's -kernel/-initrd taken from the image at build time, never the guest's own
# initramfs: rebuilding it when packages trigger update-initramfs (open-iscsi, cryptsetup, ...)
# costs minutes under TCG for a file nothing reads. Written after the image's initrd is built.
UPDATE_INITRAMFS_CONF = (
    "# kubestrap lab: the VM boots an external kernel and initrd; the guest's initramfs is unused.\n"
    "update_initramfs=no\n"
    "backup_initramfs=no\n"
)

RESOLV_CONF = "nameserver 10.0.2.3\n"  # qemu user networking's DNS forwarder

# (path in the image, content, mode)
FILES: tuple[tuple[str, str, int], ...] = (
    ("usr/local/sbin/kubestrap-lab-seed", SEED_SCRIPT, 0o755),
    ("etc/systemd/system/kubestrap-lab-seed.service", SEED_UNIT, 0o644),
    ("etc/ssh/sshd_config.d/kubestrap-lab.conf", SSHD_DROPIN, 0o644),
    ("etc/fstab", FSTAB, 0o644),
    ("etc/initramfs-tools/update-initramfs.conf", UPDATE_INITRAMFS_CONF, 0o644),
)


def uplink_network(mac: str) -> str:
    """networkd file for NIC 1 (qemu user networking: fixed 10.0.2.15, gateway 10.0.2.2)."""
    return (
        "[Match]\n"
        f"MACAddress={mac}\n\n"
        "[Network]\n"
        "Address=10.0.2.15/24\n"
        "Gateway=10.0.2.2\n"
        "DNS=10.0.2.3\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )


def node_network(mac: str, address_cidr: str, routes: list[tuple[str, str]] | None = None) -> str:
    """networkd file for NIC 2 (the lab switch): the node IP, no gateway; a route per (destination, via)."""
    text = f"[Match]\nMACAddress={mac}\n\n[Network]\nAddress={address_cidr}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    for destination, via in routes or []:
        text += f"\n[Route]\nDestination={destination}\nGateway={via}\n"
    return text
