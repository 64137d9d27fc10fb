"""The warnings of a lab that is valid: memory above the host budget, Open WebUI without a login,
disks too small for the images (labctl.disk_sizing). Split from labctl/spec.py: these read the
image lock and the apps' placement, which the models must not import (they would import them back)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec


class SpecWarning(str):
    """A finding that does not stop the lab (e.g. memory above the host budget)."""


def spec_warnings(spec: LabSpec) -> list[SpecWarning]:
    """What does not stop the lab but should be said (the CLI prints each on stderr as ``warning: ...``)."""
    out: list[SpecWarning] = []
    total, budget = spec.memory_mib(), spec.provider.host_memory_budget_mib
    if spec.provider.type != "ssh" and total > budget:
        out.append(
            SpecWarning(
                f"provider.host_memory_budget_mib: the VMs need {total} MiB, above the budget of "
                f"{budget} MiB — lower nodes.*.memory_mib or raise the budget if the host has room"
            )
        )
    if not spec.apps.openwebui.auth:
        out.append(SpecWarning(_auth_off_warning(spec)))
    from labctl.disk_sizing import disk_warnings

    out += [SpecWarning(line) for line in disk_warnings(spec)]
    return out


def _auth_off_warning(spec: LabSpec) -> str:
    """Open WebUI honours WEBUI_AUTH=False only on an install without users (docs.openwebui.com,
    env-configuration, WEBUI_AUTH); its users live on the data node's disk and outlive creates."""
    from labctl.placement import DEFAULT_NAMESPACE, LOCAL_DATA_ROOT, data_node

    folder = f"{LOCAL_DATA_ROOT}/{DEFAULT_NAMESPACE}/open-webui-data"
    return (
        "apps.openwebui.auth: false works only while Open WebUI has no user at all — once anyone signed up "
        f"(users are kept in {folder} on {data_node(spec).name} across creates) it locks everyone out. "
        f"Way out: set auth: true again and re-run labctl create, or start from scratch by deleting {folder}/webui.db "
        f"on {data_node(spec).name} (every account and chat is lost)"
    )
