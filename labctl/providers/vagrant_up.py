"""Bringing a lab's VMs up: as many at a time as the provider allows.

Upstream facts (Vagrant 2.3.4, vagrant-libvirt 0.11.2, as installed and in hashicorp/vagrant):

- One `vagrant up` boots its machines in parallel only when every machine's provider was registered
  with ``parallel: true`` (lib/vagrant/batch_action.rb ``run``: "Disabling parallelization because
  provider doesn't support it"; plugins/commands/up/command.rb: ``--parallel`` is on by default).
- vagrant-libvirt registers ``provider('libvirt', parallel: true, box_optional: true)``
  (lib/vagrant-libvirt/plugin.rb): one `vagrant up` of all machines already boots them together,
  so labctl makes exactly that one call for libvirt.
- VirtualBox is registered as ``provider(:virtualbox, priority: 6)``, without ``parallel``
  (plugins/providers/virtualbox/plugin.rb): one `vagrant up` boots the VMs one after the other.
  Separate `vagrant up VM` processes do run at the same time (each machine has its own action
  lock, lib/vagrant/machine.rb ``action``).
- What separate processes must not do twice at once: add the box (HandleBox serialises only the
  threads of one process, lib/vagrant/action/builtin/handle_box.rb) and create the host-only
  network (no lock at all). The linked-clone master import (virtualbox/action/import_master.rb) and
  its ``base`` snapshot (prepare_clone_snapshot.rb) take an environment lock *with* retry, so a
  second process waits for them. Forwarded-port collision handling takes one *without* retry
  (lib/vagrant/action/builtin/handle_forwarded_port_collisions.rb ``env.lock("fpcollision")``):
  a second process that arrives meanwhile fails with EnvironmentLockedError ("Vagrant attempted to
  acquire a lock named 'fpcollision'..."), and VBoxManage can refuse a machine another session holds.

So for VirtualBox: when none of the lab's VMs exists yet, the first VM goes up alone (box added,
master imported, base snapshot and host-only network made); then one `vagrant up VM` process per
remaining VM, at the same time. A VM whose parallel `up` failed on one of those locks is brought up
again afterwards, the serial way (one `vagrant up` of all of them). ``LABCTL_VAGRANT_SERIAL=1``
in the environment forces the serial way from the start.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from labctl.providers.vagrant_run import VagrantError

if TYPE_CHECKING:
    from labctl.providers.vagrant import VagrantProvider

SERIAL_ENV = "LABCTL_VAGRANT_SERIAL"
# Failures that only say another process held something at that moment: the serial way avoids them.
# Vagrant 2.3.4 templates/locales/en.yml ``environment_locked`` and ``machine_action_locked``;
# VirtualBox's "is already locked for a session (or being unlocked)" (VBOX_E_INVALID_OBJECT_STATE).
LOCK_ERROR = re.compile(
    r"acquire a lock named|another process is already executing an action|already locked for a session"
    r"|VBOX_E_INVALID_OBJECT_STATE",
    re.IGNORECASE,
)


def serial_forced(env: dict[str, str]) -> bool:
    return env.get(SERIAL_ENV, "").strip().lower() in ("1", "true", "yes")


def bring_up(provider: VagrantProvider, machines: list[str] | None) -> float:
    """`vagrant up` of ``machines`` (all of the lab's when None); the wall time in seconds."""
    kind = provider.spec.provider.type
    started = time.monotonic()
    names = machines or [n.name for _, n in provider.spec.all_nodes()]
    if kind != "virtualbox" or len(names) < 2 or serial_forced(provider.env):
        # libvirt boots them together inside this one call; a lone VM or the forced serial way too.
        provider._run(["up", *(machines or []), f"--provider={kind}"], console=True)
        return time.monotonic() - started
    rest = names
    if not provider.machine_ids():
        first, rest = names[0], names[1:]
        provider.echo(
            f"    {first}: up alone first (box, linked-clone master, host-only network), then "
            f"{', '.join(rest)} at the same time"
        )
        provider._run(["up", first, f"--provider={kind}"], console=True)
    if len(rest) == 1:
        provider._run(["up", rest[0], f"--provider={kind}"], console=True)
        return time.monotonic() - started
    done = provider._run_parallel([["up", m, f"--provider={kind}"] for m in rest])
    locked = [m for m, (_, failed) in zip(rest, done, strict=True) if failed and LOCK_ERROR.search(failed)]
    other = [failed for _, (_, failed) in zip(rest, done, strict=True) if failed and not LOCK_ERROR.search(failed)]
    if other:
        raise VagrantError("\n".join(other))
    if locked:
        provider.echo(
            f"    {', '.join(locked)}: `vagrant up` met a lock held by another Vagrant process; "
            "bringing them up the serial way"
        )
        provider._run(["up", *locked, f"--provider={kind}"], console=True)
    return time.monotonic() - started
