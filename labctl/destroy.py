"""``labctl destroy``: remove a lab's VMs and everything labctl keeps for it; safe to run again."""

from __future__ import annotations

import contextlib
import shutil

from labctl.durations import format_duration
from labctl.errors import LifecycleError
from labctl.lab import Console, Lab


def destroy(lab: Lab, console: Console, *, keep_data: bool = False) -> None:
    """Remove the lab's VMs (all, or all but the NFS VM with ``keep_data``) and everything labctl
    keeps for the lab: merged kubeconfig context, kubeconfig, ssh-config, secrets, logs, the state
    folder. Safe to run again, and it finishes the clean-up when the VMs are already gone (deleted by
    hand, or an earlier destroy interrupted after `vagrant destroy`)."""
    from labctl.lablock import LabLock

    spec = lab.spec
    if not lab.state_dir.exists():
        _drop_merged_context(lab, console)
        console.say(f"lab {spec.name!r}: nothing to destroy ({lab.state_dir} does not exist)")
        return
    seconds = 0.0
    leaked: list[str] = []
    with LabLock(lab.state_dir, spec.name, "labctl destroy") as lock:
        if spec.provider.type == "ssh":
            console.say("provider ssh: the machines are yours and stay as they are; labctl forgets its state for this lab")
        else:
            seconds, leaked = _destroy_vms(lab, console, keep_data)
        _drop_merged_context(lab, console)
        if keep_data:
            for path in (lab.kubeconfig, lab.ssh_config):
                path.unlink(missing_ok=True)
        else:
            _forget(lab, keep=(".lock", ".vagrant") if leaked else (".lock",))
            if not leaked:
                lock.discard()  # the lock file goes with the folder, while still held
    if not keep_data and not leaked:
        with contextlib.suppress(OSError):
            lab.state_dir.rmdir()
    if leaked:
        raise LifecycleError(
            "destroy could not remove " + "; ".join(leaked) + f" — their records stay in {lab.state_dir / '.vagrant'}"
        )
    done = f"==> Lab {spec.name!r} destroyed in {format_duration(seconds)}" if seconds else f"==> Lab {spec.name!r} cleaned up"
    console.say(
        done + (" — data kept: `labctl create` reuses it" if keep_data else f"; nothing of it is left in {lab.state_dir.parent}"),
        "bold green",
    )


def _destroy_vms(lab: Lab, console: Console, keep_data: bool) -> tuple[float, list[str]]:
    """`vagrant destroy -f` every VM that exists (but the NFS VM with ``keep_data``). Returns the
    seconds it took and, for VMs Vagrant knows but lab.yaml no longer names, what to do by hand."""
    spec = lab.spec
    provider = lab.provider(lab.new_log("destroy"), console)
    ids = provider.machine_ids()
    if ids and not provider.vagrantfile.exists():
        # Vagrant needs the Vagrantfile to act on machines its .vagrant folder still lists.
        provider.render(lab.source)
        console.say(f"    {provider.vagrantfile} was missing; rendered it again to remove {', '.join(sorted(ids))}")
    names = {n.name for _, n in spec.all_nodes()}
    leaked = [
        f"VM {name} (provider id {ident}) is not in lab.yaml any more: remove it with "
        + (f"`virsh undefine --remove-all-storage {ident}`" if spec.provider.type == "libvirt" else f"`VBoxManage unregistervm {ident} --delete`")
        for name, ident in sorted(ids.items())
        if name not in names
    ]
    keep = [spec.nodes.nfs.name] if keep_data else []
    if not provider.vagrantfile.exists():
        console.say(f"lab {spec.name!r}: no VM to destroy (no Vagrantfile, no VM recorded)")
        return 0.0, leaked
    left = [m.name for m in provider.status() if m.state != "not_created" and m.name not in keep]
    if not left:
        console.say(f"lab {spec.name!r}: no VM left to destroy" + (f" besides {keep[0]}" if keep else "") + "; cleaning up")
        return 0.0, leaked
    console.say(f"==> Destroying lab {spec.name!r}" + (f" (keeping {keep[0]} and its exports)" if keep else ""), "bold")
    seconds = provider.destroy(keep=keep)
    provider.forget_applied(left)
    # The kept NFS VM's snapshots would bring back an NFS server whose clients are gone.
    provider.delete_snapshots_of(keep)
    return seconds, leaked


def _drop_merged_context(lab: Lab, console: Console) -> None:
    from labctl.kubeconfig import remove_merged_contexts

    for target in remove_merged_contexts(lab):
        console.say(f"    removed context {lab.context} from {target}")


def _forget(lab: Lab, *, keep: tuple[str, ...] = (".lock",)) -> None:
    if not lab.state_dir.exists():
        return
    # The lock file is held open by this process: empty the folder's other entries, then the folder.
    for entry in lab.state_dir.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
