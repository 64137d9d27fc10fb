"""TEST DOUBLE for kubectl — not a real kubectl.

Installed as `kubectl` on PATH by tests/test_deploy.py. It records every call (argv and, for
`apply -f -`, the stdin bundle) as one JSON line in $KUBECTL_TEST_DOUBLE_LOG, and answers the
handful of queries `labctl deploy` makes from a cluster described in $KUBECTL_TEST_DOUBLE_STATE
(JSON). Anything else exits 2 with "test double: unsupported", so an unexpected call fails the test.

Rights: by default the user may do everything. With ``"user": "namespace-only"`` the user may act
only on namespaced resources inside ``own_namespaces`` (a RoleBinding to the admin ClusterRole, the
university-cluster case): `auth can-i` answers "no" otherwise, a `get` of a cluster-scoped resource
answers Forbidden, and `apply` applies the namespaced objects and refuses the cluster-scoped ones
one by one, exiting 1 — as the real kubectl does.
"""

from __future__ import annotations

import json
import os
import sys

import yaml

CONNECTION_REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


# Cluster-scoped resources, by the plural names `kubectl auth can-i` and `get` use (group dropped).
CLUSTER_SCOPED = {"namespaces", "nodes", "storageclasses", "runtimeclasses", "apiservices", "clusterroles",
                  "clusterrolebindings", "ingressclasses", "persistentvolumes"}
KIND_PLURAL = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Namespace": "namespaces",
               "PersistentVolume": "persistentvolumes", "RuntimeClass": "runtimeclasses"}
SINGULAR = {"namespace": "namespaces", "storageclass": "storageclasses", "node": "nodes", "nodes": "nodes",
            "runtimeclass": "runtimeclasses", "apiservice": "apiservices", "ingressclass": "ingressclasses",
            "secret": "secrets", "gateway": "gateways"}


def allowed(state: dict, verb: str, resource: str, namespace: str | None) -> bool:
    if state.get("user") != "namespace-only":
        return True
    plural = resource.split("/")[0].split(".")[0]
    if plural in CLUSTER_SCOPED:
        return False
    return namespace in state.get("own_namespaces", [])


def forbidden(verb: str, resource: str, namespace: str | None = None) -> None:
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    print(f'Error from server (Forbidden): {resource} is forbidden: User "student" cannot {verb} resource '
          f'"{resource}" in API group "" {scope}', file=sys.stderr)
    sys.exit(1)


def not_found(kind: str, name: str) -> None:
    print(f'Error from server (NotFound): {kind} "{name}" not found', file=sys.stderr)
    sys.exit(1)


def main(argv: list[str]) -> int:
    state_path = os.environ["KUBECTL_TEST_DOUBLE_STATE"]
    with open(state_path) as f:
        state = json.load(f)
    args, global_flags, i = [], {}, 0
    while i < len(argv):
        if argv[i] in ("--kubeconfig", "--context"):
            global_flags[argv[i]] = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    stdin = sys.stdin.read() if args[-2:] == ["-f", "-"] else None
    with open(os.environ["KUBECTL_TEST_DOUBLE_LOG"], "a") as log:
        log.write(json.dumps({"argv": argv, "args": args, "flags": global_flags, "stdin": stdin}) + "\n")

    if state.get("unreachable"):
        print(CONNECTION_REFUSED, file=sys.stderr)
        return 1
    if global_flags.get("--kubeconfig") is None:
        print("test double: labctl must always pass --kubeconfig", file=sys.stderr)
        return 2

    if args[:1] == ["get"] and len(args) > 1:
        plural = SINGULAR.get(args[1], args[1])
        ns = args[args.index("-n") + 1] if "-n" in args else None
        if not allowed(state, "get", plural, ns):
            forbidden("get" if len(args) > 2 and not args[2].startswith("-") else "list", plural, ns)

    match args:
        case ["auth", "can-i", verb, resource, *rest]:
            ns = rest[rest.index("-n") + 1] if "-n" in rest else None
            ok = allowed(state, verb, resource, ns) and resource.split(".")[0] not in state.get("cannot", [])
            print("yes" if ok else "no")
            return 0 if ok else 1
        case ["get", "namespace", name, "-o", "json"]:
            if name not in state["namespaces"]:
                not_found("namespaces", name)
            labels = state.get("namespace_labels", {}).get(name, {})
            print(json.dumps({"kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
        case ["get", "namespace", name, "-o", "name"]:
            if name not in state["namespaces"]:
                not_found("namespaces", name)
            print(f"namespace/{name}")
        case ["get", "storageclass", "-o", "json"]:
            items = []
            for sc in state["storageclasses"]:
                annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if sc.get("default") else {}
                items.append({"metadata": {"name": sc["name"], "annotations": annotations},
                              "provisioner": sc.get("provisioner", "rancher.io/local-path")})
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        case ["get", "nodes", "-o", "json"]:
            items = [{"metadata": {"name": n["name"]},
                      "status": {"allocatable": {"cpu": "4", "memory": "8Gi",
                                                 **({"nvidia.com/gpu": str(n["gpus"])} if n.get("gpus") else {})}}}
                     for n in state["nodes"]]
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        case ["get", "runtimeclass", name, "-o", "json"]:
            if name not in state.get("runtimeclasses", []):
                not_found("runtimeclasses.node.k8s.io", name)
            print(json.dumps({"kind": "RuntimeClass", "metadata": {"name": name}, "handler": name}))
        case ["get", "apiservice", name, "-o", "json"]:
            if name not in state.get("apiservices", []):
                not_found("apiservices.apiregistration.k8s.io", name)
            print(json.dumps({"kind": "APIService", "metadata": {"name": name}}))
        case ["get", "ingressclass", "-o", "json"]:
            items = [{"metadata": {"name": n}, "spec": {"controller": c}} for n, c in state.get("ingressclasses", {}).items()]
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        case ["get", "ingressclass", name, "-o", "json"]:
            if name not in state.get("ingressclasses", {}):
                not_found("ingressclasses.networking.k8s.io", name)
            controller = state["ingressclasses"][name]
            print(json.dumps({"kind": "IngressClass", "metadata": {"name": name}, "spec": {"controller": controller}}))
        case ["get", "gateway", name, "-n", ns, "-o", "json"]:
            if name not in state.get("gateways", {}).get(ns, []):
                not_found("gateways.gateway.networking.k8s.io", name)
            print(json.dumps({"kind": "Gateway", "metadata": {"name": name, "namespace": ns}}))
        case ["get", "secret", name, "-n", ns, "-o", "json"]:
            if name not in state.get("secrets", {}).get(ns, []):
                not_found("secrets", name)
            print(json.dumps({"kind": "Secret", "metadata": {"name": name, "namespace": ns}}))
        case ["create", "--dry-run=server", "-n", ns, "-f", "-"]:
            # Pod Security admission on Pods, as the API server runs it for a server-side dry run.
            level = state.get("namespace_labels", {}).get(ns, {}).get("pod-security.kubernetes.io/enforce")
            failed = False
            for doc in yaml.safe_load_all(stdin or ""):
                if not doc:
                    continue
                ctx = doc["spec"].get("securityContext", {})
                if doc["kind"] == "Pod" and level == "restricted" and not ctx.get("runAsNonRoot"):
                    print(f'Error from server (Forbidden): error when creating "STDIN": pods "{doc["metadata"]["name"]}" '
                          'is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true', file=sys.stderr)
                    failed = True
                    continue
                print(f"pod/{doc['metadata']['name']} created (server dry run)")
            return 1 if failed else 0
        case ["create", "namespace", name]:
            if state.get("forbid_create_namespace") or not allowed(state, "create", "namespaces", None):
                print('Error from server (Forbidden): namespaces is forbidden: User "student" cannot create '
                      'resource "namespaces" in API group "" at the cluster scope', file=sys.stderr)
                return 1
            state["namespaces"].append(name)
            with open(state_path, "w") as f:
                json.dump(state, f)
            print(f"namespace/{name} created")
        case ["apply", *rest] if rest[-2:] == ["-f", "-"]:
            dry = next((a.split("=", 1)[1] for a in rest if a.startswith("--dry-run=")), None)
            ns = rest[rest.index("-n") + 1]
            if dry != "client" and ns not in state["namespaces"]:
                not_found("namespaces", ns)
            suffix = f" ({dry} dry run)" if dry else ""
            failed = False
            for doc in yaml.safe_load_all(stdin or ""):
                if not doc:
                    continue
                plural = KIND_PLURAL.get(doc["kind"], doc["kind"].lower() + "s")
                refused = doc["kind"] in state.get("refuse_kinds", [])
                if refused or not allowed(state, "create", plural, None if plural in CLUSTER_SCOPED else ns):
                    # kubectl reports the failed object on stderr and goes on with the next one.
                    print(f'Error from server (Forbidden): error when creating "STDIN": {plural}.rbac.authorization.k8s.io '
                          f'is forbidden: User "student" cannot create resource "{plural}" at the cluster scope',
                          file=sys.stderr)
                    failed = True
                    continue
                print(f"{doc['kind'].lower()}/{doc['metadata']['name']} created{suffix}")
            if failed:
                return 1
        case _:
            print(f"test double: unsupported kubectl call {args}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
