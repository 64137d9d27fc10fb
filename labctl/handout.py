"""The workshop handout: the Plan that `labctl create` executes, written for a person to follow.

Everything a student types comes from ``labctl.plan.build_plan`` — the same Plan object the runner
walks and ``labctl plan`` prints — so the handout cannot drift from what runs (tests/test_handout.py
parses the commands back out of the Markdown and compares them with the plan). Only the prose
around the commands (prerequisites, checks by hand, troubleshooting) is written here, and it too is
filled from the spec: addresses, subnet, ports.

Two renderings of one outline: Markdown (``render_markdown``) and one self-contained HTML file
(``render_html``: inline CSS, print styles, every value escaped).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from labctl.figures import disk_sentence
from labctl.images import images_html, images_markdown
from labctl.plan import HostCommands, Plan, PlannedStep
from labctl.spec import LabSpec

# Phrases the equality test parses back out of the Markdown; keep them in one place.
STEP_HEADING = "### Step {n}/{total}: `{id}` — {title}"
STEP_HEADING_RE = re.compile(r"^### Step (\d+)/(\d+): `([^`]+)` — (.*)$")
COMMAND_LABEL = "**On {hosts} — {kind}:**"
COMMAND_LABEL_RE = re.compile(r"^\*\*On (.+) — (check|run|on_interrupt):\*\*$")


# ---- the outline (one structure, two renderings) -------------------------------------------------
@dataclass(frozen=True)
class CommandBlock:
    hosts: tuple[str, ...]
    kind: str  # "check" | "run"
    script: str


@dataclass(frozen=True)
class StepSection:
    number: int
    step: PlannedStep
    facts: tuple[str, ...]  # "sudo", "timeout 300s", ...
    blocks: tuple[CommandBlock, ...]


@dataclass(frozen=True)
class Outline:
    spec: LabSpec
    plan: Plan
    steps: tuple[StepSection, ...]
    prerequisites: tuple[str, ...]
    networks_conf_line: str
    urls: tuple[tuple[str, str], ...]  # (what, url)
    checks: tuple[tuple[str, str], ...]  # (what it shows, command)
    troubles: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)  # (symptom, cause, fix)
    resets: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (what it does, command); VM labs only


def group_commands(commands: tuple[HostCommands, ...]) -> list[tuple[tuple[str, ...], HostCommands]]:
    """Hosts whose check and run are identical share one block (the order of first appearance)."""
    groups: list[tuple[list[str], HostCommands]] = []
    for c in commands:
        for hosts, first in groups:
            if (first.check, first.run, first.on_interrupt) == (c.check, c.run, c.on_interrupt):
                hosts.append(c.host)
                break
        else:
            groups.append(([c.host], c))
    return [(tuple(h), c) for h, c in groups]


def _step_facts(step: PlannedStep) -> tuple[str, ...]:
    facts: list[str] = []
    if step.kind == "provider":
        facts.append("on your laptop")
    else:
        facts.append("as root (sudo)" if step.sudo else "as the login user")
    facts.append(f"timeout {step.timeout}s")
    if step.retries:
        facts.append(f"retried up to {step.retries} times")
    if step.network:
        facts.append("needs the internet")
    if step.capture:
        facts.append(f"its output is kept as {step.capture}" + (" (a secret: never shown)" if step.secret else ""))
    if step.uses:
        facts.append("uses " + ", ".join(step.uses) + " from earlier steps")
    if step.skip_reason:
        facts.append(f"skipped: {step.skip_reason}")
    return tuple(facts)


def macos_prerequisites(spec: LabSpec) -> list[str]:
    """What a Mac needs for a VirtualBox lab (docs/macos.md has the long form; labctl doctor checks
    each). Versions: hashicorp/vagrant's VirtualBox driver list (7.1 from Vagrant 2.4.2, 7.2 from 2.4.9)."""
    out = [
        "On a Mac: VirtualBox from https://www.virtualbox.org/wiki/Downloads (Intel Macs: 7.0 or newer; Apple "
        'Silicon: 7.1 or newer, the "macOS / Apple Silicon hosts" package) and Vagrant from HashiCorp '
        "(`brew install hashicorp/tap/hashicorp-vagrant`): VirtualBox 7.1 needs Vagrant 2.4.2 or newer, 7.2 needs "
        "2.4.9. With VirtualBox 7 on macOS the /etc/vbox/networks.conf line below is not needed. "
        "`labctl doctor` checks all of this."
    ]
    if spec.arch == "arm64":
        out.append(
            "This lab is arm64 (`provider.arch`): every VM, package and image is the arm64 build, for Apple Silicon "
            "Macs. Intel and AMD laptops cannot run it: they need the same lab.yaml with `provider.arch: auto`."
        )
    return out


def build_outline(spec: LabSpec, plan: Plan, cache_dir: Path | None = None) -> Outline:
    sections: list[StepSection] = []
    for n, step in enumerate(plan.steps, 1):
        blocks: list[CommandBlock] = []
        for hosts, cmd in group_commands(step.commands):
            if cmd.check:
                blocks.append(CommandBlock(hosts, "check", cmd.check))
            blocks.append(CommandBlock(hosts, "run", cmd.run))
            if cmd.on_interrupt:  # what Ctrl-C runs where the run started (the step's `on_interrupt:`)
                blocks.append(CommandBlock(hosts, "on_interrupt", cmd.on_interrupt))
        sections.append(StepSection(n, step, _step_facts(step), tuple(blocks)))

    from labctl.manifests import DEFAULT_NAMESPACE, pull_job_name

    subnet = spec.network.subnet
    provider = spec.provider.type
    pull_job = pull_job_name(list(spec.apps.ollama.models))
    prereq = [
        "A 64-bit laptop with hardware virtualisation switched on, "
        f"{spec.memory_mib()} MiB of RAM free for the VMs and {disk_sentence(spec)} (`labctl doctor` checks both).",
    ]
    if provider == "ssh":
        prereq.append("SSH access with sudo to every machine listed below (provider ssh: labctl creates no VMs).")
    else:
        prereq.append("Vagrant (2.3 or newer): `vagrant --version`.")
        if provider == "virtualbox":
            prereq.append("VirtualBox (7.0 or newer): `VBoxManage --version`.")
            prereq += macos_prerequisites(spec)
        else:
            prereq.append("libvirt with the vagrant-libvirt plugin: `vagrant plugin list` shows vagrant-libvirt.")
        from labctl.cache import box_add_command

        add_box = box_add_command(spec, cache_dir) if cache_dir is not None else None
        if add_box:
            prereq.append(
                f"The Vagrant box {spec.box} {spec.box_version}, added from the warm cache: `{' '.join(add_box)}`."
            )
        else:
            prereq.append(f"The Vagrant box {spec.box} version {spec.box_version} (downloaded by the first step).")
    prereq.append("labctl installed from source: `pipx install .` in a checkout (the PyPI name is someone else's).")

    webui = spec.webui_address
    port = spec.apps.openwebui.port
    master = spec.nodes.master
    urls = [("Open WebUI (chat in the browser)", f"http://{webui}:{port}")]
    if spec.apps.ollama.expose:
        urls.append(("Ollama API (exposed)", f"http://{spec.network.pool_range()[0]}:11434"))
    urls.append(("Kubernetes API", f"https://{master.ip}:6443"))

    checks = [
        ("the VMs are running", "vagrant status" if provider != "ssh" else "ssh <user>@<node> true"),
        ("every node is Ready, with its lab address as INTERNAL-IP", "kubectl get nodes -o wide"),
        ("Calico, CoreDNS and kube-proxy pods are Running", "kubectl -n kube-system get pods -o wide"),
        ("MetalLB's controller and speakers are Running", "kubectl -n metallb-system get pods"),
        ("the address pool exists", "kubectl -n metallb-system get ipaddresspools,l2advertisements"),
        (
            f"the NFS export is visible from the cluster (server {spec.nodes.nfs.ip})",
            f"showmount -e {spec.nodes.nfs.ip}",
        ),
        ("the volumes are Bound", "kubectl get storageclass,pvc -A"),
        (
            "Ollama and Open WebUI are Running",
            f"kubectl -n {DEFAULT_NAMESPACE} get pods,svc -l 'app.kubernetes.io/name in (ollama,open-webui)'",
        ),
        ("the Open WebUI Service has its LoadBalancer address", f"kubectl get svc -A -o wide | grep {webui}"),
        ("the Open WebUI endpoint answers", f"curl -fsS http://{webui}:{port}/health"),
        ("the models are on the shared volume", f"kubectl -n {DEFAULT_NAMESPACE} exec deploy/ollama -- ollama list"),
    ]

    troubles = [
        (
            '`vagrant up` fails with "The IP address configured for the host-only network is not within the allowed ranges"',
            "VirtualBox only allows host-only addresses in 192.168.56.0/21 unless /etc/vbox/networks.conf lists the range.",
            f"Add the line `* {subnet}` to /etc/vbox/networks.conf (create the file as root), then run `labctl create` again.",
        ),
        (
            "Nodes show INTERNAL-IP 10.0.2.15, pods on different nodes cannot reach each other, or `kubectl logs` times out",
            "Every VM has a NAT NIC with the same address 10.0.2.15; Kubernetes or Calico picked it instead of the lab NIC.",
            f"The plan sets kubelet's --node-ip, the API server's advertise address ({master.ip}) and Calico's "
            "IP autodetection to the lab network; if you changed them by hand, run `labctl create` again to restore them, "
            "then check `kubectl get nodes -o wide`.",
        ),
        (
            'After `vagrant halt` / `vagrant up` the kubelet does not start ("running with swap on is not supported")',
            "Swap comes back on reboot when it is only switched off, not removed from /etc/fstab.",
            "Run `labctl create` again: the node-prep step turns swap off and comments it out of /etc/fstab on every run. "
            "By hand: `sudo swapoff -a && sudo sed -i '/ swap / s/^/#/' /etc/fstab && sudo systemctl restart kubelet`.",
        ),
        (
            'Applying the MetalLB address pool fails with "failed calling webhook ... connection refused"',
            "MetalLB's webhook rejects IPAddressPool objects until its controller pod is ready.",
            "Wait for it, then retry: `kubectl -n metallb-system wait --for=condition=Ready pod "
            "-l app=metallb,component=controller --timeout=180s` and run `labctl create` again.",
        ),
        (
            "The model download Job stays at 99% or never finishes",
            "Ollama pulls can stall near the end on a slow or shared connection.",
            f"The Job retries with a timeout; follow it with `kubectl -n {DEFAULT_NAMESPACE} logs -f job/{pull_job}`. If it gave up, "
            "delete the Job and run `labctl create` again — finished layers are kept. In a classroom, fill a warm "
            "cache once (`labctl cache fill`) and use `labctl create --cache DIR`.",
        ),
    ]
    return Outline(
        spec=spec,
        plan=plan,
        steps=tuple(sections),
        prerequisites=tuple(prereq),
        networks_conf_line=f"* {subnet}" if provider == "virtualbox" else "",
        urls=tuple(urls),
        checks=tuple(checks),
        troubles=tuple(troubles),
        resets=_resets(spec),
    )


def _resets(spec: LabSpec) -> tuple[tuple[str, str], ...]:
    """How a student puts a broken lab back (labctl/snapshots.py); machines of provider ssh are not labctl's to snapshot."""
    if spec.provider.type == "ssh":
        return ()
    return (
        ("Save the lab as it is now, before an exercise that may break it", "labctl snapshot save before-exercise"),
        (
            "Put it back: every VM restored, clocks set, the lab re-checked like `labctl create`",
            "labctl snapshot restore before-exercise",
        ),
        ("Back to the lab exactly as `labctl create` finished it", "labctl snapshot restore ready"),
        (
            "List the snapshots; delete one to free its disk space",
            "labctl snapshot list\nlabctl snapshot delete before-exercise",
        ),
    )


RESET_INTRO = (
    "Broke something? A snapshot puts every VM back in about a minute instead of a new `labctl create`. "
    "`labctl create` saved one named `ready` when it finished."
)
CHECKS_INTRO = (
    "Run the kubectl commands on the control plane (`vagrant ssh {master}`: the login user has a kubeconfig), "
    "the others on your laptop."
)


# ---- Markdown ----------------------------------------------------------------------------------
def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run inside ``text`` (so a script never ends it)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _code(text: str, lang: str = "sh") -> list[str]:
    fence = _fence(text)
    return [f"{fence}{lang}", text.rstrip("\n"), fence]


def render_markdown(outline: Outline) -> str:
    spec, plan = outline.spec, outline.plan
    total = len(outline.steps)
    out: list[str] = [
        f"# Workshop handout — lab `{spec.name}`",
        "",
        f"This handout is generated by `labctl handout` from the plan that `labctl create` runs ({total} steps, "
        f"provider {plan.provider}). Every command below is exactly what labctl runs; you can type them yourself "
        "to see each layer being built, or run `labctl create` and follow along.",
        "",
        "## 1. Before you start",
        "",
    ]
    out += [f"- {p}" for p in outline.prerequisites]
    if outline.networks_conf_line:
        out += [
            "",
            "VirtualBox refuses host-only addresses outside 192.168.56.0/21 unless they are listed in "
            "`/etc/vbox/networks.conf`. That file must contain this line:",
            "",
            *_code(outline.networks_conf_line, "text"),
        ]
    out += [
        "",
        "## 2. The machines",
        "",
        "| Machine | Address | Roles | CPUs | Memory |",
        "|---|---|---|---|---|",
    ]
    for h in plan.hosts:
        out.append(f"| {h['name']} | {h['ip']} | {', '.join(h['roles'])} | {h['cpus']} | {h['memory_mib']} MiB |")
    out += [
        "",
        f"Lab network {spec.network.subnet}; pods {spec.network.pod_cidr}; services {spec.network.service_cidr}; "
        f"MetalLB pool {spec.network.metallb_pool}.",
        "",
        *(images_markdown(plan.images) if plan.images else []),
        "## 3. The steps",
        "",
        "Each step first runs its **check**; when the check succeeds the work is already done and the step is "
        "skipped on that machine. Otherwise it runs the **run** script. Machines with identical commands are listed together.",
        "",
    ]
    for sec in outline.steps:
        s = sec.step
        out.append(STEP_HEADING.format(n=sec.number, total=total, id=s.id, title=s.title))
        out.append("")
        if s.purpose:
            out += [s.purpose, ""]
        out.append(f"*{'; '.join(sec.facts)}.*")
        out.append("")
        if s.upload:
            out.append(
                "Files copied to the machine first (content not shown here): "
                + ", ".join(f"`{u}`" for u in s.upload)
                + "."
            )
            out.append("")
        for block in sec.blocks:
            out.append(COMMAND_LABEL.format(hosts=", ".join(block.hosts), kind=block.kind))
            out.append("")
            out += _code(block.script)
            out.append("")
    out += ["## 4. Open the lab", ""]
    out += [f"- {what}: <{url}>" for what, url in outline.urls]
    out += ["", "## 5. Check each layer by hand", "", CHECKS_INTRO.format(master=spec.nodes.master.name), ""]
    for what, cmd in outline.checks:
        out += [f"- {what}:", "", *("  " + line for line in "\n".join(_code(cmd)).splitlines()), ""]
    if outline.resets:
        out += ["## 6. Reset your lab", "", RESET_INTRO, ""]
        for what, cmd in outline.resets:
            out += [f"- {what}:", "", *("  " + line for line in "\n".join(_code(cmd)).splitlines()), ""]
    out += [f"## {7 if outline.resets else 6}. Troubleshooting", ""]
    for symptom, cause, fix in outline.troubles:
        out += [f"**{symptom}**", "", f"- Why: {cause}", f"- Fix: {fix}", ""]
    return "\n".join(out).rstrip() + "\n"


# ---- HTML --------------------------------------------------------------------------------------
CSS = """
:root { --ink: #1d2327; --muted: #5b6670; --accent: #1f5fa8; --code: #f4f6f8; --rule: #d6dbe0; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.8rem; border-bottom: 3px solid var(--accent); padding-bottom: .3rem; }
h2 { font-size: 1.35rem; color: var(--accent); margin-top: 2.2rem; border-bottom: 1px solid var(--rule); }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .3rem; }
code { font: 13px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
pre { background: var(--code); border-left: 4px solid var(--accent); padding: .6rem .8rem; overflow-x: auto;
      white-space: pre-wrap; word-break: break-word; }
.facts { color: var(--muted); font-style: italic; margin: .2rem 0 .5rem; }
.label { font-weight: 600; margin: .6rem 0 .2rem; }
.label .kind-check { color: #7a5b00; } .label .kind-run { color: #0f6b2f; } .label .kind-on_interrupt { color: #9b1c1c; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid var(--rule); padding: .25rem .6rem; text-align: left; }
th { background: var(--code); }
.trouble { border: 1px solid var(--rule); border-radius: 4px; padding: .4rem .8rem; margin: .6rem 0; }
.step { break-inside: avoid-page; }
@media print {
  body { max-width: none; margin: 0; font-size: 10.5pt; }
  h2 { break-before: auto; break-after: avoid; }
  h3, .label { break-after: avoid; }
  pre { border: 1px solid #999; border-left: 4px solid #333; background: none; break-inside: avoid; }
  a { color: inherit; text-decoration: none; } a[href^="http"]::after { content: " (" attr(href) ")"; }
}
""".strip()


def _md_inline(text: str) -> str:
    """Escape, then turn the Markdown `code` spans the prose uses into <code> elements."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(
        f"<code>{html.escape(p[1:-1])}</code>"
        if p.startswith("`") and p.endswith("`") and len(p) > 1
        else html.escape(p)
        for p in parts
    )


def _pre(text: str) -> str:
    return f"<pre><code>{html.escape(text.rstrip())}</code></pre>"


def render_html(outline: Outline) -> str:
    spec, plan = outline.spec, outline.plan
    total = len(outline.steps)
    e = html.escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Workshop handout — lab {e(spec.name)}</title>",
        f"<style>\n{CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>Workshop handout — lab <code>{e(spec.name)}</code></h1>",
        f"<p>Generated by <code>labctl handout</code> from the plan that <code>labctl create</code> runs ({total} steps, "
        f"provider {e(plan.provider)}). Every command below is exactly what labctl runs.</p>",
        "<h2>1. Before you start</h2>",
        "<ul>",
        *(f"<li>{_md_inline(p)}</li>" for p in outline.prerequisites),
        "</ul>",
    ]
    if outline.networks_conf_line:
        out += [
            "<p>VirtualBox refuses host-only addresses outside 192.168.56.0/21 unless they are listed in "
            "<code>/etc/vbox/networks.conf</code>. That file must contain this line:</p>",
            _pre(outline.networks_conf_line),
        ]
    out += [
        "<h2>2. The machines</h2>",
        "<table><thead><tr><th>Machine</th><th>Address</th><th>Roles</th><th>CPUs</th><th>Memory</th></tr></thead><tbody>",
    ]
    for h in plan.hosts:
        out.append(
            f"<tr><td>{e(h['name'])}</td><td>{e(h['ip'])}</td><td>{e(', '.join(h['roles']))}</td>"
            f"<td>{h['cpus']}</td><td>{h['memory_mib']} MiB</td></tr>"
        )
    out += [
        "</tbody></table>",
        f"<p>Lab network {e(str(spec.network.subnet))}; pods {e(str(spec.network.pod_cidr))}; services "
        f"{e(str(spec.network.service_cidr))}; MetalLB pool {e(spec.network.metallb_pool)}.</p>",
        *(images_html(plan.images) if plan.images else []),
        "<h2>3. The steps</h2>",
        "<p>Each step first runs its <strong>check</strong>; when the check succeeds the work is already done and the "
        "step is skipped on that machine. Otherwise it runs the <strong>run</strong> script.</p>",
    ]
    for sec in outline.steps:
        s = sec.step
        out.append(f'<section class="step" id="{e(s.id)}">')
        out.append(f"<h3>Step {sec.number}/{total}: <code>{e(s.id)}</code> — {e(s.title)}</h3>")
        if s.purpose:
            out.append(f"<p>{_md_inline(s.purpose)}</p>")
        out.append(f'<p class="facts">{e("; ".join(sec.facts))}.</p>')
        if s.upload:
            out.append(
                "<p>Files copied to the machine first (content not shown here): "
                + ", ".join(f"<code>{e(u)}</code>" for u in s.upload)
                + ".</p>"
            )
        for block in sec.blocks:
            out.append(
                f'<p class="label">On {e(", ".join(block.hosts))} — <span class="kind-{block.kind}">{block.kind}</span>:</p>'
            )
            out.append(_pre(block.script))
        out.append("</section>")
    out += ["<h2>4. Open the lab</h2>", "<ul>"]
    out += [f'<li>{e(what)}: <a href="{e(url)}">{e(url)}</a></li>' for what, url in outline.urls]
    out += [
        "</ul>",
        "<h2>5. Check each layer by hand</h2>",
        f"<p>{_md_inline(CHECKS_INTRO.format(master=spec.nodes.master.name))}</p>",
        "<ul>",
    ]
    out += [f"<li>{_md_inline(what)}:{_pre(cmd)}</li>" for what, cmd in outline.checks]
    out.append("</ul>")
    if outline.resets:
        out += ["<h2>6. Reset your lab</h2>", f"<p>{_md_inline(RESET_INTRO)}</p>", "<ul>"]
        out += [f"<li>{_md_inline(what)}:{_pre(cmd)}</li>" for what, cmd in outline.resets]
        out.append("</ul>")
    out.append(f"<h2>{7 if outline.resets else 6}. Troubleshooting</h2>")
    for symptom, cause, fix in outline.troubles:
        out.append(
            f'<div class="trouble"><p><strong>{_md_inline(symptom)}</strong></p>'
            f"<p>Why: {_md_inline(cause)}</p><p>Fix: {_md_inline(fix)}</p></div>"
        )
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def render(spec: LabSpec, plan: Plan, fmt: str = "md", *, cache_dir: Path | None = None) -> str:
    outline = build_outline(spec, plan, cache_dir)
    if fmt == "html":
        return render_html(outline)
    return render_markdown(outline)


# ---- reading a handout back (the equality test, and anyone checking a printed copy) ---------------
def parse_markdown_commands(text: str) -> list[tuple[str, tuple[str, ...], str, str]]:
    """(step id, hosts, "check"|"run", script) for every command block, in document order."""
    found: list[tuple[str, tuple[str, ...], str, str]] = []
    lines = text.splitlines()
    step_id = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := STEP_HEADING_RE.match(line):
            step_id = m.group(3)
        elif line.startswith("## "):
            step_id = ""  # past the steps section: check-by-hand commands are not plan commands
        elif (m := COMMAND_LABEL_RE.match(line)) and step_id:
            hosts = tuple(h.strip() for h in m.group(1).split(","))
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            fence = re.match(r"^(`{3,})", lines[j]).group(1)  # type: ignore[union-attr]
            k = j + 1
            body: list[str] = []
            while lines[k] != fence:
                body.append(lines[k])
                k += 1
            found.append((step_id, hosts, m.group(2), "\n".join(body)))
            i = k
        i += 1
    return found
