"""Execute a plan step by step, and undo this run's steps if one fails.

Every operation is idempotent (create if missing, set only what differs), and
every successful step pushes its inverse on an undo stack. On failure the stack
runs in reverse, so a failed ADD leaves the node as it found it. Shared objects
(bridge, gateway address, forwarding) are undone only while no other pod's
port is on the bridge, checked under the bridge lock.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from applier import locks, nftables
from applier.netlink import NetlinkError
from applier.netlink.dumps import ports_of
from applier.netns import Namespaces
from applier.observe import read_port_vlans
from applier.sysctl import read_sysctl, write_sysctl
from compiler.graph import HOST_VETH_PREFIX
from compiler.model import (
    LOXI_ROUTE_PROTO,
    NODE_NS,
    POD_NS,
    Address,
    Bridge,
    HostVeth,
    Masquerade,
    NetObject,
    PodLink,
    PortVlans,
    Route,
    SpoofCheck,
    Sysctl,
    Uplink,
    VlanDevice,
)
from compiler.plan import CREATE, DELETE, MODIFY, Plan, Step
from intent.errors import KERNEL_ERROR, KERNEL_FEATURE_MISSING, CniError

IFA_F_NODAD = 0x02
FEATURE_VLAN_FILTERING = "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
FEATURE_8021Q = "802.1Q VLAN devices (CONFIG_VLAN_8021Q)"
# A test hook: the test suite sets it to kill the plugin right before step N.
KILL_BEFORE_STEP_ENV = "LOXI_TEST_KILL_BEFORE_STEP"


def random_mac() -> str:
    """A locally administered unicast MAC. Setting the bridge's MAC explicitly pins
    it: otherwise it follows the lowest port MAC and changes as pods come and go."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


@dataclass
class Undo:
    description: str
    action: Callable[[], None]
    shared_bridge: str = ""  # undo only while no pod's port is on this bridge


@dataclass(frozen=True)
class LinkFacts:
    """What this run gave a link it created: the result reports it without re-reading the kernel."""

    mac: str
    mtu: int = 0


@dataclass
class ExecutionReport:
    done: list[Step] = field(default_factory=list)
    created_bridge: bool = False
    created_links: dict[tuple[str, str], LinkFacts] = field(default_factory=dict)


class Executor:
    def __init__(self, namespaces: Namespaces, enable_dad: bool = False) -> None:
        self.ns = namespaces
        self.enable_dad = enable_dad
        self.undo: list[Undo] = []
        self.report = ExecutionReport()

    # -- helpers -------------------------------------------------------------

    def _ipr(self, ns: str) -> Any:
        return self.ns.ipr(ns)

    def _index(self, ns: str, name: str) -> int:
        return self.ns.link_index(ns, name)

    def _bridge_has_pods(self, bridge: str) -> bool:
        """Does any pod use the bridge? Its uplink VLAN device is not a pod."""
        try:
            index = self._index(NODE_NS, bridge)
        except NetlinkError:
            return False
        ports = ports_of(self._ipr(NODE_NS), index)
        return any(port.get("IFLA_IFNAME", "").startswith(HOST_VETH_PREFIX) for port in ports)

    # -- run -------------------------------------------------------------------

    def apply(self, plan: Plan, bridge: str) -> ExecutionReport:
        """Run the plan; on any failure roll back and raise a CniError."""
        kill_before = os.environ.get(KILL_BEFORE_STEP_ENV)
        with ExitStack() as held:
            bridge_locked = False
            for number, step in enumerate(plan.steps, start=1):
                if kill_before and int(kill_before) == number:
                    os.kill(os.getpid(), 9)
                if step.ns == NODE_NS and not bridge_locked:
                    held.enter_context(locks.exclusive(locks.bridge_lock_name(bridge)))
                    bridge_locked = True
                elif step.ns != NODE_NS and bridge_locked:
                    held.close()
                    bridge_locked = False
                undo_mark = len(self.undo)
                try:
                    self._run(step)
                except Exception as exc:
                    # A step is atomic: what it changed before failing is put back now,
                    # still under the bridge lock, whoever else uses the bridge.
                    self._undo_from(undo_mark)
                    held.close()
                    self.rollback()
                    raise _as_cni_error(step, exc) from None
                self.report.done.append(step)
        return self.report

    def _undo_from(self, mark: int) -> None:
        while len(self.undo) > mark:
            undo = self.undo.pop()
            try:
                undo.action()
            except Exception as exc:
                print(f"loxi-cni: rollback of {undo.description} failed: {exc}", file=sys.stderr)

    def rollback(self) -> None:
        while self.undo:
            undo = self.undo.pop()
            try:
                if undo.shared_bridge:
                    with locks.exclusive(locks.bridge_lock_name(undo.shared_bridge)):
                        if not self._bridge_has_pods(undo.shared_bridge):
                            undo.action()
                else:
                    undo.action()
            except Exception as exc:  # keep undoing the rest; report on stderr
                print(f"loxi-cni: rollback of {undo.description} failed: {exc}", file=sys.stderr)

    def _run(self, step: Step) -> None:
        handler = {
            Bridge: self._bridge,
            HostVeth: self._host_veth,
            PodLink: self._pod_link,
            Address: self._address,
            Route: self._route,
            Sysctl: self._sysctl,
            PortVlans: self._port_vlans,
            VlanDevice: self._vlan_device,
            Uplink: self._uplink,
            Masquerade: self._masquerade,
            SpoofCheck: self._spoof_check,
        }[type(step.obj)]
        handler(step)

    def _push(self, description: str, action: Callable[[], None], obj: NetObject | None = None) -> None:
        shared = ""
        if obj is not None and obj.shared:
            shared = obj.name if isinstance(obj, Bridge) else getattr(obj, "link", "") or getattr(obj, "bridge", "")
        self.undo.append(Undo(description, action, shared))

    # -- per kind -----------------------------------------------------------------

    def _bridge(self, step: Step) -> None:
        obj: Bridge = step.obj  # type: ignore[assignment]
        ipr = self._ipr(NODE_NS)
        if step.op == CREATE:
            spec: dict[str, Any] = {"ifname": obj.name, "kind": "bridge", "address": random_mac()}
            if obj.mtu:
                spec["mtu"] = obj.mtu
            if obj.vlan_filtering:
                spec["br_vlan_filtering"] = 1
                spec["br_vlan_default_pvid"] = 0
            try:
                ipr.link("add", **spec)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            else:
                self.report.created_bridge = True
                self._push(f"create bridge {obj.name}", lambda: self._delete_link(NODE_NS, obj.name), obj)
            index = self._index(NODE_NS, obj.name)
            if obj.promisc:
                ipr.link("set", index=index, flags=0x100, change=0x100)
            ipr.link("set", index=index, state="up")
            return
        if step.op == DELETE:
            self._delete_link(NODE_NS, obj.name)
            return
        index = self._index(NODE_NS, obj.name)
        # VLAN filtering first: the change a kernel may refuse (EOPNOTSUPP).
        for change in sorted(step.changes, key=lambda c: c.name != "vlan_filtering"):
            if change.name == "up":
                ipr.link("set", index=index, state="up" if change.after else "down")
                self._push("bridge up", lambda: ipr.link("set", index=index, state="down"), obj)
            elif change.name == "promisc":
                ipr.link("set", index=index, flags=0x100 if change.after else 0, change=0x100)
                before = 0x100 if change.before else 0
                self._push(
                    "bridge promisc", lambda flags=before: ipr.link("set", index=index, flags=flags, change=0x100), obj
                )
            elif change.name == "vlan_filtering":
                ipr.link("set", index=index, kind="bridge", br_vlan_filtering=int(bool(change.after)))
                self._push(
                    "bridge vlan_filtering",
                    lambda: ipr.link("set", index=index, kind="bridge", br_vlan_filtering=0),
                    obj,
                )
            elif change.name == "mtu":
                ipr.link("set", index=index, mtu=change.after)

    def _delete_link(self, ns: str, name: str) -> None:
        try:
            self._ipr(ns).delete_link(self._index(ns, name))
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
        finally:
            self.ns.forget_index(ns, name)

    def _host_veth(self, step: Step) -> None:
        obj: HostVeth = step.obj  # type: ignore[assignment]
        ipr = self._ipr(NODE_NS)
        if step.op == DELETE:
            self._delete_link(NODE_NS, obj.name)
            return
        if step.op == CREATE:
            # One message makes the pair, with the peer in the pod's namespace, the
            # node end enslaved and up, and both MACs chosen here: the kernel's
            # random MACs would have to be read back, and udev's
            # MACAddressPolicy may rewrite a random MAC after the result is out.
            host_mac, peer_mac = random_mac(), obj.peer_mac or random_mac()
            peer: dict[str, Any] = {"ifname": obj.peer_name, "net_ns_fd": self.ns.fd(POD_NS), "address": peer_mac}
            spec: dict[str, Any] = {
                "ifname": obj.name,
                "kind": "veth",
                "peer": peer,
                "address": host_mac,
                "master": self._index(NODE_NS, obj.bridge),
                "state": "up",
            }
            if obj.mtu:
                spec["mtu"] = peer["mtu"] = obj.mtu
            ipr.link("add", **spec)
            self._push(f"create veth {obj.name}", lambda: self._delete_link(NODE_NS, obj.name))
            self.report.created_links[(NODE_NS, obj.name)] = LinkFacts(host_mac, obj.mtu)
            self.report.created_links[(POD_NS, obj.peer_name)] = LinkFacts(peer_mac, obj.mtu)
            if obj.owner:  # the kernel takes no alias at creation; by name, no index lookup
                ipr.link("set", ifname=obj.name, ifalias=obj.owner)
            if obj.hairpin or obj.isolated:
                index = self._index(NODE_NS, obj.name)
                ipr.brport("set", index=index, mode=int(obj.hairpin), isolated=int(obj.isolated))
            return
        index = self._index(NODE_NS, obj.name)
        for change in step.changes:
            if change.name == "master":
                ipr.link("set", index=index, master=self._index(NODE_NS, obj.bridge))
            elif change.name == "up":
                ipr.link("set", index=index, state="up")
            elif change.name == "mtu":
                ipr.link("set", index=index, mtu=change.after)
            elif change.name == "hairpin":
                ipr.brport("set", index=index, mode=int(change.after))
            elif change.name == "isolated":
                ipr.brport("set", index=index, isolated=int(change.after))

    def _pod_link(self, step: Step) -> None:
        obj: PodLink = step.obj  # type: ignore[assignment]
        if step.op == DELETE:  # DEL: its peer, wherever it went, goes with it
            self._delete_link(POD_NS, obj.name)
            return
        ipr = self._ipr(POD_NS)
        index = self._index(POD_NS, obj.name)  # made with the host veth
        if step.op == CREATE:
            if obj.up:
                ipr.link("set", index=index, state="up")
            return
        for change in step.changes:
            if change.name == "mtu":
                ipr.link("set", index=index, mtu=change.after)
            elif change.name == "mac":
                ipr.link("set", index=index, address=change.after)
            elif change.name == "up":
                ipr.link("set", index=index, state="up" if change.after else "down")

    def _address(self, step: Step) -> None:
        obj: Address = step.obj  # type: ignore[assignment]
        ipr = self._ipr(obj.ns)
        index = self._index(obj.ns, obj.link)
        ip, prefix = str(obj.interface.ip), obj.interface.network.prefixlen
        if step.op == DELETE:
            before = ipaddress.ip_interface(obj.interface)
            ipr.addr("del", index=index, address=ip, prefixlen=prefix)
            self._push(
                f"delete address {obj.interface}",
                lambda: ipr.addr("add", index=index, address=str(before.ip), prefixlen=prefix),
                obj,
            )
            return
        if step.op == MODIFY:
            old = next(c.before for c in step.changes if c.name == "prefixlen")
            ipr.addr("del", index=index, address=ip, prefixlen=old)
        extra: dict[str, Any] = {}
        if obj.interface.version == 6 and not self.enable_dad:
            extra["flags"] = IFA_F_NODAD
        try:
            ipr.addr("add", index=index, address=ip, prefixlen=prefix, **extra)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # a concurrent ADD put the gateway there first
                raise
            return
        self._push(
            f"add address {obj.interface}", lambda: ipr.addr("del", index=index, address=ip, prefixlen=prefix), obj
        )

    def _route(self, step: Step) -> None:
        obj: Route = step.obj  # type: ignore[assignment]
        ipr = self._ipr(obj.ns)
        spec: dict[str, Any] = {
            "dst": str(obj.dst),
            "oif": self._index(obj.ns, obj.dev),
            "proto": LOXI_ROUTE_PROTO,
            "table": 254,
        }
        if obj.gateway:
            spec["gateway"] = str(obj.gateway)
        if step.op == DELETE:
            ipr.route("del", **spec)
            return
        # Added beside whatever else leads to dst, never in its place: a replace
        # took the first attachment's default route when a second one had
        # isDefaultGateway, and the kernel's connected route for a route to the
        # pod's own subnet. Appended, so an earlier route to dst stays the one used.
        try:
            ipr.route("append", **spec)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # exactly this route is there already (a retried ADD)
                raise
            return
        self._push(f"add route {obj.describe()}", lambda: ipr.route("del", **spec))

    def _sysctl(self, step: Step) -> None:
        obj: Sysctl = step.obj  # type: ignore[assignment]
        with self.ns.inside(obj.ns):
            before = read_sysctl(obj.path)
            if before != obj.value:
                write_sysctl(obj.path, obj.value)
        if before is not None and before != obj.value and obj.ns != NODE_NS:
            self._push(f"sysctl {obj.path}", lambda: self._restore_sysctl(obj, before))

    def _restore_sysctl(self, obj: Sysctl, value: str) -> None:
        with self.ns.inside(obj.ns):
            write_sysctl(obj.path, value)

    def _port_vlans(self, step: Step) -> None:
        obj: PortVlans = step.obj  # type: ignore[assignment]
        ipr = self._ipr(obj.ns)
        index = self._index(obj.ns, obj.port)
        want = {vid: (pvid, untagged) for vid, pvid, untagged in obj.vids}
        # Read the port now, not from the plan: a port created earlier in this
        # plan may have been given the bridge's default VLAN 1 by the kernel.
        have = read_port_vlans(ipr, index)
        self_flag = {"vlan_flags": 2} if obj.self_entry else {}
        if obj.exact:
            for vid in have:
                if vid not in want:
                    ipr.vlan_filter("del", index=index, vlan_info={"vid": vid}, **self_flag)
        for vid, (pvid, untagged) in want.items():
            if have.get(vid) == (pvid, untagged):
                continue
            flags = (["pvid"] if pvid else []) + (["untagged"] if untagged else [])
            ipr.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags}, **self_flag)
            if vid not in have:
                self._push(
                    f"vlan {vid} on {obj.port}",
                    lambda vid=vid: ipr.vlan_filter("del", index=index, vlan_info={"vid": vid}, **self_flag),
                    obj,
                )

    def _vlan_device(self, step: Step) -> None:
        obj: VlanDevice = step.obj  # type: ignore[assignment]
        ipr = self._ipr(NODE_NS)
        if step.op == CREATE:
            ipr.link("add", ifname=obj.name, kind="vlan", link=self._index(NODE_NS, obj.parent), vlan_id=obj.vlan_id)
            self._push(f"create vlan device {obj.name}", lambda: self._delete_link(NODE_NS, obj.name), obj)
        index = self._index(NODE_NS, obj.name)
        ipr.link("set", index=index, master=self._index(NODE_NS, obj.bridge))
        ipr.link("set", index=index, state="up")

    def _uplink(self, step: Step) -> None:
        obj: Uplink = step.obj  # type: ignore[assignment]
        ipr = self._ipr(NODE_NS)
        index = self._index(NODE_NS, obj.name)
        for change in step.changes:
            if change.name == "master":
                ipr.link("set", index=index, master=self._index(NODE_NS, obj.bridge))
                self._push(f"enslave uplink {obj.name}", lambda: ipr.link("set", index=index, master=0), obj)
            elif change.name == "up":
                ipr.link("set", index=index, state="up")

    def _masquerade(self, step: Step) -> None:
        obj: Masquerade = step.obj  # type: ignore[assignment]
        if step.op in (DELETE, MODIFY):
            nftables.delete_masquerade(obj.backend, obj.tag)
        if step.op in (CREATE, MODIFY):
            rules = [nftables.MasqRule(*text.split(" ! ")) for text in obj.rules]
            nftables.add_masquerade(obj.backend, obj.tag, rules)
            self._push(f"masquerade {obj.tag}", lambda: nftables.delete_masquerade(obj.backend, obj.tag))

    def _spoof_check(self, step: Step) -> None:
        obj: SpoofCheck = step.obj  # type: ignore[assignment]
        if step.op in (DELETE, MODIFY):
            nftables.delete_spoof_check(obj.tag)
        if step.op in (CREATE, MODIFY):
            nftables.add_spoof_check(obj.tag, obj.port, obj.mac)
            self._push(f"macspoofchk {obj.tag}", lambda: nftables.delete_spoof_check(obj.tag))


def _as_cni_error(step: Step, exc: Exception) -> CniError:
    if isinstance(exc, CniError):
        return exc
    if isinstance(exc, nftables.NetfilterError):
        return CniError(KERNEL_ERROR, f"{step.describe()}: netfilter refused", str(exc))
    if isinstance(exc, NetlinkError | OSError):
        code = exc.code if isinstance(exc, NetlinkError) else exc.errno
        name = errno.errorcode.get(code or 0, str(code))
        if code == errno.EOPNOTSUPP and isinstance(step.obj, PortVlans | Bridge | VlanDevice):
            feature = FEATURE_8021Q if isinstance(step.obj, VlanDevice) else FEATURE_VLAN_FILTERING
            return CniError(
                KERNEL_FEATURE_MISSING,
                f"the kernel lacks {feature}, needed by the VLAN setting",
                f"step {step.describe()}: {name}",
            )
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return CniError(KERNEL_ERROR, f"{step.describe()}: {name}", str(text))
    return CniError(KERNEL_ERROR, f"{step.describe()}: {type(exc).__name__}", str(exc))
