"""Snapshots of a whole lab: every VM saved, restored, listed and deleted together.

Vagrant's own snapshot commands do the work (VirtualBox natively; vagrant-libvirt 0.11 implements
them too: lib/vagrant-libvirt/action/snapshot_save.rb, and destroy_domain.rb deletes a domain's
snapshots before the domain, so `labctl destroy` takes them with the VMs). labctl adds what makes a
snapshot usable in a classroom: one name for all VMs, checks before anything changes (the lab
exists, the name is there on every VM), and after a restore the re-checks of what a restore can
break: the guests' clocks jump back to the moment of the snapshot (set again from this host), the
kubelet and etcd must come back, and the lab must answer from this machine (create's final
verification, Open WebUI's endpoint among it), then create's summary.
"""

from __future__ import annotations

import json
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


def _vagrant_provider(lab: Lab, console: Console, command: str) -> VagrantProvider:
    """The lab's Vagrant provider; refuses a lab that cannot be snapshotted or has no Vagrantfile."""
    spec = lab.spec
    if spec.provider.type == "ssh":
        raise SnapshotError(
            "provider ssh: the machines are not labctl's VMs, so labctl cannot snapshot them — use the snapshots "
            "of whatever runs them"
        )
    provider = lab.provider(lab.new_log(command), console)
    if not provider.vagrantfile.exists():
        raise SnapshotError(f"lab {spec.name!r} is not created yet — run `labctl create` first")
    return provider


def _whole_lab(lab: Lab, existing: list[str]) -> list[str]:
    """The lab's VM names, or SnapshotError when one of them does not exist."""
    wanted = [n.name for _, n in lab.spec.all_nodes()]
    missing = [m for m in wanted if m not in existing]
    if missing:
        raise SnapshotError(
            f"lab {lab.spec.name!r} is not complete: {', '.join(missing)} not created — run `labctl create` first"
        )
    return wanted


def _created_provider(lab: Lab, console: Console, command: str) -> tuple[VagrantProvider, list[str]]:
    """The lab's provider and its VM names; refuses a lab that cannot be snapshotted or is not there."""
    provider = _vagrant_provider(lab, console, command)
    states = provider.status()
    _whole_lab(lab, [m.name for m in states if m.state != "not_created"])
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
    """Every VM back to ``name``, then the re-checks of what a restore can break: the clocks (set
    again), the kubelet and etcd (back), then `create`'s final verification from this machine (the
    Open WebUI endpoint among it) and its summary. ``only``: run these `create` steps instead of the
    final verification, as `create --only` would.

    Two Vagrant calls on the way (each is seconds of Ruby start-up): `snapshot list`, which says
    both which VMs exist and which snapshots each has, and `snapshot restore` (one per VM at the same
    time with libvirt). The addresses come from the ssh-config kept with the snapshot
    (``_reach_restored``); what follows is told what Vagrant would answer (``known_answers``)."""
    from labctl import lifecycle
    from labctl.lablock import LabLock
    from labctl.providers.vagrant import MachineState, hosts_from_ssh_config, known_answers

    check_name(name)
    started = time.monotonic()
    timings: dict[str, Any] = {}
    with LabLock(lab.state_dir, lab.spec.name, f"labctl snapshot restore {name}"):
        provider = _vagrant_provider(lab, console, "snapshot-restore")
        listed = provider.snapshot_list()
        machines = _whole_lab(lab, list(listed))
        lacking = [m for m in machines if name not in listed.get(m, [])]
        if lacking:
            known = sorted({n for names in listed.values() for n in names})
            raise SnapshotError(
                f"snapshot {name!r} does not exist on {', '.join(lacking)} — nothing was restored; snapshots of this "
                f"lab: {', '.join(known) or 'none'} (`labctl snapshot list`)"
            )
        stale = provider.stale_machines(machines)
        if stale:  # the re-check would refuse them after the restore: refuse before anything changes
            raise SnapshotError("lab.yaml no longer matches VMs that exist — nothing was restored:\n  " + "\n  ".join(stale))
        console.say(f"==> Restoring snapshot {name!r} on {len(machines)} VMs", "bold")
        provider.snapshot_restore(name, machines)
        phase = time.monotonic()
        transport = transport_factory() if transport_factory else lifecycle._ssh_transport()
        try:
            config = _reach_restored(lab, console, provider, name, transport)
        except BaseException:
            transport.close()
            raise
        timings["reach_and_set_clocks_seconds"] = round(time.monotonic() - phase, 2)
    restored = time.monotonic() - started
    timings["vms_restored_seconds"] = round(restored, 2)
    console.say(f"==> VMs restored in {restored:.0f} s; re-checking what a restore can break", "bold")
    phase = time.monotonic()
    running = [MachineState(m, "running", lab.spec.provider.type) for m in machines]
    kept = _KeptOpen(transport)
    try:
        # Every VM runs and answers with ``config`` (the clocks were just set through it): the
        # checks below and `create` ask Vagrant nothing (known_answers).
        with known_answers(provider.root, running, config):
            hosts = hosts_from_ssh_config(lab.spec, config)
            check_cluster_back(transport, list(hosts.values()), console)
            timings["kubelet_etcd_seconds"] = round(time.monotonic() - phase, 2)
            if only:
                # Asked for by name: those steps of `create`, guarded as always (a service the
                # snapshot holds stopped is started); like `create --only`, no final verification.
                lifecycle.create(lab, console, only=only, transport_factory=lambda: kept, host_checks=False)
            else:
                # The snapshot holds a lab whose every step had run (`ready` is saved after create's
                # final verify): what a restore can break is runtime state, checked above, and what
                # the user sees, checked here as `create` ends: the same checks and summary.
                lifecycle.verify_from_host(lab, console, transport_factory=lambda: kept)
                kubeconfig = lab.kubeconfig if lab.kubeconfig.exists() else None
                lifecycle._summary(lab, console, time.monotonic() - started, restored, kubeconfig, None, ())
    except BaseException as err:
        timings["failed"] = type(err).__name__
        raise
    finally:
        transport.close()
        total = time.monotonic() - started
        timings.update(recheck_seconds=round(time.monotonic() - phase, 2), total_seconds=round(total, 2))
        timings["vagrant_calls"] = [[what, seconds] for what, seconds in provider.calls]
        # Where the time went (also when the final verification failed), for the e2e test's
        # figures and anyone asking why a restore was slow.
        (lab.state_dir / "last-restore.json").write_text(json.dumps(timings) + "\n", encoding="utf-8")
    return total


# A reverted VM runs at once, but under load (or qemu TCG) its network can take seconds to answer
# again; Vagrant's own restore does not wait for it (vagrant-libvirt 0.11.2 action/snapshot_restore.rb
# only reverts the domain). Unreachable hosts are tried again for this long before Vagrant is asked.
REACH_GRACE_S = 30.0
UNREACHABLE = ("unreachable", "lost", "timeout")


class _KeptOpen:
    """The restore's transport handed to `create`, whose ``close`` must not end the connections
    the restore opened (and closes itself) — each new SSH handshake costs a second or more."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        pass


def _reach_restored(
    lab: Lab,
    console: Console,
    provider: VagrantProvider,
    name: str,
    transport: Any,
) -> dict[str, dict[str, str]]:
    """Log in to every restored VM and set its clock; the ssh-config that worked.

    First with the ssh-config kept when the snapshot was saved, without asking Vagrant: a restore
    puts back each VM's memory and settings as they were at that moment, so the guest has the same
    address and DHCP lease (libvirt: the domain's MAC and the network's lease are untouched by a
    revert) or the same forwarded SSH port (VirtualBox keeps port forwards in the machine settings
    a snapshot holds), and the same key Vagrant wrote at first boot. A VM that does not answer yet
    is tried again for REACH_GRACE_S. If one still does not answer, or answers "refused"/"auth"
    (the VMs were rebooted by hand since, a port re-assigned), Vagrant is asked as `create` would:
    `status`, `up` for a VM that is not running, `ssh-config`."""
    from labctl.providers.vagrant import VagrantError, format_ssh_config, hosts_from_ssh_config
    from labctl.state import write_private

    def clocks(config: dict[str, dict[str, str]]) -> tuple[list[tuple[str, str, str]], list[str]]:
        """Outcomes per host, retrying the unreachable ones; and what still keeps a host away."""
        hosts = list(hosts_from_ssh_config(lab.spec, config).values())
        deadline = time.monotonic() + REACH_GRACE_S
        done: dict[str, tuple[str, str, str]] = {}
        while True:
            for outcome in clock_outcomes(transport, [h for h in hosts if h.name not in done]):
                # The run log says how long each VM took to answer after the restore.
                provider._write_log(f"---- {time.strftime('%H:%M:%S')} clock of {outcome[0]}: {outcome[1] or 'set'}")
                if not outcome[2] or outcome[2] not in UNREACHABLE or time.monotonic() > deadline:
                    done[outcome[0]] = outcome
            if len(done) == len(hosts):
                ordered = [done[h.name] for h in hosts]
                return ordered, [f"{host}: {why}" for host, why, cause in ordered if cause]
            time.sleep(1)

    config = provider.saved_ssh_config(name)
    if config:
        try:
            outcomes, lost = clocks(config)
        except VagrantError:  # the saved file lacks a VM of the lab
            outcomes, lost = [], ["the saved ssh-config does not name every VM"]
        if not lost:
            _report_clocks(outcomes, console)
            return config
        console.say(f"    the ssh-config saved with {name!r} does not reach every VM ({'; '.join(lost)}); asking Vagrant")
    states = provider.status()
    pending = [s.name for s in states if not s.running]
    if pending:
        provider.up(pending)
    config = provider.ssh_config(running=[s.name for s in states])
    write_private(lab.ssh_config, format_ssh_config(config))
    _report_clocks(clocks(config)[0], console)
    return config


# Sets the clock from this host's, then lets the guest's own time service take over again.
CLOCK_SCRIPT = """\
date -u -s "@{epoch}" >/dev/null
if command -v hwclock >/dev/null 2>&1; then hwclock --systohc >/dev/null 2>&1 || true; fi
if systemctl is-enabled --quiet systemd-timesyncd 2>/dev/null; then systemctl restart systemd-timesyncd || true; fi
if systemctl is-enabled --quiet chrony 2>/dev/null; then chronyc -a makestep >/dev/null 2>&1 || true; fi
date -u +%s
"""


def clock_outcomes(transport: Any, hosts: list[Any], *, tolerance_s: int = 5) -> list[tuple[str, str, str]]:
    """A restored VM wakes with the clock of the snapshot's moment: TLS certificates, kubelet leases
    and tokens then look wrong. Set each guest's clock from this host's, in parallel, and check it.
    Per host: (name, what is wrong or "", why the host could not be reached at all or "")."""

    def one(host: Any) -> tuple[str, str, str]:
        sent = int(time.time())
        result = transport.run(host, CLOCK_SCRIPT.format(epoch=sent), sudo=True, timeout=60)
        answered = int(time.time()) + 1
        if not result.ok:
            why = result.error or (result.stderr_tail(3) or f"exit {result.exit_code}")
            return host.name, f"could not set the clock: {why}", (result.cause or "unreachable") if result.error else ""
        try:
            guest = int(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return host.name, f"unexpected answer from date: {result.stdout.strip()[:80]!r}", ""
        # The guest read its clock somewhere between our sending and its answer arriving: on a busy
        # host that round trip alone takes seconds, so the window, not one instant, is the truth.
        if sent - tolerance_s <= guest <= answered + tolerance_s:
            return host.name, "", ""
        off = guest - sent if guest < sent else guest - answered
        return host.name, f"clock still {abs(off)} s off after setting it", ""

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def _report_clocks(outcomes: list[tuple[str, str, str]], console: Console) -> None:
    failed = [f"{name}: {why}" for name, why, _ in outcomes if why]
    if failed:
        raise SnapshotError("after the restore, " + "; ".join(failed) + " — check the VM with `labctl ssh NODE`")
    console.say(f"    clocks set on {', '.join(name for name, _, _ in outcomes)}")


def sync_clocks(transport: Any, hosts: list[Any], console: Console, *, tolerance_s: int = 5) -> None:
    """``clock_outcomes``, and SnapshotError naming every host whose clock is not right."""
    _report_clocks(clock_outcomes(transport, hosts, tolerance_s=tolerance_s), console)


# After the clock jump the kubelet (a systemd service) and etcd (a static pod the kubelet runs) come
# back on their own; this waits for them, a bounded time, and says what it found. A VM without a
# kubelet (the NFS server, or a snapshot taken before Kubernetes was installed) reports "absent".
CLUSTER_BACK_SCRIPT = """\
if systemctl cat kubelet >/dev/null 2>&1; then
  state=$(systemctl is-active kubelet 2>/dev/null)
  for _ in $(seq 1 {wait}); do [ "$state" = active ] && break; sleep 1; state=$(systemctl is-active kubelet 2>/dev/null); done
  echo "kubelet $state"
else
  echo "kubelet absent"
fi
if [ -f /etc/kubernetes/manifests/etcd.yaml ] && [ -f /etc/kubernetes/admin.conf ] && command -v kubectl >/dev/null 2>&1; then
  answer=
  for _ in $(seq 1 {wait}); do
    answer=$(kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw=/readyz/etcd --request-timeout=5s 2>&1 | tail -n 1)
    [ "$answer" = ok ] && break
    sleep 2
  done
  echo "etcd ${{answer:-no answer}}"
else
  echo "etcd absent"
fi
"""


def check_cluster_back(transport: Any, hosts: list[Any], console: Console, *, wait_s: int = 90) -> None:
    """The kubelet active on every VM that has one, etcd ready (the API server's /readyz/etcd) on
    every control-plane VM: on all VMs at the same time. SnapshotError naming each that is not."""

    def one(host: Any) -> tuple[str, dict[str, str], str]:
        result = transport.run(host, CLUSTER_BACK_SCRIPT.format(wait=wait_s), sudo=True, timeout=3 * wait_s + 30)
        if not result.ok:
            return host.name, {}, result.error or result.stderr_tail(3) or f"exit {result.exit_code}"
        found = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("kubelet ", "etcd ")))
        return host.name, found, ""

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        outcomes = list(pool.map(one, hosts))
    problems, seen = [], []
    for name, found, error in outcomes:
        if error:
            problems.append(f"{name}: could not check the kubelet and etcd: {error}")
            continue
        kubelet, etcd = found.get("kubelet", "no answer"), found.get("etcd", "no answer")
        if kubelet not in ("active", "absent"):
            problems.append(f"{name}: kubelet is {kubelet!r} after the restore (`labctl ssh {name} -- journalctl -u kubelet`)")
        if etcd not in ("ok", "absent"):
            problems.append(f"{name}: etcd is not ready after the restore: {etcd}")
        seen.append(f"{name} (kubelet {kubelet}" + ("" if etcd == "absent" else f", etcd {etcd}") + ")")
    if problems:
        raise SnapshotError("after the restore, " + "; ".join(problems))
    console.say(f"    kubelet and etcd: {', '.join(seen)}")


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
