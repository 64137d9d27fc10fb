"""The lab lock on file systems that cannot lock or cannot be read back (issue #19 item 9)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket

import pytest

from labctl import lablock
from labctl.lablock import LabBusy, LabLock, LockUnavailable


def test_no_lock_service_is_explained_not_a_traceback(tmp_path, monkeypatch):
    def enolck(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", enolck)
    with pytest.raises(LockUnavailable, match=r"no lock service \(NFS without lockd\?\).*LABCTL_HOME"):
        LabLock(tmp_path, "demo").acquire()


def test_the_holder_is_named_with_its_host_and_pid(tmp_path):
    held = LabLock(tmp_path, "demo", "labctl create").acquire()
    try:
        # flock locks are per open file: a second open in this process is refused like another labctl.
        with pytest.raises(LabBusy, match=rf"host {socket.gethostname()}, PID {os.getpid()}, labctl create"):
            LabLock(tmp_path, "demo").acquire()
    finally:
        held.release()


def test_an_unreadable_holder_still_gives_a_message(tmp_path, monkeypatch):
    held = LabLock(tmp_path, "demo", "labctl create").acquire()

    def refuse(fd: int, n: int, offset: int) -> bytes:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(lablock.os, "pread", refuse)
    try:
        with pytest.raises(LabBusy, match=r"holder unknown: Permission denied reading the lock file"):
            LabLock(tmp_path, "demo").acquire()
    finally:
        held.release()
