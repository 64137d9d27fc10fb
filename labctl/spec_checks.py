"""What each lab.yaml field may hold, checked for what it *is* (a host name, a user name, a box,
a path), always against the whole string (``fullmatch``: a trailing newline is not a valid name).

lab.yaml is untrusted input (docs/untrusted-input.md): its values become Ruby, root shell scripts
and cluster-admin manifests. The templates escape every value for where it lands; these checks are
the first wall, so a value that means something else never gets that far. Every message names the
bad value (cut to ~80 characters, printable) and says what to write instead.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

SHOW_LIMIT = 80

# RFC 1123 label (what Kubernetes calls a DNS label): node, lab, StorageClass and Secret names.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
QUANTITY = re.compile(r"[1-9][0-9]{0,5}(Mi|Gi|Ti)")
# POSIX portable user names as useradd accepts them by default (Debian's NAME_REGEX without the
# trailing '$' of machine accounts): lower-case, at most 32 characters.
POSIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Vagrant Cloud box "org/name": each part letters, digits, '.', '_', '-'.
BOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Vagrant reads config.vm.box_version as comma-separated Gem::Requirement constraints
# (hashicorp/vagrant@35f3160 plugins/kernel_v2/config/vm.rb, validate); we accept the plain subset.
BOX_VERSION_PART = re.compile(r"(?:(?:=|!=|>=|<=|>|<|~>) ?)?[0-9]+(?:\.[0-9A-Za-z]+){0,5}")
# libvirt pool and network names: labctl accepts a conservative subset (no '/', no spaces).
LIBVIRT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Ollama's name grammar (ollama/ollama@12734c1 types/model/name.go, isValidByteFor and parts):
# [host/][namespace/]model[:tag]; bytes A-Za-z0-9 _ . -; no '.' in a namespace; never '..'.
OLLAMA_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
OLLAMA_NAME = re.compile(
    rf"(?:(?P<host>{OLLAMA_PART})/)?(?:(?P<ns>[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}})/)?(?P<model>{OLLAMA_PART})"
    rf"(?::(?P<tag>{OLLAMA_PART}))?"
)
KEEP_ALIVE = re.compile(r"-1|0|[0-9]{1,6}[smh]")
PCI_ADDRESS = re.compile(
    r"(?P<domain>[0-9a-fA-F]{4}):(?P<bus>[0-9a-fA-F]{2}):(?P<slot>[0-9a-fA-F]{2})\.(?P<function>[0-7])"
)
EXPORT_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,200}")
IPV4_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
IPV4_NET_TEXT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}")
POOL_TEXT = re.compile(r"(?P<first>[0-9.]{7,15}) ?- ?(?P<last>[0-9.]{7,15})")
PRIVATE_RANGES = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def show(value: object) -> str:
    """A bad value as a message shows it: repr (so a newline reads as \\n), cut to ~80 characters."""
    text = repr(value)
    return text if len(text) <= SHOW_LIMIT else text[: SHOW_LIMIT - 1] + "…"


def _fits(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def dns_label(value: str) -> str:
    if not _fits(DNS_LABEL, value):
        raise ValueError(
            f"{show(value)} is not a valid name — use lower-case letters, digits and '-' (max 63), "
            "starting and ending with a letter or digit"
        )
    return value


def quantity(value: str) -> str:
    if not _fits(QUANTITY, value):
        raise ValueError(f"{show(value)} is not a size — write it like 20Gi or 512Mi")
    return value


def posix_user(value: str | None) -> str | None:
    if value is not None and not _fits(POSIX_USER, value):
        raise ValueError(
            f"{show(value)} is not a user name — use lower-case letters, digits, '_' and '-' (max 32), "
            "starting with a letter or '_', e.g. ubuntu"
        )
    return value


def box_name(value: str) -> str:
    if value and not _fits(BOX_NAME, value):
        raise ValueError(f"{show(value)} is not a Vagrant box — write org/name, e.g. bento/ubuntu-24.04 (or leave it empty)")
    return value


def box_version(value: str) -> str:
    if value and not all(_fits(BOX_VERSION_PART, part.strip()) for part in value.split(",")):
        raise ValueError(
            f"{show(value)} is not a box version — write a version like 202510.26.0, or a constraint like "
            "'>= 202510.0' (or leave it empty)"
        )
    return value


def libvirt_name(value: str | None) -> str | None:
    if value is not None and not _fits(LIBVIRT_NAME, value):
        raise ValueError(
            f"{show(value)} is not a libvirt name — use letters, digits, '.', '_' and '-' (max 64), "
            "as `virsh pool-list` / `virsh net-list` show them"
        )
    return value


def ollama_model(value: str) -> str:
    if not _fits(OLLAMA_NAME, value) or ".." in value or len(value) > 200:
        raise ValueError(
            f"{show(value)} is not an Ollama model name — write it like llama3.2:1b or namespace/model:tag "
            "(letters, digits, '_', '.', '-'; no '..', no leading '/')"
        )
    return value


def keep_alive(value: str) -> str:
    if not _fits(KEEP_ALIVE, value):
        raise ValueError(f"{show(value)} is not a duration — write it like 30m, 2h or 45s (-1 = forever, 0 = unload at once)")
    return value


def pci_address(value: str) -> str:
    if not _fits(PCI_ADDRESS, value):
        raise ValueError(
            f"{show(value)} is not a PCI address — write it as DDDD:BB:SS.F, e.g. 0000:01:00.0 (see `lspci -D`)"
        )
    return value.lower()


def export_path(value: str) -> str:
    parts = value.split("/")
    if (
        not _fits(EXPORT_PATH, value)
        or posixpath.normpath(value) != value
        or any(p in (".", "..") for p in parts)
        or value == "/"
    ):
        raise ValueError(
            f"{show(value)} is not an absolute, normalised folder — write it like /srv/nfs/lab "
            "(letters, digits, '.', '_', '-'; no '..', no trailing '/')"
        )
    return value


def dns_name(value: str) -> str:
    """An RFC 1123 host name: dot-separated labels, at most 253 characters."""
    labels = value.split(".")
    if len(value) > 253 or not all(_fits(DNS_LABEL, label) for label in labels):
        raise ValueError(
            f"{show(value)} is not a DNS name — write lower-case labels of letters, digits and '-' joined by "
            "dots, e.g. webui.lab.local"
        )
    return value


def key_path(value: Any) -> Any:
    text = str(value)
    if len(text) > 4096 or any(not c.isprintable() for c in text):
        raise ValueError(f"{show(text)} is not a usable file path — write the path of the private key file, e.g. ~/.ssh/id_ed25519")
    return value


# ---- types: text only where text is expected (YAML turns 01:00 and 1e3 into numbers) ------------
def ipv4_text(value: object) -> object:
    """An address must be written as dotted text: pydantic would take the integer 3232244068 too."""
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if not isinstance(value, str) or not _fits(IPV4_TEXT, value):
        raise ValueError(f"{show(value)} is not an IPv4 address — write it like 192.168.33.100")
    return value


def ipv4_network_text(value: object) -> object:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    if not isinstance(value, str) or not _fits(IPV4_NET_TEXT, value):
        raise ValueError(f"{show(value)} is not an IPv4 network — write it like 192.168.33.0/24")
    return value


def private_subnet(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    if not any(value.subnet_of(r) for r in PRIVATE_RANGES):
        raise ValueError(
            f"{value} is not a private range — use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 "
            "(RFC 1918), e.g. 192.168.33.0/24"
        )
    if value.prefixlen > 28:
        raise ValueError(f"{value} is too small for the nodes and the MetalLB pool — use a /28 or larger, e.g. a /24")
    return value


def metallb_pool(value: str) -> str:
    m = POOL_TEXT.fullmatch(value) if isinstance(value, str) else None
    try:
        if m is None:
            raise ValueError
        a, b = ipaddress.IPv4Address(m["first"]), ipaddress.IPv4Address(m["last"])
    except ValueError:
        raise ValueError(
            f"{show(value)} is not an address range — write it as FIRST-LAST, e.g. 192.168.33.2-192.168.33.5"
        ) from None
    if a > b:
        raise ValueError(f"{show(value)}: the first address must not come after the last — write FIRST-LAST")
    return f"{a}-{b}"


def strict_scalar(annotation: Any, value: object) -> None:
    """Reject what pydantic's lax mode would quietly convert: ``true`` for a number (it becomes 1),
    a number or "yes" for true/false. Raises ValueError with the message."""
    args = set(getattr(annotation, "__args__", ()) or ()) | {annotation}
    if int in args and bool not in args and isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a whole number — write digits (true/false is not a number)")
    if bool in args and int not in args and value is not None and not isinstance(value, bool):
        raise ValueError(f"{show(value)} is not true or false — write true or false")
    if isinstance(value, set | frozenset):
        raise ValueError("is a set (!!set), not a list — write it as [a, b] or as '- item' lines")
    if str in args and isinstance(value, bytes | bytearray):
        raise ValueError("is binary data (!!binary), not text — write the value as plain text")


Name = Annotated[str, AfterValidator(dns_label)]
Quantity = Annotated[str, AfterValidator(quantity)]
UserName = Annotated[str | None, AfterValidator(posix_user)]
BoxName = Annotated[str, AfterValidator(box_name)]
BoxVersion = Annotated[str, AfterValidator(box_version)]
LibvirtName = Annotated[str, AfterValidator(libvirt_name)]
OptLibvirtName = Annotated[str | None, AfterValidator(libvirt_name)]
ModelName = Annotated[str, AfterValidator(ollama_model)]
DnsName = Annotated[str, AfterValidator(dns_name)]
ExportPath = Annotated[str, AfterValidator(export_path)]
KeyPath = Annotated[Path | None, AfterValidator(key_path)]
Address = Annotated[ipaddress.IPv4Address, BeforeValidator(ipv4_text)]
OptAddress = Annotated[ipaddress.IPv4Address | None, BeforeValidator(lambda v: v if v is None else ipv4_text(v))]
Network = Annotated[ipaddress.IPv4Network, BeforeValidator(ipv4_network_text)]
