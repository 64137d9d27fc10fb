"""What a lab looks like from this machine: ``labctl status`` and ``labctl verify``.

One read-only script on the master prints every cluster fact in ``@@name`` sections; the parsing of
those sections, the checks ``verify`` applies and the status table are pure functions tested on
their own. ``verify_from_host`` is the end of ``labctl create``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import ExitCode, LabctlError
from labctl.kubeconfig import ADMIN_CONF
from labctl.lab import NOT_CREATED, Console, Lab, lab_exists, ssh_transport

if TYPE_CHECKING:
    from labctl.spec import LabSpec
    from labctl.transport.base import Host

APPS_NAMESPACE = "llm"


class VerifyFailed(LabctlError):
    exit_code = ExitCode.VERIFY_FAILED


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
        transport = transport_factory() if transport_factory else ssh_transport()
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
