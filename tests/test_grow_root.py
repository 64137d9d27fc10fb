"""The node-prep step that grows a VM's root file system (`disk_gib`), run for real on loop devices.

The check and run scripts are taken from the plan of a lab with `disk_gib` set, exactly as the
runner would send them, with one change: their first line `mnt=/` names the test's mount point
instead of this machine's root. Each case makes a small disk image, a file system on it (on a
partition, like a cloud image, or on the whole disk, like the e2e box), mounts it, grows the image,
and checks that the step's check says "not done", its run grows every layer while mounted, and the
check then says "done" — and that a second run changes nothing.

Not covered here: the LVM layer (bento boxes). This machine's kernel has no device-mapper, so
pvresize/lvextend cannot run; those lines are only shellchecked (test_playbooks_shellcheck.py).
Growing a mounted ext4 needs CAP_SYS_RESOURCE, which the container CI runs in does not have: there
the ext4 case proves the check and the partition layer, and that resize2fs is reached and refused
for exactly that reason; the e2e test grows a mounted ext4 for real inside a VM.
Needs root, losetup with partition scanning, growpart (cloud-guest-utils), mkfs.ext4 and mkfs.xfs:
.ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.plan import build_plan
from labctl.transport.script import stdin_payload
from tests.test_playbooks import big_disks

pytestmark = pytest.mark.disks

MIB = 1 << 20
GROWN = 3 << 30  # above 2^31 bytes on purpose: see node_path
TOOLS = ("losetup", "sfdisk", "partx", "growpart", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "resize2fs", "xfs_growfs")


def _missing() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root")
    return missing


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    missing = _missing()
    if missing:
        pytest.skip(f"growing a real file system needs {', '.join(missing)} (CI installs them: see .ci/run)")


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def step_scripts(mnt: Path) -> tuple[str, str]:
    step = build_plan(big_disks(), include_provider=False).step("node-prep.grow-root-filesystem")
    cmd = next(c for c in step.commands if c.host == "nfs")
    scripts = []
    for script in (cmd.check, cmd.run):
        lines = script.splitlines()
        assert lines[0] == "mnt=/", "the step's first line names the mount point it grows"
        scripts.append("\n".join([f"mnt={mnt}", *lines[1:]]))
    return scripts[0], scripts[1]


@pytest.fixture(scope="module")
def node_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH as on a Debian or Ubuntu VM, whose `awk` is mawk (this host's may be gawk): mawk prints
    integers above 2^31 wrong, which once made the check fail on every disk over 2 GiB."""
    mawk = shutil.which("mawk")
    if mawk is None:
        pytest.skip("mawk (Debian's default awk) is not installed; CI installs it")
    shim = tmp_path_factory.mktemp("node-bin")
    (shim / "awk").symlink_to(mawk)
    return f"{shim}:{os.environ['PATH']}"


def run_script(script: str, path: str) -> subprocess.CompletedProcess[str]:
    """As the runner does: the script on bash's standard input, after set -eo pipefail."""
    return subprocess.run(
        ["bash", "-s"],
        input=stdin_payload(script).decode(),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path},
    )


def fs_type(mnt: Path) -> str:
    return sh("findmnt", "-nvo", "FSTYPE", str(mnt))


def loop_has_partition(loop: str) -> bool:
    return Path(f"/sys/class/block/{Path(loop).name}p1").exists()


def fs_size(mnt: Path) -> int:
    return int(sh("df", "-B1", "--output=size", str(mnt)).splitlines()[-1])


@pytest.fixture
def mounted(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path, str]]:
    """A 400 MiB image with the file system on a partition that fills it, or on the whole loop device."""
    fstype, layout = request.param
    image, mnt = tmp_path / "disk.img", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", f"{400 * MIB}", str(image)], check=True)
    loop = sh("losetup", "--find", "--show", "--partscan", str(image))
    mounted_here = False
    try:
        device = loop
        if layout == "partition":
            subprocess.run(["sfdisk", "-q", loop], input="label: gpt\n,\n", text=True, check=True)
            sh("partx", "--update", loop)
            device = f"{loop}p1"
        sh(f"mkfs.{fstype}", "-q", device)
        sh("mount", device, str(mnt))
        mounted_here = True
        yield image, mnt, loop
    finally:
        if mounted_here:
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


CASES = [("xfs", "partition"), ("xfs", "whole-disk"), ("ext4", "partition"), ("ext4", "whole-disk")]


def can_resize_mounted_ext4() -> bool:
    """The kernel's online ext4 resize asks for CAP_SYS_RESOURCE (bit 24 of the capability set)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def partition_sectors(loop: str) -> int:
    return int(Path(f"/sys/class/block/{Path(loop).name}p1/size").read_text())


@pytest.mark.parametrize("mounted", CASES, indirect=True, ids=["-".join(c) for c in CASES])
def test_grow_root_filesystem_grows_every_layer_while_mounted(mounted: tuple[Path, Path, str], node_path: str) -> None:
    image, mnt, loop = mounted
    check, run = step_scripts(mnt)
    before = fs_size(mnt)
    assert run_script(check, node_path).returncode == 0, "a file system that already fills its disk needs nothing"

    # What `vagrant up` does with disk_gib: the virtual disk grows, nothing inside it does.
    subprocess.run(["truncate", "-s", str(GROWN), str(image)], check=True)
    sh("losetup", "--set-capacity", loop)
    not_done = run_script(check, node_path)
    assert not_done.returncode != 0, "the check must see the room the disk gained"

    grown = run_script(run, node_path)
    if fs_type(mnt) == "ext4" and not can_resize_mounted_ext4():
        # Everything up to the file system layer happened; the kernel refuses the last one here.
        assert grown.returncode == 1
        assert grown.stderr.strip().endswith("resize2fs: Permission denied to resize filesystem"), grown.stderr
        if loop_has_partition(loop):
            assert partition_sectors(loop) * 512 > GROWN - 16 * MIB  # growpart took the partition to the disk's end
        print("ext4 online resize refused without CAP_SYS_RESOURCE: file system layer proven by the e2e VM test")
        return
    assert grown.returncode == 0, grown.stderr
    after = fs_size(mnt)
    assert after > GROWN * 0.9 > before * 2, (before, after)
    assert str(mnt) in grown.stdout  # the run ends with df of the grown file system

    done = run_script(check, node_path)
    assert done.returncode == 0, done.stderr
    again = run_script(run, node_path)  # idempotent: growpart says NOCHANGE, the file system tools find nothing to do
    assert again.returncode == 0, again.stderr
    assert fs_size(mnt) == after


@pytest.mark.parametrize("mounted", [("btrfs", "whole-disk")], indirect=True, ids=["btrfs"])
def test_an_unknown_file_system_is_a_clear_error_not_a_silent_pass(mounted: tuple[Path, Path, str], node_path: str) -> None:
    # btrfs is not one labctl grows: the check never claims "done" and the run says what to do.
    _, mnt, _ = mounted
    check, run = step_scripts(mnt)
    assert run_script(check, node_path).returncode != 0
    res = run_script(run, node_path)
    assert res.returncode == 1
    assert "the root file system is btrfs, which labctl does not grow: grow it by hand" in res.stderr
