"""The context every template renders with: the lab spec, our pins, the nodes by role.

Kept apart from labctl.plan because the apps manifests render from it too, and the plan's image
list (labctl.images) is computed from those rendered manifests: plan → images → manifests → context
points one way.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from labctl.spec import LabSpec, Node


def fact_variable(fact: str) -> str:
    """The shell variable a captured fact is handed to later scripts in (never on a command line)."""
    return f"LABCTL_{fact.upper()}"


def nodes_for(spec: LabSpec, role: str) -> list[Node]:
    return [n for _, n in spec.all_nodes() if role == "all" or role in spec.roles_of(n)]


def base_context(spec: LabSpec, *, cache: Any = None) -> dict[str, Any]:
    """What every playbook, manifest and Vagrantfile template may use (the playbooks README lists it).
    The image lists come on top in ``labctl.plan.template_context``: they are computed from the
    rendered apps bundle, which is itself rendered from this context.

    ``cache`` is the warm cache given to ``create --cache`` (a ``labctl.cache.CacheInfo``) or None;
    steps that only make sense with a cache say ``when: cache``."""
    from labctl.placement import pull_job_name
    from labctl.versions import PINS, kubernetes_minor, release_downloads

    return {
        # The model download Job of this model list (its name changes with the list): waits follow it by name.
        "model_pull_job": pull_job_name(list(spec.apps.ollama.models)),
        "spec": spec,
        # Our own pins, not lab.yaml: they go into scripts and manifests as written.
        "versions": {k: Markup(v) for k, v in PINS.items()},
        "k8s_minor": kubernetes_minor(),
        # Debian's name of the lab's CPU architecture (provider.arch, resolved when the spec loaded):
        # every release archive, image platform and box a step fetches is for this one.
        "arch": spec.arch,
        "nodes": [n for _, n in spec.all_nodes()],
        "k8s_nodes": nodes_for(spec, "k8s"),
        "master": spec.nodes.master,
        "workers": nodes_for(spec, "workers"),
        "nfs": spec.nodes.nfs,
        "fact_var": fact_variable,
        "cache": cache,
        "releases": {d.key: d for d in release_downloads(spec.arch)},  # containerd, runc (labctl.versions)
    }
