"""TEST DOUBLE of a Kubernetes API server for the labctl ssh tests (runs inside the master test node).

Started by the kubeadm double's `init` on the advertise address, port 6443, plain HTTP. It keeps the
objects `kubectl apply` sent (parsed with PyYAML copied into the node), the registered nodes and the
bootstrap tokens, and answers the kubectl double for the verbs the playbooks use: apply, diff, get
(table, -o name, -o jsonpath), wait, rollout status. Status is synthesised the simple way a healthy
cluster would report it, with three rules that make the order of the playbooks matter as it does on
a real cluster:

- a node is Ready only once a calico-node DaemonSet exists (no pod network, no Ready);
- MetalLB's IPAddressPool/L2Advertisement are refused (webhook "connection refused") until the
  metallb-system/controller Deployment exists, and a LoadBalancer Service gets its address only
  from an existing pool;
- a namespaced object needs its Namespace first.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import ipaddress
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # PyYAML, copied next to this file by the test

STATE = Path("/var/lib/labctl-shims/apiserver.json")
LOCK = threading.Lock()

KINDS = {  # alias → (Kind, namespaced, group for output)
    "node": ("Node", False, ""), "nodes": ("Node", False, ""), "no": ("Node", False, ""),
    "namespace": ("Namespace", False, ""), "namespaces": ("Namespace", False, ""), "ns": ("Namespace", False, ""),
    "deployment": ("Deployment", True, "apps"), "deployments": ("Deployment", True, "apps"), "deploy": ("Deployment", True, "apps"),
    "daemonset": ("DaemonSet", True, "apps"), "daemonsets": ("DaemonSet", True, "apps"), "ds": ("DaemonSet", True, "apps"),
    "service": ("Service", True, ""), "services": ("Service", True, ""), "svc": ("Service", True, ""),
    "job": ("Job", True, "batch"), "jobs": ("Job", True, "batch"),
    "pod": ("Pod", True, ""), "pods": ("Pod", True, ""), "po": ("Pod", True, ""),
    "endpointslice": ("EndpointSlice", True, "discovery.k8s.io"), "endpointslices": ("EndpointSlice", True, "discovery.k8s.io"),
    "storageclass": ("StorageClass", False, "storage.k8s.io"), "storageclasses": ("StorageClass", False, "storage.k8s.io"),
    "sc": ("StorageClass", False, "storage.k8s.io"),
    "ipaddresspool": ("IPAddressPool", True, "metallb.io"), "ipaddresspools": ("IPAddressPool", True, "metallb.io"),
    "l2advertisement": ("L2Advertisement", True, "metallb.io"), "l2advertisements": ("L2Advertisement", True, "metallb.io"),
}
CLUSTER_SCOPED = {
    "Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass", "CSIDriver",
    "PriorityClass", "APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "RuntimeClass",
    "PersistentVolume", "IngressClass",
}
WEBHOOKED = {"IPAddressPool", "L2Advertisement"}
BUILTIN_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]
ROLLOUT_KINDS = {"Deployment", "DaemonSet", "StatefulSet"}


class KubectlError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- state ----------------------------------------------------------------------------------------
def load() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save(st: dict) -> None:
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(st, indent=1, sort_keys=True))
    tmp.replace(STATE)


def key(kind: str, ns: str, name: str) -> str:
    return f"{kind}/{ns}/{name}"


def group_of(obj: dict) -> str:
    api = obj.get("apiVersion", "v1")
    return api.split("/")[0] if "/" in api else ""


def resource_name(kind: str, group: str) -> str:
    plural = kind.lower() + ("es" if kind.lower().endswith("s") else "s")
    if kind == "StorageClass":
        plural = "storageclasses"
    return f"{plural}.{group}" if group else plural


# ---- synthesised status -------------------------------------------------------------------------------
def cni_ready(st: dict) -> bool:
    return key("DaemonSet", "kube-system", "calico-node") in st["objects"]


def service_ip(st: dict, ns: str, name: str) -> str:
    net = ipaddress.ip_network(st["service_cidr"])
    offset = 10 + int(hashlib.sha256(f"{ns}/{name}".encode()).hexdigest(), 16) % 4000
    return str(net.network_address + offset)


def pools(st: dict) -> list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address, bool]]:
    out = []
    for k, obj in st["objects"].items():
        if k.startswith("IPAddressPool/"):
            for rng in obj.get("spec", {}).get("addresses", []):
                if "-" in rng:
                    a, b = (ipaddress.ip_address(x.strip()) for x in rng.split("-"))
                else:
                    net = ipaddress.ip_network(rng)
                    a, b = net.network_address, net.broadcast_address
                out.append((a, b, obj.get("spec", {}).get("autoAssign", True)))
    return out


def lb_ip(st: dict, svc: dict) -> str:
    wanted = (svc.get("metadata", {}).get("annotations") or {}).get("metallb.io/loadBalancerIPs", "")
    for a, b, auto in pools(st):
        if wanted:
            if a <= ipaddress.ip_address(wanted) <= b:
                return wanted
        elif auto:
            return str(a)
    return ""


def with_status(st: dict, obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    kind = obj["kind"]
    meta = obj["metadata"]
    if kind == "Node":
        ready = "True" if cni_ready(st) else "False"
        obj["status"] = {"conditions": [{"type": "Ready", "status": ready,
                                         "reason": "KubeletReady" if ready == "True" else "NetworkPluginNotReady"}]}
    elif kind == "Deployment":
        replicas = obj.get("spec", {}).get("replicas", 1)
        obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                         "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]}
    elif kind == "DaemonSet":
        n = len(st["nodes"])
        obj["status"] = {"desiredNumberScheduled": n, "numberReady": n, "numberAvailable": n}
    elif kind == "Job":
        # A test can make a Job fail or run forever with the annotation fake-apiserver/outcome.
        outcome = (meta.get("annotations") or {}).get("fake-apiserver/outcome", "Complete")
        if outcome == "Failed":
            obj["status"] = {"failed": 4, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        elif outcome == "Running":
            obj["status"] = {"active": 1}
        else:
            obj["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec["clusterIP"] = service_ip(st, meta.get("namespace", ""), meta["name"])
        ip = lb_ip(st, obj) if spec.get("type") == "LoadBalancer" and metallb_up(st) else ""
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}}
    return obj


def metallb_up(st: dict) -> bool:
    return key("Deployment", "metallb-system", "controller") in st["objects"]


EXCLUDE_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def control_plane_meta() -> dict:
    """What kubeadm init marks the control plane with (kubernetes/kubernetes v1.36.4,
    cmd/kubeadm/app/phases/markcontrolplane/markcontrolplane.go): two labels and the NoSchedule taint."""
    return {"labels": {CONTROL_PLANE: "", EXCLUDE_LB: ""}, "taints": [{"key": CONTROL_PLANE, "effect": "NoSchedule"}]}


def nodes(st: dict) -> list[dict]:
    out = []
    for n in st["nodes"]:
        meta = st.get("node_meta", {}).get(n, {})
        labels = {"kubernetes.io/hostname": n, **meta.get("labels", {})}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": labels}, "spec": {}}
        if meta.get("taints"):
            node["spec"]["taints"] = meta["taints"]
        out.append(node)
    return out


def announcing_nodes(st: dict) -> list[str]:
    """Nodes MetalLB's speaker announces from: it skips nodes labelled exclude-from-external-load-balancers
    unless run with --ignore-exclude-lb, which the native manifest does not pass (metallb/metallb
    v0.16.1, speaker/layer2_controller.go)."""
    return [n["metadata"]["name"] for n in nodes(st) if EXCLUDE_LB not in n["metadata"]["labels"]]


def node_words(words: list[str]) -> tuple[str, list[str]]:
    if words and "/" in words[0]:
        kind, _, name = words[0].partition("/")
        rest = words[1:]
    elif len(words) >= 2:
        kind, name, rest = words[0], words[1], words[2:]
    else:
        raise KubectlError("error: the test double supports `label|taint node NAME ...` only")
    if kind not in ("node", "nodes", "no"):
        raise KubectlError("error: the test double supports `label|taint node NAME ...` only")
    return name, rest


def do_label(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    name, changes = node_words(words)
    if name not in st["nodes"]:
        raise not_found("Node", name)
    labels = st.setdefault("node_meta", {}).setdefault(name, {}).setdefault("labels", {})
    for change in changes:
        if change.endswith("-"):
            labels.pop(change[:-1], None)  # kubectl: removing an absent label is not an error
        else:
            k, _, v = change.partition("=")
            labels[k] = v
    return f"node/{name} labeled\n"


def do_taint(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    name, changes = node_words(words)
    if name not in st["nodes"]:
        raise not_found("Node", name)
    taints = st.setdefault("node_meta", {}).setdefault(name, {}).setdefault("taints", [])
    for change in changes:
        if not change.endswith("-"):
            raise KubectlError("error: the test double only removes taints")
        k, _, effect = change[:-1].partition(":")
        keep = [t for t in taints if not (t["key"] == k and (not effect or t["effect"] == effect))]
        if len(keep) == len(taints):
            raise KubectlError(f'error: taint "{change[:-1]}" not found')
        taints[:] = keep
    return f"node/{name} untainted\n"


def workloads_matching(st: dict, ns: str, selector: dict) -> list[dict]:
    out = []
    for k, obj in st["objects"].items():
        kind, ons, _ = k.split("/", 2)
        if kind in ROLLOUT_KINDS and ons == ns:
            labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}
            if selector and all(labels.get(a) == b for a, b in selector.items()):
                out.append(obj)
    return out


def endpointslices(st: dict, ns: str) -> list[dict]:
    out = []
    for k, svc in st["objects"].items():
        kind, sns, name = k.split("/", 2)
        if kind != "Service" or sns != ns:
            continue
        backends = workloads_matching(st, ns, svc.get("spec", {}).get("selector") or {})
        endpoints = [{"addresses": [f"10.10.0.{10 + i}"], "conditions": {"ready": True}} for i, _ in enumerate(backends)]
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-labctl", "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                    "endpoints": endpoints})
    return out


def pods(st: dict, ns: str | None) -> list[dict]:
    out = []
    for k in st["objects"]:
        kind, ons, name = k.split("/", 2)
        if kind in ROLLOUT_KINDS and (ns is None or ons == ns):
            out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-labctl0", "namespace": ons},
                        "status": {"phase": "Running"}})
    return out


# ---- jsonpath (the subset kubectl's users write) ---------------------------------------------------
TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+(?:\\\.[A-Za-z0-9_\-]+)*)|\[(\*|\d+)\]|\[\?\(@\.([A-Za-z0-9_.]+)==(\"[^\"]*\"|true|false)\)\]")


def jsonpath(template: str, data: object) -> str:
    # {range PATH}...{end}: the inner template once per element (its {.field}s relative to it, {"\\n"}
    # literals decoded), as the taint check prints a node's taints.
    r = re.fullmatch(r"\{range ([^}]*)\}(.*)\{end\}", template.strip(), re.S)
    if r:
        out = []
        for item in _values(r.group(1), data, template):
            for piece in re.findall(r"\{[^}]*\}|[^{]+", r.group(2)):
                if piece.startswith('{"'):
                    out.append(json.loads(piece[1:-1]))
                elif piece.startswith("{"):
                    out.append(jsonpath(piece, item))
                else:
                    out.append(piece)
        return "".join(out)
    m = re.fullmatch(r"\{(.*)\}", template.strip())
    if not m:
        raise KubectlError(f"error: error parsing jsonpath {template}: only {{.path}} templates are supported by the test double")
    values = _values(m.group(1), data, template)
    return " ".join(json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def _values(path: str, data: object, template: str) -> list:
    values = [data]
    pos = 0
    while pos < len(path):
        t = TOKEN.match(path, pos)
        if not t:
            raise KubectlError(f"error: error parsing jsonpath {template}: unsupported at {path[pos:]!r} (test double)")
        pos = t.end()
        field, index, fkey, fval = t.groups()
        nxt: list = []
        for v in values:
            if field is not None:
                name = field.replace("\\.", ".")
                if isinstance(v, dict) and name in v:
                    nxt.append(v[name])
            elif index == "*":
                if isinstance(v, list):
                    nxt.extend(v)
            elif index is not None:
                if isinstance(v, list) and int(index) < len(v):
                    nxt.append(v[int(index)])
            else:
                want = json.loads(fval)
                for item in v if isinstance(v, list) else []:
                    cur = item
                    for part in fkey.split("."):
                        cur = cur.get(part) if isinstance(cur, dict) else None
                    if cur == want:
                        nxt.append(item)
        values = nxt
    return values


# ---- kubectl verbs ----------------------------------------------------------------------------------
def parse(argv: list[str]) -> tuple[list[str], dict]:
    flags: dict = {"n": None, "A": False, "o": "", "l": "", "for": "", "all": False}
    words: list[str] = []
    takes = {"-n": "n", "--namespace": "n", "-o": "o", "--output": "o", "-l": "l", "--selector": "l", "--for": "for",
             "--timeout": "timeout", "--kubeconfig": "kubeconfig", "-f": "f", "--filename": "f", "--field-manager": "fm"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in takes:
            flags[takes[a]] = argv[i + 1]
            i += 2
            continue
        if a.startswith("--") and "=" in a:
            name, value = a[2:].split("=", 1)
            flags[{"namespace": "n", "output": "o", "selector": "l", "filename": "f"}.get(name, name)] = value
        elif a in ("-A", "--all-namespaces"):
            flags["A"] = True
        elif a == "--all":
            flags["all"] = True
        elif a.startswith("-"):
            flags[a.lstrip("-")] = True
        else:
            words.append(a)
        i += 1
    return words, flags


def docs_of(files: list[dict]) -> list[dict]:
    out = []
    for f in files:
        try:
            for doc in yaml.safe_load_all(f["text"]):
                if not doc:
                    continue
                if doc.get("kind", "").endswith("List") and "items" in doc:
                    out.extend(doc["items"])
                else:
                    out.append(doc)
        except yaml.YAMLError as err:
            raise KubectlError(f"error: error parsing {f['name']}: {err}") from None
    return out


def ident(st: dict, doc: dict, default_ns: str) -> tuple[str, str, str]:
    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name")
    if not kind or not name:
        raise KubectlError("error: error validating data: [apiVersion, kind or metadata.name not set]")
    ns = "" if kind in CLUSTER_SCOPED else (doc["metadata"].get("namespace") or default_ns)
    return kind, ns, name


def admit(st: dict, kind: str, ns: str, name: str) -> None:
    if ns and key("Namespace", "", ns) not in st["objects"] and ns not in BUILTIN_NAMESPACES:
        raise KubectlError(f'Error from server (NotFound): error when creating: namespaces "{ns}" not found')
    if kind in WEBHOOKED and not metallb_up(st):
        raise KubectlError(
            f'Error from server (InternalError): error when creating: Internal error occurred: failed calling webhook '
            f'"{kind.lower()}validationwebhook.metallb.io": failed to call webhook: Post '
            '"https://metallb-webhook-service.metallb-system.svc:443/validate-metallb-io-v1beta1": dial tcp: connect: connection refused'
        )


# StorageClass fields the API server refuses to change (kubernetes pkg/apis/storage/validation
# ValidateStorageClassUpdate: parameters, provisioner and reclaimPolicy are Forbidden;
# volumeBindingMode is immutable). A real apply of a changed class fails with this message.
SC_FORBIDDEN = ("parameters", "provisioner", "reclaimPolicy")


def immutable(st: dict, kind: str, ns: str, name: str, doc: dict) -> None:
    live = st["objects"].get(key(kind, ns, name))
    if kind != "StorageClass" or live is None:
        return
    problems = [
        f"{f}: Forbidden: updates to {f} are forbidden."
        for f in SC_FORBIDDEN
        if (live.get(f) or ({} if f == "parameters" else None)) != (doc.get(f) or ({} if f == "parameters" else None))
    ]
    if live.get("volumeBindingMode") != doc.get("volumeBindingMode"):
        problems.append(f"volumeBindingMode: Invalid value: \"{doc.get('volumeBindingMode')}\": field is immutable")
    if problems:
        raise KubectlError(f'The StorageClass "{name}" is invalid: ' + ", ".join(problems))


def do_apply(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    if not files:
        raise KubectlError("error: must specify one of -f and -k")
    out = []
    default_ns = flags["n"] or "default"
    for doc in docs_of(files):
        kind, ns, name = ident(st, doc, default_ns)
        admit(st, kind, ns, name)
        immutable(st, kind, ns, name, doc)
        if ns:
            doc["metadata"]["namespace"] = ns
        st["objects"][key(kind, ns, name)] = doc
        verb = "serverside-applied" if flags.get("server-side") else "configured"
        group = group_of(doc)
        out.append(f"{kind.lower()}{'.' + group if group else ''}/{name} {verb}")
    return "\n".join(out) + "\n"


def do_diff(st: dict, words: list[str], flags: dict, files: list[dict]) -> tuple[str, int]:
    out = []
    default_ns = flags["n"] or "default"
    for doc in docs_of(files):
        kind, ns, name = ident(st, doc, default_ns)
        try:
            admit(st, kind, ns, name)
            immutable(st, kind, ns, name, doc)  # the server-side dry run fails like the apply would
        except KubectlError as err:
            raise KubectlError(str(err), 2) from None
        if ns:
            doc["metadata"]["namespace"] = ns
        live = st["objects"].get(key(kind, ns, name))
        if live != doc:
            before = yaml.safe_dump(live, sort_keys=True).splitlines() if live else []
            after = yaml.safe_dump(doc, sort_keys=True).splitlines()
            out.extend(difflib.unified_diff(before, after, f"LIVE/{kind}.{ns}.{name}", f"MERGED/{kind}.{ns}.{name}", lineterm=""))
    return ("\n".join(out) + "\n" if out else ""), (1 if out else 0)


def find(st: dict, kind: str, ns: str | None, name: str | None) -> list[dict]:
    if kind == "Node":
        objs = nodes(st)
    elif kind == "EndpointSlice":
        objs = endpointslices(st, ns or "default")
    elif kind == "Pod":
        objs = pods(st, ns)
    else:
        objs = [o for k, o in st["objects"].items() if k.split("/", 2)[0] == kind and (ns is None or k.split("/", 2)[1] == ns)]
    objs = [with_status(st, o) for o in objs]
    if name is not None:
        objs = [o for o in objs if o["metadata"]["name"] == name]
    return objs


def selector_match(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


def resolve_kind(word: str) -> tuple[str, bool, str]:
    if word.lower() not in KINDS:
        raise KubectlError(f'error: the server doesn\'t have a resource type "{word}"')
    return KINDS[word.lower()]


def targets(st: dict, words: list[str], flags: dict, files: list[dict]) -> list[tuple[str, str, str, dict | None]]:
    """(kind, namespace, name, object or None when missing) for kind/name, kind name..., kind --all/-l, or -f."""
    ns = None if flags["A"] else (flags["n"] or "default")
    out = []
    if files:
        for doc in docs_of(files):
            kind, dns, name = ident(st, doc, flags["n"] or "default")
            obj = st["objects"].get(key(kind, dns, name))
            out.append((kind, dns, name, with_status(st, obj) if obj else None))
        return out
    if not words:
        raise KubectlError("error: you must specify the type of resource to get")
    if "/" in words[0]:
        for w in words:
            kword, _, name = w.partition("/")
            kind, namespaced, _ = resolve_kind(kword)
            found = find(st, kind, ns if namespaced else None, name)
            out.append((kind, ns if namespaced else "", name, found[0] if found else None))
        return out
    kind, namespaced, _ = resolve_kind(words[0].split(",")[0])
    names = words[1:]
    if names:
        for name in names:
            found = find(st, kind, ns if namespaced else None, name)
            out.append((kind, ns if namespaced else "", name, found[0] if found else None))
        return out
    objs = find(st, kind, ns if namespaced else None, None)
    if flags["l"]:
        objs = [o for o in objs if selector_match(o, flags["l"])]
    return [(kind, o["metadata"].get("namespace", ""), o["metadata"]["name"], o) for o in objs]


def not_found(kind: str, name: str) -> KubectlError:
    group = {"Deployment": "apps", "DaemonSet": "apps", "Job": "batch", "StorageClass": "storage.k8s.io"}.get(kind, "")
    return KubectlError(f'Error from server (NotFound): {resource_name(kind, group)} "{name}" not found')


def do_get(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    found = targets(st, words, flags, files)
    missing = [(k, n) for k, _, n, o in found if o is None]
    if missing:
        raise not_found(*missing[0])
    objs = [o for *_, o in found if o is not None]
    named = bool(files) or (words and ("/" in words[0] or len(words) > 1))
    out = flags["o"]
    if out.startswith("jsonpath="):
        data = objs[0] if named and len(objs) == 1 else {"apiVersion": "v1", "kind": "List", "items": objs}
        return jsonpath(out.split("=", 1)[1], data)
    if out == "name":
        return "".join(f"{o['kind'].lower()}/{o['metadata']['name']}\n" for o in objs)
    if out in ("yaml", "json"):
        data = objs[0] if named and len(objs) == 1 else {"apiVersion": "v1", "kind": "List", "items": objs}
        return yaml.safe_dump(data) if out == "yaml" else json.dumps(data, indent=2) + "\n"
    if not objs:
        return ""
    lines = ["NAME" + " " * 28 + "STATUS"]
    for o in objs:
        status = ""
        if o["kind"] == "Node":
            status = "Ready" if o["status"]["conditions"][0]["status"] == "True" else "NotReady"
        elif o["kind"] == "Pod":
            status = "Running"
        lines.append(f"{o['metadata']['name']:<32}{status}")
    return "\n".join(lines) + "\n"


def do_wait(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    cond = flags["for"]
    m = re.fullmatch(r"condition=(\w+)", cond or "")
    if not m:
        raise KubectlError("error: --for must be condition=<type> (test double)")
    found = targets(st, words, flags, files)
    if not found:
        raise KubectlError("error: no matching resources found")
    out = []
    for kind, _, name, obj in found:
        if obj is None:
            raise not_found(kind, name)
        conds = obj.get("status", {}).get("conditions", [])
        if not any(c["type"] == m.group(1) and c["status"] == "True" for c in conds):
            raise KubectlError(f"error: timed out waiting for the condition on {kind.lower()}s/{name}")
        out.append(f"{kind.lower()}/{name} condition met")
    return "\n".join(out) + "\n"


def do_delete(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    """`delete KIND NAME` / `delete KIND/NAME` (--ignore-not-found, --wait accepted)."""
    out = []
    for kind, ns, name, obj in targets(st, words, flags, files):
        if obj is None:
            if flags.get("ignore-not-found"):
                continue
            raise not_found(kind, name)
        st["objects"].pop(key(kind, ns, name), None)
        group = group_of(obj)
        out.append(f'{kind.lower()}{"." + group if group else ""} "{name}" deleted')
        calls = st.setdefault("deleted", [])
        calls.append(f"{kind}/{ns}/{name}")
    return "".join(line + "\n" for line in out)


def do_logs(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    """`logs job/NAME [--tail=N]`: the lines of the Job's annotation fake-apiserver/logs."""
    if len(words) != 1 or not words[0].startswith("job/"):
        raise KubectlError("error: the test double supports `logs job/NAME` only")
    name = words[0].split("/", 1)[1]
    found = find(st, "Job", flags["n"] or "default", name)
    if not found:
        raise not_found("Job", name)
    lines = (found[0]["metadata"].get("annotations") or {}).get("fake-apiserver/logs", "").splitlines()
    tail = int(flags.get("tail") or 0)
    return "".join(line + "\n" for line in (lines[-tail:] if tail else lines))


def do_rollout(st: dict, words: list[str], flags: dict, files: list[dict]) -> str:
    if not words or words[0] != "status" or len(words) != 2 or "/" not in words[1]:
        raise KubectlError("error: the test double supports `rollout status KIND/NAME` only")
    kword, _, name = words[1].partition("/")
    kind, _, _ = resolve_kind(kword)
    found = find(st, kind, flags["n"] or "default", name)
    if not found:
        raise not_found(kind, name)
    label = {"DaemonSet": "daemon set", "Deployment": "deployment"}.get(kind, kind.lower())
    return f'{label} "{name}" successfully rolled out\n'


def kubectl(argv: list[str], files: list[dict]) -> tuple[int, str, str]:
    words, flags = parse(argv)
    if not words:
        return 1, "", "error: no command (test double)\n"
    verb, rest = words[0], words[1:]
    with LOCK:
        st = load()
        try:
            if verb == "apply":
                out = do_apply(st, rest, flags, files)
                save(st)
                return 0, out, ""
            if verb in ("label", "taint"):
                out = (do_label if verb == "label" else do_taint)(st, rest, flags, files)
                save(st)
                return 0, out, ""
            if verb == "delete":
                out = do_delete(st, rest, flags, files)
                save(st)
                return 0, out, ""
            if verb == "diff":
                out, code = do_diff(st, rest, flags, files)
                return code, out, ""
            if verb == "get":
                return 0, do_get(st, rest, flags, files), ""
            if verb == "wait":
                return 0, do_wait(st, rest, flags, files), ""
            if verb == "rollout":
                return 0, do_rollout(st, rest, flags, files), ""
            if verb == "delete":
                out = do_delete(st, rest, flags, files)
                save(st)
                return 0, out, ""
            if verb == "logs":
                return 0, do_logs(st, rest, flags, files), ""
            if verb == "version":
                return 0, f"Client Version: {st['version']}\nServer Version: {st['version']}\n", ""
            return 1, "", f"error: the kubectl test double does not implement {verb!r}\n"
        except KubectlError as err:
            return err.code, "", str(err) + "\n"


# ---- HTTP -------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:  # the access log would hold nothing useful
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/healthz":
            self._send(200, {"ok": True})
            return
        if url.path == "/labctl-shim/service-at":
            q = parse_qs(url.query)
            ip, port = q.get("ip", [""])[0], int(q.get("port", ["0"])[0])
            with LOCK:
                st = load()
                for k, obj in st["objects"].items():
                    if not k.startswith("Service/"):
                        continue
                    svc = with_status(st, obj)
                    addrs = {svc["spec"]["clusterIP"]}
                    if announcing_nodes(st):  # an assigned LoadBalancer address answers only when announced
                        addrs |= {i["ip"] for i in svc["status"].get("loadBalancer", {}).get("ingress", [])}
                    ports = {p.get("port") for p in svc["spec"].get("ports", [])}
                    if ip in addrs and port in ports and workloads_matching(st, obj["metadata"]["namespace"], svc["spec"].get("selector") or {}):
                        self._send(200, {"service": k})
                        return
            self._send(404, {"error": "no service"})
            return
        self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/labctl-shim/kubectl":
            code, out, err = kubectl(body["argv"], body.get("files", []))
            self._send(200, {"code": code, "stdout": out, "stderr": err})
        elif self.path == "/labctl-shim/token":
            with LOCK:
                st = load()
                st["tokens"].append(body["token"])
                save(st)
            self._send(200, {})
        elif self.path == "/labctl-shim/join":
            with LOCK:
                st = load()
                if body["token"] not in st["tokens"]:
                    self._send(403, {"error": f'token id "{body["token"].split(".")[0]}" is invalid for this cluster or it has expired'})
                    return
                if body["node"] in st["nodes"]:
                    self._send(409, {"error": f'a Node with name "{body["node"]}" and status "Ready" already exists in the cluster'})
                    return
                st["nodes"].append(body["node"])
                st["joins"].append({"node": body["node"], "token_id": body["token"].split(".")[0]})
                save(st)
            self._send(200, {})
        else:
            self._send(404, {"error": "not found"})


def kubeadm_addons() -> dict:
    """What `kubeadm init` itself creates: CoreDNS (Deployment + Service kube-dns) and kube-proxy."""
    def workload(kind: str, name: str, app: str) -> dict:
        labels = {"k8s-app": app}
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
                "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}}}}

    dns = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
           "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53}]}}
    return {
        key("Deployment", "kube-system", "coredns"): workload("Deployment", "coredns", "kube-dns"),
        key("DaemonSet", "kube-system", "kube-proxy"): workload("DaemonSet", "kube-proxy", "kube-proxy"),
        key("Service", "kube-system", "kube-dns"): dns,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--node", required=True)
    p.add_argument("--service-cidr", default="10.96.0.0/12")
    p.add_argument("--pod-cidr", default="")
    a = p.parse_args()
    if not STATE.exists():
        save({"objects": kubeadm_addons(), "nodes": [a.node], "tokens": [], "joins": [], "service_cidr": a.service_cidr,
              "pod_cidr": a.pod_cidr, "version": "v1.36 (labctl test double)",
              "node_meta": {a.node: control_plane_meta()}})
    server = ThreadingHTTPServer((a.address, a.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
