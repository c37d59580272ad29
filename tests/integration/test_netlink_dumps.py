"""applier.netlink.dumps return exactly the asked link's addresses, table's routes and
bridge's ports, from a namespace that holds others of each (real kernel, own namespace)."""

from __future__ import annotations

from applier.netlink.dumps import addresses_of, ports_of, routes_of_table
from applier.netns import Namespaces
from compiler.model import POD_NS

AF_INET, AF_INET6 = 2, 10


def test_dumps_are_filtered_to_the_asked_link_table_and_master(netns):
    ns = netns("dumps")
    ns.ip_run("link", "add", "br0", "type", "bridge")
    ns.ip_run("link", "add", "br1", "type", "bridge")
    for i in range(4):
        ns.ip_run("link", "add", f"v{i}", "type", "veth", "peer", "name", f"p{i}")
    for port, bridge in (("v0", "br0"), ("v1", "br0"), ("v2", "br1")):
        ns.ip_run("link", "set", port, "master", bridge)
    for name in ("br0", "br1", "v3", "p3"):
        ns.ip_run("link", "set", name, "up")
    ns.ip_run("addr", "add", "10.77.0.1/24", "dev", "br0")
    ns.ip_run("addr", "add", "fd77::1/64", "dev", "br0", "nodad")
    ns.ip_run("addr", "add", "10.77.1.1/24", "dev", "br1")
    ns.ip_run("addr", "add", "10.77.3.1/24", "dev", "v3")
    ns.ip_run("route", "add", "10.78.0.0/16", "dev", "br0")
    ns.ip_run("route", "add", "10.79.0.0/16", "dev", "br0", "table", "100")
    with Namespaces.for_pod(ns.path) as namespaces:
        ipr = namespaces.ipr(POD_NS)
        br0 = namespaces.link_index(POD_NS, "br0")
        br1 = namespaces.link_index(POD_NS, "br1")
        on_br0 = sorted((msg["family"], msg.get("IFA_ADDRESS")) for msg in addresses_of(ipr, br0))
        assert [a for a in on_br0 if a[0] == AF_INET] == [(AF_INET, "10.77.0.1")]
        assert (AF_INET6, "fd77::1") in on_br0
        assert {msg["index"] for msg in addresses_of(ipr, br0)} == {br0}
        assert sorted(msg.get("IFLA_IFNAME") for msg in ports_of(ipr, br0)) == ["v0", "v1"]
        assert [msg.get("IFLA_IFNAME") for msg in ports_of(ipr, br1)] == ["v2"]
        main = sorted((msg.get("RTA_DST"), msg["dst_len"]) for msg in routes_of_table(ipr, AF_INET, 254))
        assert main == [("10.77.0.0", 24), ("10.77.1.0", 24), ("10.77.3.0", 24), ("10.78.0.0", 16)]
        assert [msg.get("RTA_DST") for msg in routes_of_table(ipr, AF_INET, 100)] == ["10.79.0.0"]
        assert all(msg["family"] == AF_INET6 for msg in routes_of_table(ipr, AF_INET6, 254))
