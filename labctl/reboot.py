"""Reboot a host in the middle of a plan and wait until it is back (steps with ``reboot: true``).

Some work only takes effect after a reboot — the NVIDIA driver's kernel module replaces nouveau
only on the next boot. A step that needs one says ``reboot: true``; after its run succeeds the
runner calls :func:`reboot_and_wait`, which

1. leaves a marker in ``/run`` (a tmpfs: a real reboot empties it) and starts the reboot in the
   background, detached from the SSH session, so that the command returns before the host goes down;
2. polls the host with a new connection until it answers *and* the marker is gone — an answer
   while the marker is still there is the old boot, not yet gone down;
3. gives up at the deadline (the step's timeout) with a message that says what to look at.

The caller then runs the step's check once more: it must pass on the new boot.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labctl.transport.base import Host, Result, Transport

MARKER = "/run/labctl-reboot-pending"
# Detached (setsid, every descriptor closed) so the SSH channel closes at once; the short sleep
# lets this command's exit status reach labctl before sshd is stopped.
START = f"touch {MARKER}\nsetsid sh -c 'sleep 2; systemctl reboot' </dev/null >/dev/null 2>&1 &\n"
# Exits 0 only on the new boot.
BACK = f"[ ! -e {MARKER} ]"


def reboot_and_wait(
    transport: Transport,
    host: Host,
    *,
    deadline_s: float,
    poll_s: float = 3.0,
    say: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Result | None:
    """Reboot ``host``; None once it answers from a new boot, else a failed Result saying why."""
    started = clock()
    begun = transport.run(host, START, sudo=True, timeout=60)
    if not begun.ok:
        return begun
    say(f"    {host.name}: rebooting; waiting up to {deadline_s:.0f}s for it to come back")
    last = ""
    while clock() - started < deadline_s:
        sleep(poll_s)
        res = transport.run(host, BACK, sudo=True, timeout=30)
        if res.ok:
            say(f"    {host.name}: back after its reboot ({clock() - started:.0f}s)")
            return None
        # Refused or lost connections while it reboots are expected; so is the old boot answering.
        last = res.error or ("still the old boot" if res.exit_code == 1 else res.stderr_tail(3))
    return Result(
        host.name,
        -1,
        duration=clock() - started,
        cause="unreachable",  # exit 3: the host did not answer again (errors.CAUSE_EXIT_CODES)
        error=(
            f"{host.name} did not come back from its reboot within {deadline_s:.0f}s (last answer: {last or 'none'}); "
            "look at its console (VirtualBox/virt-manager) — a driver that hangs the boot shows there"
        ),
    )
