"""TEST DOUBLE for kubectl — not a real kubectl.

Installed as `kubectl` on PATH by tests/test_deploy.py. It records every call (argv and, for
`apply -f -`, the stdin bundle) as one JSON line in $KUBECTL_TEST_DOUBLE_LOG, and answers the
handful of queries `labctl deploy` makes from a cluster described in $KUBECTL_TEST_DOUBLE_STATE
(JSON). Anything else exits 2 with "test double: unsupported", so an unexpected call fails the test.
"""

from __future__ import annotations

import json
import os
import sys

import yaml

CONNECTION_REFUSED = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"


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

    match args:
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
        case ["get", "runtimeclass", name, "-o", "name"]:
            if name not in state.get("runtimeclasses", []):
                not_found("runtimeclasses.node.k8s.io", name)
            print(f"runtimeclass.node.k8s.io/{name}")
        case ["get", "apiservice", name, "-o", "name"]:
            if name not in state.get("apiservices", []):
                not_found("apiservices.apiregistration.k8s.io", name)
            print(f"apiservice.apiregistration.k8s.io/{name}")
        case ["get", "secret", name, "-n", ns, "-o", "name"]:
            if name not in state.get("secrets", {}).get(ns, []):
                not_found("secrets", name)
            print(f"secret/{name}")
        case ["create", "namespace", name]:
            if state.get("forbid_create_namespace"):
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
            for doc in yaml.safe_load_all(stdin or ""):
                if doc:
                    print(f"{doc['kind'].lower()}/{doc['metadata']['name']} created{suffix}")
        case _:
            print(f"test double: unsupported kubectl call {args}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
