"""VM lab: real Debian VMs under qemu for end-to-end tests of kubestrap.

Modules, one job each: ``paths`` (where things live), ``hostdeps`` (host programs),
``recipe`` + ``image`` (cached base image), ``guest`` (files baked into the image),
``alloc`` (MACs, IPs, ports, ids), ``seed`` (per-VM first-boot data), ``accel`` (KVM or TCG),
``procs`` (recorded processes), ``switch`` (vde_switch), ``vm`` (qemu), ``sshwait`` (SSH readiness),
``inventory`` (Ansible inventory), ``state`` (lab state file), ``lab`` (up/down/status), ``cli``.
"""
