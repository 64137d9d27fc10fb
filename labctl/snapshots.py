"""Snapshots of a whole lab: every VM saved, restored, listed and deleted together.

Vagrant's own snapshot commands do the work (VirtualBox natively; vagrant-libvirt 0.11 implements
them too: lib/vagrant-libvirt/action/snapshot_save.rb, and destroy_domain.rb deletes a domain's
snapshots before the domain, so `labctl destroy` takes them with the VMs). labctl adds what makes a
snapshot usable in a classroom: one name for all VMs, checks before anything changes (the lab
exists, the name is there on every VM), and after a restore the re-checks a restore can break: the
guests' clocks jump back to the moment of the snapshot (set again from this host), then the same
guarded steps, verification and summary as `labctl create`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from labctl.errors import LabctlError

if TYPE_CHECKING:
    from labctl.lifecycle import Console, Lab
    from labctl.providers.vagrant import VagrantProvider

READY = "ready"  # the snapshot `labctl create` saves after its final verify
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class SnapshotError(LabctlError):
    exit_code = 1


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise SnapshotError(
            f"snapshot name {name[:80]!r} — use up to 63 lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def _created_provider(lab: Lab, console: Console, command: str) -> tuple[VagrantProvider, list[str]]:
    """The lab's provider and its VM names; refuses a lab that cannot be snapshotted or is not there."""
    spec = lab.spec
    if spec.provider.type == "ssh":
        raise SnapshotError(
            "provider ssh: the machines are not labctl's VMs, so labctl cannot snapshot them — use the snapshots "
            "of whatever runs them"
        )
    provider = lab.provider(lab.new_log(command), console)
    if not provider.vagrantfile.exists():
        raise SnapshotError(f"lab {spec.name!r} is not created yet — run `labctl create` first")
    states = provider.status()
    missing = [m.name for m in states if m.state == "not_created"]
    if missing:
        raise SnapshotError(
            f"lab {spec.name!r} is not complete: {', '.join(missing)} not created — run `labctl create` first"
        )
    return provider, [m.name for m in states]


def list_snapshots(lab: Lab, console: Console) -> dict[str, list[str]]:
    """Snapshot name → the VMs that have it (a lab snapshot is whole when every VM does)."""
    provider, _machines = _created_provider(lab, console, "snapshot-list")
    by_name: dict[str, list[str]] = {}
    for machine, names in provider.snapshot_list().items():
        for name in names:
            by_name.setdefault(name, []).append(machine)
    return {name: sorted(vms) for name, vms in sorted(by_name.items())}


def _memory_gib(lab: Lab) -> float:
    return sum(node.memory_mib for _, node in lab.spec.all_nodes()) / 1024


def save(lab: Lab, console: Console, name: str, *, force: bool = False) -> float:
    from labctl.lablock import LabLock

    check_name(name)
    with LabLock(lab.state_dir, lab.spec.name, f"labctl snapshot save {name}"):
        provider, machines = _created_provider(lab, console, "snapshot-save")
        have = [m for m, names in provider.snapshot_list().items() if name in names]
        if have and not force:
            raise SnapshotError(
                f"snapshot {name!r} already exists on {', '.join(sorted(have))} — pass --force to replace it, "
                "or choose another name"
            )
        console.say(f"==> Saving snapshot {name!r} of {len(machines)} VMs ({', '.join(machines)})", "bold")
        seconds = provider.snapshot_save(name, force=force)
    console.say(
        f"==> Snapshot {name!r} saved in {seconds:.0f} s. It takes disk space: up to the VMs' memory "
        f"({_memory_gib(lab):.0f} GiB) plus every disk block changed from now on; `labctl snapshot delete {name}` "
        "frees it",
        "bold green",
    )
    return seconds


def restore(
    lab: Lab,
    console: Console,
    name: str,
    *,
    only: Sequence[str] = (),
    transport_factory: Callable[[], Any] | None = None,
) -> float:
    """Every VM back to ``name``; clocks set again; then `create`'s steps, verification and summary."""
    from labctl import lifecycle
    from labctl.lablock import LabLock

    check_name(name)
    started = time.monotonic()
    with LabLock(lab.state_dir, lab.spec.name, f"labctl snapshot restore {name}"):
        provider, machines = _created_provider(lab, console, "snapshot-restore")
        listed = provider.snapshot_list()
        lacking = [m for m in machines if name not in listed.get(m, [])]
        if lacking:
            known = sorted({n for names in listed.values() for n in names})
            raise SnapshotError(
                f"snapshot {name!r} does not exist on {', '.join(lacking)} — nothing was restored; snapshots of this "
                f"lab: {', '.join(known) or 'none'} (`labctl snapshot list`)"
            )
        console.say(f"==> Restoring snapshot {name!r} on {len(machines)} VMs", "bold")
        provider.snapshot_restore(name)
        hosts = provider.hosts()
        transport = transport_factory() if transport_factory else lifecycle._ssh_transport()
        try:
            sync_clocks(transport, list(hosts.values()), console)
        finally:
            transport.close()
    restored = time.monotonic() - started
    console.say(f"==> VMs restored in {restored:.0f} s; re-checking the lab the way `labctl create` does", "bold")
    # The guarded steps skip what the snapshot already holds and repair what it does not (a service
    # that came back stopped); create ends with the same verification and summary as always.
    # Doctor's host checks are left out: this host ran the lab until a moment ago.
    lifecycle.create(lab, console, only=only, transport_factory=transport_factory, host_checks=False)
    return time.monotonic() - started


# Sets the clock from this host's, then lets the guest's own time service take over again.
CLOCK_SCRIPT = """\
date -u -s "@{epoch}" >/dev/null
if command -v hwclock >/dev/null 2>&1; then hwclock --systohc >/dev/null 2>&1 || true; fi
if systemctl is-enabled --quiet systemd-timesyncd 2>/dev/null; then systemctl restart systemd-timesyncd || true; fi
if systemctl is-enabled --quiet chrony 2>/dev/null; then chronyc -a makestep >/dev/null 2>&1 || true; fi
date -u +%s
"""


def sync_clocks(transport: Any, hosts: list[Any], console: Console, *, tolerance_s: int = 5) -> None:
    """A restored VM wakes with the clock of the snapshot's moment: TLS certificates, kubelet leases
    and tokens then look wrong. Set each guest's clock from this host's, in parallel, and check it."""

    def one(host: Any) -> tuple[str, str]:
        sent = int(time.time())
        result = transport.run(host, CLOCK_SCRIPT.format(epoch=sent), sudo=True, timeout=60)
        answered = int(time.time()) + 1
        if not result.ok:
            why = result.error or (result.stderr_tail(3) or f"exit {result.exit_code}")
            return host.name, f"could not set the clock: {why}"
        try:
            guest = int(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return host.name, f"unexpected answer from date: {result.stdout.strip()[:80]!r}"
        # The guest read its clock somewhere between our sending and its answer arriving: on a busy
        # host that round trip alone takes seconds, so the window, not one instant, is the truth.
        if sent - tolerance_s <= guest <= answered + tolerance_s:
            return host.name, ""
        off = guest - sent if guest < sent else guest - answered
        return host.name, f"clock still {abs(off)} s off after setting it"

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        outcomes = list(pool.map(one, hosts))
    failed = [f"{name}: {why}" for name, why in outcomes if why]
    if failed:
        raise SnapshotError("after the restore, " + "; ".join(failed) + " — check the VM with `labctl ssh NODE`")
    console.say(f"    clocks set on {', '.join(name for name, _ in outcomes)}")


def delete(lab: Lab, console: Console, name: str) -> list[str]:
    from labctl.lablock import LabLock

    check_name(name)
    with LabLock(lab.state_dir, lab.spec.name, f"labctl snapshot delete {name}"):
        provider, _machines = _created_provider(lab, console, "snapshot-delete")
        have = sorted(m for m, names in provider.snapshot_list().items() if name in names)
        if not have:
            raise SnapshotError(f"snapshot {name!r} does not exist in lab {lab.spec.name!r} — see `labctl snapshot list`")
        provider.snapshot_delete(name, have)
    console.say(f"==> Snapshot {name!r} deleted from {', '.join(have)}", "bold green")
    return have
