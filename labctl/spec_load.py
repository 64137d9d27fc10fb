"""Reading lab.yaml safely: it is untrusted input (docs/untrusted-input.md).

Every limit here answers with one line naming the file and the fix, never a traceback, and in well
under a second: only a regular file is read (a FIFO, /dev/zero or a directory would hang, exhaust
memory or fail late), at most ``MAX_BYTES`` of it; before any Python object is built, the YAML event
stream is walked once (iteratively: deep nesting cannot exhaust the stack) to cap the nesting
depth and the size the document would have with every alias expanded (a "billion laughs" file of
a few hundred bytes expands to gigabytes of error text otherwise).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import SpecError

MAX_BYTES = 1024 * 1024  # the seed lab is ~2 KB; a real one fits in a few KB
MAX_DEPTH = 32  # lab.yaml nests 5 levels deep
MAX_NODES = 20_000  # YAML nodes after alias expansion


def read_text(path: Path) -> str:
    """The file's text, or SpecError. Opened without blocking (a FIFO would wait for a writer
    forever) and refused unless it is a regular file."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SpecError(where, ["file not found — run `labctl init` to write one, or pass --file"]) from None
    except IsADirectoryError:
        raise SpecError(where, ["is a folder, not a file — pass the lab.yaml inside it"]) from None
    except OSError as err:
        raise SpecError(where, [f"cannot open it ({err.strerror}) — check the path and its permissions"]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(where, ["is a folder, not a file — pass the lab.yaml inside it"])
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a device or special file"
            raise SpecError(where, [f"is {kind}, not a regular file — save the lab spec to a file and pass that"])
        if info.st_size > MAX_BYTES:
            raise SpecError(where, [f"is {info.st_size} bytes, above the limit of {MAX_BYTES} (1 MiB) — a lab.yaml is a few KB; check the path"])
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_BYTES:  # grew while we read it
            raise SpecError(where, [f"is above the limit of {MAX_BYTES} bytes (1 MiB) — a lab.yaml is a few KB; check the path"])
    except OSError as err:
        raise SpecError(where, [f"cannot read it ({err.strerror}) — check the path and its permissions"]) from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(where, [f"not UTF-8 text ({err.reason} at byte {err.start}) — save it as UTF-8"]) from None


def check_shape(text: str, source: str) -> None:
    """Depth and expanded size of the YAML document, from its event stream (no objects built)."""
    if len(text) > MAX_BYTES:
        raise SpecError(source, [f"is {len(text)} characters, above the limit of {MAX_BYTES} (1 MiB) — a lab.yaml is a few KB"])
    sizes: dict[str, int] = {}  # anchor → expanded size of its node
    stack: list[list[Any]] = []  # open collections: [anchor, size so far]
    total = 0

    def add(n: int, mark: Any) -> None:
        nonlocal total
        total += n
        if stack:
            stack[-1][1] += n
        if total > MAX_NODES:
            raise SpecError(
                source,
                [f"line {mark.line + 1}: the document expands to more than {MAX_NODES} values (aliases '*name' "
                 "repeat what they point to) — write the lab out plainly, without nested aliases"],
            )

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    raise SpecError(
                        source,
                        [f"line {event.start_mark.line + 1}: alias *{str(event.anchor)[:40]} refers to itself or to "
                         "nothing before it — remove the alias"],
                    )
                add(sizes[event.anchor], event.start_mark)
            elif isinstance(event, yaml.ScalarEvent):
                add(1, event.start_mark)
                if event.style is None and len(event.value) > 100 and event.value.lstrip("+-").isdigit():
                    raise SpecError(
                        source,
                        [f"line {event.start_mark.line + 1}: a number of {len(event.value)} digits — no lab.yaml "
                         "number has more than a few; check the value"],
                    )
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise SpecError(
                        source,
                        [f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep — lab.yaml "
                         "needs 5; check the indentation and brackets"],
                    )
                stack.append([event.anchor, 1])
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = stack.pop()
                if anchor is not None:
                    sizes[anchor] = size
                add(size, event.start_mark)
    except yaml.MarkedYAMLError:
        return  # the real load reports syntax errors with their position
    except yaml.YAMLError:
        return


def check_keys(data: Any, source: str) -> None:
    """Every mapping key must be text: lab.yaml keys are names (YAML would also accept 1, a list, ...)."""
    todo: list[tuple[Any, str]] = [(data, "")]
    seen: set[int] = set()
    while todo:
        value, where = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    shown = repr(key)
                    shown = shown if len(shown) <= 40 else shown[:39] + "…"
                    raise SpecError(
                        source,
                        [f"{where or '(top level)'}: key {shown} is not a name — keys are words like "
                         "'name' or 'workers' (put quotes around a key that looks like a number)"],
                    )
                todo.append((item, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            todo.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
