"""TEST DOUBLE for kubectl against a small stateful cluster — not a real kubectl.

Used by tests/test_roster.py as `kubectl` on PATH. The cluster lives in the JSON file named by
$KUBECTL_CLUSTER_STATE: nodes, and every object applied (keyed kind/namespace/name). It answers
the calls `labctl class` and `labctl deploy` make: get (lists with -A/-l/-n, -o json), apply -f -
(creates or configures, prints kind/name created|configured|unchanged), create token (a JWT with the
requested lifetime), config view --minify, delete namespace (removes every object in it), plus
deploy's preflight queries. Every call is appended to $KUBECTL_CLUSTER_LOG. Anything else exits 2,
so an unexpected call fails the test. Namespaced objects need their Namespace first, as on a real
API server.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import yaml

NAMESPACED_KINDS = {"ResourceQuota", "LimitRange", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                    "Secret", "ConfigMap", "PersistentVolumeClaim", "Job", "HorizontalPodAutoscaler", "Ingress",
                    "NetworkPolicy", "StatefulSet"}
RESOURCE_KINDS = {"namespaces": "Namespace", "namespace": "Namespace", "resourcequota": "ResourceQuota",
                  "deployments": "Deployment", "serviceaccount": "ServiceAccount", "runtimeclass": "RuntimeClass",
                  "apiservice": "APIService", "ingressclass": "IngressClass", "secret": "Secret"}
# The doubles' answers to the deploy preflight's queries above come from the applied objects (none of
# these kinds is applied by a class, so: not found / empty lists).


def _labels_match(obj: dict, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


def _key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def main(argv: list[str]) -> int:
    state_path = os.environ["KUBECTL_CLUSTER_STATE"]
    with open(state_path) as f:
        state = json.load(f)
    flags: dict[str, str] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--kubeconfig", "--context", "-n", "-l", "-o", "--duration"):
            flags[argv[i]] = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    stdin = sys.stdin.read() if args[-2:] == ["-f", "-"] else None
    with open(os.environ["KUBECTL_CLUSTER_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
    if "--kubeconfig" not in flags:
        print("test double: labctl must always pass --kubeconfig", file=sys.stderr)
        return 2
    objects: dict[str, dict] = state.setdefault("objects", {})

    def save() -> None:
        with open(state_path, "w") as f:
            json.dump(state, f)

    match args:
        case ["auth", "can-i", *_]:  # the instructor's kubeconfig: cluster-admin
            print("yes")
        case ["create", "--dry-run=server", "-f", "-"]:  # deploy's Pod Security probe: no namespace enforces
            pass
        case ["config", "view", "--raw", "--minify"]:
            print(json.dumps(state["kubeconfig_view"]))
        case ["get", "nodes"]:
            print(json.dumps({"kind": "List", "items": state["nodes"]}))
        case ["get", resource, *rest] if resource in RESOURCE_KINDS and flags.get("-o") == "json":
            kind = RESOURCE_KINDS[resource]
            items = [o for o in objects.values() if o["kind"] == kind and _labels_match(o, flags.get("-l"))]
            if "-A" not in rest and kind != "Namespace":
                items = [o for o in items if o["metadata"].get("namespace") == flags.get("-n")]
            if rest and rest[0] != "-A":  # one object by name
                items = [o for o in items if o["metadata"]["name"] == rest[0]]
                if not items:
                    print(f'Error from server (NotFound): {resource} "{rest[0]}" not found', file=sys.stderr)
                    return 1
                print(json.dumps(items[0]))
                return 0
            print(json.dumps({"kind": "List", "items": items}))
        case ["get", "namespace", name] if flags.get("-o") == "name":
            if f"Namespace//{name}" not in objects:
                print(f'Error from server (NotFound): namespaces "{name}" not found', file=sys.stderr)
                return 1
            print(f"namespace/{name}")
        case ["get", "storageclass"]:
            print(json.dumps({"kind": "List", "items": state.get("storageclasses", [])}))
        case ["create", "namespace", name]:
            objects[f"Namespace//{name}"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            save()
            print(f"namespace/{name} created")
        case ["apply", "-f", "-"] | ["apply", "--dry-run=server", "-f", "-"] | ["apply", "--dry-run=client", "-f", "-"]:
            dry = len(args) == 4
            out = []
            for doc in yaml.safe_load_all(stdin or ""):
                if not doc:
                    continue
                if doc["kind"] in NAMESPACED_KINDS:
                    doc["metadata"].setdefault("namespace", flags.get("-n"))
                    ns = doc["metadata"]["namespace"]
                    if f"Namespace//{ns}" not in objects:
                        print(f'Error from server (NotFound): namespaces "{ns}" not found', file=sys.stderr)
                        return 1
                key = _key(doc)
                old = objects.get(key)
                verdict = "created" if old is None else ("unchanged" if old.get("spec") == doc.get("spec") else "configured")
                if not dry:
                    if doc["kind"] == "ResourceQuota":
                        doc["status"] = {"hard": doc["spec"]["hard"], "used": {"requests.cpu": "0", "requests.memory": "0"}}
                    objects[key] = doc
                out.append(f"{doc['kind'].lower()}/{doc['metadata']['name']} {verdict}")
            if not dry:
                save()
            print("\n".join(out))
        case ["create", "token", sa]:
            ns = flags["-n"]
            if f"ServiceAccount/{ns}/{sa}" not in objects:
                print(f'error: failed to create token: serviceaccounts "{sa}" not found', file=sys.stderr)
                return 1
            hours = int(flags.get("--duration", "1h").rstrip("h"))
            claims = {"sub": f"system:serviceaccount:{ns}:{sa}", "exp": int(time.time()) + hours * 3600}
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
            state["tokens_issued"] = state.get("tokens_issued", 0) + 1
            save()
            print(f"eyJhbGciOiJSUzI1NiJ9.{body}.c2lnbmF0dXJl")
        case ["delete", "namespace", *names, "--wait=false"]:
            for name in names:
                for key in [k for k, o in objects.items() if k == f"Namespace//{name}" or o["metadata"].get("namespace") == name]:
                    del objects[key]
                print(f'namespace "{name}" deleted')
            save()
        case _:
            print(f"test double: unsupported kubectl call {argv}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
