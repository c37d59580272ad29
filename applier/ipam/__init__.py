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
    gc(keep) -> GcOutcome              CNI GC: release what no (container id, ifname) in `keep` owns;
                                       host-local goes on past a failed release and reports it
    status() -> None                   CNI STATUS: CniError (50) when an ADD could not get an address

Which config a host-local call reads follows CNI_COMMAND: ADD's includes the requested
addresses (CNI_ARGS IP, args.cni.ips, runtimeConfig.ips); DEL's and CHECK's leave them
out, so a bad one cannot block a cleanup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from applier.ipam.delegate import check_plugin_name, run_ipam_plugin
from applier.ipam.hostlocal import Allocation, HostLocalStore, Lease
from intent.env import CniRequest
from intent.errors import DELEGATE_FAILED, GENERIC_GO_ERROR, INVALID_NETWORK_CONFIG, IO_FAILURE, CniError
from intent.ipam_config import HostLocalConfig, IpamRoute, load_host_local, parse_cidr, parse_dns, parse_ip, parse_route
from intent.safe_io import read_regular

__all__ = [
    "Allocation",
    "HostLocalStore",
    "IpamResult",
    "Lease",
    "held_addresses",
    "ipam_add",
    "ipam_check",
    "ipam_del",
    "ipam_preview",
    "ipam_rollback",
    "ipam_type",
    "is_host_local",
    "parse_resolv_conf",
    "result_from_document",
    "validate_ipam",
]

HOST_LOCAL = "host-local"
MAX_RESOLV_CONF = 1 << 20


@dataclass(frozen=True)
class IpamResult:
    leases: tuple[Lease, ...]
    routes: tuple[IpamRoute, ...] = ()
    # CNI result form {nameservers, domain, search, options}, only non-empty keys.
    dns: Mapping[str, Any] = field(default_factory=dict)
    # True when every lease was already held by this attachment (a retried ADD).
    reused: bool = False
    # host-local: the leases this ADD took (not found held); a failed ADD gives back these only.
    reserved: tuple[Lease, ...] = field(default=(), compare=False)  # how this result came about, not what it is


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


def ipam_add(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> IpamResult:
    kind = ipam_type(conf)
    if kind == HOST_LOCAL:
        config = load_host_local(conf, request.args)
        # Read before allocating, as the reference does, so a bad resolvConf leaks no lease.
        dns = _host_local_dns(config)
        store = HostLocalStore(config)
        leases = store.allocate(request.container_id, request.ifname)
        return IpamResult(tuple(leases), config.routes, dns, reused=store.reused, reserved=tuple(store.reserved))
    doc = run_ipam_plugin(kind, "ADD", stdin, request)
    if doc is None:
        raise CniError(DELEGATE_FAILED, f"{kind} ADD failed", "the plugin printed no result")
    return result_from_document(doc, kind)


def ipam_del(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> None:
    """Idempotent: releasing what is not held succeeds."""
    kind = ipam_type(conf)
    if kind == HOST_LOCAL:
        config = _load_for_existing(conf)
        HostLocalStore(config).release(request.container_id, request.ifname)
        return
    run_ipam_plugin(kind, "DEL", stdin, request)


def ipam_rollback(
    conf: Mapping[str, Any], stdin: bytes, request: CniRequest, ipam: IpamResult, was_running: bool
) -> None:
    """Undo a failed ADD's IPAM, and only what that ADD allocated.

    host-local: the lease files it reserved, never one it found held (a retried
    ADD of a running pod, or one killed after IPAM, finds its own lease: the pod
    may be using it, and releasing it would let the store hand it out again).
    A delegated plugin cannot say which leases are new: it is asked to DEL only
    when the attachment did not run before this ADD.
    """
    kind = ipam_type(conf)
    if kind == HOST_LOCAL:
        if ipam.reserved:
            store = HostLocalStore(_load_for_existing(conf))
            store.release_ips(request.container_id, request.ifname, [lease.ip for lease in ipam.reserved])
        return
    if not was_running:
        run_ipam_plugin(kind, "DEL", stdin, request)


def held_addresses(conf: Mapping[str, Any], request: CniRequest) -> list[Any]:
    """host-local: every address the store holds for this attachment, in the conf's sets or not."""
    store = HostLocalStore(_load_for_existing(conf))
    return [ip for ip, _ in store.held_anywhere(request.container_id, request.ifname)]


def ipam_check(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> IpamResult:
    kind = ipam_type(conf)
    if kind == HOST_LOCAL:
        config = _load_for_existing(conf)
        leases = HostLocalStore(config).check(request.container_id, request.ifname)
        if leases is None:
            msg = f"host-local: Failed to find address added by container {request.container_id}"
            raise CniError(GENERIC_GO_ERROR, msg)
        return IpamResult(tuple(leases), config.routes, _host_local_dns(config))
    doc = run_ipam_plugin(kind, "CHECK", stdin, request)
    return IpamResult(()) if doc is None else result_from_document(doc, kind)


def ipam_preview(conf: Mapping[str, Any], request: CniRequest) -> IpamResult | None:
    """What ADD would hand out now, without writing anything; None when only running the plugin could tell."""
    if not is_host_local(conf):
        return None
    config = load_host_local(conf, request.args)
    leases = HostLocalStore(config).preview(request.container_id, request.ifname)
    return IpamResult(tuple(leases), config.routes, _host_local_dns(config))


def validate_ipam(conf: Mapping[str, Any], request: CniRequest) -> None:
    """Refuse a bad `ipam` before anything is locked, opened or torn down.

    ADD checks everything, requested addresses included; DEL and CHECK check
    what they use (a bad requested IP must not block a cleanup).
    """
    kind = ipam_type(conf)
    if kind == HOST_LOCAL:
        if request.command == "ADD":
            load_host_local(conf, request.args)
        else:
            _load_for_existing(conf)
    elif kind:
        check_plugin_name(kind)


def _load_for_existing(conf: Mapping[str, Any]) -> HostLocalConfig:
    """DEL and CHECK only look leases up: a bad requested IP must not stop a cleanup."""
    trimmed = dict(conf)
    trimmed.pop("args", None)
    runtime = trimmed.get("runtimeConfig")
    if isinstance(runtime, Mapping):
        trimmed["runtimeConfig"] = {k: v for k, v in runtime.items() if k != "ips"}
    return load_host_local(trimmed, {})


def _host_local_dns(config: HostLocalConfig) -> dict[str, Any]:
    if config.resolv_conf is None:
        return dict(config.dns)
    try:  # a FIFO would block ADD for ever, a device is not a resolv.conf: refused, never opened
        data = read_regular(config.resolv_conf, MAX_RESOLV_CONF)
    except OSError as err:
        raise CniError(IO_FAILURE, f"ipam.resolvConf: cannot read {config.resolv_conf}: {err.strerror}") from None
    return parse_resolv_conf(data.decode("utf-8", "replace"))


def parse_resolv_conf(text: str) -> dict[str, Any]:
    """The reference's dns.go reading: nameserver, domain, search and options lines; the rest is ignored."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            nameservers.append(fields[1])
        elif fields[0] == "domain":
            domain = fields[1]
        elif fields[0] == "search":
            search += fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    dns = {"nameservers": nameservers, "domain": domain, "search": search, "options": options}
    return {key: value for key, value in dns.items() if value}


def result_from_document(doc: Mapping[str, Any], plugin_type: str) -> IpamResult:
    """A delegate's result in any CNI version (0.1/0.2 `ip4`/`ip6`, 0.3.0 `ip`, 0.3.1+ `ips`)."""
    try:
        leases: list[Lease] = []
        routes: list[IpamRoute] = []
        listed = doc.get("ips") if doc.get("ips") is not None else doc.get("ip")
        if isinstance(listed, list):
            for i, entry in enumerate(listed):
                leases.append(_lease(entry, f"ips[{i}]", "address", len(leases)))
        else:
            for key in ("ip4", "ip6"):
                entry = doc.get(key)
                if entry is None:
                    continue
                leases.append(_lease(entry, key, "ip", len(leases)))
                routes += _routes(entry.get("routes"), f"{key}.routes")
        routes += _routes(doc.get("routes"), "routes")
        dns = parse_dns(doc.get("dns"), "dns")
    except CniError as err:
        raise CniError(DELEGATE_FAILED, f"{plugin_type} returned an invalid result", err.msg) from None
    return IpamResult(tuple(leases), tuple(routes), dns)


def _lease(entry: object, path: str, key: str, index: int) -> Lease:
    if not isinstance(entry, Mapping):
        raise CniError(INVALID_NETWORK_CONFIG, f"{path}: expected an object")
    address = parse_cidr(entry.get(key), f"{path}.{key}")
    gateway = None if entry.get("gateway") in (None, "") else parse_ip(entry["gateway"], f"{path}.gateway")
    return Lease(address, gateway, index)


def _routes(value: object, path: str) -> list[IpamRoute]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_NETWORK_CONFIG, f"{path}: expected an array")
    return [parse_route(item, f"{path}[{i}]") for i, item in enumerate(value)]
