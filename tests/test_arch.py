"""One architecture per lab (provider.arch, labctl/arch.py): how `auto` resolves, the combinations
`validate` refuses, and an Apple Silicon lab that plans and renders arm64 everywhere while an amd64
lab plans exactly what it did before.

Vagrant facts (hashicorp/vagrant): `config.vm.box_architecture` exists from v2.4.0 (CHANGELOG "core:
Add architecture support [GH-13239]"; absent from plugins/kernel_v2/config/vm.rb at v2.3.7), and
Vagrant names architectures like Debian (lib/vagrant/util/platform.rb: x86_64 → amd64, aarch64 →
arm64). This machine has Debian's Vagrant 2.3.4, so the ≥ 2.4 branch of the rendered guard is run by
plain Ruby against a recording stand-in for Vagrant's config object, and the < 2.4 branch by the
real `vagrant validate` too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.arch import arch_of_machine, resolve, with_arch
from labctl.cli import cli
from labctl.errors import SpecError
from labctl.plan import build_plan
from labctl.render import render_vagrantfile
from labctl.spec import LabSpec

GPU = {
    "provider": {"type": "libvirt"},
    "nodes": {"gpu_worker": {"name": "gpu1", "ip": "192.168.33.110", "cpus": 4, "memory_mib": 8192, "pci": "0000:01:00.0"}},
}


def on_host(monkeypatch: pytest.MonkeyPatch, arch: str, os_name: str = "linux") -> None:
    monkeypatch.setenv("LABCTL_HOST_ARCH", arch)
    monkeypatch.setenv("LABCTL_HOST_OS", os_name)


def apple_silicon_lab(monkeypatch: pytest.MonkeyPatch, data: dict | None = None) -> LabSpec:
    on_host(monkeypatch, "arm64", "darwin")
    return LabSpec.from_dict(data or {})


# ---- resolving auto ---------------------------------------------------------------------------------
def test_auto_follows_the_host(monkeypatch):
    assert LabSpec.default().arch == "amd64"  # the tests' host (conftest): amd64 Linux
    spec = apple_silicon_lab(monkeypatch)
    assert spec.provider.arch == "auto" and spec.arch == "arm64"
    # lab.yaml keeps `auto`: the resolved value is not written back into the spec's data.
    assert spec.model_dump()["provider"]["arch"] == "auto"


def test_machine_names_and_provider_ssh():
    assert [arch_of_machine(m) for m in ("x86_64", "AMD64", "aarch64", "arm64")] == ["amd64", "amd64", "arm64", "arm64"]
    # ssh machines are not the host: auto means amd64 there, arm64 machines say so.
    assert resolve("auto", "ssh", machine_arch="arm64") == "amd64"
    assert resolve("arm64", "ssh", machine_arch="amd64") == "arm64"
    assert resolve("auto", "virtualbox", machine_arch="riscv64") == "amd64"


# ---- combinations validate refuses -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "data", "message"),
    [
        (
            ("arm64", "darwin"),
            {"provider": {"arch": "amd64"}},
            "provider.arch: amd64 VMs cannot run under VirtualBox on an Apple Silicon Mac — VirtualBox runs only "
            "guests of the host's own architecture (no emulation); set provider.arch: auto (or arm64)",
        ),
        (
            ("amd64", "linux"),
            {"provider": {"arch": "arm64"}},
            "provider.arch: arm64 VMs cannot run under VirtualBox on an amd64 host",
        ),
        (("amd64", "linux"), {"provider": {"type": "libvirt", "arch": "arm64"}}, "full-system emulation of another CPU"),
        (("arm64", "linux"), {**GPU}, "nodes.gpu_worker: the GPU worker needs an NVIDIA card passed through by libvirt"),
    ],
)
def test_impossible_combinations_are_refused_with_the_reason(monkeypatch, host, data, message):
    on_host(monkeypatch, *host)
    with pytest.raises(SpecError) as err:
        LabSpec.from_dict(data)
    assert message in str(err.value)


def test_validate_cli_refuses_an_amd64_lab_on_apple_silicon(monkeypatch, tmp_path):
    on_host(monkeypatch, "arm64", "darwin")
    monkeypatch.chdir(tmp_path)
    Path("lab.yaml").write_text("provider:\n  arch: amd64\n")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    assert "provider.arch: amd64 VMs cannot run under VirtualBox on an Apple Silicon Mac" in result.output
    # The same file on an Intel laptop is fine.
    on_host(monkeypatch, "amd64", "linux")
    assert CliRunner().invoke(cli, ["validate"]).exit_code == 0


def test_possible_combinations_pass(monkeypatch):
    assert apple_silicon_lab(monkeypatch, {"provider": {"arch": "arm64"}}).arch == "arm64"
    on_host(monkeypatch, "arm64", "darwin")
    assert LabSpec.from_dict({"provider": {"type": "ssh"}, "nodes": _ssh_nodes()}).arch == "amd64"
    on_host(monkeypatch, "amd64", "linux")
    assert LabSpec.from_dict(GPU).arch == "amd64"


def _ssh_nodes() -> dict:
    return {
        "master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "u"},
        "workers": [],
        "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u"},
    }


# ---- the plan: arm64 everywhere, amd64 as before ------------------------------------------------------
def plan_texts(spec: LabSpec, cache=None) -> list[tuple[str, str, str, str]]:
    out = []
    for step in build_plan(spec, include_provider=True, cache=cache).steps:
        for cmd in step.commands:
            out.append((step.id, cmd.host, cmd.check, cmd.run))
    return out


def test_an_apple_silicon_lab_plans_the_same_steps_with_arm64_wherever_amd64_was(monkeypatch):
    amd64 = plan_texts(LabSpec.default())
    arm64 = plan_texts(apple_silicon_lab(monkeypatch))
    assert [(s, h) for s, h, _, _ in arm64] == [(s, h) for s, h, _, _ in amd64]
    for (step, host, check, run), (_, _, check64, run64) in zip(amd64, arm64, strict=True):
        assert check64 == check.replace("amd64", "arm64"), (step, host)
        assert run64 == run.replace("amd64", "arm64"), (step, host)
    assert not any("amd64" in c + r for _, _, c, r in arm64)


def test_every_architecture_dependent_download_uses_the_template_variable():
    """No download line of a playbook (a URL, an image platform) names an architecture literally:
    each says {{ arch }} (apt repositories are architecture-neutral: they follow dpkg's)."""
    from labctl.resources import playbooks_dir

    for book in sorted(playbooks_dir().glob("*.yaml")):
        for line in book.read_text(encoding="utf-8").splitlines():
            if "://" not in line and "--platform" not in line:
                continue
            for word in ("amd64", "arm64", "x86_64", "aarch64"):
                assert word not in line, f"{book.name} names {word} in a download: use {{{{ arch }}}}\n{line}"


# ---- the Vagrantfile ------------------------------------------------------------------------------------
RUBY_VAGRANT_STANDIN = r"""
# TEST STAND-IN for Vagrant's config object: records every `x.y = value` and runs every block, so a
# rendered Vagrantfile can be evaluated by plain Ruby with any Vagrant::VERSION.
module Vagrant
  VERSION = ENV.fetch("STANDIN_VAGRANT_VERSION")
  class Recorder
    def initialize(path, log) = (@path, @log = path, log)
    def method_missing(name, *args, **_kw, &blk)
      if name.to_s.end_with?("=")
        @log << "#{@path}.#{name.to_s.chomp("=")}=#{args.first.inspect}"
        return args.first
      end
      child = Recorder.new("#{@path}.#{name}", @log)
      blk&.call(child)
      child
    end
    def respond_to_missing?(*) = true
  end
  def self.configure(_version)
    log = []
    yield Recorder.new("config", log)
    puts log
  end
end
load ARGV.fetch(0)
"""


def run_with_vagrant_version(vagrantfile: str, version: str, tmp_path: Path) -> list[str]:
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed (it comes with vagrant)")
    (tmp_path / "Vagrantfile").write_text(vagrantfile, encoding="utf-8")
    (tmp_path / "standin.rb").write_text(RUBY_VAGRANT_STANDIN, encoding="utf-8")
    done = subprocess.run(
        [ruby, str(tmp_path / "standin.rb"), str(tmp_path / "Vagrantfile")],
        env={"STANDIN_VAGRANT_VERSION": version, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(("version", "pinned"), [("2.4.9", True), ("2.4.0", True), ("2.3.4", False), ("2.3.7", False)])
def test_box_architecture_is_pinned_only_where_vagrant_knows_it(monkeypatch, tmp_path, version, pinned):
    settings = run_with_vagrant_version(render_vagrantfile(apple_silicon_lab(monkeypatch)), version, tmp_path)
    assert ('config.vm.box_architecture="arm64"' in settings) is pinned
    assert 'config.vm.box="bento/ubuntu-24.04"' in settings  # the stand-in saw the whole file


def test_arm64_vagrantfile_names_no_other_architecture(monkeypatch):
    text = render_vagrantfile(apple_silicon_lab(monkeypatch))
    assert 'config.vm.box_architecture = "arm64"' in text
    assert "amd64" not in text


@pytest.mark.validators
def test_vagrant_234_rejects_an_unguarded_box_architecture(monkeypatch, tmp_path):
    """Why the guard exists: Debian's Vagrant 2.3.4 refuses the setting outright."""
    from tests.test_vagrantfile_validate import VBOXMANAGE_SHIM, vagrant_validate

    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant is not installed")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "VBoxManage").write_text(VBOXMANAGE_SHIM)
    (shim / "VBoxManage").chmod(0o755)
    text = render_vagrantfile(apple_silicon_lab(monkeypatch))
    guarded = vagrant_validate(vagrant, text, "virtualbox", tmp_path / "guarded", shim)
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr
    unguarded = text.replace('if Gem::Version.new(Vagrant::VERSION) >= Gem::Version.new("2.4.0")', "if true")
    assert unguarded != text
    refused = vagrant_validate(vagrant, unguarded, "virtualbox", tmp_path / "unguarded", shim)
    assert refused.returncode != 0 and "box_architecture" in refused.stdout + refused.stderr


@pytest.mark.validators
def test_arm64_plan_passes_shellcheck(monkeypatch, tmp_path):
    from labctl.context import fact_variable
    from labctl.transport.script import stdin_payload
    from tests.test_playbooks_shellcheck import shellcheck

    spec = apple_silicon_lab(monkeypatch)
    files = []
    for n, step in enumerate(build_plan(spec, include_provider=False).steps):
        env = {fact_variable(f): "kubeadm join 192.0.2.1:6443 --token x" for f in step.uses}
        for m, cmd in enumerate(step.commands):
            for phase, script in (("check", cmd.check), ("run", cmd.run)):
                path = tmp_path / f"{n:03d}-{m}-{phase}.sh"
                path.write_bytes(stdin_payload(script, env))
                files.append(path)
    assert len(files) > 50
    assert shellcheck(files) == []


def test_with_arch_changes_only_the_architecture(monkeypatch):
    spec = LabSpec.default()
    other = with_arch(spec, "arm64")
    assert other.arch == "arm64" and spec.arch == "amd64"
    assert other.model_dump() == spec.model_dump()
    with pytest.raises(ValueError):
        with_arch(spec, "riscv64")


def test_handout_carries_the_mac_steps_and_says_when_a_lab_is_arm64(monkeypatch):
    from labctl.handout import render

    spec = apple_silicon_lab(monkeypatch)
    text = render(spec, build_plan(spec), "md")
    assert "Apple Silicon: 7.1 or newer" in text and "VirtualBox 7.1 needs Vagrant 2.4.2 or newer" in text
    assert "This lab is arm64" in text
    on_host(monkeypatch, "amd64", "linux")
    amd64 = render(LabSpec.default(), build_plan(LabSpec.default()), "md")
    assert "On a Mac:" in amd64 and "This lab is arm64" not in amd64


def test_lock_records_the_arch_and_one_lock_serves_both(monkeypatch):
    from labctl.lock import build_lock, drift

    mac = build_lock(apple_silicon_lab(monkeypatch))
    assert mac["arch"] == "arm64" and "arch" in mac["notes"]
    on_host(monkeypatch, "amd64", "linux")
    pc = LabSpec.default()
    assert build_lock(pc)["arch"] == "amd64"
    # The versions are the same on both: a lock made on a Mac raises no drift on a PC.
    assert drift(pc, mac) == []
    assert mac["locked"] == build_lock(pc)["locked"]
