"""Running the `vagrant` command: a clean environment, both output streams, progress, and Ctrl-C.

labctl runs Vagrant itself instead of through python-vagrant. python-vagrant 1.0.0
(``vagrant/__init__.py``: ``_run_vagrant_command``, ``_stream_vagrant_command``) hands Vagrant's
stderr to ``err_cm`` only (the log), reads stdout line by line on ``\\n``, and starts Vagrant in
labctl's own process group. Vagrant prints its errors on stderr and draws a box download's progress
with ``\\r`` (Vagrant 2.3.4 ``lib/vagrant/util/curl_helper.rb`` + ``UI#clear_line`` in
``lib/vagrant/ui.rb``: ``"\\r\\033[K"`` then the ``Progress: N% (Rate: …)`` detail, no newline),
so a user saw neither the error nor the download.

Here both streams are read as they come, split on ``\\n`` and ``\\r``, stamped with the seconds since
the command started and written to the log in the order they arrived; the stderr tail goes into the
error. Vagrant runs in its own session (``start_new_session``), so a terminal's Ctrl-C reaches labctl
only: labctl forwards exactly one SIGINT to Vagrant's process group (Vagrant's "Waiting for cleanup
before exiting…"; a second SIGINT would make it abort with "Exiting immediately, without cleanup!" —
Vagrant 2.3.4 ``lib/vagrant/action/runner.rb`` ``int_callback``), keeps reading and logging,
and returns only when Vagrant has exited. The caller holds the lab lock for that whole time.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from labctl.errors import LabctlError

# Variables that make Vagrant act on another project than the lab's state folder (Vagrant 2.3.4
# lib/vagrant/environment.rb: VAGRANT_CWD overrides the working directory, VAGRANT_VAGRANTFILE the
# file name, VAGRANT_DOTFILE_PATH where the machines' ids live), or put libvirt VMs elsewhere
# (vagrant-libvirt 0.11.2 lib/vagrant-libvirt/config.rb ``_default_uri`` takes LIBVIRT_DEFAULT_URI
# when the Vagrantfile sets no URI; ours sets one too). VAGRANT_PREFERRED_PROVIDERS picks a provider
# for machines not created yet; VAGRANT_FORCE_COLOR would put ANSI codes into the output labctl parses.
SCRUBBED_ENV = (
    "VAGRANT_CWD",
    "VAGRANT_VAGRANTFILE",
    "VAGRANT_DOTFILE_PATH",
    "LIBVIRT_DEFAULT_URI",
    "VAGRANT_PREFERRED_PROVIDERS",
    "VAGRANT_FORCE_COLOR",
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# `    master: Progress: 42% (Rate: 11.2M/s, Estimated time remaining: 0:01:07)`
PROGRESS = re.compile(r"^\s*(?:(?P<machine>[\w.-]+): )?Progress: (?P<pct>\d+)%(?P<rest>.*)$")
STDERR_TAIL = 12


class VagrantError(LabctlError):
    """A vagrant command failed. The message names the command, the log and Vagrant's own words."""

    exit_code = 5


class VagrantInterrupted(LabctlError):
    """Ctrl-C during a vagrant command: Vagrant was told once and has finished its clean-up."""

    exit_code = 130


def scrubbed_env(base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (and ``extra``) less every variable that could redirect Vagrant: for any `vagrant`
    labctl runs, including `vagrant --version` and `vagrant plugin list` in doctor."""
    env = {k: v for k, v in base.items() if k not in SCRUBBED_ENV}
    env.update(extra or {})
    for name in SCRUBBED_ENV:  # an explicit ``extra`` cannot bring one back either
        env.pop(name, None)
    return env


def vagrant_env(base: Mapping[str, str], provider: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Vagrant gets: the user's, less what could redirect it, with the lab's provider
    as the default (so `status` of machines not created yet names the right one) and no colour."""
    env = scrubbed_env(base, extra)
    env["VAGRANT_DEFAULT_PROVIDER"] = provider
    env["VAGRANT_NO_COLOR"] = "1"
    # Vagrant 2.3.4 lib/vagrant/cli.rb starts HashiCorp's version check in a thread and, before the
    # command runs, waits for it (util/checkpoint_client.rb ``display`` → ``result`` joins it for up
    # to CHECKPOINT_TIMEOUT = 10 s) when the checkpoint gem is installed (HashiCorp's packages have
    # it): with a slow network that is every labctl vagrant call. VAGRANT_CHECKPOINT_DISABLE skips it.
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    return env


@dataclass
class Piece:
    """One line of Vagrant's output (ended by ``\\n``), or one progress redraw (ended by ``\\r``)."""

    stream: str  # "stdout" or "stderr"
    text: str
    seconds: float  # since the command started
    redraw: bool = False


@dataclass
class Outcome:
    returncode: int
    stdout: str
    seconds: float
    stderr_tail: list[str] = field(default_factory=list)
    interrupted: bool = False


def split_pieces(buffer: str) -> tuple[list[tuple[str, bool]], str]:
    """``buffer`` → complete pieces ``(text, ended_by_cr)`` and the unfinished rest. ``\\r\\n`` is a
    plain line end; a lone ``\\r`` ends a redraw (Vagrant's progress meter)."""
    out: list[tuple[str, bool]] = []
    start = 0
    i = 0
    while i < len(buffer):
        ch = buffer[i]
        if ch == "\n":
            out.append((buffer[start:i], False))
            start = i + 1
        elif ch == "\r":
            if i + 1 == len(buffer):
                break  # could be the first half of \r\n: wait for the next chunk
            if buffer[i + 1] == "\n":
                out.append((buffer[start:i], False))
                i += 1
            else:
                out.append((buffer[start:i], True))
            start = i + 1
        i += 1
    return out, buffer[start:]


def _reader(stream: IO[bytes], name: str, started: float, events: queue.Queue[Piece | str]) -> None:
    rest = ""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character split across two reads stays whole
    try:
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                rest += decoder.decode(b"", final=True)
                break
            pieces, rest = split_pieces(rest + decoder.decode(chunk))
            now = time.monotonic() - started
            for text, redraw in pieces:
                clean = ANSI.sub("", text).rstrip()
                if clean.strip() or not redraw:
                    events.put(Piece(name, clean, now, redraw))
        if rest.strip("\r"):
            events.put(Piece(name, ANSI.sub("", rest).rstrip(), time.monotonic() - started))
    finally:
        events.put(name)  # this stream is done


def find_vagrant(env: Mapping[str, str]) -> str:
    exe = shutil.which("vagrant", path=env.get("PATH"))
    if not exe:
        raise VagrantError("`vagrant` is not installed (not on PATH) — run `labctl doctor`")
    return os.path.abspath(exe)  # a relative PATH entry must not depend on the cwd Vagrant gets


def run_vagrant(
    args: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    on_piece: Callable[[Piece], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> Outcome:
    """Run ``vagrant ARGS`` in ``cwd`` to its end. Every piece of output goes to ``log`` (stamped, in
    arrival order, stderr marked), and to ``on_piece`` for the console. Returns the outcome;
    ``interrupted`` is True when a Ctrl-C was forwarded (the caller raises after its own clean-up)."""
    exe = find_vagrant(env)
    with _interrupts_counted() as interrupts:
        return _run(exe, args, cwd, env, log, on_piece, notice, interrupts)


def run_vagrant_many(
    jobs: list[list[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    on_piece: Callable[[int, Piece], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Several ``vagrant ARGS`` processes at the same time (one thread each, waiting on its own
    process), each as ``run_vagrant`` runs one; their outcomes in the order of ``jobs``. A Ctrl-C
    reaches every one of them once (they share the count of interrupts), and this returns only
    when all have exited. ``on_piece`` gets the job's index with each piece."""
    exe = find_vagrant(env)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(index: int, args: list[str], interrupts: list[int]) -> None:
        def piece(p: Piece) -> None:
            if on_piece is not None:
                on_piece(index, p)

        try:
            outcomes[index] = _run(exe, args, cwd, env, log, piece, notice, interrupts)
        except BaseException as err:  # handed to the calling thread below
            errors.append(err)

    with _interrupts_counted() as interrupts:
        threads = [threading.Thread(target=work, args=(i, args, interrupts), daemon=True) for i, args in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # short joins: the main thread must keep taking signals
                t.join(timeout=0.2)
    if errors:
        raise errors[0]
    return [o for o in outcomes if o is not None]


@contextlib.contextmanager
def _interrupts_counted() -> Iterator[list[int]]:
    """While Vagrant runs, a Ctrl-C (SIGINT) is counted instead of raising KeyboardInterrupt wherever
    labctl happens to be: the loop below acts on it at a point of its choosing. Only the main thread
    receives signals and can set a handler (labctl calls Vagrant from it)."""
    counted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield counted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: counted.append(signum))
    try:
        yield counted
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(
    exe: str,
    args: list[str],
    cwd: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
    on_piece: Callable[[Piece], None] | None,
    notice: Callable[[str], None] | None,
    interrupts: list[int],
) -> Outcome:
    started = time.monotonic()
    log(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} vagrant {' '.join(args)} (in {cwd})")
    proc = subprocess.Popen(
        [exe, *args],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the terminal's Ctrl-C reaches labctl, which decides what Vagrant gets
    )
    events: queue.Queue[Piece | str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    readers = [
        threading.Thread(target=_reader, args=(proc.stdout, "stdout", started, events), daemon=True),
        threading.Thread(target=_reader, args=(proc.stderr, "stderr", started, events), daemon=True),
    ]
    for t in readers:
        t.start()
    stdout: list[str] = []
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
    open_streams = 2
    interrupted = False
    last_logged_redraw = -1e9
    pending_redraw: Piece | None = None
    exited_at: float | None = None
    handled = 0

    def interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            log(f"[{time.monotonic() - started:8.2f}s] labctl: Ctrl-C — SIGINT sent once to vagrant (PID {proc.pid})")
            if notice:
                notice(
                    f"==> Interrupted: Vagrant (PID {proc.pid}) is cleaning up; labctl keeps the lab lock and "
                    "waits for it to exit"
                )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        elif notice:
            # A second SIGINT would make Vagrant quit without cleaning up: it is not forwarded.
            notice(f"    still waiting for Vagrant (PID {proc.pid}) to finish its clean-up…")

    while open_streams or proc.poll() is None:
        while handled < len(interrupts):
            handled += 1
            interrupt()
        if proc.poll() is not None:
            # A child Vagrant left behind (an ssh ControlMaster, say) may hold the pipes open:
            # read what is there, then stop waiting for an end of file that may never come.
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 5 and events.empty():
                break
        try:
            item = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if isinstance(item, str):
            open_streams -= 1
            continue
        if item.redraw:
            # A progress meter redraws many times a second: the log keeps one every 5 s.
            if item.seconds - last_logged_redraw >= 5:
                log(f"[{item.seconds:8.2f}s] {item.text.strip()}")
                last_logged_redraw, pending_redraw = item.seconds, None
            else:
                pending_redraw = item
        else:
            if pending_redraw is not None:
                log(f"[{pending_redraw.seconds:8.2f}s] {pending_redraw.text.strip()}")
                pending_redraw = None
            mark = " stderr:" if item.stream == "stderr" else ""
            log(f"[{item.seconds:8.2f}s]{mark} {item.text}")
            if item.stream == "stdout":
                stdout.append(item.text)
            elif item.text.strip():
                stderr_tail.append(f"[{item.seconds:7.1f}s] {item.text.strip()}")
        if on_piece is not None:
            on_piece(item)
    if pending_redraw is not None:
        log(f"[{pending_redraw.seconds:8.2f}s] {pending_redraw.text.strip()}")
    for t in readers:
        t.join(timeout=1)
    returncode = proc.wait()
    seconds = time.monotonic() - started
    log(f"[{seconds:8.2f}s] vagrant exited {returncode}")
    return Outcome(returncode, "\n".join(stdout) + ("\n" if stdout else ""), seconds, list(stderr_tail), interrupted)


def failure_message(what: str, outcome: Outcome, cwd: Path, log_path: Path, stdout_tail: list[str]) -> str:
    """What a failed vagrant command said, for the console: Vagrant's stderr (its error) in order with
    the seconds it came at; without any stderr, the last lines of its output."""
    head = f"`vagrant {what}` failed (exit {outcome.returncode}) in {cwd} — full output in {log_path}"
    lines = outcome.stderr_tail or stdout_tail
    if not lines:
        return head
    label = "Vagrant said (stderr):" if outcome.stderr_tail else "last output:"
    return head + f"\n  {label}\n" + "\n".join(f"    {line}" for line in lines)
