"""The lab spec: lab.yaml loaded into validated, frozen pydantic models.

Nothing else in labctl reads raw YAML. ``LabSpec.load(path)`` either returns a complete spec with
every default filled in, or raises ``SpecError`` with one line per problem, each naming the field
and the fix. With no file, ``LabSpec.default()`` is the seed lab (see README "lab.yaml reference").
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from labctl import spec_checks as checks
from labctl.errors import SpecError
from labctl.spec_checks import (
    PCI_ADDRESS,
    Address,
    BoxName,
    BoxVersion,
    DnsName,
    ExportPath,
    KeyPath,
    LibvirtName,
    ModelName,
    Name,
    OptAddress,
    OptLibvirtName,
    Quantity,
    UserName,
)
from labctl.spec_checks import Network as NetworkText

API_VERSION = "labctl.dev/v1alpha1"
KIND = "Lab"
# Field checks (names, users, boxes, paths, addresses) live in labctl.spec_checks, the cross-field rules
# in labctl.spec_rules, the warnings of a valid lab in labctl.spec_warnings, the one-line error
# messages in labctl.spec_errors: they import this module only for its types (no import cycle).


class Model(BaseModel):
    """Base: unknown keys are errors (with a did-you-mean) and specs never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_types(cls, value: object, info: Any) -> object:
        # Lax pydantic takes `cpus: true` as 1 and "yes" as true; lab.yaml says what it means.
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is not None:
            checks.strict_scalar(field.annotation, value)
        return value


class Node(Model):
    name: Name = Field(description="VM and host name (lower-case letters, digits, '-'); unique in the lab")
    ip: Address = Field(description="address on the lab network; unique, inside network.subnet")
    cpus: int = Field(ge=1, le=64, description="virtual CPUs")
    memory_mib: int = Field(ge=512, le=262144, description="memory in MiB (8192 = 8 GiB)")
    disk_gib: int | None = Field(
        default=None,
        ge=10,
        le=2048,
        description="grow the box's disk, and the root file system on it, to this many GiB (VMs holding models); "
        "null = box size (on libvirt a Kubernetes node gets what its images need); Vagrant providers only",
    )
    # Only for provider: ssh (machines that already exist).
    ssh_user: UserName = Field(default=None, description="provider ssh only: login user (needs passwordless sudo)")
    ssh_port: int = Field(default=22, ge=1, le=65535, description="provider ssh only: SSH port")
    ssh_key: KeyPath = Field(default=None, description="provider ssh only: private key file; null = ssh-agent/default")


class GpuNode(Node):
    pci: str = Field(description="host PCI address of the GPU to pass through, e.g. 0000:01:00.0")

    @field_validator("pci", mode="before")
    @classmethod
    def _pci(cls, value: object) -> str:
        if not isinstance(value, str):
            # YAML 1.1 reads an unquoted 0000:01:00.0 as a base-60 number.
            what = f"the number {checks.show(value)}" if isinstance(value, int | float) else f"a {type(value).__name__}"
            raise ValueError(f'YAML read it as {what} — write the PCI address in quotes, e.g. pci: "0000:01:00.0"')
        return checks.pci_address(value)

    def pci_parts(self) -> dict[str, str]:
        m = PCI_ADDRESS.fullmatch(self.pci)
        assert m is not None  # validated on load
        return {k: "0x" + v for k, v in m.groupdict().items()}


class NfsNode(Node):
    export: ExportPath = Field(default="/srv/nfs/lab", description="exported folder on the NFS VM")


class Nodes(Model):
    master: Node = Node(name="master", ip=ipaddress.IPv4Address("192.168.33.100"), cpus=4, memory_mib=8192)
    workers: list[Node] = Field(
        default_factory=lambda: [
            Node(name="worker1", ip=ipaddress.IPv4Address("192.168.33.101"), cpus=4, memory_mib=8192)
        ],
        min_length=0,
        max_length=20,
    )
    nfs: NfsNode = NfsNode(name="nfs", ip=ipaddress.IPv4Address("192.168.33.11"), cpus=1, memory_mib=1024)
    gpu_worker: GpuNode | None = None


class Libvirt(Model):
    driver: Literal["kvm", "qemu"] = Field(default="kvm", description="qemu = software emulation (no /dev/kvm)")
    storage_pool: LibvirtName = Field(default="default", description="libvirt storage pool for the VM disks")
    management_network: OptLibvirtName = Field(default=None, description="libvirt network for vagrant's NAT NIC")


class Provider(Model):
    type: Literal["virtualbox", "libvirt", "ssh"] = "virtualbox"
    box: BoxName = Field(default="", description="empty = the pinned box (labctl versions)")
    box_version: BoxVersion = Field(default="", description="empty = the pinned box version")
    boot_timeout: int = Field(default=900, ge=60, le=7200, description="seconds Vagrant waits for each VM to boot")
    linked_clones: bool = Field(
        default=True, description="VirtualBox: clone VMs from one imported box (libvirt always uses copy-on-write)"
    )
    synced_folder: bool = Field(default=False, description="share the lab folder as /vagrant in every VM")
    host_memory_budget_mib: int = Field(default=24576, ge=1024, description="warn when the VMs need more")
    libvirt: Libvirt = Libvirt()
    verify_host_keys: bool = Field(default=True, description="provider ssh: check known_hosts")
    arch: Literal["auto", "amd64", "arm64"] = Field(
        default="auto",
        description="CPU architecture of every node: auto = the host's (arm64 on Apple Silicon; amd64 with provider ssh)",
    )


class Network(Model):
    subnet: Annotated[NetworkText, AfterValidator(checks.private_subnet)] = ipaddress.IPv4Network("192.168.33.0/24")
    pod_cidr: NetworkText = ipaddress.IPv4Network("10.10.0.0/16")
    service_cidr: NetworkText = Field(
        default=ipaddress.IPv4Network("10.96.0.0/12"), description="Kubernetes Service addresses (kubeadm default)"
    )
    metallb_pool: str = Field(default="192.168.33.2-192.168.33.5", description="FIRST-LAST, inside the subnet")

    def pool_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        first, _, last = self.metallb_pool.partition("-")
        return ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())

    @field_validator("metallb_pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        return checks.metallb_pool(value)


class Storage(Model):
    class_name: Name = Field(default="nfs-csi", description="the default StorageClass (csi-driver-nfs on the NFS VM)")
    models_size: Quantity = Field(default="20Gi", description="volume for Ollama's models (ReadWriteMany)")
    webui_size: Quantity = Field(default="20Gi", description="volume for Open WebUI's data")
    # Retain: a rebuilt lab finds its models again instead of re-downloading gigabytes.
    on_delete: Literal["retain", "delete", "archive"] = "retain"


class Ollama(Model):
    models: list[ModelName] = Field(default_factory=lambda: ["llama3.2:1b"], max_length=50)
    keep_alive: Annotated[str, AfterValidator(checks.keep_alive)] = Field(
        default="30m", description="OLLAMA_KEEP_ALIVE: how long a model stays loaded (-1 = forever)"
    )
    num_parallel: int = Field(default=2, ge=1, le=64, description="OLLAMA_NUM_PARALLEL: requests served at once per model")
    max_loaded_models: int = Field(default=1, ge=1, le=16, description="OLLAMA_MAX_LOADED_MODELS: models in memory at once")
    expose: bool = Field(default=False, description="LoadBalancer instead of ClusterIP (not for classrooms)")

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a model twice — keep each model once")
        return value


class OpenWebUI(Model):
    port: int = Field(default=8080, ge=1, le=65535, description="port of the Open WebUI LoadBalancer service")
    address: OptAddress = Field(default=None, description="empty = first MetalLB address")
    auth: bool = Field(default=True, description="WEBUI_AUTH: require a login (the first account becomes admin)")


class Options(Model):
    gpu: bool = Field(default=False, description="NVIDIA device plugin + RuntimeClass; Ollama on the GPU worker")
    autoscaling: bool = Field(default=False, description="HPA on Ollama: 2-10 replicas on CPU (needs metrics-server)")
    monitoring: bool = Field(default=False, description="Prometheus + Grafana (+ blackbox probe of Ollama), ClusterIP")
    ingress: bool = Field(default=False, description="Open WebUI by host name through an existing ingress controller")
    # Which controller serves the class decides the annotations (timeouts, websockets): labctl deploy
    # reads it from the cluster's IngressClass; labctl create takes it from here.
    ingress_class: Name = Field(default="nginx", description="IngressClass of the ingress (k3s serves traefik)")
    ingress_controller: Literal["ingress-nginx", "nginx-inc", "traefik", "other"] = Field(
        default="ingress-nginx",
        description="controller behind ingress_class: ingress-nginx, nginx-inc (F5 NGINX), traefik, other (no annotations)",
    )
    ingress_host: DnsName = Field(default="webui.lab.local", description="host name of the ingress")
    ingress_tls: bool = Field(default=False, description="serve the ingress over TLS with ingress_tls_secret")
    ingress_tls_secret: Name = Field(default="webui-tls", description="kubernetes.io/tls Secret for ingress_tls")
    # Gateway API, the successor of Ingress: an HTTPRoute for Open WebUI on ingress_host, attached
    # to a Gateway the cluster's owner runs (its listeners must allow routes from this namespace).
    gateway: str = Field(
        default="",
        pattern=r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        description="Gateway (NAMESPACE/NAME or NAME) for an HTTPRoute to Open WebUI on ingress_host; empty = none",
    )
    # Docker Hub limits anonymous pulls per address: a room behind one NAT runs out. A pull-through
    # mirror is written to containerd's hosts.toml for docker.io on every node (playbook
    # registry-mirror); a dockerconfigjson Secret lets the apps' pods pull as a logged-in user.
    registry_mirror: str = Field(
        default="",
        pattern=r"^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?)?$",
        description="pull-through mirror for docker.io images on every node, e.g. https://mirror.gcr.io; empty = none",
    )
    image_pull_secret: Name | Literal[""] = Field(
        default="", description="kubernetes.io/dockerconfigjson Secret the apps' pods pull with; empty = anonymous"
    )
    # The OpenAI-compatible upstream's URL and key never go in lab.yaml: name a Secret (keys
    # OPENAI_API_BASE_URL, OPENAI_API_KEY) created in the apps namespace; empty = no upstream.
    openai_secret: Name | Literal[""] = Field(
        default="", description="Secret with OPENAI_API_BASE_URL/OPENAI_API_KEY for an upstream API; empty = none"
    )


class Apps(Model):
    ollama: Ollama = Ollama()
    openwebui: OpenWebUI = OpenWebUI()
    options: Options = Options()


class LabSpec(Model):
    apiVersion: Literal["labctl.dev/v1alpha1"] = Field(default=API_VERSION, description="format version of this file")
    kind: Literal["Lab"] = Field(default=KIND, description="always Lab")
    name: Name = Field(default="llm-lab", description="the lab's name: state folder, VM group, kubeconfig context")
    offline: bool = Field(
        default=False, description="skip every step that needs the internet (tests, air-gapped demos)"
    )
    provider: Provider = Provider()
    network: Network = Network()
    nodes: Nodes = Nodes()
    storage: Storage = Storage()
    apps: Apps = Apps()
    _arch: str = PrivateAttr(default="amd64")  # provider.arch resolved at load time (labctl/arch.py)

    # ---- derived views (no state of their own) ------------------------------------------------
    def all_nodes(self) -> list[tuple[str, Node]]:
        """(field path, node) for every VM, in boot order: nfs first (the cluster mounts it)."""
        out: list[tuple[str, Node]] = [("nodes.nfs", self.nodes.nfs), ("nodes.master", self.nodes.master)]
        out += [(f"nodes.workers[{i}]", w) for i, w in enumerate(self.nodes.workers)]
        if self.nodes.gpu_worker is not None:
            out.append(("nodes.gpu_worker", self.nodes.gpu_worker))
        return out

    def roles_of(self, node: Node) -> tuple[str, ...]:
        # Names are unique (validated), so they identify the node's place in the spec.
        if node.name == self.nodes.master.name:
            return ("k8s", "control_plane")
        if node.name == self.nodes.nfs.name:
            return ("nfs",)
        if self.nodes.gpu_worker is not None and node.name == self.nodes.gpu_worker.name:
            return ("k8s", "workers", "gpu")
        return ("k8s", "workers")

    @property
    def box(self) -> str:
        from labctl.versions import PINS

        return self.provider.box or PINS[f"box_{self._box_provider}"]

    @property
    def box_version(self) -> str:
        from labctl.versions import PINS

        return self.provider.box_version or PINS[f"box_{self._box_provider}_version"]

    @property
    def _box_provider(self) -> str:
        return "libvirt" if self.provider.type == "libvirt" else "virtualbox"

    @property
    def webui_address(self) -> ipaddress.IPv4Address:
        return self.apps.openwebui.address or self.network.pool_range()[0]

    def memory_mib(self) -> int:
        return sum(n.memory_mib for _, n in self.all_nodes())

    # ---- cross-field checks ---------------------------------------------------------------------
    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> LabSpec:
        if isinstance(info.context, dict) and info.context.get("skip_cross"):
            return self  # spec_errors.cross_problems_despite runs them itself, on a repaired copy
        from labctl.spec_rules import cross_problems

        problems = list(cross_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _resolve_arch(self) -> LabSpec:
        from labctl.arch import arch_problems, resolve

        self._arch = resolve(self.provider.arch, self.provider.type)
        problems = list(arch_problems(self, self._arch))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def arch(self) -> str:
        """The lab's CPU architecture, Debian's name (amd64/arm64): provider.arch with auto resolved."""
        return self._arch

    # ---- loading --------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> LabSpec:
        return cls()

    @classmethod
    def load(cls, path: Path | str) -> LabSpec:
        from labctl.spec_load import read_text

        path = Path(path)
        return cls.from_yaml(read_text(path), source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "lab.yaml") -> LabSpec:
        from labctl.spec_load import check_keys, check_shape

        check_shape(text, source)  # depth and alias expansion, before any object is built
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
        except _DuplicateKey as err:
            raise SpecError(source, [str(err)]) from None
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
            raise SpecError(
                source, [f"invalid YAML at {where}: {err.problem} — fix the indentation or quoting there"]
            ) from None
        except yaml.YAMLError as err:
            raise SpecError(source, [f"invalid YAML: {checks.show(str(err))} — fix the file's syntax"]) from None
        except (ValueError, OverflowError) as err:  # e.g. an integer of 5,000 digits
            raise SpecError(source, [f"a value YAML cannot turn into a number: {checks.show(str(err))} — write a plain value"]) from None
        except RecursionError:  # check_shape caps the depth; this is the last guard
            raise SpecError(source, ["nested too deeply — check the indentation and brackets"]) from None
        check_keys(data, source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError(
                source,
                [
                    f"the top level is a {type(data).__name__}, not a mapping of keys — start the file with "
                    "'apiVersion: labctl.dev/v1alpha1' and 'kind: Lab' lines (see `labctl init`)"
                ],
            )
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "lab.yaml") -> LabSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            from labctl.spec_errors import cross_problems_despite, cut, explain, screenful

            problems = explain(err, cls)
            # Fields failed, so the cross-field checks never ran: run them on a copy with the bad
            # fields at their defaults, keeping only findings that do not involve a bad field,
            # so one run reports everything (a duplicate address next to an unknown key).
            problems += cross_problems_despite(cls, data, err)
        raise SpecError(source, screenful([cut(p) for p in problems]))


# ---------------------------------------------------------------------------------------------------
class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except that a key written twice in one mapping is an error: plain YAML keeps the
    last one silently, so a second ``workers:`` would quietly replace the first list."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                mark = key_node.start_mark
                raise _DuplicateKey(
                    f"line {mark.line + 1}, column {mark.column + 1}: a {type(key).__name__} is used as a key — "
                    "keys are words like 'name' or 'workers'"
                )
            if key in first_line:
                mark = key_node.start_mark
                raise _DuplicateKey(
                    f"line {mark.line + 1}, column {mark.column + 1}: key {checks.show(key)} appears twice in the same "
                    f"mapping (first on line {first_line[key]}) — keep one of them"
                )
            first_line.setdefault(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


