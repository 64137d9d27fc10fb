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


def remote_command(*, sudo: bool, timeout: float | None) -> str:
    """The command line that runs the payload: the step timeout is enforced on the host by coreutils
    ``timeout``, which kills the script's whole process group (as root under sudo, so it can)."""
    cmd = "bash -s"
    if timeout:
        cmd = f"timeout -k {KILL_GRACE} {int(max(1, round(timeout)))} {cmd}"
    if sudo:
        cmd = f"sudo -n {cmd}"
    return cmd
