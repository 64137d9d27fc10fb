"""Rendering: lab spec → Vagrantfile (vagrant/ templates) and manifests (manifests/ templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl.errors import LabctlError
from labctl.spec import GpuNode, LabSpec


def _env(folder: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def vagrant_machines(spec: LabSpec) -> list[dict[str, Any]]:
    """One entry per VM, in boot order, with everything the Vagrantfile template shows of it."""
    machines = []
    for path, node in spec.all_nodes():
        pci = node.pci_parts() if isinstance(node, GpuNode) else None
        machines.append(
            {
                "path": path,
                "name": node.name,
                "ip": str(node.ip),
                "cpus": node.cpus,
                "memory_mib": node.memory_mib,
                "disk_gib": node.disk_gib,
                "roles": [ROLE_WORDS.get(r, r) for r in spec.roles_of(node) if r != "k8s"],
                "pci": pci,
                "pci_address": node.pci if isinstance(node, GpuNode) else "",
            }
        )
    return machines


# How each role reads in the Vagrantfile's comments.
ROLE_WORDS = {"control_plane": "Kubernetes control plane", "workers": "Kubernetes worker", "nfs": "NFS server", "gpu": "GPU"}


def ruby_string(text: str) -> str:
    """A Ruby single-quoted literal: no interpolation, so a path with `#{` or `"` stays a path."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# What each VM reads from the warm cache (under /labctl-cache); libvirt copies only that (see the template).
CACHE_PARTS = {"k8s": ("debs/", "images/", "addons/"), "nfs": ("models/",)}


def cache_excludes(spec: LabSpec, node: Any) -> list[str]:
    """Folders of the warm cache a VM never reads: the boxes (the host adds them), and the parts for
    roles the VM does not have."""
    roles = spec.roles_of(node)
    needed = {part for role, parts in CACHE_PARTS.items() if role in roles for part in parts}
    out = ["boxes/"] + [part for parts in CACHE_PARTS.values() for part in parts if part not in needed]
    if "images/" in needed:
        # The pinned images this node never runs (Ollama's and Open WebUI's several GB on the
        # master, the control plane's on a worker): they would only fill its disk.
        from labctl.cache import safe_file_name
        from labctl.disk_sizing import node_image_refs
        from labctl.lock import images

        runs = node_image_refs(spec, node)
        out += sorted(f"images/{safe_file_name(ref)}.tar" for ref in images(spec).values() if ref not in runs)
    return out


def render_vagrantfile(
    spec: LabSpec,
    *,
    source: str = "the built-in default lab",
    template_dir: Path | None = None,
    cache_dir: Path | str | None = None,
) -> str:
    """The multi-machine Vagrantfile for ``spec``. ``source`` names the lab.yaml in its header;
    ``template_dir`` replaces vagrant/ (tests render deliberately broken copies with it);
    ``cache_dir`` (``create --cache DIR``) makes the warm cache appear read-only at /labctl-cache in
    every VM (labctl.cache.NODE_DIR)."""
    from labctl import __version__
    from labctl.plan import template_context
    from labctl.resources import vagrant_dir

    provider = spec.provider.type
    if provider not in ("virtualbox", "libvirt"):
        raise LabctlError(
            f"provider.type {provider} uses machines that already exist: there is no Vagrantfile to render"
        )
    machines = vagrant_machines(spec)
    cache_literal = node_dir = ""
    if cache_dir is not None:
        from labctl.cache import NODE_DIR

        node_dir = NODE_DIR
        # absolute: Vagrant resolves a relative host path against the Vagrantfile's folder (the state dir)
        cache_literal = ruby_string(str(Path(cache_dir).expanduser().resolve()))
        nodes = {n.name: n for _, n in spec.all_nodes()}
        for m in machines:
            m["cache_excludes"] = cache_excludes(spec, nodes[m["name"]])
    template = _env(template_dir or vagrant_dir()).get_template("Vagrantfile.j2")
    return template.render(
        **template_context(spec),
        source=source,
        labctl_version=__version__,
        provider=provider,
        provider_var="vb" if provider == "virtualbox" else "libvirt",
        machines=machines,
        disks_used=any(m["disk_gib"] for m in machines),
        cache_dir=cache_literal,
        cache_node_dir=node_dir,
    )


def render_all(
    spec: LabSpec, out_dir: Path, *, source: str = "the built-in default lab", state_dir: Path | None = None
) -> list[Path]:
    """Write the Vagrantfile and every manifest for ``spec`` below ``out_dir``; return the paths.

    The manifest bundles go to ``out_dir/manifests/<bundle>.yaml`` (0600: the apps bundle holds the
    lab's Secret). Secrets come from ``state_dir`` (default: the lab's state folder), generated
    there once if the lab has none yet, so a later ``labctl create`` applies the same ones.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if spec.provider.type in ("virtualbox", "libvirt"):  # provider ssh: the machines already exist
        written.append(out_dir / "Vagrantfile")
        written[0].write_text(render_vagrantfile(spec, source=source), encoding="utf-8")
    from labctl.manifests import render_bundles, write_bundles
    from labctl.secrets import load_or_create
    from labctl.state import lab_dir

    secrets = load_or_create(state_dir if state_dir is not None else lab_dir(spec.name))
    written += write_bundles(render_bundles(spec, secrets), out_dir / "manifests")
    return written
