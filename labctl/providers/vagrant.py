"""The Vagrant provider: VirtualBox or libvirt VMs from the rendered Vagrantfile, via python-vagrant.

The Vagrantfile lives in the lab's state folder (one folder per lab name), so `vagrant` commands a
student types by hand in that folder see exactly the VMs labctl made. Vagrant's full output goes to
the run log; the console gets one line per notable event.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from labctl.errors import LabctlError
from labctl.spec import LabSpec
from labctl.transport.base import Host

# `==> master: Creating image (snapshot of base box volume).` — Vagrant's per-machine headline.
HEADLINE = re.compile(r"^==> (?P<machine>[\w.-]+): (?P<text>.*)$")
# vagrant-libvirt prints the whole domain definition as `==> master:  -- Name: ...`: log only.
DETAIL = re.compile(r"^==> [\w.-]+:\s+-- ")


class VagrantError(LabctlError):
    """A vagrant command failed. The message names the command, the log and the last lines."""

    exit_code = 5


@dataclass(frozen=True)
class MachineState:
    name: str
    state: str  # running, poweroff, shutoff, not_created, saved, aborted, ...
    provider: str

    @property
    def running(self) -> bool:
        return self.state == "running"


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output (one ``Host <machine>`` block each) → machine → {Key: value}."""
    machines: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "Host":
            current = machines.setdefault(value.strip(), {})
        elif current is not None:
            current.setdefault(key, value.strip().strip('"'))
    return machines


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
        self.env = {**os.environ, **(env or {})}

    # ---- files ------------------------------------------------------------------------------------
    @property
    def vagrantfile(self) -> Path:
        return self.root / "Vagrantfile"

    def render(self, source: str = "the built-in default lab", cache_dir: Path | str | None = None) -> Path:
        """Write the Vagrantfile; with ``cache_dir`` (create --cache) every VM sees the warm cache."""
        from labctl.render import render_vagrantfile

        self.root.mkdir(parents=True, exist_ok=True)
        text = render_vagrantfile(self.spec, source=source, cache_dir=cache_dir)
        if not self.vagrantfile.exists() or self.vagrantfile.read_text(encoding="utf-8") != text:
            self.vagrantfile.write_text(text, encoding="utf-8")
        return self.vagrantfile

    # ---- plumbing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _log(self) -> Iterator[IO[str]]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", buffering=1) as fh:
            yield fh

    def _vagrant(self):  # type: ignore[no-untyped-def]
        import vagrant

        log = self._log
        return vagrant.Vagrant(str(self.root), env=self.env, out_cm=log, err_cm=log)

    def _need_vagrantfile(self) -> None:
        if not self.vagrantfile.exists():
            raise VagrantError(f"{self.vagrantfile} does not exist — run `labctl create` first")

    def _stream(self, what: str, lines: Callable[[], Iterator[str]]) -> float:
        """Run a streaming vagrant command: every line to the log, headlines to the console."""
        start = time.monotonic()
        tail: list[str] = []
        with self._log() as log:
            log.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} vagrant {what} (in {self.root})\n")
        try:
            for line in lines():
                with self._log() as log:
                    # Seconds since the command started: shows which Vagrant phase took the time.
                    log.write(f"[{time.monotonic() - start:8.2f}s] {line.rstrip()}\n")
                tail = [*tail, line.rstrip()][-15:]
                shown = console_line(line)
                if shown:
                    self.echo(shown)
        except subprocess.CalledProcessError as err:
            detail = "\n".join(f"  {t}" for t in tail[-8:])
            raise VagrantError(
                f"`vagrant {what}` failed (exit {err.returncode}) in {self.root} — full output in {self.log_path}\n"
                f"{detail}"
            ) from None
        except FileNotFoundError:
            raise VagrantError("`vagrant` is not installed — run `labctl doctor`") from None
        return time.monotonic() - start

    # ---- lifecycle --------------------------------------------------------------------------------
    def up(self, machines: list[str] | None = None) -> float:
        """`vagrant up` (all machines unless named). Vagrant itself brings machines up in parallel
        where the provider supports it (libvirt) and one after the other otherwise (VirtualBox).
        Returns the wall time in seconds."""
        self._need_vagrantfile()
        v = self._vagrant()
        provider = self.spec.provider.type
        if machines:
            # python-vagrant takes one name; several names go through one `vagrant up` call so
            # libvirt still boots them in parallel.
            args = ["up", *machines, f"--provider={provider}"]
            return self._stream("up " + " ".join(machines), lambda: v._stream_vagrant_command(args))
        return self._stream("up", lambda: v.up(provider=provider, stream_output=True))

    def halt(self) -> float:
        self._need_vagrantfile()
        v = self._vagrant()
        return self._stream("halt", lambda: v._stream_vagrant_command(["halt"]))

    def destroy(self, keep: list[str] | None = None) -> float:
        """Destroy every machine except those in ``keep`` (e.g. the NFS VM with --keep-data)."""
        if not self.vagrantfile.exists():
            return 0.0  # nothing was ever created here: destroying is already done
        keep = keep or []
        targets = [m.name for m in self.status() if m.name not in keep and m.state != "not_created"]
        if not targets:
            return 0.0
        v = self._vagrant()
        return self._stream(
            "destroy -f " + " ".join(targets), lambda: v._stream_vagrant_command(["destroy", "-f", *targets])
        )

    def status(self) -> list[MachineState]:
        if not self.vagrantfile.exists():
            return [MachineState(n.name, "not_created", self.spec.provider.type) for _, n in self.spec.all_nodes()]
        try:
            out = self._vagrant()._run_vagrant_command(["status", "--machine-readable"])
        except subprocess.CalledProcessError as err:
            raise VagrantError(f"`vagrant status` failed (exit {err.returncode}) in {self.root} — see {self.log_path}") from None
        return parse_machine_readable_status(out)

    def ssh_config(self, running: list[str] | None = None) -> dict[str, dict[str, str]]:
        """One `vagrant ssh-config` call for all running machines (each vagrant call costs seconds).
        ``running``: the machines known to run (right after `up`), which saves a `vagrant status`."""
        if running is None:
            running = [m.name for m in self.status() if m.running]
        if not running:
            return {}
        try:
            out = self._vagrant()._run_vagrant_command(["ssh-config", *running])
        except subprocess.CalledProcessError as err:
            raise VagrantError(
                f"`vagrant ssh-config` failed (exit {err.returncode}) in {self.root} — see {self.log_path}"
            ) from None
        return parse_ssh_config(out)

    def hosts(self) -> dict[str, Host]:
        """The lab's nodes as Hosts, addressed the way `vagrant ssh` reaches them."""
        return hosts_from_ssh_config(self.spec, self.ssh_config())

    # ---- snapshots (Vagrant's own; VirtualBox and vagrant-libvirt 0.11 both implement them) -------
    def snapshot_list(self) -> dict[str, list[str]]:
        """Snapshot names per created machine."""
        self._need_vagrantfile()
        try:
            out = self._vagrant()._run_vagrant_command(["snapshot", "list", "--machine-readable"])
        except subprocess.CalledProcessError as err:
            raise VagrantError(f"`vagrant snapshot list` failed (exit {err.returncode}) in {self.root} — see {self.log_path}") from None
        return parse_snapshot_list(out)

    def snapshot_save(self, name: str, *, force: bool = False) -> float:
        """One snapshot of every machine, all under the same name."""
        v = self._vagrant()
        args = ["snapshot", "save", *(["--force"] if force else []), name]
        return self._stream(" ".join(args), lambda: v._stream_vagrant_command(args))

    def snapshot_restore(self, name: str) -> float:
        v = self._vagrant()
        args = ["snapshot", "restore", "--no-provision", name]
        return self._stream(" ".join(args), lambda: v._stream_vagrant_command(args))

    def snapshot_delete(self, name: str, machines: list[str]) -> float:
        """Delete ``name`` on each of ``machines`` (Vagrant refuses a machine that lacks it)."""
        v = self._vagrant()
        total = 0.0
        for machine in machines:
            args = ["snapshot", "delete", machine, name]
            total += self._stream(" ".join(args), lambda args=args: v._stream_vagrant_command(args))
        return total


def format_ssh_config(config: dict[str, dict[str, str]]) -> str:
    """The parsed ssh-config written back for OpenSSH (`ssh -F`); values with spaces are quoted."""
    lines = []
    for machine, keys in config.items():
        lines.append(f"Host {machine}")
        lines.extend(f'  {k} "{v}"' if " " in v else f"  {k} {v}" for k, v in keys.items())
    return "\n".join(lines) + "\n"


def hosts_from_ssh_config(spec: LabSpec, config: dict[str, dict[str, str]]) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    missing = []
    for _, node in spec.all_nodes():
        keys = config.get(node.name)
        if keys is None:
            missing.append(node.name)
            continue
        identity = keys.get("IdentityFile")
        hosts[node.name] = Host(
            name=node.name,
            address=keys.get("HostName", ""),
            roles=spec.roles_of(node),
            port=int(keys.get("Port", "22")),
            user=keys.get("User", "vagrant"),
            key_file=Path(identity) if identity else None,
            verify_host_key=False,  # fresh host keys on every rebuild; see Host
            lab_ip=str(node.ip),
        )
    if missing:
        raise VagrantError(
            f"`vagrant ssh-config` knows nothing of {', '.join(missing)} — the VM is not running; "
            "run `labctl create` (or `labctl resume`) again"
        )
    return hosts


def parse_snapshot_list(text: str) -> dict[str, list[str]]:
    """Snapshot names per machine from `vagrant snapshot list --machine-readable`.

    Vagrant 2.3.4 (plugins/commands/snapshot/command/list.rb) prints, per machine, either the
    `list_none` message as ui output (then a hint as ui detail, which is not a name) or an empty
    prefixed output line followed by one ui detail line per snapshot."""
    names: dict[str, list[str]] = {}
    empty: set[str] = set()
    for line in text.splitlines():
        parts = line.split(",", 4)
        if len(parts) < 5 or parts[2] != "ui" or not parts[1]:
            continue
        machine, kind, data = parts[1], parts[3], parts[4].replace("%!(VAGRANT_COMMA)", ",")
        names.setdefault(machine, [])
        if kind == "output" and "No snapshots have been taken yet" in data:
            empty.add(machine)
        elif kind == "detail" and machine not in empty and data.strip():
            names[machine].append(data.strip())
    return names
