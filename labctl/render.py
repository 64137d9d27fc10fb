"""Rendering: lab spec → Vagrantfile (vagrant/ templates) and manifests (manifests/ templates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from labctl.errors import LabctlError
from labctl.secrets import LabSecrets
from labctl.spec import GpuNode, LabSpec

# What `labctl render` writes into apps.yaml unless asked for the lab's real secrets: visibly not a
# key, so a rendered folder can be read, diffed and handed out without giving the lab's key away.
PLACEHOLDER_SECRETS = LabSecrets(
    webui_secret_key="PLACEHOLDER-not-the-lab-key--render-with---with-secrets",
    grafana_admin_password="PLACEHOLDER-not-the-lab-password",
)


def _env(folder: Path):
    import jinja2

    from labctl.escaping import comment, ruby_finalize

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # lab.yaml is untrusted: every {{ }} is a Ruby string literal unless marked (labctl.escaping)
        finalize=ruby_finalize,
    )
    env.filters["comment"] = comment
    return env


def vagrant_machines(spec: LabSpec, *, cache_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """One entry per VM, in boot order, with everything the Vagrantfile template shows of it."""
    from labctl.figures import node_disk_gib

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
                # lab.yaml's disk_gib, or on libvirt what the node's images need (labctl.figures)
                "disk_gib": node_disk_gib(spec, node, cache_dir=cache_dir),
                "disk_default": node.disk_gib is None,
                "roles": [ROLE_WORDS.get(r, r) for r in spec.roles_of(node) if r != "k8s"],
                "pci": pci,
                "pci_address": node.pci if isinstance(node, GpuNode) else "",
            }
        )
    return machines


# How each role reads in the Vagrantfile's comments.
ROLE_WORDS = {"control_plane": "Kubernetes control plane", "workers": "Kubernetes worker", "nfs": "NFS server", "gpu": "GPU"}


def ruby_string(text: str) -> str:
    """A Ruby string literal that cannot interpolate (labctl.escaping.ruby_literal)."""
    from labctl.escaping import ruby_literal

    return ruby_literal(text)


# What each VM reads from the warm cache (under /labctl-cache); libvirt copies only that (see the template).
CACHE_PARTS = {"k8s": ("debs/", "images/", "addons/", "releases/"), "nfs": ("models/",)}


def cache_excludes(spec: LabSpec, node: Any) -> list[str]:
    """Folders of the warm cache a VM never reads: the boxes (the host adds them), and the parts for
    roles the VM does not have."""
    roles = spec.roles_of(node)
    needed = {part for role, parts in CACHE_PARTS.items() if role in roles for part in parts}
    out = ["boxes/"] + [part for parts in CACHE_PARTS.values() for part in parts if part not in needed]
    if "images/" in needed:
        # The pinned images this node never runs (Ollama's and Open WebUI's several GB on the
        # master, the control plane's on a worker): they would only fill its disk.
        from labctl.cache_needs import arch_suffix, safe_file_name
        from labctl.disk_sizing import node_image_refs
        from labctl.lab_pins import images

        runs, suffix = node_image_refs(spec, node), arch_suffix(spec.arch)  # arm64 archives end .arm64.tar
        out += sorted(f"images/{safe_file_name(ref)}{suffix}.tar" for ref in images(spec).values() if ref not in runs)
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
    from labctl.context import base_context
    from labctl.resources import vagrant_dir

    provider = spec.provider.type
    if provider not in ("virtualbox", "libvirt"):
        raise LabctlError(
            f"provider.type {provider} uses machines that already exist: there is no Vagrantfile to render"
        )
    machines = vagrant_machines(spec, cache_dir=cache_dir)
    cache_literal = node_dir = ""
    if cache_dir is not None:
        from labctl.cache import NODE_DIR

        node_dir = NODE_DIR
        # absolute: Vagrant resolves a relative host path against the Vagrantfile's folder (the state dir)
        cache_literal = str(Path(cache_dir).expanduser().resolve())  # quoted by the template's finalize
        nodes = {n.name: n for _, n in spec.all_nodes()}
        for m in machines:
            m["cache_excludes"] = cache_excludes(spec, nodes[m["name"]])
    template = _env(template_dir or vagrant_dir()).get_template("Vagrantfile.j2")
    return template.render(
        **base_context(spec),
        source=source,
        labctl_version=__version__,
        provider=provider,
        provider_var=Markup("vb" if provider == "virtualbox" else "libvirt"),  # a Ruby block variable, ours
        machines=machines,
        disks_used=any(m["disk_gib"] for m in machines),
        cache_dir=cache_literal,
        cache_node_dir=node_dir,
    )


def render_all(
    spec: LabSpec,
    out_dir: Path,
    *,
    source: str = "the built-in default lab",
    state_dir: Path | None = None,
    secrets: LabSecrets | None = None,
) -> list[Path]:
    """Write the Vagrantfile and every manifest for ``spec`` below ``out_dir``; return the paths.

    The manifest bundles go to ``out_dir/manifests/<bundle>.yaml`` (0600: the apps bundle holds the
    lab's Secret). Secrets come from ``state_dir`` (default: the lab's state folder), generated
    there once if the lab has none yet, so a later ``labctl create`` applies the same ones.
    ``secrets`` given (e.g. ``PLACEHOLDER_SECRETS``): used as they are, and the state folder is
    neither read nor written.
    """
    from labctl.manifests import render_bundles, write_bundles
    from labctl.secrets import load_or_create
    from labctl.state import lab_dir, write_new

    # Everything is rendered before anything is written: a template error leaves no half a folder.
    vagrantfile = render_vagrantfile(spec, source=source) if spec.provider.type in ("virtualbox", "libvirt") else None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if secrets is None:
            secrets = load_or_create(state_dir if state_dir is not None else lab_dir(spec.name))
        bundles = render_bundles(spec, secrets)
        written: list[Path] = []
        if vagrantfile is not None:  # provider ssh: the machines already exist
            written.append(write_new(out_dir / "Vagrantfile", vagrantfile))
        written += write_bundles(bundles, out_dir / "manifests")
    except OSError as err:
        where = err.filename or out_dir
        raise LabctlError(
            f"cannot write {where}: {err.strerror or err} — choose an output folder you can write to (-o DIR)"
        ) from None
    return written
