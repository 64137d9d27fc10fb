"""Shared helpers of the node-side TEST DOUBLES (tests/shims/). Runs inside a netns test node.

Every shim records each call (argv, one JSON line) in /var/log/labctl-shims/<tool>.log (0600) and
keeps whatever state it must remember in /var/lib/labctl-shims/. Nothing here talks to the internet
or to the host's kernel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOG_DIR = Path("/var/log/labctl-shims")
STATE_DIR = Path("/var/lib/labctl-shims")
LIB_DIR = Path("/opt/labctl-shims/lib")
PAYLOAD_DIR = Path("/opt/labctl-shims/payload")


def record(tool: str, argv: list[str] | None = None, **extra: object) -> None:
    """Append this call to the tool's log (what the ssh tests assert on)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    path = LOG_DIR / f"{tool}.log"
    entry = {"time": round(time.time(), 3), "argv": list(sys.argv[1:] if argv is None else argv), **extra}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@contextlib.contextmanager
def state(name: str, default: object) -> Iterator[dict]:
    """Read-modify-write one JSON state file under a lock."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = STATE_DIR / f"{name}.json"
    with open(STATE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else json.loads(json.dumps(default))
        box = {"data": data}
        yield box
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(box["data"], indent=1, sort_keys=True))
        tmp.replace(path)


def read_state(name: str, default: object) -> object:
    path = STATE_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else default


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)


def unit_active(unit: str) -> bool:
    units = read_state("systemd", {})
    return bool(isinstance(units, dict) and units.get(unit.removesuffix(".service"), {}).get("active"))
