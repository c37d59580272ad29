"""loxi-agent's reconciler: release what a runtime left behind, and only what is provably dead.

A DEL that never came (the runtime crashed before saving the result, the node
rebooted, a chained plugin failed both ADD and DEL) leaves an allocation in the
host-local store, and containerd never runs GC. Every `interval` seconds the
reconciler takes the same inventory `loxi-plan show` takes (loxi.plan.inventory,
classified by loxi.node.liveness) over the networks the agent served from its own
namespace (loxi.agent.served), and acts on the attachments called *leaked*: a host
veth whose peer is gone, or an allocation with no host veth whose address no
namespace on the node carries and whose lock is free. Never on *busy*,
*unaccounted* or *attached*, never on a network it did not serve, never on a
store it did not read.

An attachment is reclaimed only after it has been seen leaked on every pass
for `grace` seconds: a pod being set up by a slow runtime, or a namespace being
recreated, gets that long to show up. Then, holding the attachment's lock
(taken without waiting: if an ADD or DEL holds it, the attachment is busy and
is left for the next pass), the leak is confirmed once more (no live veth, no
namespace carrying the address) and DEL's own teardown runs
(`loxi.engine.delete.teardown`, with CNI_NETNS empty): the veth if any, the
attachment's netfilter rules (tagged per attachment, so found without its
addresses), then the addresses, released as host-local releases them. Each
find and each release is logged and counted.

Only host-local networks are reconciled: with another IPAM there is no store
to prove a leak against, and its plugin would have to be run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loxi.agent.served import ServedNetworks
from loxi.node.liveness import LEAKED, Owner

DEFAULT_GRACE = 300.0  # seconds an attachment must stay leaked before it is released
DEFAULT_INTERVAL = 60.0  # seconds between passes
RECENT = 20  # releases kept for /status


@dataclass
class Candidate:
    network: str
    container_id: str
    ifname: str
    ips: tuple[str, ...]
    kind: str
    detail: str
    first_seen: float
    last_skip: str = ""  # why the last attempt did not release it (busy, still in use, an error)

    @property
    def owner(self) -> Owner:
        return (self.network, self.container_id, self.ifname)

    def to_dict(self, grace: float) -> dict[str, Any]:
        due = self.first_seen + grace
        return {
            "network": self.network,
            "container_id": self.container_id,
            "ifname": self.ifname or None,
            "ips": list(self.ips),
            "kind": self.kind,
            "detail": self.detail,
            "first_seen": _iso(self.first_seen),
            "due": _iso(due),
            "due_unix": due,
            "last_skip": self.last_skip or None,
        }


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


@dataclass
class Reconciler:
    served: ServedNetworks
    grace: float = DEFAULT_GRACE
    interval: float = DEFAULT_INTERVAL
    enabled: bool = True
    metrics: Any = None  # loxi.agent.metrics.AgentMetrics
    log: Callable[..., None] = lambda *a, **k: None
    pending: dict[Owner, Candidate] = field(default_factory=dict)
    released: list[dict[str, Any]] = field(default_factory=list)
    last_pass: float | None = None
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until `stop` is set (the agent's SIGTERM)."""
        while not stop.wait(self.interval):
            try:
                self.pass_once()
            except Exception as exc:  # a pass that breaks must not end the loop; the next one tries again
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log("reconcile pass failed", error=self.last_error)

    def pass_once(self, now: float | None = None) -> list[Candidate]:
        """One look at the node; returns what it released."""
        now = time.time() if now is None else now
        found = self._leaked()
        with self._lock:
            fresh = {}
            for owner, candidate in found.items():
                known = self.pending.get(owner)
                if known is None:
                    fresh[owner] = candidate
                    if self.metrics is not None:
                        self.metrics.leaked_found.labels(candidate.network).inc()
                    self.log("leaked attachment found", **_fields(candidate), grace=self.grace)
                else:
                    candidate.first_seen, candidate.last_skip = known.first_seen, known.last_skip
            self.pending = found  # what is no longer leaked (a DEL came, the pod came back) is forgotten
            due = [c for c in found.values() if now >= c.first_seen + self.grace]
            self.last_pass = now
        released = [c for c in due if self._reclaim(c)]
        with self._lock:
            for candidate in released:
                self.pending.pop(candidate.owner, None)
        return released

    def _leaked(self) -> dict[Owner, Candidate]:
        from loxi.plan.gather import take_inventory

        networks = {n.name: n for n in self.served.networks() if n.local and n.host_local is not None}
        paths = [p for p in (self.served.conf_path(name) for name in networks) if p]
        if not paths:
            return {}
        inventory = take_inventory("", paths)
        now = time.time()
        out: dict[Owner, Candidate] = {}
        for row in inventory.attachments:
            network = networks.get(row.network or "")
            if row.state != LEAKED or network is None or row.container_id is None:
                continue
            if row.store_dir and network.store_dir not in row.store_dir.split(", "):
                continue  # an allocation of the same name in a store this network does not use
            candidate = Candidate(
                row.network or "", row.container_id, row.ifname or "", row.lease, row.kind, row.detail, now
            )
            out[candidate.owner] = candidate
        return out

    # -- one release -----------------------------------------------------------------

    def _reclaim(self, candidate: Candidate) -> bool:
        from applier import locks
        from intent.errors import CniError

        if not candidate.ifname:
            candidate.last_skip = "a legacy lease names no ifname: left for GC"
            return False
        network = self.served.get(candidate.network)
        if network is None:
            return False
        try:
            conf, request = _del_request(network.conf, candidate)
            lock = locks.attachment_lock_name(*candidate.owner)
            with locks.try_exclusive(lock, remove=True) as got:
                if not got:
                    return self._skip(candidate, "busy: an ADD or DEL holds its lock")
                live = _still_live(candidate)
                if live:
                    return self._skip(candidate, f"live after all: {live}")
                from loxi.engine.delete import teardown

                teardown(conf, request)
        except (CniError, OSError) as exc:
            if self.metrics is not None:
                self.metrics.reconcile_errors.labels(candidate.network).inc()
            return self._skip(candidate, f"release failed: {exc}", level="error")
        if self.metrics is not None:
            self.metrics.reclaimed.labels(candidate.network).inc()
        self.log("leaked attachment released", **_fields(candidate))
        with self._lock:
            self.released = [
                *self.released[-(RECENT - 1) :],
                {**candidate.to_dict(self.grace), "released": _iso(time.time())},
            ]
        return True

    def _skip(self, candidate: Candidate, why: str, level: str = "info") -> bool:
        """Not released this pass: say why, once per reason (a pass runs every few seconds)."""
        if candidate.last_skip != why:
            self.log("leaked attachment left for the next pass", level=level, **_fields(candidate), why=why)
        candidate.last_skip = why
        return False

    # -- for /status and loxi-plan show ------------------------------------------------

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "enabled": self.enabled,
                "grace_seconds": self.grace,
                "interval_seconds": self.interval,
                "networks": sorted(n.name for n in self.served.networks() if n.local and n.host_local is not None),
                "last_pass": _iso(self.last_pass) if self.last_pass else None,
                "last_error": self.last_error,
                "pending": [c.to_dict(self.grace) for c in self.pending.values()],
                "released": list(self.released),
            }


def _fields(candidate: Candidate) -> dict[str, Any]:
    return {
        "network": candidate.network,
        "containerID": candidate.container_id,
        "ifname": candidate.ifname,
        "ips": list(candidate.ips),
        "kind": candidate.kind,
    }


def _del_request(conf_bytes: bytes, candidate: Candidate) -> tuple[Any, Any]:
    """The conf and request of the DEL the runtime never sent: CNI_NETNS empty, as for a pod whose namespace is gone."""
    from intent.config import load_netconf
    from intent.env import read_request

    environ = {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": candidate.container_id,
        "CNI_IFNAME": candidate.ifname,
        "CNI_NETNS": "",
        "CNI_PATH": "/opt/cni/bin",  # DEL requires one; host-local is served in-process
    }
    request = read_request(environ)
    return load_netconf(conf_bytes, request), request


def _still_live(candidate: Candidate) -> str:
    """Under the attachment's lock: is anything of it alive after all? Why, or ''."""
    import ipaddress

    from applier.netns import Namespaces
    from compiler.model import NODE_NS
    from loxi.node.facts import addresses_in_use, namespaces, read_links, veth_traces
    from loxi.node.liveness import expected_veth

    name = expected_veth(candidate.owner)
    with Namespaces() as spaces:
        ipr = spaces.ipr(NODE_NS)
        links = read_links(ipr)
        refs = namespaces(ipr)
        for veth in veth_traces(links, refs):
            if veth.name == name and veth.peer_alive:
                return f"its host veth {name} has a live peer"
        in_use = addresses_in_use(refs, {ipaddress.ip_address(ip) for ip in candidate.ips})
    if in_use:
        return "; ".join(f"{ip} is on {where}" for ip, where in in_use.items())
    return ""
