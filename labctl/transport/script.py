"""How a step's script and its facts travel to a host: as bash's standard input, never as arguments.

The command line a transport runs is fixed and holds nothing secret (``sudo -n timeout … bash -s``);
``ps`` on the host and the log show only that. The payload on stdin is::

    export LABCTL_JOIN_COMMAND='kubeadm join …'   # one line per fact the step uses
    set -eo pipefail                              # a failing line fails the step
    {
    <the script>
    } </dev/null

The braces make bash parse the whole script before running any of it, so a command in the script
that reads standard input (apt-get, ssh, cat) gets /dev/null instead of eating the rest of the script.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Exit codes of coreutils `timeout`: 124 after SIGTERM did it, 137 when SIGKILL (-k) was needed.
TIMEOUT_EXIT_CODES = (124, 137)
KILL_GRACE = 5  # seconds between SIGTERM and SIGKILL when a step overruns its timeout


def stdin_payload(script: str, env: Mapping[str, str] | None = None) -> bytes:
    lines = []
    for name, value in (env or {}).items():
        if not ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a valid shell name")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines += ["set -eo pipefail", "{", script.rstrip("\n"), "} </dev/null", ""]
    return "\n".join(lines).encode("utf-8")


def guarded_payload(check: str, script: str, marker: str, env: Mapping[str, str] | None = None) -> bytes:
    """Check and script in one round trip: the check runs first (in a subshell, under errexit like
    any script); its exit code follows ``marker`` on stdout and stderr; the script runs only when the
    check failed. ``split_guarded`` takes the output apart again."""
    lines = []
    for name, value in (env or {}).items():
        if not ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a valid shell name")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines += [
        # Not `( … ) || rc=$?`: bash ignores errexit inside anything on the left of ||.
        "set +e",
        "(",
        "set -eo pipefail",
        "{",
        check.rstrip("\n"),
        "} </dev/null",
        ")",
        "__labctl_check_rc=$?",
        f"printf '\\n{marker} %d\\n' \"$__labctl_check_rc\"",
        f"printf '\\n{marker} %d\\n' \"$__labctl_check_rc\" >&2",
        '[ "$__labctl_check_rc" -eq 0 ] && exit 0',
        "set -eo pipefail",
        "{",
        script.rstrip("\n"),
        "} </dev/null",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def split_guarded(text: str, marker: str) -> tuple[str, int | None, str]:
    """(check output, check exit code or None when the marker never came, script output)."""
    head, sep, tail = text.partition(f"\n{marker} ")
    if not sep:
        return text, None, ""
    code, _, rest = tail.partition("\n")
    try:
        return head, int(code), rest
    except ValueError:
        return text, None, ""


def remote_command(*, sudo: bool, timeout: float | None) -> str:
    """The command line that runs the payload: the step timeout is enforced on the host by coreutils
    ``timeout``, which kills the script's whole process group (as root under sudo, so it can)."""
    cmd = "bash -s"
    if timeout:
        cmd = f"timeout -k {KILL_GRACE} {int(max(1, round(timeout)))} {cmd}"
    if sudo:
        cmd = f"sudo -n {cmd}"
    return cmd
