"""Compile and diff on pure data: (conf, observed snapshot) → plan. No kernel."""

from __future__ import annotations

import ipaddress
import json

import pytest

from compiler.diff import diff, drift_messages
from compiler.graph import compile_desired, compile_teardown, host_veth_name
from compiler.model import (
    NODE_NS,
    Address,
    AddressLease,
    Attachment,
    Bridge,
    HostVeth,
    ObjectKey,
    Observed,
    PodLink,
    PortVlans,
    Route,
    RouteIntent,
    Sysctl,
)
from compiler.plan import CREATE, DELETE, MODIFY
from intent.config import load_netconf
from intent.env import CniRequest

SEED = {
    "cniVersion": "0.2.0",
    "name": "loxilight_cni",
    "type": "loxi-cni",
    "bridge": "hsvlan100",
    "isGateway": True,
    "isDefaultGateway": False,
    "mtu": 1500,
    "hairpinMode": False,
    "promiscMode": False,
    "vlanID": 100,
    "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "routes": [{"dst": "10.96.0.0/12"}]},
}
ATTACH = Attachment("loxilight_cni", "c0ffee", "eth0", "/var/run/netns/p1")
LEASE = AddressLease(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1"))
ROUTES = [RouteIntent(ipaddress.ip_network("10.96.0.0/12"))]


def conf_of(**overrides):
    doc = {**SEED, **overrides}
    doc = {k: v for k, v in doc.items() if v is not None}
    return load_netconf(json.dumps(doc).encode(), CniRequest(command="ADD"))


def realized(desired) -> dict:
    """The snapshot of a node on which `desired` has been applied exactly."""
    snap = {}
    for obj in desired.objects():
        attrs = dict(obj.desired())
        facts = {}
        if isinstance(obj, Bridge):
            facts["ipv4"] = [str(a.interface) for a in desired.by_kind(Address) if a.link == obj.name]
        snap[obj.key] = Observed(attrs, facts)
    return snap


def seed_desired(**overrides):
    return compile_desired(conf_of(**overrides), ATTACH, [LEASE], ROUTES)


def test_host_veth_name_is_stable_short_and_distinct():
    name = host_veth_name(ATTACH)
    assert name == host_veth_name(Attachment("loxilight_cni", "c0ffee", "eth0", "/other/netns"))
    assert name.startswith("loxi") and len(name) == 15
    assert name != host_veth_name(Attachment("loxilight_cni", "c0ffee", "eth1", ""))
    assert name != host_veth_name(Attachment("other", "c0ffee", "eth0", ""))


def test_seed_conf_on_an_empty_node_creates_everything_in_dependency_order():
    plan = diff(seed_desired(), {})
    kinds = [(s.op, s.obj.kind, s.obj.name) for s in plan.steps]
    veth = host_veth_name(ATTACH)
    assert kinds == [
        (CREATE, "bridge", "hsvlan100"),
        (CREATE, "address", "10.244.1.1 dev hsvlan100"),
        (CREATE, "sysctl", "net/ipv4/ip_forward"),
        (CREATE, "veth", veth),
        (CREATE, "port_vlans", "hsvlan100"),
        (CREATE, "port_vlans", veth),
        (CREATE, "link", "eth0"),
        (CREATE, "address", "10.244.1.5 dev eth0"),
        (CREATE, "route", "10.96.0.0/12 dev eth0"),
    ]
    assert plan.summary() == "9 to create, 0 to modify, 0 to delete"


def test_graph_edges_are_dependencies():
    desired = seed_desired()
    graph = desired.graph
    veth = ObjectKey("node", "veth", host_veth_name(ATTACH))
    assert graph.has_edge(ObjectKey("node", "bridge", "hsvlan100"), veth)
    assert graph.has_edge(veth, ObjectKey("pod", "link", "eth0"))
    assert graph.has_edge(ObjectKey("pod", "link", "eth0"), ObjectKey("pod", "address", "10.244.1.5 dev eth0"))
    assert graph.has_edge(
        ObjectKey("pod", "address", "10.244.1.5 dev eth0"), ObjectKey("pod", "route", "10.96.0.0/12 dev eth0")
    )


def test_seed_conf_attributes():
    desired = seed_desired()
    bridge = desired.by_kind(Bridge)[0]
    assert bridge.desired() == {"kind": "bridge", "up": True, "promisc": False, "mtu": 1500, "vlan_filtering": True}
    veth = desired.by_kind(HostVeth)[0]
    assert veth.desired()["master"] == "hsvlan100" and veth.desired()["mtu"] == 1500
    port = next(p for p in desired.by_kind(PortVlans) if not p.self_entry)
    assert port.desired() == {"vlans": ["100 pvid untagged"]}
    route = desired.by_kind(Route)[0]
    assert str(route.gateway) == "10.244.1.1", "routes default to the subnet's gateway"


def test_reapplying_an_applied_plan_is_empty():
    desired = seed_desired()
    assert diff(desired, realized(desired)).empty


def test_is_default_gateway_adds_default_route_via_gateway():
    desired = seed_desired(isDefaultGateway=True)
    defaults = [r for r in desired.by_kind(Route) if r.dst.prefixlen == 0]
    assert len(defaults) == 1 and str(defaults[0].gateway) == "10.244.1.1"
    assert desired.by_kind(Bridge)[0] is not None
    # an explicit default route in ipam.routes is not doubled
    desired = compile_desired(
        conf_of(isDefaultGateway=True), ATTACH, [LEASE], [RouteIntent(ipaddress.ip_network("0.0.0.0/0"))]
    )
    assert len([r for r in desired.by_kind(Route) if r.dst.prefixlen == 0]) == 1


def test_no_gateway_means_no_bridge_address_and_no_forwarding():
    desired = seed_desired(isGateway=False)
    assert [a for a in desired.by_kind(Address) if a.namespace == "node"] == []
    assert desired.by_kind(Sysctl) == []


def test_without_vlan_the_bridge_does_not_filter():
    desired = seed_desired(vlanID=None)
    assert "vlan_filtering" not in desired.by_kind(Bridge)[0].desired()
    assert desired.by_kind(PortVlans) == []


def test_preserve_default_vlan_keeps_vlan_1_untagged():
    desired = seed_desired(preserveDefaultVlan=True)
    port = next(p for p in desired.by_kind(PortVlans) if not p.self_entry)
    assert port.desired() == {"vlans": ["1 untagged", "100 pvid untagged"]}


@pytest.mark.parametrize(
    ("key", "attr", "observed", "message"),
    [
        ("veth", "master", None, "{veth}: master is none, want hsvlan100"),
        ("bridge", "up", False, "hsvlan100: up is off, want on"),
        ("link", "mtu", 1400, "eth0 in /var/run/netns/p1: mtu is 1400, want 1500"),
        ("veth", "hairpin", True, "{veth}: hairpin is on, want off"),
        (
            "port_vlans",
            "vlans",
            ["1 pvid untagged", "100"],
            "{veth}: vlans is [1 pvid untagged, 100], want [100 pvid untagged]",
        ),
    ],
)
def test_attribute_drift_becomes_a_modify_step_and_a_check_message(key, attr, observed, message):
    desired = seed_desired()
    snapshot = realized(desired)
    veth = host_veth_name(ATTACH)
    target = {
        "veth": ObjectKey("node", "veth", veth),
        "bridge": ObjectKey("node", "bridge", "hsvlan100"),
        "link": ObjectKey("pod", "link", "eth0"),
        "port_vlans": ObjectKey("node", "port_vlans", veth),
    }[key]
    snapshot[target].attrs[attr] = observed
    plan = diff(desired, snapshot)
    assert [(s.op, s.obj.key) for s in plan.steps] == [(MODIFY, target)]
    assert plan.steps[0].changes[0].before == observed
    assert drift_messages(plan, ATTACH.netns) == [message.format(veth=veth)]


def test_missing_address_and_route_are_reported_by_name():
    desired = seed_desired()
    snapshot = realized(desired)
    snapshot[ObjectKey("pod", "address", "10.244.1.5 dev eth0")] = None
    snapshot[ObjectKey("pod", "route", "10.96.0.0/12 dev eth0")] = None
    messages = drift_messages(diff(desired, snapshot), ATTACH.netns)
    assert messages == [
        "eth0 in /var/run/netns/p1: address 10.244.1.5/24 missing",
        "10.96.0.0/12 dev eth0 in /var/run/netns/p1: route missing",
    ]


def test_existing_bridge_keeps_its_mtu():
    desired = seed_desired()
    snapshot = realized(desired)
    snapshot[ObjectKey("node", "bridge", "hsvlan100")].attrs["mtu"] = 9000
    assert diff(desired, snapshot).empty


def test_a_non_bridge_with_the_bridge_name_is_a_conflict():
    desired = seed_desired()
    snapshot = {ObjectKey("node", "bridge", "hsvlan100"): Observed({"kind": "dummy", "up": True})}
    plan = diff(desired, snapshot)
    assert [s.conflict for s in plan.conflicts] == ['"hsvlan100" already exists but is not a bridge']


def test_an_existing_pod_interface_that_is_not_ours_is_a_conflict():
    desired = seed_desired()
    snapshot = {ObjectKey("pod", "link", "eth0"): Observed({"kind": "veth", "peer": None, "up": True})}
    plan = diff(desired, snapshot)
    assert len(plan.conflicts) == 1
    assert "eth0 already exists in the pod namespace" in plan.conflicts[0].conflict


def test_a_stale_host_veth_whose_peer_is_gone_is_replaced():
    desired = seed_desired()
    veth_key = ObjectKey("node", "veth", host_veth_name(ATTACH))
    snapshot = {veth_key: Observed({**desired.get(veth_key).desired(), "peer": None})}
    plan = diff(desired, snapshot)
    ops = [(s.op, s.obj.kind) for s in plan.steps if s.obj.key == veth_key]
    assert ops == [(DELETE, "veth"), (CREATE, "veth")]
    assert plan.steps[0].op == DELETE, "deletions run first"


def test_another_ipv4_address_on_the_bridge_conflicts_unless_force_address():
    desired = seed_desired()
    bridge_key = ObjectKey("node", "bridge", "hsvlan100")
    snapshot = {bridge_key: Observed(dict(desired.get(bridge_key).desired()), {"ipv4": ["10.9.9.1/24"]})}
    plan = diff(desired, snapshot)
    assert plan.conflicts and "already has an IP address different from 10.244.1.1/24" in plan.conflicts[0].conflict

    desired = seed_desired(forceAddress=True)
    plan = diff(desired, snapshot)
    assert not plan.conflicts
    assert (plan.steps[0].op, plan.steps[0].obj.describe()) == (DELETE, "address 10.9.9.1/24 on hsvlan100")


def test_teardown_deletes_only_the_host_veth_and_only_when_present():
    desired = compile_teardown(conf_of(), ATTACH)
    veth_key = ObjectKey("node", "veth", host_veth_name(ATTACH))
    assert diff(desired, {veth_key: None}).empty
    plan = diff(desired, {veth_key: Observed({"kind": "veth"})})
    assert [(s.op, s.obj.key) for s in plan.steps] == [(DELETE, veth_key)]


def test_dual_stack_leases_give_two_gateways_and_both_forwarding_sysctls():
    lease6 = AddressLease(ipaddress.ip_interface("fd00:10::5/64"), ipaddress.ip_address("fd00:10::1"))
    desired = compile_desired(conf_of(vlanID=None, isDefaultGateway=True), ATTACH, [LEASE, lease6], [])
    gateways = sorted(str(a.interface) for a in desired.by_kind(Address) if a.namespace == "node")
    assert gateways == ["10.244.1.1/24", "fd00:10::1/64"]
    assert sorted(s.path for s in desired.by_kind(Sysctl)) == ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"]
    defaults = sorted(str(r.gateway) for r in desired.by_kind(Route) if r.dst.prefixlen == 0)
    assert defaults == ["10.244.1.1", "fd00:10::1"]


def test_plan_serialises_to_json():
    plan = diff(seed_desired(), {})
    doc = json.loads(json.dumps(plan.to_dict()))
    assert doc["summary"] == {"create": 9, "modify": 0, "delete": 0}
    assert doc["steps"][0] == {
        "op": "create",
        "ns": "node",
        "kind": "bridge",
        "name": "hsvlan100",
        "changes": [
            {"attr": "kind", "before": None, "after": "bridge"},
            {"attr": "up", "before": None, "after": True},
            {"attr": "promisc", "before": None, "after": False},
            {"attr": "mtu", "before": None, "after": 1500},
            {"attr": "vlan_filtering", "before": None, "after": True},
        ],
        "reason": "missing",
    }


def test_pod_link_is_not_touched_by_other_plugins_changes():
    """Only managed attributes are compared: an extra observed attribute is not drift."""
    desired = seed_desired()
    snapshot = realized(desired)
    snapshot[ObjectKey("pod", "link", "eth0")].attrs["qdisc"] = "fq_codel"
    assert diff(desired, snapshot).empty
    assert isinstance(desired.get(ObjectKey("pod", "link", "eth0")), PodLink)


def test_vlan_trunk_port_members():
    desired = seed_desired(vlanTrunk=[{"id": 200}, {"minID": 300, "maxID": 303}])
    port = next(p for p in desired.by_kind(PortVlans) if p.port == host_veth_name(ATTACH))
    assert port.desired() == {"vlans": ["100 pvid untagged", "200", "300-303"]}
    desired = seed_desired(vlanID=None, isGateway=False, vlanTrunk=[{"id": 200}])
    port = next(p for p in desired.by_kind(PortVlans))
    assert port.desired() == {"vlans": ["1 pvid untagged", "200"]}, "a trunk without access VLAN keeps PVID 1"
    assert desired.by_kind(Bridge)[0].desired()["vlan_filtering"] is True


@pytest.mark.parametrize(
    ("trunk", "message"),
    [
        ([{"minID": 5}], "vlanTrunk[0]: minID and maxID are both required without id"),
        ([{"minID": 9, "maxID": 5}], "vlanTrunk[0]: minID 9 is greater than maxID 5"),
        ([{"id": 5000}], "vlanTrunk[0].id: 5000 is greater than the maximum of 4094"),
    ],
)
def test_bad_vlan_trunk_is_a_config_error(trunk, message):
    from intent.errors import CniError

    with pytest.raises(CniError) as err:
        conf_of(vlanTrunk=trunk)
    assert err.value.code == 7 and message in err.value.msg


def test_uplink_adds_a_vlan_node_enslaved_to_the_bridge():
    from compiler.graph import vlan_device_name
    from compiler.model import Uplink, VlanDevice

    desired = seed_desired(uplink="eth1")
    device = desired.by_kind(VlanDevice)[0]
    assert device.desired() == {"kind": "vlan", "vlan_id": 100, "parent": "eth1", "master": "hsvlan100", "up": True}
    assert desired.graph.has_edge(ObjectKey("node", "uplink", "eth1"), device.key)
    assert desired.graph.has_edge(ObjectKey("node", "bridge", "hsvlan100"), device.key)
    port = next(p for p in desired.by_kind(PortVlans) if p.port == "eth1.100")
    assert port.desired() == {"vlans": ["100 pvid untagged"]}
    assert desired.by_kind(Uplink)[0].desired() == {"up": True}
    assert vlan_device_name("enp0s31f6long", 100) == "enp0s31f6" + vlan_device_name("enp0s31f6long", 100)[9:]
    assert len(vlan_device_name("enp0s31f6long", 4094)) == 15
    assert vlan_device_name("enp0s31f6long", 100) != vlan_device_name("enp0s31f6lonh", 100)


def test_uplink_trunk_mode_enslaves_the_uplink_as_a_tagged_port():
    from compiler.model import Uplink, VlanDevice

    desired = seed_desired(uplink="eth1", uplinkMode="trunk")
    assert desired.by_kind(VlanDevice) == []
    assert desired.by_kind(Uplink)[0].desired() == {"up": True, "master": "hsvlan100"}
    port = next(p for p in desired.by_kind(PortVlans) if p.port == "eth1")
    assert port.desired() == {"vlans": ["100"]} and not port.exact
    snapshot = realized(desired)
    snapshot[port.key].attrs["vlans"] = ["1 pvid untagged", "100", "200"]
    assert diff(desired, snapshot).empty, "other VLANs on a shared trunk are not drift"


def test_a_missing_uplink_is_a_clear_error_and_a_wrong_vlan_device_a_conflict():
    from compiler.model import VlanDevice

    desired = seed_desired(uplink="eth1")
    snapshot = realized(desired)
    snapshot[ObjectKey("node", "uplink", "eth1")] = None
    plan = diff(desired, snapshot)
    assert [(s.conflict, s.conflict_code) for s in plan.conflicts] == [
        ("uplink eth1 does not exist in the node namespace", 105)
    ]
    snapshot = realized(desired)
    key = desired.by_kind(VlanDevice)[0].key
    snapshot[key].attrs["vlan_id"] = 200
    assert "cannot change in place" in diff(desired, snapshot).conflicts[0].conflict


def test_uplink_needs_a_vlan():
    from intent.errors import CniError

    with pytest.raises(CniError) as err:
        conf_of(vlanID=None, uplink="eth1")
    assert err.value.msg == "invalid network config: uplink needs vlanID (or vlan)"


def _networkx_order(desired):
    """The order as networkx sorts this very graph, nothing remembered."""
    from compiler.networkx_lean import lexicographical_topological_sort

    def tie_break(key):
        obj = desired.graph.nodes[key]["obj"]
        return (0 if obj.ns == NODE_NS else 1, obj.rank, str(key))

    return [desired.graph.nodes[k]["obj"] for k in lexicographical_topological_sort(desired.graph, key=tie_break)]


def test_the_remembered_order_is_networkx_order_for_every_graph_of_a_shape(monkeypatch):
    """Pods of one conf share a graph shape; names that sort the other way (10.244.1.9 against
    10.244.1.10, one container id against another) must still get networkx's own order."""
    import compiler.graph as graph

    monkeypatch.setattr(graph, "_orders", {})
    graphs = []
    for cid, address in (("c0ffee", "10.244.1.9/24"), ("beef", "10.244.1.10/24"), ("aaa", "10.244.1.200/24")):
        lease = AddressLease(ipaddress.ip_interface(address), ipaddress.ip_address("10.244.1.1"))
        attachment = Attachment("loxilight_cni", cid, "eth0", f"/var/run/netns/{cid}")
        for conf in (conf_of(), conf_of(isDefaultGateway=True), conf_of(vlanID=None)):
            graphs.append(compile_desired(conf, attachment, [lease], ROUTES))
            graphs.append(compile_teardown(conf, attachment, pod=True))
    for desired in graphs + graphs:  # the second pass is answered from what the first remembered
        assert desired.order() == _networkx_order(desired)
    assert 0 < len(graph._orders) < len(graphs)
