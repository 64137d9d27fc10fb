"""Real validators over every rendered bundle: kubernetes-validate --strict at the pinned Kubernetes
version for core kinds, and the JSON schemas in manifests/schemas/ for the custom resources."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from manifest_cases import CASES, bundles, objects

from labctl.manifests import CUSTOM_RESOURCE_SCHEMAS, validation_problems
from labctl.versions import PINS

pytestmark = pytest.mark.validators


@pytest.mark.parametrize("case", list(CASES))
def test_every_bundle_passes_strict_validation(case: str) -> None:
    objs = objects(case)
    assert objs
    assert validation_problems(objs) == []


def _deployment() -> dict:
    return copy.deepcopy(next(o for o in objects("default") if o["kind"] == "Deployment"))


def test_validation_catches_an_unknown_field() -> None:
    broken = _deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    problems = validation_problems([broken])
    assert len(problems) == 1 and "imagePullPolicyy" in problems[0]


def test_validation_catches_a_wrong_type() -> None:
    broken = _deployment()
    broken["spec"]["replicas"] = "one"
    assert validation_problems([broken])


def test_unknown_custom_resource_is_a_failure_not_a_warning() -> None:
    crd = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    assert "no schema" in validation_problems([crd])[0]


@pytest.mark.parametrize(
    "kind,mutate,needle",
    [
        ("IPAddressPool", lambda o: o["spec"].update(autoassign=False), "autoassign"),
        ("IPAddressPool", lambda o: o["spec"].update(addresses=["192.168.33.2 to 192.168.33.5"]), "does not match"),
        ("IPAddressPool", lambda o: o["spec"].pop("addresses"), "addresses"),
        ("IPAddressPool", lambda o: o["spec"].update(autoAssign="yes"), "not of type"),
        ("L2Advertisement", lambda o: o["spec"].update(ipAddressPool=["x"]), "ipAddressPool"),
        ("L2Advertisement", lambda o: o.update(apiVersion="metallb.io/v1beta2"), "no schema"),
        (
            "L2Advertisement",
            lambda o: o["spec"].update(nodeSelectors=[{"matchExpressions": [{"key": "a", "operator": "Is"}]}]),
            "Is",
        ),
    ],
)
def test_metallb_schemas_reject_wrong_fields(kind: str, mutate, needle: str) -> None:
    obj = copy.deepcopy(next(o for o in objects("default") if o["kind"] == kind))
    assert validation_problems([obj]) == []
    mutate(obj)
    problems = validation_problems([obj])
    assert problems and needle in " ".join(problems), problems


def test_schemas_exist_for_every_custom_resource_we_emit() -> None:
    from labctl.resources import manifests_dir

    emitted = {(o["apiVersion"], o["kind"]) for case in CASES for o in objects(case)}
    # Built-in API groups kubernetes-validate knows; any other dotted group is a custom resource
    # (gateway.networking.k8s.io is a CRD despite its k8s.io suffix).
    builtin = {"networking.k8s.io", "rbac.authorization.k8s.io", "node.k8s.io", "storage.k8s.io"}
    custom = {pair for pair in emitted if "." in pair[0].split("/")[0] and pair[0].split("/")[0] not in builtin}
    assert custom == set(CUSTOM_RESOURCE_SCHEMAS)
    for name in CUSTOM_RESOURCE_SCHEMAS.values():
        assert (manifests_dir() / "schemas" / name).is_file()


def test_kubernetes_validate_cli_strict_passes_bundle_and_fails_broken_file(tmp_path: Path) -> None:
    """The CLI the README tells people to run: exit 0 on our apps bundle, non-zero on a broken one."""
    good = tmp_path / "apps.yaml"
    good.write_text(bundles("all-options")["apps"])
    cmd = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", PINS["kubernetes"], "--quiet"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "broken.yaml"
    bad.write_text(good.read_text().replace("containerPort: 11434", "containerPort: 11434\n              hostPorts: 1", 1))
    fail = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert fail.returncode != 0 and "hostPorts" in fail.stdout + fail.stderr


def test_httproute_schema_rejects_a_wrong_field() -> None:
    """Our own schema for Gateway API's HTTPRoute (kubernetes-validate has none): a backendRef
    without a port or a misspelt field fails."""
    route = next(o for o in objects("gateway-api-route") if o["kind"] == "HTTPRoute")
    assert validation_problems([route]) == []
    broken = copy.deepcopy(route)
    del broken["spec"]["rules"][0]["backendRefs"][0]["port"]
    assert validation_problems([broken])
    broken = copy.deepcopy(route)
    broken["spec"]["parentRef"] = broken["spec"].pop("parentRefs")
    assert validation_problems([broken])
