"""Read the facts `loxi.node.liveness` classifies: loxi's host veths, their peers' namespaces, stores, locks, addresses.

Read-only, and from the calling thread's namespace, which is the node (loxi-plan
moves there first with `--node-netns`). A host veth says whose it is through
its alias (`compiler.graph.owner_alias`) and where its peer is through
IFLA_LINK and IFLA_LINK_NETNSID; the peer namespace's path is found by asking
the kernel for the nsid of each namespace the node can name (the bind mounts
under /var/run/netns and /run/netns, then every process's /proc/PID/ns/net).
Namespaces that vanish while they are read are skipped: other pods come and go.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from applier.ipam import HostLocalStore
from applier.locks import attachment_lock_name, lock_dir
from compiler.graph import HOST_VETH_PREFIX, parse_owner_alias
from compiler.model import NODE_NS, POD_NS
from intent.ipam_config import NETWORK_NAME_RE, HostLocalConfig
from loxi.node.liveness import AllocationTrace, IPAddress, Owner, VethTrace

if TYPE_CHECKING:
    from applier.netns import Namespaces

IFF_UP = 0x1
NSID_NOT_ASSIGNED = (-1, 0xFFFFFFFF)  # the kernel's answer for a peer whose namespace is dying
NETNS_DIRS = ("/var/run/netns", "/run/netns")


@dataclass(frozen=True)
class LinkInfo:
    name: str
    index: int
    kind: str | None
    master: int | None
    up: bool
    alias: str | None = None
    peer_index: int | None = None  # IFLA_LINK: a veth's peer
    peer_nsid: int | None = None  # IFLA_LINK_NETNSID: None when the peer is in this namespace


@dataclass(frozen=True)
class NamespaceRef:
    path: str
    nsid: int | None  # as the node sees it; None when it has none


def read_links(ipr: Any) -> list[LinkInfo]:
    """One dump of the node's links."""
    links = []
    for msg in ipr.get_links():
        info = msg.get("IFLA_LINKINFO")
        links.append(
            LinkInfo(
                name=msg.get("IFLA_IFNAME"),
                index=msg["index"],
                kind=info.get("IFLA_INFO_KIND") if info else None,
                master=msg.get("IFLA_MASTER") or None,
                up=bool(msg["flags"] & IFF_UP),
                alias=msg.get("IFLA_IFALIAS"),
                peer_index=msg.get("IFLA_LINK") or None,
                peer_nsid=msg.get("IFLA_LINK_NETNSID"),
            )
        )
    return links


def loxi_veths(links: Sequence[LinkInfo]) -> list[LinkInfo]:
    return [link for link in links if link.kind == "veth" and link.name.startswith(HOST_VETH_PREFIX)]


def peer_alive(link: LinkInfo, indexes: set[int]) -> bool:
    """Does the veth still have its other end? In this namespace it must be listed; elsewhere the kernel
    names the peer's namespace by an nsid, which it cannot give a namespace that is being destroyed."""
    if not link.peer_index:
        return False
    if link.peer_nsid is None:
        return link.peer_index in indexes
    return link.peer_nsid not in NSID_NOT_ASSIGNED


def _candidate_paths() -> Iterator[str]:
    for directory in NETNS_DIRS:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                yield os.path.join(directory, name)
    with contextlib.suppress(OSError):
        for name in sorted((n for n in os.listdir("/proc") if n.isdigit()), key=int):
            yield f"/proc/{name}/ns/net"


def _open_ns(path: str) -> int | None:
    """An fd on the network namespace at `path`; None when it is not one, is gone, or is not ours to open."""
    from applier.netns import open_netns_if_any

    return open_netns_if_any(path)


def namespaces(ipr: Any, want_nsids: bool = True) -> list[NamespaceRef]:
    """Every network namespace the node can name, once each (the first path wins), but the node's own."""
    seen: set[tuple[int, int]] = set()
    with contextlib.suppress(OSError):
        own = os.stat("/proc/thread-self/ns/net")
        seen.add((own.st_dev, own.st_ino))
    out = []
    for path in _candidate_paths():
        try:
            info = os.stat(path)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        fd = _open_ns(path)
        if fd is None:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            nsid = _nsid(ipr, fd) if want_nsids else None
        finally:
            os.close(fd)
        out.append(NamespaceRef(path, nsid))
    return out


def _nsid(ipr: Any, fd: int) -> int | None:
    from applier.netlink import NetlinkError

    try:
        answer = ipr.get_netnsid(fd=fd)
    except NetlinkError:
        return None
    nsid = answer.get("nsid") if answer else None
    return None if nsid is None or nsid in NSID_NOT_ASSIGNED else nsid


def veth_traces(links: Sequence[LinkInfo], refs: Iterable[NamespaceRef]) -> list[VethTrace]:
    """loxi's host veths with their owners, peers and bridges."""
    by_index = {link.index: link for link in links}
    paths = {ref.nsid: ref.path for ref in refs if ref.nsid is not None}
    indexes = set(by_index)
    out = []
    for link in loxi_veths(links):
        master = by_index.get(link.master) if link.master else None
        alive = peer_alive(link, indexes)
        out.append(
            VethTrace(
                name=link.name,
                owner=parse_owner_alias(link.alias),
                peer_alive=alive,
                peer_index=link.peer_index,
                peer_nsid=link.peer_nsid if alive else None,
                peer_netns=paths.get(link.peer_nsid) if alive and link.peer_nsid is not None else None,
                bridge=master.name if master else None,
                up=link.up,
            )
        )
    return out


# -- inside the pods' namespaces ------------------------------------------------------


def _addresses(msgs: Iterable[Any]) -> list[tuple[int, IPAddress, int]]:
    out = []
    for msg in msgs:
        text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if text:
            out.append((msg["index"], ipaddress.ip_address(text), msg["prefixlen"]))
    return out


def _in_namespace(path: str) -> Namespaces | None:
    """Handles on the node and on the namespace at `path` (its sockets are opened in it)."""
    fd = _open_ns(path)
    if fd is None:
        return None
    from applier.netns import Namespaces

    return Namespaces(pod_fd=fd)


@dataclass(frozen=True)
class PodEnd:
    ifname: str | None  # the veth's peer as named in the pod; None when it could not be read
    addresses: tuple[str, ...]  # "address/prefix", link-local IPv6 left out


def pod_end(path: str, index: int) -> PodEnd:
    """The peer of a host veth, read inside its namespace."""
    from applier.netlink import NetlinkError
    from applier.netlink.dumps import addresses_of

    spaces = _in_namespace(path)
    if spaces is None:
        return PodEnd(None, ())
    try:
        with spaces:
            ipr = spaces.ipr(POD_NS)
            name = ipr.link("get", index=index)[0].get("IFLA_IFNAME")
            found = _addresses(addresses_of(ipr, index))
    except (OSError, NetlinkError):
        return PodEnd(None, ())
    shown = tuple(f"{ip}/{prefix}" for _, ip, prefix in found if not ip.is_link_local)
    return PodEnd(name, shown)


def addresses_in_use(refs: Iterable[NamespaceRef], wanted: set[IPAddress]) -> dict[IPAddress, str]:
    """Which of `wanted` some interface carries, in the node's namespace or any other it can name."""
    from applier.netlink import NetlinkError

    found: dict[IPAddress, str] = {}

    def scan(ipr: Any, where: str) -> None:
        for index, ip, _ in _addresses(ipr.addr("dump", index=0)):
            if ip in wanted and ip not in found:
                try:
                    name = ipr.link("get", index=index)[0].get("IFLA_IFNAME")
                except NetlinkError:
                    name = f"link {index}"
                found[ip] = f"{name} in {where}"

    from applier.netns import Namespaces

    if not wanted:
        return found
    with Namespaces() as spaces:
        scan(spaces.ipr(NODE_NS), "the node's namespace")
    for ref in refs:
        spaces = _in_namespace(ref.path)
        if spaces is None:
            continue
        try:
            with spaces:
                scan(spaces.ipr(POD_NS), ref.path)
        except (OSError, NetlinkError):
            continue
    return found


# -- the stores and the locks -------------------------------------------------------------


def read_store(data_dir: str, network: str) -> tuple[AllocationTrace, ...] | None:
    """The allocations of one network's store; None when there is no such store."""
    if not os.path.isdir(os.path.join(data_dir, network)):
        return None
    store = HostLocalStore(HostLocalConfig(network_name=network, data_dir=data_dir, range_sets=()))
    directory = os.path.join(data_dir, network)
    return tuple(AllocationTrace(network, directory, a.ip, a.container_id, a.ifname) for a in store.allocations())


def store_networks(data_dir: str) -> list[str]:
    """The networks with a store under `data_dir` (a missing directory holds none)."""
    try:
        entries = sorted(os.scandir(data_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e.name for e in entries if e.is_dir(follow_symlinks=False) and NETWORK_NAME_RE.fullmatch(e.name)]


def attachment_busy(owner: Owner) -> bool:
    """Is an ADD or DEL of this attachment running now (it holds the attachment lock)?

    The lock file is opened read-only and never created, and a shared lock is
    taken and dropped at once: an ADD that comes along waits microseconds.
    """
    path = os.path.join(lock_dir(), attachment_lock_name(*owner) + ".lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # closing drops the lock
    return False
