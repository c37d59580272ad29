"""host-local behind the one IPAM interface: served in-process, on the reference's on-disk store.

`HostLocalIpam` is what `applier.ipam.open_ipam` makes for `"type": "host-local"`:
the conf is parsed once, when it is made, and every CNI command of the call is
answered from that one `HostLocalConfig` through `HostLocalStore` (the allocator
over the on-disk store). It also reads `resolvConf` the way the reference's
dns.go does, so the result carries the same DNS.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from applier.ipam.allocator import HostLocalStore
from applier.ipam.result import GcOutcome, IpamResult, Lease
from intent.env import CniRequest
from intent.errors import GENERIC_GO_ERROR, IO_FAILURE, NOT_AVAILABLE, CniError
from intent.ipam_config import HostLocalConfig, load_host_local
from intent.safe_io import read_regular

HOST_LOCAL = "host-local"
MAX_RESOLV_CONF = 1 << 20
# Which part of the conf each command's host-local config is read from (see `host_local_config`).
_WITHOUT_REQUESTS = frozenset({"DEL", "CHECK"})


def host_local_config(conf: Mapping[str, Any], request: CniRequest) -> HostLocalConfig:
    """The config this request's command uses: ADD's with the requested addresses (CNI_ARGS IP,
    args.cni.ips, runtimeConfig.ips), DEL's and CHECK's without them (they only look leases up:
    a bad requested IP must not stop a cleanup), any other command's without CNI_ARGS."""
    if request.command == "ADD":  # of CNI_ARGS only IP is read: the pod's name and namespace would defeat the cache
        return load_host_local(conf, {"IP": request.args["IP"]} if "IP" in request.args else {})
    if request.command not in _WITHOUT_REQUESTS:
        return load_host_local(conf, {})
    trimmed = dict(conf)
    trimmed.pop("args", None)
    runtime = trimmed.get("runtimeConfig")
    if isinstance(runtime, Mapping):
        trimmed["runtimeConfig"] = {k: v for k, v in runtime.items() if k != "ips"}
    return load_host_local(trimmed, {})


class HostLocalIpam:
    """host-local for one request (`applier.ipam.Ipam`)."""

    kind = HOST_LOCAL

    def __init__(self, conf: Mapping[str, Any], request: CniRequest) -> None:
        self.request = request
        self.config = host_local_config(conf, request)
        self.store_dir = self.config.store_dir
        self.range_sets = self.config.range_sets
        self.routes = self.config.routes

    def add(self) -> IpamResult:
        # Read before allocating, as the reference does, so a bad resolvConf leaks no lease.
        dns = host_local_dns(self.config)
        store = HostLocalStore(self.config)
        leases = store.allocate(self.request.container_id, self.request.ifname)
        return IpamResult(tuple(leases), self.routes, dns, reused=store.reused, reserved=tuple(store.reserved))

    def rollback(self, added: IpamResult, was_running: bool) -> None:
        """The lease files this ADD reserved, never one it found held (a retried ADD of a running pod, or
        one killed after IPAM, finds its own lease: the pod may be using it, and releasing it would let
        the store hand it out again). `was_running` does not matter: the store knows what is new."""
        if added.reserved:
            ips = [lease.ip for lease in added.reserved]
            HostLocalStore(self.config).release_ips(self.request.container_id, self.request.ifname, ips)

    def delete(self) -> None:
        """Idempotent: releasing what is not held succeeds."""
        HostLocalStore(self.config).release(self.request.container_id, self.request.ifname)

    def check(self) -> IpamResult:
        leases = HostLocalStore(self.config).check(self.request.container_id, self.request.ifname)
        if leases is None:
            msg = f"host-local: Failed to find address added by container {self.request.container_id}"
            raise CniError(GENERIC_GO_ERROR, msg)
        return IpamResult(tuple(leases), self.routes, host_local_dns(self.config))

    def preview(self) -> IpamResult | None:
        leases = HostLocalStore(self.config).preview(self.request.container_id, self.request.ifname)
        return IpamResult(tuple(leases), self.routes, host_local_dns(self.config))

    def held(self) -> tuple[Lease, ...] | None:
        return tuple(HostLocalStore(self.config).held_leases(self.request.container_id, self.request.ifname))

    def gc(self, keep: Set[tuple[str, str]]) -> GcOutcome:
        """Release every allocation no listed attachment owns (a legacy `cid`-only file: no listed
        attachment of that container); goes on past a failed release."""
        store = HostLocalStore(self.config)
        removed: list[str] = []
        errors: list[str] = []
        released: list[tuple[str, str]] = []
        for allocation in store.allocations():
            owner = (allocation.container_id, allocation.ifname)
            if owner in keep or (not allocation.ifname and any(cid == allocation.container_id for cid, _ in keep)):
                continue
            try:
                store.release(allocation.container_id, allocation.ifname)
                removed.append(f"address {allocation.ip}")
                released.append(owner)
            except CniError as exc:
                errors.append(f"release {allocation.ip}: {exc}")
        return GcOutcome(tuple(removed), tuple(errors), tuple(released))

    def status(self) -> None:
        store = HostLocalStore(self.config)
        for index, range_set in enumerate(self.range_sets):
            if not store.has_free(index):
                raise CniError(NOT_AVAILABLE, f"no free address in range set {index}: {range_set.text}")


def host_local_dns(config: HostLocalConfig) -> dict[str, Any]:
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
