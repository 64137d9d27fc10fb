"""The Vagrant provider: VirtualBox or libvirt VMs from the rendered Vagrantfile.

The Vagrantfile lives in the lab's state folder (one folder per lab name), so `vagrant` commands a
student types by hand in that folder see exactly the VMs labctl made. Vagrant's full output goes to
the run log; the console gets one line per notable event, the box download's progress, and Vagrant's
own error when a command fails. How the `vagrant` process is run: ``labctl.providers.vagrant_run``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labctl.providers.vagrant_run import (
    PROGRESS,
    Outcome,
    Piece,
    VagrantError,
    VagrantInterrupted,
    failure_message,
    run_vagrant,
    run_vagrant_many,
    vagrant_env,
)
from labctl.providers.vagrant_ssh_config import format_ssh_config as format_ssh_config
from labctl.providers.vagrant_ssh_config import hosts_from_ssh_config as hosts_from_ssh_config
from labctl.providers.vagrant_ssh_config import parse_ssh_config as parse_ssh_config
from labctl.spec import LabSpec
from labctl.transport.base import Host

# `==> master: Creating image (snapshot of base box volume).` — Vagrant's per-machine headline.
HEADLINE = re.compile(r"^==> (?P<machine>[\w.-]+): (?P<text>.*)$")
# vagrant-libvirt prints the whole domain definition as `==> master:  -- Name: ...`: log only.
DETAIL = re.compile(r"^==> [\w.-]+:\s+-- ")


@dataclass(frozen=True)
class MachineState:
    name: str
    state: str  # running, poweroff, shutoff, not_created, saved, aborted, ...
    provider: str

    @property
    def running(self) -> bool:
        return self.state == "running"


# Vagrant commands that only read: answers labctl already holds may stand in for them (see
# ``known_answers``); any other command can change what they would say.
READ_ONLY = ("status", "ssh-config")


@dataclass(frozen=True)
class KnownAnswers:
    states: tuple[MachineState, ...]
    ssh_config: dict[str, dict[str, str]]


_KNOWN: dict[Path, KnownAnswers] = {}


@contextlib.contextmanager
def known_answers(root: Path, states: list[MachineState], ssh_config: dict[str, dict[str, str]]) -> Iterator[None]:
    """While the block runs, `status` and `ssh-config` of the lab in ``root`` are answered from what
    the caller has just established, without starting Vagrant (2-4 s of Ruby and plugin loading
    each). For `snapshot restore`: it has restored every VM and logged in to each with exactly this
    ssh-config, so it knows both answers; the `create` re-check it runs next would otherwise ask
    Vagrant four more times. Any command that can change the VMs (up, halt, destroy, snapshot ...)
    drops the answers, and so does leaving the block."""
    key = Path(root).resolve()
    _KNOWN[key] = KnownAnswers(tuple(states), dict(ssh_config))
    try:
        yield
    finally:
        _KNOWN.pop(key, None)


def parse_machine_readable_status(text: str) -> list[MachineState]:
    """`vagrant status --machine-readable` lines ``ts,target,type,data`` → states, in Vagrant's order."""
    order: list[str] = []
    info: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split(",", 3)
        if len(parts) < 4 or not parts[1]:
            continue
        _, target, kind, data = parts
        if target not in info:
            order.append(target)
            info[target] = {}
        info[target][kind] = data
    return [MachineState(t, info[t].get("state", "unknown"), info[t].get("provider-name", "")) for t in order]


def console_line(line: str) -> str | None:
    """The concise form of one line of Vagrant output for the console, or None to log it only."""
    line = line.rstrip()
    if not line or DETAIL.match(line):
        return None
    m = HEADLINE.match(line)
    if not m:
        return None  # indented detail lines (`    master: ...`) stay in the log
    return f"    {m.group('machine')}: {m.group('text')}"


class VagrantProvider:
    """One lab's VMs. ``root`` is the lab's state folder holding the rendered Vagrantfile."""

    def __init__(
        self,
        spec: LabSpec,
        root: Path,
        *,
        log_path: Path,
        echo: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.root = Path(root)
        self.log_path = Path(log_path)
        self.echo = echo or (lambda _line: None)
        # Never the caller's environment as it is: see vagrant_run.SCRUBBED_ENV.
        self.env = vagrant_env(os.environ, spec.provider.type, env)
        # (command, seconds) of every vagrant call this object made: where a command's time went.
        self.calls: list[tuple[str, float]] = []

    # ---- files ------------------------------------------------------------------------------------
    @property
    def vagrantfile(self) -> Path:
        return self.root / "Vagrantfile"

    @property
    def applied_file(self) -> Path:
        return self.root / "machines.json"

    def render(self, source: str = "the built-in default lab", cache_dir: Path | str | None = None) -> Path:
        """Write the Vagrantfile; with ``cache_dir`` (create --cache) every VM sees the warm cache."""
        from labctl.render import render_vagrantfile

        self.root.mkdir(parents=True, exist_ok=True)
        text = render_vagrantfile(self.spec, source=source, cache_dir=cache_dir)
        if not self.vagrantfile.exists() or self.vagrantfile.read_text(encoding="utf-8") != text:
            self.vagrantfile.write_text(text, encoding="utf-8")
        return self.vagrantfile

    def machine_ids(self) -> dict[str, str]:
        """Machines Vagrant made here, from ``.vagrant/machines/<name>/<provider>/id`` (Vagrant's own
        record; it outlives a deleted Vagrantfile)."""
        out: dict[str, str] = {}
        for id_file in sorted((self.root / ".vagrant" / "machines").glob("*/*/id")):
            with contextlib.suppress(OSError):
                ident = id_file.read_text(encoding="utf-8").strip()
                if ident:
                    out[id_file.parent.parent.name] = ident
        return out

    # ---- plumbing ---------------------------------------------------------------------------------
    def _write_log(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def _need_vagrantfile(self) -> None:
        if not self.vagrantfile.exists():
            raise VagrantError(f"{self.vagrantfile} does not exist — run `labctl create` first")

    def _watcher(self, console: bool) -> tuple[Callable[[Piece], None], list[str]]:
        """What to do with each piece of one vagrant command's output, and the tail of its stdout
        (kept for the error message). ``console``: headlines and download progress go to the
        console as they come."""
        tail: list[str] = []
        progress = _ProgressEcho(self.echo)

        def on_piece(piece: Piece) -> None:
            if piece.stream == "stdout" and not piece.redraw and piece.text.strip():
                tail[:] = [*tail, f"[{piece.seconds:7.1f}s] {piece.text.strip()}"][-8:]
            if not console:
                return
            if piece.redraw or PROGRESS.match(piece.text):
                progress(piece)
            elif piece.stream == "stdout":
                shown = console_line(piece.text)
                if shown:
                    self.echo(shown)

        return on_piece, tail

    def _forget_known(self, args: list[str]) -> None:
        if args[0] not in READ_ONLY and args[:2] != ["snapshot", "list"]:
            _KNOWN.pop(self.root.resolve(), None)

    def _interrupted(self, what: str, outcome: Outcome) -> VagrantInterrupted:
        return VagrantInterrupted(
            f"interrupted: `vagrant {what}` stopped after its clean-up (exit {outcome.returncode}); "
            f"the log is {self.log_path} — run the command again to resume"
        )

    def _run(self, args: list[str], *, console: bool = False) -> str:
        """Run one vagrant command to its end; its stdout, or VagrantError with Vagrant's own words."""
        on_piece, tail = self._watcher(console)
        what = " ".join(args)
        self._forget_known(args)
        outcome = run_vagrant(args, cwd=self.root, env=self.env, log=self._write_log, on_piece=on_piece, notice=self.echo)
        if outcome.interrupted:
            raise self._interrupted(what, outcome)
        if outcome.returncode != 0:
            raise VagrantError(failure_message(what, outcome, self.root, self.log_path, tail))
        self.last_seconds = outcome.seconds
        self.calls.append((what, round(outcome.seconds, 2)))
        return outcome.stdout

    def _run_parallel(self, jobs: list[list[str]]) -> list[tuple[Outcome, str]]:
        """Several vagrant commands at the same time, their output on the console as it comes; per
        job its outcome and, when it failed, the error message ``_run`` would raise."""
        watchers = [self._watcher(True) for _ in jobs]
        for args in jobs:
            self._forget_known(args)
        outcomes = run_vagrant_many(
            jobs, cwd=self.root, env=self.env, log=self._write_log, on_piece=lambda i, p: watchers[i][0](p), notice=self.echo
        )
        done = []
        for args, outcome, (_, tail) in zip(jobs, outcomes, watchers, strict=True):
            what = " ".join(args)
            if outcome.interrupted:
                raise self._interrupted(what, outcome)
            self.calls.append((what, round(outcome.seconds, 2)))
            failed = failure_message(what, outcome, self.root, self.log_path, tail) if outcome.returncode else ""
            done.append((outcome, failed))
        return done

    # ---- lifecycle --------------------------------------------------------------------------------
    def up(self, machines: list[str] | None = None) -> float:
        """`vagrant up` (all machines unless named), as many at a time as the provider allows:
        ``labctl.providers.vagrant_up``. Returns the wall time in seconds."""
        from labctl.providers.vagrant_up import bring_up

        self._need_vagrantfile()
        return bring_up(self, machines)

    def halt(self) -> float:
        self._need_vagrantfile()
        self._run(["halt"], console=True)
        return self.last_seconds

    def destroy(self, keep: list[str] | None = None) -> float:
        """Destroy every machine except those in ``keep`` (e.g. the NFS VM with --keep-data)."""
        if not self.vagrantfile.exists():
            return 0.0  # nothing was ever created here: destroying is already done
        keep = keep or []
        targets = [m.name for m in self.status() if m.name not in keep and m.state != "not_created"]
        if not targets:
            return 0.0
        self._run(["destroy", "-f", *targets], console=True)
        return self.last_seconds

    def _known(self) -> KnownAnswers | None:
        return _KNOWN.get(self.root.resolve())

    def status(self) -> list[MachineState]:
        if not self.vagrantfile.exists():
            return [MachineState(n.name, "not_created", self.spec.provider.type) for _, n in self.spec.all_nodes()]
        known = self._known()
        if known is not None:
            self._write_log("---- vagrant status: not run, the VMs were just restored and reached (labctl snapshot restore)")
            return list(known.states)
        return parse_machine_readable_status(self._run(["status", "--machine-readable"]))

    def ssh_config(self, running: list[str] | None = None) -> dict[str, dict[str, str]]:
        """One `vagrant ssh-config` call for all running machines (each vagrant call costs seconds).
        ``running``: the machines known to run (right after `up`), which saves a `vagrant status`."""
        if running is None:
            running = [m.name for m in self.status() if m.running]
        if not running:
            return {}
        known = self._known()
        if known is not None and all(m in known.ssh_config for m in running):
            self._write_log("---- vagrant ssh-config: not run, this ssh-config just reached every VM (labctl snapshot restore)")
            return {m: known.ssh_config[m] for m in running}
        return parse_ssh_config(self._run(["ssh-config", *running]))

    def hosts(self) -> dict[str, Host]:
        """The lab's nodes as Hosts, addressed the way `vagrant ssh` reaches them."""
        return hosts_from_ssh_config(self.spec, self.ssh_config())

    # ---- snapshots (Vagrant's own; VirtualBox and vagrant-libvirt 0.11 both implement them) -------
    def snapshot_list(self) -> dict[str, list[str]]:
        """Snapshot names per created machine."""
        self._need_vagrantfile()
        return parse_snapshot_list(self._run(["snapshot", "list", "--machine-readable"]))

    def snapshot_save(self, name: str, *, force: bool = False) -> float:
        """One snapshot of every machine, all under the same name. The ssh-config that reaches the
        VMs now is kept with it (``saved_ssh_config``)."""
        self._run(["snapshot", "save", *(["--force"] if force else []), name], console=True)
        current = self.root / "ssh-config"  # written by create/resume for the VMs as they run now
        if current.is_file():
            from labctl.state import write_private

            write_private(self.snapshot_ssh_config_file(name), current.read_text(encoding="utf-8"))
        else:
            self.snapshot_ssh_config_file(name).unlink(missing_ok=True)
        return self.last_seconds

    def snapshot_restore(self, name: str, machines: list[str] | None = None) -> float:
        """Every machine back to ``name``; the wall time. One `vagrant snapshot restore NAME`
        restores the machines in turn (Vagrant 2.3.4 plugins/commands/snapshot/command/restore.rb
        loops ``with_target_vms``), so with libvirt, whose provider is declared parallel
        (vagrant-libvirt 0.11.2 plugin.rb) and whose revert of a running domain is a libvirt call per
        domain (driver.rb ``restore_snapshot``), each VM gets its own `vagrant snapshot restore VM
        NAME` and the reverts overlap. VirtualBox's restore boots the VM again (forwarded ports, the
        fpcollision lock): one call, in turn, as before."""
        from labctl.providers.vagrant_up import serial_forced

        started = time.monotonic()
        if self.spec.provider.type != "libvirt" or not machines or len(machines) < 2 or serial_forced(self.env):
            self._run(["snapshot", "restore", "--no-provision", name], console=True)
            return self.last_seconds
        done = self._run_parallel([["snapshot", "restore", "--no-provision", m, name] for m in machines])
        failed = [message for _, message in done if message]
        if failed:
            raise VagrantError("\n".join(failed))
        return time.monotonic() - started

    def snapshot_ssh_config_file(self, name: str) -> Path:
        return self.root / "snapshots" / f"{name}.ssh-config"

    def saved_ssh_config(self, name: str) -> dict[str, dict[str, str]]:
        """The ssh-config as it was when snapshot ``name`` was saved (else the lab's last one): after
        a restore the VMs have their network state of that moment again. {} when there is none."""
        for path in (self.snapshot_ssh_config_file(name), self.root / "ssh-config"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                parsed = parse_ssh_config(path.read_text(encoding="utf-8"))
                if parsed:
                    return parsed
        return {}

    def delete_snapshots_of(self, machines: list[str]) -> None:
        """Every snapshot of ``machines`` (what `destroy --keep-data` keeps must not be put back later)."""
        if not machines:
            return
        listed = self.snapshot_list()
        for machine in machines:
            for name in listed.get(machine, []):
                self.snapshot_delete(name, [machine])
                self.echo(f"    deleted snapshot {name!r} of {machine}")

    def snapshot_delete(self, name: str, machines: list[str]) -> float:
        """Delete ``name`` on each of ``machines`` (Vagrant refuses a machine that lacks it)."""
        total = 0.0
        for machine in machines:
            self._run(["snapshot", "delete", machine, name], console=True)
            total += self.last_seconds
        # Both callers delete the name from every VM that still has it: its ssh-config goes too (a
        # restore without it falls back to the lab's ssh-config, then to Vagrant's).
        self.snapshot_ssh_config_file(name).unlink(missing_ok=True)
        return total

    # ---- what each existing VM was made with (lab.yaml edits are not applied by `vagrant up`) ------
    def wanted(self) -> dict[str, dict[str, object]]:
        return {n.name: {"cpus": n.cpus, "memory_mib": n.memory_mib, "ip": str(n.ip)} for _, n in self.spec.all_nodes()}

    def record_applied(self, machines: list[str]) -> None:
        """After a successful `vagrant up`: what these machines now have."""
        applied = self._applied()
        wanted = self.wanted()
        applied.update({m: wanted[m] for m in machines if m in wanted})
        self.applied_file.write_text(json.dumps(applied, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def forget_applied(self, machines: list[str]) -> None:
        applied = self._applied()
        for m in machines:
            applied.pop(m, None)
        self.applied_file.write_text(json.dumps(applied, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def _applied(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.applied_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def stale_machines(self, existing: list[str]) -> list[str]:
        """For each existing machine whose CPUs, memory or address in lab.yaml differ from what it
        was made with: one line saying what changed and what to do. `vagrant up` skips a running
        machine and applies none of these to a stopped one's running cluster (its address is in the
        cluster's certificates and join configuration)."""
        applied, wanted = self._applied(), self.wanted()
        problems = []
        for name in existing:
            had, want = applied.get(name), wanted.get(name)
            if not had or not want:
                continue
            changed = [f"{k} {had.get(k)} → {want[k]}" for k in ("cpus", "memory_mib", "ip") if had.get(k) != want[k]]
            if not changed:
                continue
            if had.get("ip") != want["ip"]:
                fix = (
                    f"destroy that VM (`cd {self.root} && vagrant destroy -f {name}`) and run `labctl create` again "
                    "— a node's address is part of the cluster"
                    + (" (for the master: `labctl destroy` the whole lab)" if name == self.spec.nodes.master.name else "")
                )
            else:
                fix = f"apply it with `cd {self.root} && vagrant reload {name}`, then run `labctl create` again"
            problems.append(f"{name}: lab.yaml changed ({', '.join(changed)}) since the VM was made — {fix}")
        return problems


class _ProgressEcho:
    """A progress meter (the box download, Vagrant 2.3.4 curl_helper.rb; vagrant-libvirt 0.11.2's
    upload of the box into the pool, handle_box_image.rb) for the console: a line per 10 % step, or
    every 15 s. The headline before it says what is progressing."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last_pct = -10
        self.last_time = -1e9

    def __call__(self, piece: Piece) -> None:
        m = PROGRESS.match(piece.text)
        if not m:
            return
        pct = int(m.group("pct"))
        if pct < self.last_pct:  # the next meter (download done, upload starting)
            self.last_pct = -10
        if pct // 10 > self.last_pct // 10 or piece.seconds - self.last_time >= 15:
            self.last_pct, self.last_time = pct, piece.seconds
            who = m.group("machine") or "vagrant"
            self.echo(f"    {who}: Progress: {pct}%{m.group('rest')}")


def parse_snapshot_list(text: str) -> dict[str, list[str]]:
    """Snapshot names per machine from `vagrant snapshot list --machine-readable`.

    Vagrant 2.3.4 (plugins/commands/snapshot/command/list.rb) prints, per machine, either the
    `list_none` message as ui output (then a hint as ui detail, which is not a name) or an empty
    prefixed output line followed by one ui detail line per snapshot. A machine that is not created
    gets only ui info ``VM not created. Moving on...`` (``vagrant.commands.common.vm_not_created``):
    it is left out, so the keys are exactly the machines that exist."""
    names: dict[str, list[str]] = {}
    empty: set[str] = set()
    for line in text.splitlines():
        parts = line.split(",", 4)
        if len(parts) < 5 or parts[2] != "ui" or not parts[1]:
            continue
        machine, kind, data = parts[1], parts[3], parts[4].replace("%!(VAGRANT_COMMA)", ",")
        if kind not in ("output", "detail"):
            continue
        names.setdefault(machine, [])
        if kind == "output" and "No snapshots have been taken yet" in data:
            empty.add(machine)
        elif kind == "detail" and machine not in empty and data.strip():
            names[machine].append(data.strip())
    return names
