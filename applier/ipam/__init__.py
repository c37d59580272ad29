"""IPAM as the engine sees it: one object per request, whatever serves the `ipam` type.

host-local is served in-process (no fork/exec, shared lock discipline, and a
side-effect-free preview for planning); any other type is exec'd like libcni
would and its result, in whatever CNI version it speaks, is brought to the same
`IpamResult` shape, so neither the engine nor `loxi-plan` branches on the IPAM kind.

The interface (`Ipam`, below): `open_ipam(conf, stdin, request)` parses and checks the
`ipam` section once for this request (code 7 for a bad one, before anything is locked
or opened) and returns an object bound to that conf, stdin and request, or None when
the conf has no IPAM. Every later question of the call goes to that object:

    kind: str                          "host-local", or the delegated plugin's type
    store_dir: str                     host-local's `<dataDir>/<name>`; "" for a delegate
    range_sets: tuple[RangeSet, ...]   the conf's pools; () when a delegate keeps its own
    routes: tuple[IpamRoute, ...]      the conf's `ipam.routes`; () for a delegate (its result has them)
    add() -> IpamResult                CNI ADD: allocate (a retried ADD gets back what it holds)
    rollback(added, was_running)       undo a failed ADD, and only what that ADD took
    delete() -> None                   CNI DEL (`del` is a keyword); idempotent
    check() -> IpamResult              CNI CHECK: what the attachment holds; CniError when nothing
    preview() -> IpamResult | None     what add() would hand out now, writing nothing (loxi-plan
                                       dry-run); None when only running the plugin could tell
    held() -> tuple[Lease, ...] | None every address held for this attachment (the lease files DEL
                                       would release), in the conf's range sets or not (then
                                       range_set_index -1 and a full-length prefix); None when
                                       unknown without running the plugin
    gc(keep) -> GcOutcome              CNI GC: release what no (container id, ifname) in `keep` owns:
                                       removed, errors (host-local goes on past a failed release)
                                       and the owners released (the engine tears those down)
    status() -> None                   CNI STATUS: CniError (50) when an ADD could not get an address

Which config a host-local call reads follows CNI_COMMAND: ADD's includes the requested
addresses (CNI_ARGS IP, args.cni.ips, runtimeConfig.ips); DEL's and CHECK's leave them
out, so a bad one cannot block a cleanup; GC's and STATUS's drop CNI_ARGS only, as before.

Modules: `result` (Lease, IpamResult, GcOutcome), `hostlocal` (HostLocalIpam, resolv.conf),
`allocator` (HostLocalStore: which address), `store` (the lease directory on disk),
`delegate` (DelegatedIpam: the exec and its result in any CNI version).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any, Protocol

from applier.ipam.allocator import Allocation, HostLocalStore
from applier.ipam.delegate import DelegatedIpam, result_from_document
from applier.ipam.hostlocal import HOST_LOCAL, HostLocalIpam, parse_resolv_conf
from applier.ipam.result import GcOutcome, IpamResult, Lease
from intent.env import CniRequest
from intent.errors import INVALID_NETWORK_CONFIG, CniError
from intent.ipam_values import IpamRoute, RangeSet

__all__ = [
    "HOST_LOCAL",
    "Allocation",
    "GcOutcome",
    "HostLocalStore",
    "Ipam",
    "IpamResult",
    "Lease",
    "ipam_type",
    "is_host_local",
    "open_ipam",
    "parse_resolv_conf",
    "result_from_document",
]


class Ipam(Protocol):
    """One conf's IPAM bound to one request; `HostLocalIpam` and `DelegatedIpam` implement it."""

    kind: str
    store_dir: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[IpamRoute, ...]

    def add(self) -> IpamResult: ...
    def rollback(self, added: IpamResult, was_running: bool) -> None: ...
    def delete(self) -> None: ...
    def check(self) -> IpamResult: ...
    def preview(self) -> IpamResult | None: ...
    def held(self) -> tuple[Lease, ...] | None: ...
    def gc(self, keep: Set[tuple[str, str]]) -> GcOutcome: ...
    def status(self) -> None: ...


def ipam_type(conf: Mapping[str, Any]) -> str:
    ipam = conf.get("ipam")
    if ipam is None:
        return ""
    if not isinstance(ipam, Mapping):
        raise CniError(INVALID_NETWORK_CONFIG, "ipam: expected an object")
    kind = ipam.get("type") or ""
    if not isinstance(kind, str):
        raise CniError(INVALID_NETWORK_CONFIG, "ipam.type: expected a string")
    return kind


def is_host_local(conf: Mapping[str, Any]) -> bool:
    return ipam_type(conf) == HOST_LOCAL


def open_ipam(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> Ipam | None:
    """The conf's IPAM for this request, its config parsed and checked now (code 7); None without IPAM."""
    kind = ipam_type(conf)
    if not kind:
        return None
    if kind == HOST_LOCAL:
        return HostLocalIpam(conf, request)
    return DelegatedIpam(kind, stdin, request)
