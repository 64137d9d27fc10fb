"""Merging lab kubeconfigs into a shared file, as several labs and kubectl do at the same time.

The lock is kubectl's own: ``<file>.lock`` made with O_CREATE|O_EXCL and removed afterwards
(kubernetes/client-go tools/clientcmd/loader.go, lockFile/unlockFile/lockName). Every test works on a
temporary kubeconfig."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from labctl import kubeconfig as kc
from labctl.errors import LifecycleError
from labctl.lab import Lab
from labctl.spec import LabSpec

ADMIN_CONF = """\
apiVersion: v1
clusters: [{name: kubernetes, cluster: {server: "https://10.0.2.15:6443"}}]
users: [{name: kubernetes-admin, user: {client-key-data: S0VZ}}]
contexts: [{name: kubernetes-admin@kubernetes, context: {cluster: kubernetes, user: kubernetes-admin}}]
kind: Config
"""


def _lab(root: Path, name: str) -> Lab:
    data = LabSpec.default().model_dump(mode="json", exclude_none=True)
    data["name"] = name
    lab = Lab.of(LabSpec.from_dict(data), state_dir=root / name)
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    lab.kubeconfig.write_text(kc.rewrite_kubeconfig(ADMIN_CONF, name, "https://192.168.33.100:6443"))
    return lab


def _merge_many(root: str, name: str, target: str, rounds: int) -> None:
    lab = _lab(Path(root), name)
    for _ in range(rounds):
        kc.merge_kubeconfig_file(lab, Path(target))


def _kubectl_like_writer(target: str, rounds: int) -> None:
    """What `kubectl config set-context` does (client-go ModifyConfig): lock, read, modify, write."""
    path = Path(target)
    for i in range(rounds):
        with kc.kubeconfig_lock(path):
            data = yaml.safe_load(path.read_text()) if path.exists() else None
            data = data or {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
            data["contexts"] = [c for c in data.get("contexts") or [] if c["name"] != "kubectl-own"]
            data["contexts"].append({"name": "kubectl-own", "context": {"cluster": "x", "user": "y", "namespace": f"n{i}"}})
            kc.replace_file(path, yaml.safe_dump(data))


def test_concurrent_merges_lose_no_context(tmp_path):
    target = tmp_path / "kube" / "config"
    ctx = multiprocessing.get_context("fork")
    names = [f"lab{i}" for i in range(6)]
    procs = [ctx.Process(target=_merge_many, args=(str(tmp_path / "labs"), n, str(target), 15)) for n in names]
    procs.append(ctx.Process(target=_kubectl_like_writer, args=(str(target), 15)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = yaml.safe_load(target.read_text())
    assert sorted(c["name"] for c in data["contexts"]) == sorted(["kubectl-own", *(f"labctl-{n}" for n in names)])
    assert sorted(c["name"] for c in data["clusters"]) == sorted(f"labctl-{n}" for n in names)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["config"]  # no lock, no temporary file left


def test_a_held_lock_is_waited_for_then_explained(tmp_path, monkeypatch):
    lab = _lab(tmp_path, "a")
    target = tmp_path / "kube" / "config"
    target.parent.mkdir()
    (target.parent / "config.lock").write_text("")  # kubectl is writing (or crashed while writing)
    monkeypatch.setattr(kc, "LOCK_WAIT", 0.3)
    started = time.monotonic()
    with pytest.raises(LifecycleError, match=r"config is locked: .*config\.lock exists .* remove"):
        kc.merge_kubeconfig_file(lab, target)
    assert time.monotonic() - started >= 0.3
    assert not target.exists()


def test_a_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch):
    lab = _lab(tmp_path, "a")
    target = tmp_path / "config"
    target.write_text("apiVersion: v1\nkind: Config\ncontexts: [{name: work, context: {}}]\n")
    before = target.read_text()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        kc.merge_kubeconfig_file(lab, target)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "config"]  # temporary file and lock gone


def test_the_merge_target_is_recorded_and_removal_uses_it(tmp_path, monkeypatch):
    lab = _lab(tmp_path, "a")
    first, second = tmp_path / "k1", tmp_path / "k2"
    kc.merge_kubeconfig_file(lab, first)
    kc.merge_kubeconfig_file(lab, second)
    assert kc.merged_targets(lab.state_dir) == [first, second]
    monkeypatch.setenv("KUBECONFIG", str(lab.kubeconfig))  # what `export KUBECONFIG=$(labctl kubeconfig)` does
    assert kc.remove_merged_contexts(lab) == [first, second]
    for path in (first, second):
        assert "labctl-a" not in path.read_text()
    assert lab.kubeconfig.read_text().count("labctl-a") >= 1  # the lab's own file is not edited
    assert not (lab.state_dir / kc.MERGED_RECORD).exists()
