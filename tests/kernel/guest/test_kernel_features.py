"""Guest-side smoke tests: the guest kernel has what loxi-cni's VLAN work needs.

They run only inside the kernel-tier guest (see ``conftest.py`` here and
``tests/kernel/test_guest_tier.py``) and double as working recipes for pyroute2 0.9.7:

* bridge with VLAN filtering: ``ipr.link("add", ifname=..., kind="bridge", br_vlan_filtering=1)``;
  toggle on an existing bridge: ``ipr.link("set", index=br, kind="bridge", br_vlan_filtering=1)``
  (``kind`` is required on "set": without it the call succeeds and changes nothing); read back:
  ``link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING")``.
* 802.1Q device: ``ipr.link("add", ifname=..., kind="vlan", link=parent_index, vlan_id=100)``;
  read back ``IFLA_VLAN_ID`` from ``IFLA_INFO_DATA`` and the parent from ``IFLA_LINK``.
* port VLANs: ``ipr.vlan_filter("add", index=port, vlan_info={"vid": 100, "flags": ["pvid", "untagged"]})``,
  ``ipr.vlan_filter("del", index=port, vlan_info={"vid": 1})``; read back with
  :func:`bridge_port_vlans` below (``get_vlans()``, every ``IFLA_BRIDGE_VLAN_INFO``).
* veth with its peer created straight into a pod namespace:
  ``ipr.link("add", ifname=..., kind="veth", peer={"ifname": "eth0", "net_ns_fd": "<netns name>"})``.

Namespaces: a uniquely named one per test, made with ``ip netns add`` and removed in a
finally; pyroute2 works in it through ``IPRoute(netns=name, flags=0)`` (``flags=0``: never
create it implicitly).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

pytestmark = pytest.mark.guest
pyroute2 = pytest.importorskip("pyroute2")
IPRoute = pyroute2.IPRoute

VID = 100
SUBNET = "10.99.100"  # only ever inside this guest's private namespaces


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Factory: ``make_netns("node")`` -> a fresh netns name; all are deleted afterwards."""
    names: list[str] = []

    def make(role: str) -> str:
        name = f"loxi-{role}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        names.append(name)
        return name

    try:
        yield make
    finally:
        for name in reversed(names):
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def node_ns(make_netns: Callable[[str], str]) -> Iterator[tuple[str, IPRoute]]:
    """A "node" namespace and an IPRoute socket inside it."""
    name = make_netns("node")
    with IPRoute(netns=name, flags=0) as ipr:
        yield name, ipr


def index_of(ipr: IPRoute, ifname: str) -> int:
    (index,) = ipr.link_lookup(ifname=ifname)
    return index


def vlan_filtering(ipr: IPRoute, bridge: int) -> int:
    (link,) = ipr.get_links(bridge)
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING")


def bridge_port_vlans(ipr: IPRoute, bridge: int) -> dict[int, dict[int, frozenset[str]]]:
    """VLAN membership of every port of ``bridge``: ``{port_ifindex: {vid: {"pvid", "untagged"} subset}}``.

    The recipe for a production observer (pyroute2 0.9.7, any kernel with bridge VLAN
    filtering), using one netlink dump in the bridge's namespace:

    * ``ipr.get_vlans()`` is ``RTM_GETLINK`` dump with ``family=AF_BRIDGE`` and
      ``IFLA_EXT_MASK=RTEXT_FILTER_BRVLAN``: one message per bridge port **and one for
      the bridge device itself** (its own "self" VLANs, where the bridge's ``IFLA_MASTER``
      is its own index). Keep messages whose ``IFLA_MASTER`` is the bridge and whose
      ``index`` is not the bridge. ``get_vlans(master=bridge)`` filters client-side only.
    * That mask asks for the *uncompressed* list: one ``IFLA_BRIDGE_VLAN_INFO``
      ``{"vid", "flags"}`` per VID, never ranges (``RTEXT_FILTER_BRVLAN_COMPRESSED`` would
      send ``range_begin``/``range_end`` pairs). A port has as many of these NLAs as VIDs:
      iterate ``msg.get("IFLA_AF_SPEC").get_attrs("IFLA_BRIDGE_VLAN_INFO")``; ``get()``
      returns only the first.
    * ``flags`` is a bit mask: ``0x2`` pvid (untagged ingress goes to this VID), ``0x4``
      untagged (egress strips the tag); 0 means a tagged member (trunk).
      ``vlan_info.flags2names(flags)`` gives ``BRIDGE_VLAN_INFO_*`` names.
    * A port in no VLAN at all (VID 1 deleted, nothing added) still appears, without
      ``IFLA_AF_SPEC``: it gets an empty dict here. On a kernel without bridge VLAN
      filtering (our dev/CI host) every port looks like that, while setting
      ``br_vlan_filtering=1``, ``vlan_filter()`` and creating a ``kind="vlan"`` link all
      raise ``NetlinkError(95, 'Operation not supported')``.
    * Ranges given to ``vlan_filter`` (``{"vid": "10-12"}``) come back expanded, one entry per VID.
    * Alternative: ``ipr.vlandb("dump")`` (``RTM_GETVLAN``, kernel >= 5.10) also reports
      per-VLAN STP state (``BRIDGE_VLANDB_ENTRY_STATE``), but may compress runs of VIDs into
      ranges (``BRIDGE_VLANDB_ENTRY_RANGE``); get_vlans() is simpler to consume.
    """
    names = {0x2: "pvid", 0x4: "untagged"}
    ports: dict[int, dict[int, frozenset[str]]] = {}
    for msg in ipr.get_vlans():
        if msg.get("IFLA_MASTER") != bridge or msg["index"] == bridge:
            continue
        vids: dict[int, frozenset[str]] = {}
        spec = msg.get("IFLA_AF_SPEC")
        for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO") if spec is not None else ():
            vids[info["vid"]] = frozenset(name for bit, name in names.items() if info["flags"] & bit)
        ports[msg["index"]] = vids
    return ports


def test_bridge_created_with_vlan_filtering(node_ns: tuple[str, IPRoute]) -> None:
    _, ipr = node_ns
    ipr.link("add", ifname="br0", kind="bridge", br_vlan_filtering=1)
    assert vlan_filtering(ipr, index_of(ipr, "br0")) == 1


def test_toggle_vlan_filtering_on_existing_bridge(node_ns: tuple[str, IPRoute]) -> None:
    _, ipr = node_ns
    ipr.link("add", ifname="br0", kind="bridge")
    br = index_of(ipr, "br0")
    assert vlan_filtering(ipr, br) == 0
    ipr.link("set", index=br, kind="bridge", br_vlan_filtering=1)
    assert vlan_filtering(ipr, br) == 1
    ipr.link("set", index=br, kind="bridge", br_vlan_filtering=0)
    assert vlan_filtering(ipr, br) == 0


def test_8021q_device_on_veth(node_ns: tuple[str, IPRoute]) -> None:
    _, ipr = node_ns
    ipr.link("add", ifname="v0", kind="veth", peer="v0p")
    parent = index_of(ipr, "v0")
    ipr.link("add", ifname="v0.100", kind="vlan", link=parent, vlan_id=VID)
    (link,) = ipr.get_links(index_of(ipr, "v0.100"))
    assert link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "vlan"
    assert link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VLAN_ID") == VID
    assert link.get("IFLA_LINK") == parent


def test_port_vlan_membership_roundtrip(node_ns: tuple[str, IPRoute]) -> None:
    _, ipr = node_ns
    ipr.link("add", ifname="br0", kind="bridge", br_vlan_filtering=1)
    br = index_of(ipr, "br0")
    ipr.link("add", ifname="access0", kind="veth", peer="access0p")
    ipr.link("add", ifname="trunk0", kind="veth", peer="trunk0p")
    access, trunk = index_of(ipr, "access0"), index_of(ipr, "trunk0")
    for port in (access, trunk):
        ipr.link("set", index=port, master=br)
    # A new port starts in the bridge's default VLAN 1 (pvid, untagged).
    assert bridge_port_vlans(ipr, br) == {
        access: {1: frozenset({"pvid", "untagged"})},
        trunk: {1: frozenset({"pvid", "untagged"})},
    }
    ipr.vlan_filter("add", index=access, vlan_info={"vid": VID, "flags": ["pvid", "untagged"]})
    ipr.vlan_filter("del", index=access, vlan_info={"vid": 1})
    ipr.vlan_filter("del", index=trunk, vlan_info={"vid": 1})
    for vid in (VID, 200, 300):
        ipr.vlan_filter("add", index=trunk, vlan_info={"vid": vid})
    assert bridge_port_vlans(ipr, br) == {
        access: {VID: frozenset({"pvid", "untagged"})},
        trunk: {VID: frozenset(), 200: frozenset(), 300: frozenset()},
    }
    ipr.vlan_filter("del", index=trunk, vlan_info={"vid": 200})
    ipr.vlan_filter("add", index=trunk, vlan_info={"vid": "10-12"})  # a range comes back expanded
    assert set(bridge_port_vlans(ipr, br)[trunk]) == {10, 11, 12, VID, 300}
    ipr.vlan_filter("del", index=access, vlan_info={"vid": VID})
    assert bridge_port_vlans(ipr, br)[access] == {}  # in no VLAN: reported without IFLA_AF_SPEC


def _pod(ipr: IPRoute, make_netns: Callable[[str], str], bridge: int, host_if: str) -> tuple[str, int]:
    """A pod namespace wired to ``bridge`` by a veth (peer created straight in the pod as eth0)."""
    pod = make_netns("pod")
    ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod})
    port = index_of(ipr, host_if)
    ipr.link("set", index=port, master=bridge, state="up")
    return pod, port


def _pod_address(pod: str, address: str, vlan: int | None = None) -> None:
    """Bring up eth0 in ``pod`` and give it ``address``, on an 802.1Q sub-interface when ``vlan``."""
    with IPRoute(netns=pod, flags=0) as ipr:
        eth0 = index_of(ipr, "eth0")
        ipr.link("set", index=eth0, state="up")
        dev = eth0
        if vlan is not None:
            ipr.link("add", ifname=f"eth0.{vlan}", kind="vlan", link=eth0, vlan_id=vlan)
            dev = index_of(ipr, f"eth0.{vlan}")
            ipr.link("set", index=dev, state="up")
        ipr.addr("add", index=dev, address=address, prefixlen=24)


def _ping(pod: str, address: str, count: int = 2, wait: int = 2) -> subprocess.CompletedProcess[str]:
    """iputils ping run in ``pod`` (nsenter, not ``ip netns exec``: no /sys remount needed)."""
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{pod}", "ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait), address],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _access_port(ipr: IPRoute, port: int, vid: int) -> None:
    ipr.vlan_filter("add", index=port, vlan_info={"vid": vid, "flags": ["pvid", "untagged"]})
    ipr.vlan_filter("del", index=port, vlan_info={"vid": 1})


def test_ping_between_pods_on_vlan_access_ports(node_ns: tuple[str, IPRoute], make_netns: Callable[[str], str]) -> None:
    """Pods A and B on VLAN 100 reach each other; pod C, same subnet but VLAN 200, does not."""
    _, ipr = node_ns
    ipr.link("add", ifname="br0", kind="bridge", br_vlan_filtering=1)
    br = index_of(ipr, "br0")
    ipr.link("set", index=br, state="up")
    pods = {}
    for name, vid, host in (("a", VID, 1), ("b", VID, 2), ("c", 200, 3)):
        pod, port = _pod(ipr, make_netns, br, f"veth{name}")
        _access_port(ipr, port, vid)
        _pod_address(pod, f"{SUBNET}.{host}")
        pods[name] = (pod, port)
    assert bridge_port_vlans(ipr, br)[pods["a"][1]] == {VID: frozenset({"pvid", "untagged"})}

    ok = _ping(pods["a"][0], f"{SUBNET}.2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    blocked = _ping(pods["a"][0], f"{SUBNET}.3", count=1, wait=1)
    assert blocked.returncode != 0, "VLAN 100 pod reached a VLAN 200 pod:\n" + blocked.stdout


def test_ping_from_access_port_to_tagged_trunk(node_ns: tuple[str, IPRoute], make_netns: Callable[[str], str]) -> None:
    """An untagged VLAN 100 pod reaches a pod whose port carries VLAN 100 tagged (8021q device inside)."""
    _, ipr = node_ns
    ipr.link("add", ifname="br0", kind="bridge", br_vlan_filtering=1)
    br = index_of(ipr, "br0")
    ipr.link("set", index=br, state="up")
    access_pod, access = _pod(ipr, make_netns, br, "vethacc")
    _access_port(ipr, access, VID)
    _pod_address(access_pod, f"{SUBNET}.1")
    trunk_pod, trunk = _pod(ipr, make_netns, br, "vethtrk")
    ipr.vlan_filter("del", index=trunk, vlan_info={"vid": 1})
    ipr.vlan_filter("add", index=trunk, vlan_info={"vid": VID})  # tagged: no pvid/untagged
    _pod_address(trunk_pod, f"{SUBNET}.2", vlan=VID)
    assert bridge_port_vlans(ipr, br)[trunk] == {VID: frozenset()}

    result = _ping(access_pod, f"{SUBNET}.2")
    assert result.returncode == 0, result.stdout + result.stderr
