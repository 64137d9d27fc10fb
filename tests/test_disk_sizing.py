"""Issue #16 item 8: on libvirt a Kubernetes node's disk defaults to what the images it runs need.

The libvirt box (cloud-image ubuntu-24.04) has a 10 GiB disk; worker1 holds Ollama's and Open
WebUI's images, compressed in containerd's content store and unpacked as snapshots (and, with a
warm cache, their archives until imported). labctl.figures.node_disk_gib is the one source the
Vagrantfile, the root-grow step and the host's disk figures read.
"""

from __future__ import annotations

import os
from pathlib import Path

from labctl.cache_needs import safe_file_name
from labctl.disk_sizing import LIBVIRT_BOX_DISK_GIB, measured_image_mib, node_disk_need_gib
from labctl.figures import VM_DISK_GIB, disk_needed_gib, node_disk_gib
from labctl.lab_pins import images
from labctl.render import render_vagrantfile
from labctl.spec import LabSpec

LIBVIRT = {"provider": {"type": "libvirt"}}


def machine_block(vagrantfile: str, name: str) -> str:
    return vagrantfile.split(f'config.vm.define "{name}" do |node|', 1)[1].split("config.vm.define", 1)[0]


def test_libvirt_nodes_get_the_disk_their_images_need_and_lab_yaml_wins() -> None:
    spec = LabSpec.from_dict(LIBVIRT)
    worker, master, nfs = spec.nodes.workers[0], spec.nodes.master, spec.nodes.nfs
    need = node_disk_need_gib(spec, worker)
    assert need > LIBVIRT_BOX_DISK_GIB
    assert node_disk_gib(spec, worker) == need
    assert node_disk_gib(spec, master) is None, "the control plane's images fit the box's 10 GiB"
    assert node_disk_gib(spec, nfs) is None, "the NFS VM runs no container image"
    # what lab.yaml says is what the VM gets, even a smaller disk (validate warns about that one)
    given = LabSpec.from_dict(
        {**LIBVIRT, "nodes": {"workers": [{"name": "worker1", "ip": "192.168.33.101", "cpus": 4, "memory_mib": 8192, "disk_gib": 12}]}}
    )
    assert node_disk_gib(given, given.nodes.workers[0]) == 12
    # VirtualBox's bento box has room: nothing is grown unless lab.yaml asks
    vbox = LabSpec.default()
    assert [node_disk_gib(vbox, n) for _, n in vbox.all_nodes()] == [None, None, None]


def test_the_libvirt_vagrantfile_grows_only_the_nodes_that_need_it() -> None:
    spec = LabSpec.from_dict(LIBVIRT)
    need = node_disk_need_gib(spec, spec.nodes.workers[0])
    text = render_vagrantfile(spec)
    assert f"libvirt.machine_virtual_size = {need}\n" in machine_block(text, "worker1")
    assert "labctl.figures.node_disk_gib; set nodes.workers[0].disk_gib to choose" in machine_block(text, "worker1")
    assert "machine_virtual_size" not in machine_block(text, "master")
    assert "machine_virtual_size" not in machine_block(text, "nfs")
    assert f"4 CPU, 8192 MiB, {need} GiB disk  (Kubernetes worker)" in text


def test_a_warm_cache_counts_the_archives_and_their_real_sizes(tmp_path: Path) -> None:
    """With `create --cache` on libvirt the node's archives sit on its disk until imported; the
    archives in the cache replace the estimates with real (compressed) sizes."""
    spec = LabSpec.from_dict(LIBVIRT)
    worker = spec.nodes.workers[0]
    empty = tmp_path / "empty-cache"
    (empty / "images").mkdir(parents=True)
    assert measured_image_mib(spec, empty) == {}
    assert node_disk_gib(spec, worker, cache_dir=empty) == node_disk_need_gib(spec, worker, tarballs=True)
    assert node_disk_gib(spec, worker, cache_dir=empty) > node_disk_gib(spec, worker)

    big = tmp_path / "cache"
    (big / "images").mkdir(parents=True)
    ollama = big / "images" / f"{safe_file_name(images(spec)['ollama'])}.tar"
    with ollama.open("wb") as f:  # sparse: 9 GiB that take no room on this disk
        f.truncate(9 << 30)
    assert measured_image_mib(spec, big) == {"ollama": 9 * 1024}
    bigger = node_disk_gib(spec, worker, cache_dir=big)
    assert bigger is not None and bigger > node_disk_gib(spec, worker, cache_dir=empty)
    assert f"libvirt.machine_virtual_size = {bigger}\n" in machine_block(render_vagrantfile(spec, cache_dir=big), "worker1")
    os.remove(ollama)


def test_the_hosts_disk_figures_count_the_grown_disks() -> None:
    """doctor and the handout quote disk_needed_gib: on libvirt it includes worker1's grown disk."""
    libvirt, vbox = LabSpec.from_dict(LIBVIRT), LabSpec.default()
    need = node_disk_need_gib(libvirt, libvirt.nodes.workers[0])
    assert disk_needed_gib(libvirt)[0] == disk_needed_gib(vbox)[0]
    assert disk_needed_gib(libvirt)[1] - disk_needed_gib(vbox)[1] == need - VM_DISK_GIB


def test_a_libvirt_vm_is_not_sent_the_archives_of_images_it_never_runs_on_either_architecture(tmp_path: Path) -> None:
    """The rsync copy of the cache leaves out the pinned images a node does not run; the archives'
    names carry the architecture (arm64: <ref>.arm64.tar, labctl.cache_needs.needed_items), so the
    exclusions must too, or an arm64 master would get Ollama's and Open WebUI's gigabytes."""
    from labctl.arch import with_arch
    from labctl.cache_needs import needed_items
    from labctl.render import cache_excludes

    for arch in ("amd64", "arm64"):
        spec = with_arch(LabSpec.from_dict(LIBVIRT), arch)
        paths = {item.key: item.path for item in needed_items(spec) if item.kind == "image"}
        master = cache_excludes(spec, spec.nodes.master)
        assert paths["images.ollama"] in master and paths["images.open-webui"] in master, arch
        assert paths["images.kube-apiserver"] not in master, arch
        assert paths["images.kube-apiserver"] in cache_excludes(spec, spec.nodes.workers[0]), arch
