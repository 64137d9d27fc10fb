"""Errors that the CLI turns into a one-line message and a non-zero exit code — and the exit-code table.

The exit code is a promise to the scripts that wrap labctl: ``EXIT_CODES`` is the whole contract
(README "Exit codes" and docs/exit-codes.md print it). Every error class names its code from this
table, and only the CLI's error handler (``cli_common.LabctlGroup``) turns an error into ``sys.exit``. A
command run on a host reports its own exit code in the message; it never becomes labctl's.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # anything else labctl could not do (a bench request failed, a cache item missing, ...)
    INVALID_INPUT = 2  # lab.yaml, a flag, a lock file or a playbook is malformed
    UNREACHABLE = 3  # a host did not answer: refused, no route, timed out connecting, connection lost
    PREFLIGHT = 4  # this machine cannot run the lab (labctl doctor)
    STEP_FAILED = 5  # a step's command failed on a host, or the provider (Vagrant) failed
    LAB_BUSY = 6  # another labctl holds the lab's lock
    VERIFY_FAILED = 7  # the lab does not answer from this machine (labctl verify, the end of create)
    LOGIN_REFUSED = 8  # a host answered but refused labctl: authentication, unknown or changed host key
    TIMEOUT = 9  # a step ran past its timeout (its processes on the host were killed)
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: remote commands were stopped; re-run to resume


# The contract, in the order the documentation shows it.
EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "everything asked for is done (for `create`: the lab answers from this machine)",
    ExitCode.FAILED: "any other failure (e.g. `bench` saw a failed request, `cache status` found an item missing)",
    ExitCode.INVALID_INPUT: "invalid input: lab.yaml, a flag, labctl.lock or a playbook — nothing was changed",
    ExitCode.UNREACHABLE: "a host could not be reached (refused, no route, timed out) or the connection was lost",
    ExitCode.PREFLIGHT: "preflight failed: this machine cannot run the lab (see `labctl doctor`)",
    ExitCode.STEP_FAILED: "a step failed on a host (its exit code is in the message), or Vagrant failed",
    ExitCode.LAB_BUSY: "another labctl command holds this lab's lock",
    ExitCode.VERIFY_FAILED: "the lab was built but does not answer from this machine (`labctl verify`)",
    ExitCode.LOGIN_REFUSED: "a host refused the login: authentication failed, host key unknown or changed",
    ExitCode.TIMEOUT: "a step ran past its timeout; its processes on the host were killed",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM): commands on the hosts were stopped; re-run to resume",
}

# Why a command on a host did not finish (``transport.base.Result.cause``) → labctl's exit code.
# "" is a command that ran and exited non-zero: a failed step.
CAUSE_EXIT_CODES: dict[str, ExitCode] = {
    "": ExitCode.STEP_FAILED,
    "refused": ExitCode.UNREACHABLE,
    "unreachable": ExitCode.UNREACHABLE,
    "lost": ExitCode.UNREACHABLE,
    "auth": ExitCode.LOGIN_REFUSED,
    "host-key": ExitCode.LOGIN_REFUSED,
    "timeout": ExitCode.TIMEOUT,
    "interrupted": ExitCode.INTERRUPTED,
}


def exit_code_for_cause(cause: str) -> ExitCode:
    return CAUSE_EXIT_CODES.get(cause, ExitCode.STEP_FAILED)


def exit_code_table() -> str:
    """The Markdown table of the contract (README and docs/exit-codes.md; a test keeps them equal)."""
    rows = ["| Code | Meaning |", "|-----:|---------|"]
    rows += [f"| {int(code)} | {text} |" for code, text in EXIT_CODES.items()]
    return "\n".join(rows)


class LabctlError(Exception):
    """Base for every error a user can act on. ``str(err)`` is the message shown to the user."""

    exit_code: int = ExitCode.FAILED


class SpecError(LabctlError):
    """lab.yaml (or a lock) is malformed. Carries one line per problem, each naming field and fix."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class PlaybookError(LabctlError):
    """A playbook file in ansible-free-playbooks/ is malformed or fails to render."""

    exit_code = ExitCode.INVALID_INPUT


class LifecycleError(LabctlError):
    """A lab command cannot do what was asked (no such node, lab not created, kubeconfig unusable)."""

    exit_code = ExitCode.FAILED
