"""The run log (one 0600 file per run) and the redaction of secrets from everything labctl prints.

Secrets reach the runner as captured facts marked ``secret`` (a join command, a certificate key)
and as the contents of secret artefacts (WEBUI_SECRET_KEY, ...). Each one is registered with the
``Redactor`` the moment it is known; from then on every line written to the log or the console
passes through it and the secret reads ``<redacted:NAME>``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

# Pieces of a secret shorter than this are not redacted on their own: a join command's "join" or
# an address would otherwise vanish from every log line; the secret as a whole is always redacted.
MIN_PIECE = 16


class Redactor:
    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}  # secret text → its name
        self._lock = threading.Lock()

    def add(self, name: str, value: str | bytes) -> None:
        """Register a secret. Its whole text, each of its lines and each long word in it are redacted."""
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        pieces = {text, text.strip()}
        for line in text.splitlines():
            pieces.add(line.strip())
            for word in line.split():
                # A join command's token and CA hash are secret on their own; its flags are not.
                if len(word) >= MIN_PIECE and not word.startswith("-"):
                    pieces.add(word)
                    if "=" in word:
                        pieces.add(word.split("=", 1)[1])
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


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())
