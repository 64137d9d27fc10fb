"""How a step's script and its facts travel to a host: as bash's standard input, never as arguments.

The command line a transport runs is fixed and holds nothing secret (``exec sudo -n bash -s`` over
SSH, ``sudo -n timeout … bash -s`` locally); ``ps`` on the host and the log show only that. The
payload on stdin is::

    <the LABCTL-PGID announcement>               # over SSH only: see ``session_command``
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


def _prologue(env: Mapping[str, str] | None, announce_pgid: bool) -> list[str]:
    lines = [ANNOUNCE_PGID] if announce_pgid else []
    for name, value in (env or {}).items():
        if not ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not a valid shell name")
        lines.append(f"export {name}={shlex.quote(value)}")
    return lines


def stdin_payload(script: str, env: Mapping[str, str] | None = None, *, announce_pgid: bool = False) -> bytes:
    lines = _prologue(env, announce_pgid)
    lines += ["set -eo pipefail", "{", script.rstrip("\n"), "} </dev/null", ""]
    return "\n".join(lines).encode("utf-8")


def guarded_payload(
    check: str, script: str, marker: str, env: Mapping[str, str] | None = None, *, announce_pgid: bool = False
) -> bytes:
    """Check and script in one round trip: the check runs first (in a subshell, under errexit like
    any script); its exit code follows ``marker`` on stdout and stderr; the script runs only when the
    check failed. ``split_guarded`` takes the output apart again."""
    lines = _prologue(env, announce_pgid)
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


PGID_MARKER = "LABCTL-PGID"
PGID_LINE = re.compile(rf"^{PGID_MARKER} (\d+)\n", re.MULTILINE)
# The payload's first line over SSH: the process group of the bash running the script (field 5 of
# /proc/<pid>/stat, proc(5); the command name in field 2 is "(bash)", without spaces), read with
# builtins only — no process is started for it.
ANNOUNCE_PGID = (
    f'read -r _ _ _ _ __labctl_pgid _ </proc/$$/stat && echo "{PGID_MARKER} $__labctl_pgid" >&2; unset __labctl_pgid'
)
# What coreutils `timeout --verbose` prints when it had to signal the script: the proof of a timeout.
TIMEOUT_NOTICE = "timeout: sending signal"


def session_command(*, sudo: bool) -> str:
    """The SSH transport's command line: the login shell execs bash (through sudo when asked), which
    reads the payload — two programs per step, the fewest that keep the script off the command line.

    No ``timeout`` wrapper on the host: the SSH transport enforces the step timeout itself, by
    killing the script's process group (announced by the payload's first line) over a second
    channel at the deadline, as it does on Ctrl-C. A host-side ``timeout`` would put two more
    programs (``timeout``, then bash in a fork) in front of every step: measured on the 20-node
    runner benchmark, that alone was ~0.4 s of the 10 steps' 1.2 s (docs/benchmarks.md). sshd starts
    every session's command in a new session of its own (openssh-portable session.c,
    ``do_exec_no_pty``: ``setsid()`` in the child before the shell runs), so the group holds the
    step's processes and nothing else.
    """
    return "exec sudo -n bash -s" if sudo else "exec bash -s"


def remote_command(*, sudo: bool, timeout: float | None) -> str:
    """The command line that runs the payload on this machine (the local transport).

    The step timeout is enforced on the host by coreutils ``timeout``, which puts itself at the head
    of a new process group and on expiry signals that whole group (as root under sudo, so it can);
    ``-v`` makes it say so on stderr, which tells a timeout from a script that exits 124 itself
    (coreutils/coreutils src/timeout.c @01755d36, 2023: ``setpgid (0, 0)`` unless --foreground,
    ``send_sig (0, sig)`` to the group on expiry or on a SIGTERM it receives, and with -v the notice
    "sending signal … to command" on stderr; Debian's coreutils 9.1 on the test nodes behaves alike).
    ``timeout 0`` (no step timeout) still gives the script its own group.
    """
    seconds = int(max(1, round(timeout))) if timeout else 0
    cmd = f"timeout -v -k {KILL_GRACE} {seconds} bash -s"
    return f"sudo -n {cmd}" if sudo else cmd


# Exit statuses of ``kill_group_command``: the group went on SIGTERM, or needed SIGKILL. They are
# coreutils timeout's codes for the same two outcomes, which the SSH transport reports for a step
# it stopped at its deadline (TIMEOUT_EXIT_CODES).
GROUP_TERMINATED, GROUP_KILLED = TIMEOUT_EXIT_CODES


def kill_group_command(pgid: int, *, sudo: bool) -> str:
    """Stop a step's process group: SIGTERM, up to 2 s for it to go, then SIGKILL what is left.
    Exits 124 when SIGTERM was enough (or the group was already gone), 137 when SIGKILL was needed."""
    # `kill -s SIG -- -PGID`: the POSIX form; dash (Debian's sh) rejects `kill -TERM -- -PGID`.
    script = (
        f"kill -s TERM -- -{pgid} 2>/dev/null || exit {GROUP_TERMINATED}; "
        f"for i in 1 2 3 4 5 6 7 8 9 10; do kill -s 0 -- -{pgid} 2>/dev/null || exit {GROUP_TERMINATED}; sleep 0.2; done; "
        f"kill -s KILL -- -{pgid} 2>/dev/null; exit {GROUP_KILLED}"
    )
    return f"sudo -n sh -c '{script}'" if sudo else f"sh -c '{script}'"


def split_pgid(stderr: str) -> tuple[int | None, str]:
    """(the process group announced by ``remote_command``, stderr without that line)."""
    match = PGID_LINE.search(stderr)
    if match is None:
        return None, stderr
    return int(match.group(1)), stderr[: match.start()] + stderr[match.end() :]


def is_timeout(exit_code: int, stderr: str) -> bool:
    """The host's ``timeout`` ended the script (its notice on stderr, and its exit code)."""
    return exit_code in TIMEOUT_EXIT_CODES and TIMEOUT_NOTICE in stderr
