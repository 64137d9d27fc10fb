"""The lab on this host: its spec, its state folder and the files in it, what labctl prints, and
how to reach its nodes. Every lab command (create, status, destroy, halt, ssh, snapshot) starts here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import LifecycleError
from labctl.spec import LabSpec

NOT_CREATED = "not created yet — run `labctl create`"


def ssh_transport():  # type: ignore[no-untyped-def]
    """The transport to a lab's hosts (Fabric is imported only when a command talks to a host)."""
    from labctl.transport.ssh import SSHTransport

    return SSHTransport()


# ---- output ----------------------------------------------------------------------------------------
class Console:
    """What labctl prints: a rich console when stdout is a terminal, plain lines otherwise."""

    def __init__(self, rich_console: Any = None) -> None:
        if rich_console is None:
            from rich.console import Console as RichConsole

            rich_console = RichConsole(highlight=False)
        self.rich = rich_console

    def say(self, text: str, style: str = "") -> None:
        from rich.text import Text

        self.rich.print(Text(text, style=style), highlight=False, soft_wrap=True)


# ---- the lab and its files ---------------------------------------------------------------------
@dataclass
class Lab:
    spec: LabSpec
    state_dir: Path
    source: str = "the built-in default lab"

    @classmethod
    def of(cls, spec: LabSpec, source: str | None = None, state_dir: Path | None = None) -> Lab:
        from labctl.state import lab_dir

        return cls(spec, Path(state_dir) if state_dir else lab_dir(spec.name), source or "the built-in default lab")

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh-config"

    @property
    def context(self) -> str:
        return f"labctl-{self.spec.name}"

    def new_log(self, command: str) -> Path:
        from labctl.logs import new_log_path

        return new_log_path(self.state_dir / "logs", command)

    def provider(self, log_path: Path, console: Console | None = None):  # type: ignore[no-untyped-def]
        from labctl.providers.vagrant import VagrantProvider

        echo = console.say if console else None
        return VagrantProvider(self.spec, self.state_dir, log_path=log_path, echo=echo)

    @property
    def webui_url(self) -> str:
        return f"http://{self.spec.webui_address}:{self.spec.apps.openwebui.port}"


def lab_exists(lab: Lab) -> bool:
    """Whether the lab has anything `destroy` would remove: VMs Vagrant knows of (its ids survive a
    deleted Vagrantfile), a Vagrantfile, or, for provider ssh, a kubeconfig or merged context."""
    if any((lab.state_dir / ".vagrant" / "machines").glob("*/*/id")) or (lab.state_dir / "Vagrantfile").exists():
        return True
    if lab.spec.provider.type == "ssh":
        from labctl.kubeconfig import MERGED_RECORD

        return lab.kubeconfig.exists() or (lab.state_dir / MERGED_RECORD).exists()
    return False


# ---- ssh ---------------------------------------------------------------------------------------
def ssh_argv(lab: Lab, node: str, command: Sequence[str] = ()) -> list[str]:
    """The `ssh` command line that logs in to ``node`` (uses the saved ssh-config for Vagrant VMs)."""
    names = [n.name for _, n in lab.spec.all_nodes()]
    if node not in names:
        raise LifecycleError(f"no node {node!r} in lab {lab.spec.name!r} — nodes: {', '.join(names)}")
    if lab.spec.provider.type == "ssh":
        from labctl.providers.ssh import hosts_from_spec

        h = hosts_from_spec(lab.spec)[node]
        argv = ["ssh", "-p", str(h.port)]
        if h.key_file:
            argv += ["-i", str(h.key_file)]
        return [*argv, f"{h.user}@{h.address}", *command]
    if not lab.ssh_config.exists():
        raise LifecycleError(f"{lab.ssh_config} does not exist — run `labctl create` (or `labctl resume`) first")
    return ["ssh", "-F", str(lab.ssh_config), node, *command]
