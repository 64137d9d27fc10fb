"""``labctl create``: doctor → lab lock → Vagrantfile → VMs (the plan's provider step) → hosts from
`vagrant ssh-config` → the rest of the plan on the Runner → kubeconfig on the host → verify → summary.

The CLI turns flags into one call here. The lab itself (spec, state folder, console) is in
``labctl.lab``; status and verify in ``labctl.status``; halt and resume in ``labctl.power``;
destroy in ``labctl.destroy``; kubeconfig rewriting and merging in ``labctl.kubeconfig``.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labctl.durations import format_duration as _format_duration
from labctl.errors import LifecycleError
from labctl.kubeconfig import ADMIN_CONF, merge_kubeconfig_file, rewrite_kubeconfig
from labctl.lab import Console, Lab
from labctl.lab import ssh_transport as _ssh_transport  # create() and snapshots.py call it by this name
from labctl.plan import Plan, PlannedStep
from labctl.spec import LabSpec
from labctl.status import verify_from_host
from labctl.transport.base import Host


# ---- step selection (--only) ---------------------------------------------------------------------
def select_steps(plan: Plan, patterns: Sequence[str]) -> Plan:
    """Keep the steps whose id matches one of ``patterns`` (shell globs: ``node-prep.*``); every other
    remote step stays in the plan, marked skipped with the reason, so the run says so out loud."""
    if not patterns:
        return plan
    remote_ids = [s.id for s in plan.steps if s.kind == "remote"]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(i, p) for i in remote_ids)]
    if unknown:
        raise LifecycleError(
            f"--only {unknown[0]!r} matches no step — see `labctl plan` for the step ids (globs like 'nfs-server.*' work)"
        )
    reason = "not selected by --only " + " ".join(patterns)
    steps = []
    for s in plan.steps:
        if s.kind == "remote" and not s.skip_reason and not any(fnmatch.fnmatchcase(s.id, p) for p in patterns):
            s = replace(s, skip_reason=reason)
        steps.append(s)
    return replace(plan, steps=tuple(steps))


# ---- the commands ---------------------------------------------------------------------------------
def _running_mib(spec: LabSpec, states: Iterable[Any]) -> int:
    running = {s.name for s in states if s.running}
    return sum(n.memory_mib for _, n in spec.all_nodes() if n.name in running)


def preflight(lab: Lab, console: Console, *, running_vm_mib: int = 0, cache_dir: Path | None = None) -> None:
    from labctl import doctor

    checks = doctor.run_doctor(lab.spec, lab.state_dir, running_vm_mib=running_vm_mib, cache_dir=cache_dir)
    report = doctor.format_report(checks)
    if any(c.failed for c in checks):
        console.say(report.rstrip())
        raise doctor.PreflightFailed("preflight failed — fix the FAIL lines above, then run the command again")
    if any(c.status == "warn" for c in checks):
        console.say(report.rstrip())
    else:
        console.say(report.rstrip().splitlines()[-1])


@dataclass
class CreateResult:
    total_seconds: float
    vm_seconds: float
    kubeconfig: Path | None
    log_path: Path
    report: Any = None


def bring_up_hosts(lab: Lab, provider: Any, console: Console, step: PlannedStep) -> tuple[Any, float]:
    """The plan's provider step, run by the Runner (``on_provider_step``): VMs up (only those not
    running), then hosts from ssh-config. Returns a ``runner.ProviderResult`` and the seconds it took;
    the Runner prints the step's title and outcome."""
    from labctl.providers.vagrant import format_ssh_config, hosts_from_ssh_config
    from labctl.runner import ProviderResult

    # The VM layer's time counts everything labctl adds around `vagrant up` (status, ssh-config).
    started = time.monotonic()
    states = provider.status()
    stale = provider.stale_machines([s.name for s in states if s.state != "not_created"])
    if stale:  # `vagrant up` would not apply these: running steps on a stale VM helps nobody
        raise LifecycleError("lab.yaml no longer matches VMs that exist:\n  " + "\n  ".join(stale))
    pending = [s.name for s in states if not s.running]
    if pending:
        provider.up(None if len(pending) == len(states) else pending)
    provider.record_applied([s.name for s in states])
    # `vagrant up` succeeded, so every machine runs: no second `vagrant status` needed.
    config = provider.ssh_config(running=[s.name for s in states])
    seconds = time.monotonic() - started
    hosts = hosts_from_ssh_config(lab.spec, config)
    from labctl.state import write_private

    write_private(lab.ssh_config, format_ssh_config(config))
    return ProviderResult(hosts, "" if pending else "every VM is already running"), seconds


def lab_hosts(lab: Lab, log_path: Path, console: Console | None = None) -> dict[str, Host]:
    """The hosts of a lab that exists (for status, verify, resume, kubeconfig)."""
    if lab.spec.provider.type == "ssh":
        from labctl.providers.ssh import hosts_from_spec

        return hosts_from_spec(lab.spec)
    return lab.provider(log_path, console).hosts()


def create(
    lab: Lab,
    console: Console,
    *,
    only: Sequence[str] = (),
    merge_kubeconfig_into: Path | None = None,
    transport_factory: Callable[[], Any] | None = None,
    cache: Any = None,
    host_checks: bool = True,
) -> CreateResult:
    """``host_checks=False`` skips doctor's preflight: only for re-checking a lab that this host just
    ran (a snapshot restore), where the host has not changed and every Vagrant call costs seconds."""
    from labctl.artefacts import build_artefacts
    from labctl.lablock import LabLock
    from labctl.plan import build_plan
    from labctl.runner import Runner

    started = time.monotonic()
    spec = lab.spec
    log_path = lab.new_log("create")
    console.say(f"==> Lab {spec.name!r}: state in {lab.state_dir}", "bold")
    # Planning is pure and cheap: a bad --only is refused before doctor or anything else runs.
    plan = select_steps(build_plan(spec, state_dir=lab.state_dir, cache=cache), only)
    with LabLock(lab.state_dir, spec.name, "labctl create"):
        provider = lab.provider(log_path, console) if spec.provider.type != "ssh" else None
        cache_dir = Path(cache.host_dir) if cache is not None else None
        if host_checks:
            running_mib = 0
            if provider is not None and provider.vagrantfile.exists():
                running_mib = _running_mib(spec, provider.status())
            preflight(lab, console, running_vm_mib=running_mib, cache_dir=cache_dir)
        console.say(f"    log: {log_path}")  # only now: a run that stops at preflight writes none
        artefacts = build_artefacts(spec, lab.state_dir, offline=cache is not None)
        if provider is not None:
            if cache_dir is not None:  # the box from the warm cache, before `vagrant up` looks for it
                from labctl.cache import prepare_host_for_cache

                console.say(f"==> Warm cache: {prepare_host_for_cache(spec, cache_dir, env=provider.env)}", "bold")
            provider.render(lab.source, cache_dir=cache_dir)

        # The plan's provider step runs inside the Runner, which takes the hosts it hands back (only
        # the provider knows their addresses) and checks them before the first remote step.
        vm_seconds = 0.0

        def provider_hook(step: PlannedStep) -> Any:
            nonlocal vm_seconds
            if provider is None:
                from labctl.providers.ssh import hosts_from_spec
                from labctl.runner import ProviderResult

                return ProviderResult(hosts_from_spec(spec))
            result, vm_seconds = bring_up_hosts(lab, provider, console, step)
            return result

        transport = transport_factory() if transport_factory else _ssh_transport()
        runner: Runner | None = None
        try:
            runner = Runner(
                transport, {}, log_path=log_path, artefacts=artefacts, console=console.rich, on_provider_step=provider_hook
            )
            report = runner.run(plan)
            kubeconfig = None
            if _control_plane_selected(plan):
                kubeconfig = fetch_kubeconfig(lab, transport, runner.hosts, merge_into=merge_kubeconfig_into)
        except KeyboardInterrupt:  # after the run (the runner handles its own): stop its steps' detached work
            if runner is not None:
                runner.run_interrupt_hooks()
            raise
        finally:
            transport.close()
        if not only:
            # The verify playbook checked from the master, where kube-proxy answers for the
            # LoadBalancer address even when no node announces it: only this machine can tell.
            verify_from_host(lab, console, transport_factory=transport_factory)
    total = time.monotonic() - started
    # Timings of the last create, for `labctl status` readers and the e2e test's VM-layer figure.
    (lab.state_dir / "last-create.json").write_text(
        json.dumps({"total_seconds": round(total, 2), "vm_seconds": round(vm_seconds, 2), "log": str(log_path)}) + "\n",
        encoding="utf-8",
    )
    _summary(lab, console, total, vm_seconds, kubeconfig, merge_kubeconfig_into, only)
    return CreateResult(total, vm_seconds, kubeconfig, log_path, report)


def _control_plane_selected(plan: Plan) -> bool:
    return any(s.id.startswith("control-plane.") and not s.skip_reason for s in plan.steps)


def fetch_kubeconfig(lab: Lab, transport: Any, hosts: dict[str, Host], *, merge_into: Path | None = None) -> Path:
    from labctl.state import write_private

    master = hosts[lab.spec.nodes.master.name]
    result = transport.run(master, f"cat {ADMIN_CONF}", sudo=True, timeout=30)
    if not result.ok:
        raise LifecycleError(
            f"could not read {ADMIN_CONF} on {master.name}: {result.error or result.stderr_tail(2) or f'exit {result.exit_code}'}"
            " — is the control plane initialised? Re-run `labctl create`"
        )
    server = f"https://{lab.spec.nodes.master.ip}:6443"
    text = rewrite_kubeconfig(result.stdout, lab.spec.name, server)
    write_private(lab.kubeconfig, text)
    if merge_into is not None:
        merge_kubeconfig_file(lab, merge_into)
    return lab.kubeconfig


def _summary(
    lab: Lab,
    console: Console,
    total: float,
    vm_seconds: float,
    kubeconfig: Path | None,
    merged: Path | None,
    only: Sequence[str],
) -> None:
    spec = lab.spec
    console.say("")
    console.say(f"==> Lab {spec.name!r} created in {_format_duration(total)} (VMs: {_format_duration(vm_seconds)})", "bold green")
    if only:
        console.say(f"    only the steps matching {' '.join(only)} ran; the others were skipped (see above)", "bold yellow")
    if spec.offline:
        console.say("    offline lab: every step that needs the internet was skipped (see above)", "bold yellow")
    console.say(f"    Open WebUI:  {lab.webui_url}")
    if kubeconfig is not None:
        console.say(f"    kubeconfig:  {kubeconfig}" + (f" (merged into {merged} as context {lab.context})" if merged else ""))
    else:
        console.say("    kubeconfig:  not fetched (the control-plane steps did not run)")
    file_flag = "" if lab.source == "the built-in default lab" or lab.source == "lab.yaml" else f" -f {shlex.quote(lab.source)}"
    console.say("    next:")
    console.say(f"      labctl status{file_flag}")
    if kubeconfig is not None:
        console.say(f"      kubectl --kubeconfig {kubeconfig} get nodes" if not merged else f"      kubectl --context {lab.context} get nodes")
    console.say(f"      labctl ssh {spec.nodes.master.name}{file_flag}")
