"""TEST DOUBLE for `vagrant` — not Vagrant. Answers what labctl's snapshot commands call.

State (JSON in $VAGRANT_DOUBLE_STATE): {"machines": {name: {"state": "running", "snapshots": [...]}}}.
Output follows Vagrant 2.3.4's formats: `status --machine-readable` (state lines),
`snapshot list --machine-readable` (plugins/commands/snapshot/command/list.rb: per machine either the
list_none output plus a detail hint, or an empty output line then one detail line per snapshot),
`snapshot save [--force] NAME` (all machines; refuses an existing name without --force),
`snapshot restore --no-provision NAME` and `snapshot delete VM NAME` (refuse a missing name, like
Vagrant's SnapshotNotFound), `ssh-config VM...`. Every call is appended to $VAGRANT_DOUBLE_LOG.
Anything else exits 2.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    path = os.environ["VAGRANT_DOUBLE_STATE"]
    with open(path) as f:
        state = json.load(f)
    with open(os.environ["VAGRANT_DOUBLE_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    machines = state["machines"]
    args = [a for a in argv if a != "--machine-readable"]

    def save() -> None:
        with open(path, "w") as f:
            json.dump(state, f)

    match args:
        case ["status"]:
            for name, m in machines.items():
                print(f"1700000000,{name},provider-name,libvirt")
                print(f"1700000000,{name},state,{m['state']}")
        case ["snapshot", "list"]:
            for name, m in machines.items():
                if not m["snapshots"]:
                    print(f"1700000000,{name},ui,output,No snapshots have been taken yet!")
                    print(f"1700000000,{name},ui,detail,You can take a snapshot using `vagrant snapshot save`.")
                    continue
                print(f"1700000000,{name},ui,output,==> {name}: ")
                for snap in m["snapshots"]:
                    print(f"1700000000,{name},ui,detail,{snap}")
        case ["snapshot", "save", *rest]:
            force, name = "--force" in rest, rest[-1]
            for vm, m in machines.items():
                if name in m["snapshots"] and not force:
                    print(f"==> {vm}: The snapshot name `{name}` is already in use.", file=sys.stderr)
                    return 1
                if name not in m["snapshots"]:
                    m["snapshots"].append(name)
                m.setdefault("saved", {})[name] = m.get("files", [])
                print(f"==> {vm}: Snapshotting the machine as '{name}'...")
            save()
        case ["snapshot", "restore", "--no-provision", name]:
            for vm, m in machines.items():
                if name not in m["snapshots"]:
                    print(f"The snapshot name `{name}` was not found for the\nvirtual machine `{vm}`.", file=sys.stderr)
                    return 1
                m["files"] = m["saved"][name]
                m["state"] = "running"
                print(f"==> {vm}: Restoring the snapshot '{name}'...")
            save()
        case ["snapshot", "delete", vm, name]:
            if name not in machines[vm]["snapshots"]:
                print(f"The snapshot name `{name}` was not found for the\nvirtual machine `{vm}`.", file=sys.stderr)
                return 1
            machines[vm]["snapshots"].remove(name)
            print(f"==> {vm}: Deleting the snapshot '{name}'...")
            save()
        case ["ssh-config", *names]:
            for i, vm in enumerate(names):
                print(f"Host {vm}\n  HostName 127.0.0.1\n  User vagrant\n  Port {2200 + i}\n"
                      f"  IdentityFile /tmp/{vm}.key\n  StrictHostKeyChecking no\n")
        case _:
            print(f"test double: unsupported vagrant call {argv}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
