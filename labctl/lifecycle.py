"""The lab's life on the host: create, destroy, status, verify, halt, resume, ssh, kubeconfig.

The CLI turns flags into one call here. ``create`` is: doctor → lab lock → Vagrantfile → VMs
(the plan's provider step) → hosts from `vagrant ssh-config` → the rest of the plan on the Runner
→ kubeconfig on the host → summary. Every piece that needs no host (kubeconfig rewriting and
merging, the status probe's parsing, the checks `verify` applies) is a pure function tested on its own.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.errors import ExitCode, LabctlError, LifecycleError
from labctl.kubeconfig import (  # noqa: F401  (re-exported: lifecycle.merge_kubeconfig etc. stay valid)
    merge_kubeconfig,
    merge_kubeconfig_file,
    remove_from_kubeconfig,
    rewrite_kubeconfig,
    user_kubeconfig_path,
)
from labctl.plan import Plan, PlannedStep
from labctl.spec import LabSpec
from labctl.transport.base import Host

ADMIN_CONF = "/etc/kubernetes/admin.conf"
# Steps `labctl resume` re-runs after `vagrant up`: swap comes back after a halt on some boxes.
RESUME_STEPS = ("node-prep.disable-swap",)
APPS_NAMESPACE = "llm"
NOT_CREATED = "not created yet — run `labctl create`"


class VerifyFailed(LabctlError):
    exit_code = ExitCode.VERIFY_FAILED


def _format_duration(seconds: float) -> str:
    from labctl.runner import format_duration

    return format_duration(seconds)


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


# ---- status probe (pure parts) -----------------------------------------------------------------
def cluster_probe_script(spec: LabSpec, namespace: str = APPS_NAMESPACE) -> str:
    """One script on the master that prints every cluster fact status needs, in ``@@name`` sections
    each ending with ``@@rc <exit code>``. Read-only: it changes nothing."""
    k = f"kubectl --kubeconfig {ADMIN_CONF} --request-timeout=10s"
    return f"""\
section() {{ echo "@@$1"; shift; "$@" 2>&1; echo "@@rc $?"; }}
if ! command -v kubectl >/dev/null 2>&1; then echo "@@error"; echo "kubectl is not installed on the master"; echo "@@rc 1"; exit 0; fi
if [ ! -f {ADMIN_CONF} ]; then echo "@@error"; echo "the cluster is not initialised ({ADMIN_CONF} is missing)"; echo "@@rc 1"; exit 0; fi
section nodes {k} get nodes -o json
section pods {k} get pods -A -o json
section webui_lb {k} -n {namespace} get svc open-webui -o 'jsonpath={{.status.loadBalancer.ingress[0].ip}}'
ip=$({k} -n {namespace} get svc ollama -o 'jsonpath={{.spec.clusterIP}}' 2>/dev/null)
if ! command -v curl >/dev/null 2>&1; then
  echo "@@ollama_version"; echo "curl is not installed on the master"; echo "@@rc 127"
elif [ -z "$ip" ]; then
  echo "@@ollama_version"; echo "no Service ollama in namespace {namespace}"; echo "@@rc 1"
else
  section ollama_version curl -sS -m 5 "http://$ip:11434/api/version"
  section ollama_tags curl -sS -m 5 "http://$ip:11434/api/tags"
fi
"""


def parse_sections(text: str) -> dict[str, tuple[str, int]]:
    """``@@name`` … ``@@rc N`` blocks → name → (output, exit code)."""
    out: dict[str, tuple[str, int]] = {}
    name: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("@@rc ") and name is not None:
            try:
                rc = int(line[5:].strip())
            except ValueError:
                rc = 1
            out[name] = ("\n".join(body), rc)
            name, body = None, []
        elif line.startswith("@@") and not line.startswith("@@rc"):
            name, body = line[2:].strip(), []
        elif name is not None:
            body.append(line)
    return out


def summarize_nodes(nodes_json: str) -> list[dict[str, Any]]:
    data = json.loads(nodes_json)
    out = []
    for item in data.get("items", []):
        meta, st = item.get("metadata", {}), item.get("status", {})
        ready = next((c.get("status") == "True" for c in st.get("conditions", []) if c.get("type") == "Ready"), False)
        roles = sorted(k.split("/", 1)[1] for k in meta.get("labels", {}) if k.startswith("node-role.kubernetes.io/"))
        out.append(
            {
                "name": meta.get("name", "?"),
                "ready": ready,
                "roles": roles,
                "version": st.get("nodeInfo", {}).get("kubeletVersion", ""),
            }
        )
    return out


KEY_PODS = ("ollama", "open-webui", "coredns", "calico-node", "calico-kube-controllers", "controller", "speaker", "csi-nfs")


def summarize_pods(pods_json: str) -> list[dict[str, Any]]:
    """The pods a student's lab depends on, with phase and readiness (others are left out)."""
    data = json.loads(pods_json)
    out = []
    for item in data.get("items", []):
        meta, st = item.get("metadata", {}), item.get("status", {})
        name = meta.get("name", "")
        if not any(name.startswith(k + "-") for k in KEY_PODS):
            continue
        statuses = st.get("containerStatuses") or []
        ready = bool(statuses) and all(c.get("ready") for c in statuses)
        out.append(
            {
                "namespace": meta.get("namespace", ""),
                "name": name,
                "phase": st.get("phase", "Unknown"),
                "ready": ready,
                "restarts": sum(int(c.get("restartCount", 0)) for c in statuses),
            }
        )
    return out


@dataclass
class EndpointCheck:
    name: str
    ok: bool
    detail: str


@dataclass
class LabStatus:
    lab: str
    provider: str
    vms: list[dict[str, str]] = field(default_factory=list)
    cluster_error: str = ""  # why nodes/pods could not be read ("unreachable", "not initialised", ...)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    endpoints: list[EndpointCheck] = field(default_factory=list)
    created: bool = True  # False: no Vagrantfile and no VM ids in the state folder (never created)

    def checks(self, spec: LabSpec) -> list[EndpointCheck]:
        """Everything `verify` requires, each with a one-line reason."""
        if not self.created:
            return [EndpointCheck("lab-created", False, NOT_CREATED)]
        out = []
        # Provider ssh's machines are "existing host": not labctl's VMs to start, never "not running"
        # (else verify, and so the end of every ssh-provider create, failed on a healthy lab).
        not_running = [v["name"] for v in self.vms if v["state"] not in ("running", "existing host")]
        out.append(
            EndpointCheck(
                "vms-running",
                bool(self.vms) and not not_running,
                "every VM is running" if self.vms and not not_running else f"not running: {', '.join(not_running) or 'no VMs'}",
            )
        )
        if self.cluster_error:
            out.append(EndpointCheck("nodes-ready", False, self.cluster_error))
        else:
            expected = {n.name for _, n in spec.all_nodes() if "k8s" in spec.roles_of(n)}
            ready = {n["name"] for n in self.nodes if n["ready"]}
            missing = sorted(expected - ready)
            out.append(
                EndpointCheck(
                    "nodes-ready",
                    not missing,
                    "every node is Ready" if not missing else f"not Ready: {', '.join(missing)}",
                )
            )
            bad = [f"{p['namespace']}/{p['name']} ({p['phase']})" for p in self.pods if not p["ready"] and p["phase"] != "Succeeded"]
            out.append(EndpointCheck("key-pods-ready", not bad and bool(self.pods), ", ".join(bad) or ("all ready" if self.pods else "no key pods found")))
        out.extend(self.endpoints)
        return out

    def to_dict(self, spec: LabSpec) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "provider": self.provider,
            "vms": self.vms,
            "created": self.created,
            "cluster_error": self.cluster_error,
            "nodes": self.nodes,
            "pods": self.pods,
            "checks": [c.__dict__ for c in self.checks(spec)],
        }


def endpoint_checks(spec: LabSpec, sections: dict[str, tuple[str, int]], webui: EndpointCheck) -> list[EndpointCheck]:
    """Turn the probe's sections (and the host's own Open WebUI check) into endpoint checks."""
    out = [webui]
    lb_text, lb_rc = sections.get("webui_lb", ("", 1))
    want = str(spec.webui_address)
    if lb_rc != 0:
        out.append(EndpointCheck("metallb-address", False, f"cannot read Service open-webui: {_last_line(lb_text)}"))
    else:
        got = lb_text.strip()
        out.append(
            EndpointCheck(
                "metallb-address",
                got == want,
                f"open-webui has {want}" if got == want else f"open-webui has {got or 'no address'}, expected {want}",
            )
        )
    version_text, version_rc = sections.get("ollama_version", ("not probed", 1))
    version = _json_field(version_text, "version") if version_rc == 0 else None
    out.append(
        EndpointCheck(
            "ollama-version",
            version is not None,
            f"Ollama {version}" if version else f"unreachable: {_last_line(version_text)}",
        )
    )
    tags_text, tags_rc = sections.get("ollama_tags", ("", 1))
    if tags_rc != 0 or version is None:
        out.append(EndpointCheck("ollama-models", False, f"unreachable: {_last_line(tags_text or version_text)}"))
    else:
        try:
            have = {m.get("name", "") for m in json.loads(tags_text).get("models", [])}
        except (json.JSONDecodeError, AttributeError):
            have = set()
        wanted = list(spec.apps.ollama.models)
        missing = [m for m in wanted if m not in have and f"{m}:latest" not in have]
        out.append(
            EndpointCheck(
                "ollama-models",
                not missing,
                f"installed: {', '.join(sorted(have)) or 'none'}" + (f"; missing: {', '.join(missing)}" if missing else ""),
            )
        )
    return out


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no answer"


def _json_field(text: str, key: str) -> str | None:
    try:
        value = json.loads(text).get(key)
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(value) if value else None


def format_status(status: LabStatus, spec: LabSpec) -> str:
    if not status.created:
        return f"Lab {status.lab} (provider {status.provider}): {NOT_CREATED}\n"
    lines = [f"Lab {status.lab} (provider {status.provider})", "", "VMs:"]
    for vm in status.vms:
        lines.append(f"  {vm['name']:<12} {vm['state']}")
    lines.append("")
    lines.append("Nodes:")
    if status.cluster_error:
        lines.append(f"  unavailable: {status.cluster_error}")
    for n in status.nodes:
        lines.append(f"  {n['name']:<12} {'Ready' if n['ready'] else 'NotReady':<9} {','.join(n['roles']) or '-':<14} {n['version']}")
    if status.pods:
        lines.append("")
        lines.append("Key pods:")
        for p in status.pods:
            lines.append(f"  {p['namespace'] + '/' + p['name']:<60} {p['phase']:<10} {'ready' if p['ready'] else 'NOT ready'}  restarts {p['restarts']}")
    lines.append("")
    lines.append("Checks:")
    for c in status.checks(spec):
        lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name:<18} {c.detail}")
    return "\n".join(lines) + "\n"


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
        try:
            runner = Runner(
                transport, {}, log_path=log_path, artefacts=artefacts, console=console.rich, on_provider_step=provider_hook
            )
            report = runner.run(plan)
            kubeconfig = None
            if _control_plane_selected(plan):
                kubeconfig = fetch_kubeconfig(lab, transport, runner.hosts, merge_into=merge_kubeconfig_into)
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


def verify_from_host(lab: Lab, console: Console, *, transport_factory: Callable[[], Any] | None = None) -> None:
    """The end of ``create``: the checks of ``labctl verify``, from this machine; VerifyFailed (exit 7)
    when one fails, naming each failed check."""
    console.say("==> Step: Verify the lab from this machine (the same checks as `labctl verify`)", "bold")
    _, checks = verify(lab, transport_factory=transport_factory)
    failed = [c for c in checks if not c.ok]
    for c in checks:
        console.say(f"    {'ok  ' if c.ok else 'FAIL'}  {c.name:<18} {c.detail}", "" if c.ok else "bold red")
    if failed:
        lines = [f"the lab was built but {len(failed)} of {len(checks)} checks fail from this machine:"]
        lines += [f"  {c.name}: {c.detail}" for c in failed]
        if any(c.name == "open-webui-health" for c in failed):
            lines.append(
                f"  Open WebUI does not answer at {lab.webui_url} from here: check this machine's route to "
                f"{lab.spec.network.subnet} and that a node announces {lab.spec.webui_address} (MetalLB speaker)"
            )
        lines.append("  run `labctl verify` once fixed; `labctl create` again resumes any unfinished step")
        raise VerifyFailed("\n".join(lines))


def _ssh_transport():  # type: ignore[no-untyped-def]
    from labctl.transport.ssh import SSHTransport

    return SSHTransport()


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


# ---- status / verify ------------------------------------------------------------------------------
def _webui_health(spec: LabSpec, timeout: float = 5.0) -> EndpointCheck:
    import httpx

    url = f"http://{spec.webui_address}:{spec.apps.openwebui.port}/health"
    try:
        # trust_env=False: the lab address is on this machine's own network; a campus http_proxy
        # cannot reach it and would make a healthy lab look unreachable.
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as err:
        return EndpointCheck("open-webui-health", False, f"unreachable: {url} ({type(err).__name__})")
    ok = response.status_code == 200
    return EndpointCheck("open-webui-health", ok, f"{url} answered {response.status_code}")


def lab_status(lab: Lab, *, transport_factory: Callable[[], Any] | None = None) -> LabStatus:
    spec = lab.spec
    status = LabStatus(spec.name, spec.provider.type)
    if spec.provider.type != "ssh" and not lab_exists(lab):
        status.created = False  # nothing to ask Vagrant or the network: say so in one line
        status.vms = [{"name": n.name, "state": "not_created"} for _, n in spec.all_nodes()]
        return status
    # A read-only command keeps its log only when something failed (see the end): a healthy lab's
    # `status` every minute must not fill the logs folder.
    log_path = lab.new_log("status")
    status = _probe_status(lab, status, log_path, transport_factory)
    if all(c.ok for c in status.checks(spec)):
        log_path.unlink(missing_ok=True)
    return status


def _probe_status(lab: Lab, status: LabStatus, log_path: Path, transport_factory: Callable[[], Any] | None) -> LabStatus:
    from labctl.providers.vagrant import VagrantError, hosts_from_ssh_config

    spec = lab.spec
    hosts: dict[str, Host] = {}
    if spec.provider.type == "ssh":
        from labctl.providers.ssh import hosts_from_spec

        hosts = hosts_from_spec(spec)
        status.vms = [{"name": h, "state": "existing host"} for h in hosts]
    else:
        provider = lab.provider(log_path)
        states = provider.status()
        status.vms = [{"name": s.name, "state": s.state} for s in states]
        running = [s.name for s in states if s.running]
        if running:
            with contextlib.suppress(VagrantError):
                hosts = hosts_from_ssh_config(spec, provider.ssh_config(running=running))
    master_name = spec.nodes.master.name
    sections: dict[str, tuple[str, int]] = {}
    if master_name not in hosts:
        status.cluster_error = f"unreachable: the {master_name} VM is not running"
    else:
        transport = transport_factory() if transport_factory else _ssh_transport()
        try:
            result = transport.run(hosts[master_name], cluster_probe_script(spec), sudo=True, timeout=90)
        finally:
            transport.close()
        if result.error or result.timed_out:
            status.cluster_error = f"unreachable: {master_name}: {result.error or 'timed out'}"
        else:
            sections = parse_sections(result.stdout)
            if "error" in sections:
                status.cluster_error = sections["error"][0].strip()
            else:
                nodes_text, nodes_rc = sections.get("nodes", ("no answer", 1))
                if nodes_rc != 0:
                    status.cluster_error = f"unreachable: the API server did not answer ({_last_line(nodes_text)})"
                else:
                    status.nodes = summarize_nodes(nodes_text)
                    pods_text, pods_rc = sections.get("pods", ("", 1))
                    if pods_rc == 0:
                        status.pods = summarize_pods(pods_text)
    if not sections or "error" in sections:
        why = status.cluster_error or "not probed"
        sections = {"webui_lb": (why, 1), "ollama_version": (why, 1), "ollama_tags": (why, 1)}
    if spec.provider.type != "ssh" and not any(v["state"] == "running" for v in status.vms):
        # Nothing of the lab runs: asking the network would only wait for a timeout to say so.
        webui = EndpointCheck("open-webui-health", False, "unreachable: none of the lab's VMs is running")
    else:
        webui = _webui_health(spec)
    status.endpoints = endpoint_checks(spec, sections, webui)
    return status


def verify(lab: Lab, **kwargs: Any) -> tuple[LabStatus, list[EndpointCheck]]:
    status = lab_status(lab, **kwargs)
    return status, status.checks(lab.spec)


# ---- halt / resume / destroy ----------------------------------------------------------------------
def halt(lab: Lab, console: Console) -> float:
    from labctl.lablock import LabLock

    if lab.spec.provider.type == "ssh":
        raise LifecycleError("provider ssh: the machines are not labctl's to stop — shut them down yourself")
    log_path = lab.new_log("halt")
    with LabLock(lab.state_dir, lab.spec.name, "labctl halt"):
        provider = lab.provider(log_path, console)
        if not provider.vagrantfile.exists():
            raise LifecycleError(f"lab {lab.spec.name!r} has no VMs ({provider.vagrantfile} is missing) — nothing to halt")
        console.say(f"==> Halting the VMs of lab {lab.spec.name!r}", "bold")
        seconds = provider.halt()
    console.say(f"==> Halted in {_format_duration(seconds)} — `labctl resume` brings the lab back", "bold green")
    return seconds


def resume(lab: Lab, console: Console, *, transport_factory: Callable[[], Any] | None = None) -> float:
    """`vagrant up` again, then re-run the steps a reboot can undo (swap comes back on some boxes)."""
    from labctl.lablock import LabLock
    from labctl.plan import build_plan
    from labctl.runner import Runner

    if lab.spec.provider.type == "ssh":
        raise LifecycleError("provider ssh: the machines are not labctl's to start — boot them yourself")
    started = time.monotonic()
    log_path = lab.new_log("resume")
    with LabLock(lab.state_dir, lab.spec.name, "labctl resume"):
        provider = lab.provider(log_path, console)
        if not provider.vagrantfile.exists():
            raise LifecycleError(f"lab {lab.spec.name!r} was never created ({provider.vagrantfile} is missing) — run `labctl create`")
        plan = build_plan(lab.spec, state_dir=lab.state_dir)
        again = replace(plan, steps=tuple(s for s in plan.steps if s.kind == "provider" or s.id in RESUME_STEPS))
        transport = transport_factory() if transport_factory else _ssh_transport()
        try:
            Runner(
                transport, {}, log_path=log_path, console=console.rich,
                on_provider_step=lambda step: bring_up_hosts(lab, provider, console, step)[0],
            ).run(again)
        finally:
            transport.close()
    total = time.monotonic() - started
    console.say(f"==> Lab {lab.spec.name!r} resumed in {_format_duration(total)} — `labctl status` shows its health", "bold green")
    return total


def lab_exists(lab: Lab) -> bool:
    """Whether the lab has anything `destroy` would remove: VMs Vagrant knows of (its ids survive a
    deleted Vagrantfile), a Vagrantfile, or, for provider ssh, a kubeconfig or merged context."""
    if any((lab.state_dir / ".vagrant" / "machines").glob("*/*/id")) or (lab.state_dir / "Vagrantfile").exists():
        return True
    if lab.spec.provider.type == "ssh":
        from labctl.kubeconfig import MERGED_RECORD

        return lab.kubeconfig.exists() or (lab.state_dir / MERGED_RECORD).exists()
    return False


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
    done = f"==> Lab {spec.name!r} destroyed in {_format_duration(seconds)}" if seconds else f"==> Lab {spec.name!r} cleaned up"
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
