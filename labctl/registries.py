"""Container registries and their limits: how many Docker Hub pulls a lab makes, for `doctor` and
`versions --check` to warn about (labctl.cache honours Retry-After when it is rate-limited itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec

# Docker Hub: 10 pulls an hour per IPv4 address (or IPv6 /64) for unauthenticated users, 100 for a
# logged-in Personal account; a pull is counted per manifest request (docker/docs
# content/manuals/docker-hub/usage/_index.md and pulls.md). Each image on each node is a pull.
DOCKER_HUB_ANONYMOUS_PULLS_PER_HOUR = 10

# The lab's DaemonSets: every Kubernetes node pulls their images (the GPU device plugin runs on one).
PER_NODE_IMAGES = {"calico-cni", "calico-node", "kube-proxy", "metallb-speaker", "csi-nfsplugin"}


def docker_hub_pulls(spec: LabSpec) -> int:
    """How many Docker Hub pulls a create without a cache or mirror makes: every docker.io image
    once per node that runs it (a DaemonSet's on every Kubernetes node; the apps images once, worst
    case). Calico is not among them: the lab takes it from quay.io (``labctl.lab_pins.CALICO_REGISTRY``)."""
    from labctl.lab_pins import images

    k8s_nodes = sum(1 for _, node in spec.all_nodes() if "k8s" in spec.roles_of(node))
    pulls = 0
    for key, ref in images(spec).items():
        if ref.startswith("docker.io/"):
            pulls += k8s_nodes if key in PER_NODE_IMAGES else 1
    return pulls


def docker_hub_warning(spec: LabSpec, *, cache: bool = False) -> str | None:
    """One line for `doctor` / `versions --check` (or None): a room behind one NAT address shares
    Docker Hub's anonymous limit, and manifest requests count."""
    if cache or spec.offline or spec.apps.options.registry_mirror:
        return None
    pulls = docker_hub_pulls(spec)
    if not _over_half_the_limit(pulls):
        return None
    return (
        f"this lab makes {pulls} image pulls from Docker Hub, which allows about {DOCKER_HUB_ANONYMOUS_PULLS_PER_HOUR} "
        "anonymous pulls an hour per address: a room behind one NAT hits HTTP 429 — use create --cache, "
        "apps.options.registry_mirror, or apps.options.image_pull_secret"
    )


def docker_hub_room(spec: LabSpec, *, cache: bool = False) -> tuple[str, str]:
    """doctor's line on Docker Hub: ("ok" or "warn", what). A classroom shares one address, so the
    figure that matters is how many laptops can create within the hour, not this lab's pulls alone."""
    if cache or spec.offline:
        return "ok", "no Docker Hub pulls: images come from the warm cache"
    if spec.apps.options.registry_mirror:
        return "ok", f"docker.io pulls go through the registry mirror {spec.apps.options.registry_mirror}"
    pulls = docker_hub_pulls(spec)
    if pulls == 0:
        return "ok", "no image comes from Docker Hub"
    laptops = DOCKER_HUB_ANONYMOUS_PULLS_PER_HOUR // pulls
    what = (
        f"{pulls} image pull{'s' if pulls > 1 else ''} from Docker Hub per lab: about {laptops} laptop"
        f"{'s' if laptops != 1 else ''} behind one address can create within an hour (Docker Hub allows about "
        f"{DOCKER_HUB_ANONYMOUS_PULLS_PER_HOUR} anonymous pulls an hour per address)"
    )
    return ("warn" if _over_half_the_limit(pulls) else "ok"), what


def _over_half_the_limit(pulls: int) -> bool:
    """One lab alone past half the anonymous limit: a second laptop behind the same address fails."""
    return pulls > DOCKER_HUB_ANONYMOUS_PULLS_PER_HOUR // 2
