"""The run log (one 0600 file per run) and the redaction of secrets from everything labctl prints.

Secrets reach the runner as captured facts marked ``secret`` (a join command, a certificate key)
and as the contents of secret artefacts (WEBUI_SECRET_KEY, ...). Each one is registered with the
``Redactor`` the moment it is known; from then on every line written to the log or the console
passes through it and the secret reads ``<redacted:NAME>``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from pathlib import Path

# Pieces of a secret shorter than this are not redacted on their own: a join command's "join" or
# an address would otherwise vanish from every log line; the secret as a whole is always redacted.
MIN_PIECE = 16
SECRET_KEY_NAME = re.compile(r"(?i)secret|token|passw|key|cred")


def _looks_random(word: str) -> bool:
    """Tokens, hashes and base64 switch between letters and digits all the time; image names,
    paths and versions (``ghcr.io/x/y:v0.11.4``) hardly ever do."""
    switches = sum(
        1 for a, b in itertools.pairwise(word) if a.isalnum() and b.isalnum() and a.isdigit() != b.isdigit()
    )
    return switches >= 4


class Redactor:
    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}  # secret text → its name
        self._lock = threading.Lock()

    def add(self, name: str, value: str | bytes) -> None:
        """Register a secret: its whole text, and the pieces of it that look like key material.

        A single-line secret (a join command) also has each of its long random-looking words
        redacted (the token, the CA hash); a multi-line one (an env file, a kubeconfig, a manifest
        with a Secret) has its random-looking words and its ``*SECRET*/*TOKEN*/*KEY*/*PASSWORD*``
        values redacted — not every line, or a bundle's ``done``/``exit 1`` would vanish from logs."""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        pieces = {text, text.strip()}
        lines = text.strip().splitlines()
        for line in lines:
            if len(lines) == 1:
                pieces.add(line.strip())
            key, sep, val = line.strip().partition("=")
            if not sep:
                key, sep, val = line.strip().partition(":")
            val = val.strip().strip("'\"")
            if sep and SECRET_KEY_NAME.search(key) and len(val) >= 8:
                pieces.add(val)
            for word in re.split(r"[\s=\"']+", line):
                # A join command's token and CA hash are secret on their own; its flags and address are not.
                if len(word) >= MIN_PIECE and not word.startswith("-") and (
                    _looks_random(word) or (len(lines) == 1 and any(c.isalpha() for c in word))
                ):
                    pieces.add(word)
        with self._lock:
            for piece in pieces:
                if len(piece) >= 4:
                    self._secrets.setdefault(piece, name)

    def __call__(self, text: str) -> str:
        if not self._secrets or not text:
            return text
        with self._lock:
            ordered = sorted(self._secrets.items(), key=lambda kv: -len(kv[0]))  # longest first
        for secret, name in ordered:
            if secret in text:
                text = text.replace(secret, f"<redacted:{name}>")
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


class RunLog:
    """Append-only, thread-safe, 0600 log of one run: every command, exit code, duration and output."""

    def __init__(self, path: Path, redact: Redactor) -> None:
        self.path = path
        self.redact = redact
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # the file may hold command output from hosts; keep it private
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def write(self, text: str) -> None:
        """Write a block (redacted), each line stamped with the seconds since the run started."""
        stamp = f"[{time.monotonic() - self._started:8.2f}s] "
        lines = self.redact(text).rstrip("\n").splitlines() or [""]
        with self._lock:
            if self._file.closed:
                return
            self._file.write("".join(stamp + line + "\n" for line in lines))
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


# Logs kept per command (create-*.log, destroy-*.log, …): enough to compare the last few runs.
KEEP_LOGS = 10


def new_log_path(folder: Path, command: str, keep: int = KEEP_LOGS) -> Path:
    """The path for a new ``<command>-<stamp>.log`` in ``folder``, after removing the oldest logs of
    that command so at most ``keep`` remain with the new one. The file itself is created by its
    first write, so a command that stops before logging anything leaves no empty file behind."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{command}-{stamp}.log"
    n = 1
    while path.exists():  # two runs in one second keep both logs
        n += 1
        path = folder / f"{command}-{stamp}-{n}.log"
    if folder.is_dir():
        old = sorted(
            (p for p in folder.glob(f"{command}-*.log") if _LOG_NAME.fullmatch(p.name[len(command) + 1 :])),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
        for stale in old[: max(0, len(old) - (keep - 1))]:
            stale.unlink(missing_ok=True)
    return path


_LOG_NAME = re.compile(r"\d{8}-\d{6}(?:-\d+)?\.log")


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())
