"""doctor's report: the text table and the JSON form of a list of checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from labctl.doctor.facts import Check


def format_report(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[c.status]
        lines.append(f"{mark}  {c.name:<{width}}  {c.what}")
        if c.status != "ok":
            pad = " " * (width + 8)
            if c.why:
                lines.append(f"{pad}why: {c.why}")
            if c.fix:
                lines.append(f"{pad}fix: {c.fix}")
    failed = sum(c.failed for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append(
        f"doctor: {len(checks)} checks, {failed} failed, {warned} warning{'s' if warned != 1 else ''}"
    )
    return "\n".join(lines) + "\n"


def report_json(checks: Sequence[Check]) -> str:
    return json.dumps({"ok": not any(c.failed for c in checks), "checks": [asdict(c) for c in checks]}, indent=2)

