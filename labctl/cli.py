"""The command line: the root group, and every command registered on it in the order `--help` and the
docs list them. Click only: each command turns flags into one library call.

The commands live in modules by what they do: cli_spec (read lab.yaml, write text or files),
cli_lab (the lab's life on this machine), cli_cache (the warm cache), cli_apps (deploy, bench),
cli_class (roster mode), cli_snapshot (snapshots); what they share is in cli_common. Imports of the
library (pydantic, jinja2, fabric, ...) happen inside the commands so that ``labctl --help`` starts
fast; tests/test_cli.py holds that line.
"""

from __future__ import annotations

import click

from labctl import __version__
from labctl.cli_common import LabctlGroup


@click.group(cls=LabctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Turn a laptop into a self-hosted LLM lab: Vagrant VMs, kubeadm, Calico, MetalLB, NFS,
    Ollama and Open WebUI — in one command.

    \b
    Example:
      labctl init            # write lab.yaml (the seed lab, every key commented)
      labctl create --dry-run
      labctl create
    """


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (commands, options, node names for `ssh`, step ids for `--only`).

    \b
    Example:
      eval "$(labctl completion bash)"        # in ~/.bashrc
      labctl completion fish > ~/.config/fish/completions/labctl.fish
    """
    from click.shell_completion import get_completion_class

    # Click's own mechanism: the script calls labctl back with _LABCTL_COMPLETE set.
    completer = get_completion_class(shell)
    assert completer is not None  # the Choice above only offers shells Click knows
    click.echo(completer(cli, {}, "labctl", "_LABCTL_COMPLETE").source())


def _register_commands() -> None:
    # The order is the order of `labctl --help`'s sections in docs/reference/cli.md (docgen walks
    # cli.commands as registered); Click's own --help lists the commands sorted by name.
    from labctl import cli_apps, cli_cache, cli_lab, cli_spec
    from labctl.cli_class import class_group
    from labctl.cli_snapshot import snapshot_group

    for command in (
        cli_spec.init, cli_spec.validate, cli_spec.versions, cli_spec.render, cli_spec.plan,
        cli_lab.create, cli_lab.destroy, cli_lab.status,
        cli_spec.handout, cli_spec.lock, cli_cache.cache,
        cli_apps.deploy, cli_apps.bench,
        cli_lab.doctor, cli_lab.verify, cli_lab.ssh, cli_lab.kubeconfig, cli_lab.halt, cli_lab.resume,
        cli_spec.schema, completion,
        class_group, snapshot_group,
    ):  # fmt: skip
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="labctl")


if __name__ == "__main__":
    main()
