"""Errors that the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class LabctlError(Exception):
    """Base for every error a user can act on. ``str(err)`` is the message shown to the user."""

    exit_code = 1


class SpecError(LabctlError):
    """lab.yaml (or a lock) is malformed. Carries one line per problem, each naming field and fix."""

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class PlaybookError(LabctlError):
    """A playbook file in ansible-free-playbooks/ is malformed or fails to render."""

    exit_code = 2

