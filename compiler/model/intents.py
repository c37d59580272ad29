"""What the compiler is given besides the conf: who the pod is and what IPAM handed out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from compiler.model.base import IPAddress, IPInterface, IPNetwork


@dataclass(frozen=True)
class AddressLease:
    """An address handed out by IPAM, as the compiler needs it."""

    interface: IPInterface
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class RouteIntent:
    """A route requested by IPAM (`ipam.routes`); gateway None means the family's gateway."""

    dst: IPNetwork
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class Attachment:
    """Who the pod is: the identity that names the host veth and the IPAM files."""

    network: str
    container_id: str
    ifname: str
    netns: str


def attachment_digest(network: str, container_id: str, ifname: str, purpose: str = "") -> str:
    """The hex SHA-256 of an attachment's identity (network, container id, ifname), the
    one hash every name derived from it is cut from: the host veth, the netfilter tag,
    the attachment lock; `purpose` salts it for a value that must differ from those
    (the spoof check's MAC)."""
    parts = (purpose, network, container_id, ifname) if purpose else (network, container_id, ifname)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
