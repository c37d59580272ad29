"""RtnlSocket has no generic fallback to IPRoute: a name it does not define is an AttributeError, and
each call it leaves to IPRoute (applier/netlink/fallbacks.py, one method by name) gives IPRoute's
answer and effect on a real kernel (own namespaces)."""

from __future__ import annotations

import errno
import os

import pytest
from pyroute2.iproute.linux import RTNL_API

from applier.netlink import IPRoute, NetlinkError
from applier.netlink.fallbacks import IPRouteFallbacks
from applier.netlink.socket import RtnlSocket
from applier.netns import Namespaces
from compiler.model import POD_NS

NAMED = {"brport", "vlan_filter", "get_vlans", "get_links", "get_netnsid"}


def vids(sock, index: int) -> set[int]:
    """The VLANs of bridge port `index`, from `sock.get_vlans` (as applier.observe reads them)."""
    found = set()
    for entry in sock.get_vlans(index=index):
        if entry["index"] == index and entry.get("IFLA_AF_SPEC"):
            found |= {v["vid"] for name, v in entry.get("IFLA_AF_SPEC")["attrs"] if name == "IFLA_BRIDGE_VLAN_INFO"}
    return found


def test_a_name_the_socket_does_not_define_is_an_attribute_error(netns):
    assert not hasattr(RtnlSocket, "__getattr__")
    ns = netns("nlfbnone")
    with Namespaces.for_pod(ns.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        for name in ("get_addr", "get_routes", "neigh", "rule", "fdb", "flush_routes", "no_such_call"):
            assert hasattr(RTNL_API, name) or name == "no_such_call"  # IPRoute has it: it once went there
            with pytest.raises(AttributeError):
                getattr(rtnl, name)
        assert rtnl._iproute is None  # asking opened nothing


def test_every_named_fallback_is_tested_here():
    """A new call to IPRoute is a new method in fallbacks.py, and a new check below."""
    public = {name for name in vars(IPRouteFallbacks) if not name.startswith("_")}
    assert public - {"iproute"} == NAMED


def test_each_named_fallback_gives_the_answer_and_effect_of_iproute(netns):
    ns, other = netns("nlfb"), netns("nlfbother")
    ns.ip_run("link", "add", "br0", "type", "bridge")
    ns.ip_run("link", "add", "v0", "type", "veth", "peer", "name", "p0")
    ns.ip_run("link", "set", "v0", "master", "br0")
    ns.ip_run("netns", "set", other.name, "7")  # the id `ns` gives `other`
    with Namespaces.for_pod(ns.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        with namespaces.inside(POD_NS):
            full = IPRoute(ext_ack=True, strict_check=True)
        try:
            v0 = rtnl.link_lookup(ifname="v0")[0]

            rtnl.brport("set", index=v0, mode=1)
            assert ns.link("v0")["linkinfo"]["info_slave_data"]["hairpin"] is True
            rtnl.brport("set", index=v0, isolated=1)
            assert ns.link("v0")["linkinfo"]["info_slave_data"]["isolated"] is True

            # Without VLAN filtering in the kernel (this CI's; the kernel tier has it) the kernel
            # refuses: then both refuse alike. With it, the VLAN is added and read back alike.
            try:
                full.vlan_filter("add", index=v0, vlan_info={"vid": 101})
            except NetlinkError as refused:
                with pytest.raises(NetlinkError) as also:
                    rtnl.vlan_filter("add", index=v0, vlan_info={"vid": 100})
                assert also.value.code == refused.code == errno.EOPNOTSUPP
                assert vids(rtnl, v0) == vids(full, v0) == set()
            else:
                rtnl.vlan_filter("add", index=v0, vlan_info={"vid": 100})
                assert {100, 101} <= vids(rtnl, v0) == vids(full, v0)
                rtnl.vlan_filter("del", index=v0, vlan_info={"vid": 100})
                assert 100 not in vids(full, v0)

            def names(links):
                return sorted(msg.get("IFLA_IFNAME") for msg in links)

            assert names(rtnl.get_links()) == names(full.get_links()) == ["br0", "lo", "p0", "v0"]

            fd = os.open(other.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                assert rtnl.get_netnsid(fd=fd).get("nsid") == full.get_netnsid(fd=fd).get("nsid") == 7
            finally:
                os.close(fd)
            assert isinstance(rtnl._iproute, IPRoute)  # each went to the socket's own IPRoute
        finally:
            full.close()
