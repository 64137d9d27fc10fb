"""Lab spec → Kubernetes manifests (the templates in ``manifests/``).

Two targets share one set of templates:

- ``lab``: the cluster ``labctl create`` builds. Three bundles — ``metallb-config`` (address pool),
  ``storage`` (the default NFS StorageClass) and ``apps`` (Ollama, Open WebUI, options). The
  playbooks upload them as artefacts (``labctl.artefacts``) and apply them.
- ``deploy``: a cluster that already exists (``labctl deploy``). Only the ``apps`` bundle, into a
  namespace of the user's choosing, without cluster-wide add-ons (device plugin, RuntimeClass) that
  belong to the cluster's administrator. Names of the few cluster-scoped objects we still emit
  carry the namespace, so students deploying side by side never collide.

Rendering is pure: spec + secrets + target in, YAML text out. ``validation_problems`` checks
objects for real (kubernetes-validate --strict for core kinds, our JSON schemas in
``manifests/schemas/`` for custom resources).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from markupsafe import Markup

from labctl.errors import LabctlError
from labctl.placement import (
    DEFAULT_NAMESPACE,
    LOCAL_DATA_ROOT,
    WEBUI_MEMORY_LIMIT_MIB,
    Resources,
    data_node,
    ollama_resources,
    pull_job_name,
)

if TYPE_CHECKING:
    from labctl.secrets import LabSecrets
    from labctl.spec import LabSpec

LAB_BUNDLES = ("metallb-config", "storage", "apps")
# MetalLB's own namespace (the native manifest creates it); our pool and advertisement live there.
METALLB_NAMESPACE = "metallb-system"


class ManifestError(LabctlError):
    exit_code = 2


@dataclass(frozen=True)
class Target:
    """Where the bundle goes. The lab defaults describe the cluster `labctl create` builds."""

    mode: Literal["lab", "deploy"] = "lab"
    namespace: str = DEFAULT_NAMESPACE
    # Models volume (ReadWriteMany in the lab). None: lab → spec.storage.class_name; deploy → the
    # cluster's default class (storageClassName left out).
    storage_class: str | None = None
    # Databases (Open WebUI's SQLite files, Prometheus, Grafana): deploy only — in the lab they get a
    # node-local volume. None = same as storage_class.
    data_storage_class: str | None = None
    # Deploy: override spec.apps.options.gpu (a cluster that exists has no gpu_worker in lab.yaml).
    gpu: bool | None = None
    # Deploy: set runtimeClassName nvidia only when the cluster has that RuntimeClass.
    gpu_runtime_class: bool = True
    webui_service_type: Literal["LoadBalancer", "ClusterIP"] = "LoadBalancer"
    labels: dict[str, str] = field(default_factory=dict)
    # Cluster-scoped objects (Prometheus' ClusterRole for nodes/metrics): always in the lab; in
    # deploy mode only when asked (labctl deploy --cluster-rbac), after checking the right to.
    cluster_rbac: bool = True
    # An offline room (create --cache): Open WebUI gets OFFLINE_MODE and HF_HUB_OFFLINE, as with
    # lab.yaml's offline: true.
    offline: bool = False
    # Deploy: the controller behind apps.options.ingress_class, read from the cluster's IngressClass
    # (None = the spec's ingress_controller).
    ingress_controller: str | None = None


def _ollama_resources(spec: LabSpec, gpu: bool, lab: bool) -> Resources:
    """In the lab with autoscaling, the requests labctl.capacity sized so that the HPA's minimum fits."""
    base = ollama_resources(spec, gpu)
    if not (lab and spec.apps.options.autoscaling and not gpu):
        return base
    from labctl.capacity import autoscaling_fit

    fit = autoscaling_fit(spec)
    return Resources(
        cpu_request=f"{fit.cpu_request_m}m",
        cpu_limit=base.cpu_limit,
        memory_request=f"{fit.memory_request_mib}Mi",
        memory_limit=base.memory_limit,
    )


def _hpa_bounds(spec: LabSpec, lab: bool) -> dict[str, int]:
    """The HPA's replica range: in the lab, capped by what its nodes hold; elsewhere the seed's 2–10."""
    from labctl.capacity import MAX_REPLICAS, MIN_REPLICAS, autoscaling_fit

    if lab and spec.apps.options.autoscaling and not spec.apps.options.gpu:
        fit = autoscaling_fit(spec)
        return {"min": fit.min_replicas, "max": fit.max_replicas}
    return {"min": MIN_REPLICAS, "max": MAX_REPLICAS}


def _b64(value: str) -> str:
    import base64

    return base64.b64encode(value.encode()).decode()


def _context(spec: LabSpec, secrets: LabSecrets, target: Target) -> dict[str, Any]:
    from labctl.context import base_context
    from labctl.resources import manifests_dir

    options = spec.apps.options
    gpu = options.gpu if target.gpu is None else target.gpu
    lab = target.mode == "lab"
    storage_class = target.storage_class or (spec.storage.class_name if lab else None)
    data_class = target.data_storage_class or storage_class
    ns = target.namespace
    first, last = spec.network.pool_range()
    ollama_address = None
    if spec.apps.ollama.expose and lab:
        # The pool hands out addresses only on request (autoAssign false): Open WebUI has the first
        # (or its own), an exposed Ollama the next free one.
        taken = spec.webui_address
        candidates = [first + i for i in range(int(last) - int(first) + 1) if first + i != taken]
        if not candidates:
            raise ManifestError(
                f"apps.ollama.expose: network.metallb_pool {first}-{last} has no address left after Open WebUI's "
                f"{taken} — widen the pool or set expose: false"
            )
        ollama_address = candidates[0]
    ctx = base_context(spec)
    dashboard = (manifests_dir() / "apps" / "grafana-dashboard-ollama.json").read_text(encoding="utf-8")
    ctx.update(
        lab=lab,
        ns=ns,
        options=options,
        gpu=gpu,
        gpu_runtime_class=gpu and (lab or target.gpu_runtime_class),
        storage_class=storage_class,
        data_storage_class=data_class,
        # More than one Ollama pod shares the models volume only with autoscaling; the volume must
        # then be ReadWriteMany (NFS in the lab). Alone, ReadWriteOnce works on any cluster.
        models_access_mode="ReadWriteMany" if (lab or options.autoscaling) else "ReadWriteOnce",
        ollama=spec.apps.ollama,
        ollama_resources=_ollama_resources(spec, gpu, lab),
        hpa=_hpa_bounds(spec, lab),
        ollama_url=f"http://ollama.{ns}.svc:11434",
        ollama_address=ollama_address,
        gpu_node=spec.nodes.gpu_worker,
        data_node=data_node(spec),
        local_data_root=f"{LOCAL_DATA_ROOT}/{ns}",
        pull_job_name=pull_job_name(list(spec.apps.ollama.models)),
        webui=spec.apps.openwebui,
        webui_address=spec.webui_address,
        webui_service_type="LoadBalancer" if lab else target.webui_service_type,
        webui_memory_limit=f"{WEBUI_MEMORY_LIMIT_MIB}Mi",
        cluster_rbac=target.cluster_rbac if not lab else True,
        offline=spec.offline or target.offline,
        ingress_class=options.ingress_class,
        gateway_namespace=options.gateway.rpartition("/")[0],
        gateway_name=options.gateway.rpartition("/")[2],
        ingress_controller=target.ingress_controller or options.ingress_controller,
        secrets_b64={"webui_secret_key": _b64(secrets.webui_secret_key),
                     "grafana_admin_password": _b64(secrets.grafana_admin_password)},
        metallb_namespace=METALLB_NAMESPACE,
        metallb_pool=f"{first}-{last}",
        pool_name=f"{spec.name}-pool",
        dashboard_json=Markup(dashboard),  # our own file, not lab.yaml: inserted as it is
        labels=lambda name, component: Markup(_labels(name, component, target.labels)),
    )
    return ctx


def _labels(name: str, component: str, extra: dict[str, str]) -> str:
    """Recommended app.kubernetes.io labels as YAML lines (templates indent them)."""
    pairs = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "labctl",
        **extra,
    }
    return "\n".join(f"{k}: {json.dumps(v)}" if k in extra else f"{k}: {v}" for k, v in pairs.items())


def _env():
    import jinja2

    from labctl.escaping import comment, yaml_finalize
    from labctl.resources import manifests_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(manifests_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # lab.yaml is untrusted: every {{ }} is one YAML scalar unless marked (labctl.escaping)
        finalize=yaml_finalize,
    )
    env.filters["comment"] = comment
    return env


# Template files per bundle, in apply order. Options add their own files (each renders nothing
# when its option is off, so the list stays flat and readable).
BUNDLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "metallb-config": ("lab/metallb-config.yaml.j2",),
    "storage": ("lab/storage.yaml.j2",),
    "apps": (
        "apps/namespace.yaml.j2",
        "apps/secrets.yaml.j2",
        "apps/gpu.yaml.j2",
        "apps/ollama.yaml.j2",
        "apps/model-pull-job.yaml.j2",
        "apps/autoscaling.yaml.j2",
        "apps/openwebui.yaml.j2",
        "apps/ingress.yaml.j2",
        "apps/monitoring.yaml.j2",
    ),
}


def render_bundles(spec: LabSpec, secrets: LabSecrets, target: Target | None = None) -> dict[str, str]:
    """Bundle name → multi-document YAML. Lab: metallb-config, storage, apps. Deploy: apps only."""
    import jinja2

    target = target or Target()
    ctx = _context(spec, secrets, target)
    names = LAB_BUNDLES if target.mode == "lab" else ("apps",)
    env = _env()
    out: dict[str, str] = {}
    for name in names:
        parts: list[str] = []
        for template in BUNDLE_TEMPLATES[name]:
            try:
                text = env.get_template(template).render(**ctx)
            except jinja2.TemplateError as err:
                raise ManifestError(f"manifests/{template}: {err} — fix the template") from None
            if text.strip():
                parts.append(text.strip("\n") + "\n")
        out[name] = f"# labctl bundle {name!r} for lab {spec.name!r} ({target.mode}, namespace {target.namespace})\n" + (
            "---\n".join(parts)
        )
    return out


def load_objects(text: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


# ---- validation -------------------------------------------------------------------------------------
# Custom resources we emit, and the JSON schema (manifests/schemas/) each must pass. kubernetes-validate
# only knows core kinds; an unknown kind here is a failure, not a warning.
CUSTOM_RESOURCE_SCHEMAS: dict[tuple[str, str], str] = {
    ("metallb.io/v1beta1", "IPAddressPool"): "metallb.io_v1beta1_ipaddresspool.json",
    ("metallb.io/v1beta1", "L2Advertisement"): "metallb.io_v1beta1_l2advertisement.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_v1_httproute.json",
}


def custom_resource_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    from labctl.resources import manifests_dir

    name = CUSTOM_RESOURCE_SCHEMAS.get((api_version, kind))
    if name is None:
        return None
    return json.loads((manifests_dir() / "schemas" / name).read_text(encoding="utf-8"))


def validation_problems(objects: list[dict[str, Any]], kubernetes_version: str | None = None) -> list[str]:
    """One line per object that fails: kubernetes-validate --strict (core) or our schema (CRs).

    Needs the test extra (kubernetes-validate, jsonschema): ``pip install -e '.[test]'``.
    """
    try:
        import jsonschema
        import kubernetes_validate
    except ImportError as err:
        raise ManifestError(f"validation needs {err.name} — install it with pip install -e '.[test]'") from None
    from labctl.versions import PINS

    version = kubernetes_version or PINS["kubernetes"]
    problems: list[str] = []
    for obj in objects:
        api_version, kind = obj.get("apiVersion", "?"), obj.get("kind", "?")
        where = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
        schema = custom_resource_schema(api_version, kind)
        if schema is not None:
            for error in jsonschema.Draft202012Validator(schema).iter_errors(obj):
                path = ".".join(str(p) for p in error.absolute_path) or "(top)"
                problems.append(f"{where}: {path}: {error.message}")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {api_version} {kind} — add one to manifests/schemas/")
        except kubernetes_validate.ValidationError as err:
            # A copy of the first jsonschema error: where it is and what is wrong.
            path = ".".join(str(p) for p in err.absolute_path) or "(top)"
            problems.append(f"{where}: {path}: {err.message}")
    return problems


def write_bundles(bundles: dict[str, str], out_dir: Path) -> list[Path]:
    """Write each bundle as <name>.yaml; the apps bundle holds a Secret, so every file is 0600."""
    from labctl.state import write_private

    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_private(out_dir / f"{name}.yaml", text) for name, text in bundles.items()]


def deploy_target(namespace: str, **kwargs: Any) -> Target:
    base = Target(mode="deploy", namespace=namespace, webui_service_type="ClusterIP", cluster_rbac=False)
    return replace(base, **kwargs)
