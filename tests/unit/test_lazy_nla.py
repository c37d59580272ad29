"""applier.netlink.messages decodes as pyroute2 decodes, and builds only what is read.

Messages are encoded by pyroute2 and decoded both ways; nothing is sent.
tests/integration/test_rtnl_socket.py compares the two on messages read
from a real kernel.
"""

from __future__ import annotations

import gc
import struct

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from applier.netlink.messages import IndexedIfinfmsg, LazyIfaddrmsg, LazyRtmsg, LazySlot

RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24


def encoded(cls, msg_type: int, fields: dict, attrs: list) -> bytes:
    msg = cls()
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = msg_type
    msg.encode()
    return bytes(msg.data)


def decoded(cls, data: bytes):
    msg = cls(data)
    msg.decode()
    return msg


def bridge_port() -> bytes:
    """A veth enslaved to a bridge, with hairpin on: what observe reads of a host veth."""
    slave_data = {"attrs": [("IFLA_BRPORT_STATE", 3), ("IFLA_BRPORT_MODE", 1), ("IFLA_BRPORT_ISOLATED", 0)]}
    linkinfo = [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", slave_data)]
    attrs = [
        ("IFLA_IFNAME", "loxi0a1b2c3d"),
        ("IFLA_MTU", 1400),
        ("IFLA_MASTER", 3),
        ("IFLA_LINK", 9),
        ("IFLA_LINKINFO", {"attrs": linkinfo}),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"),
        ("IFLA_ALT_IFNAME", "first"),
        ("IFLA_ALT_IFNAME", "second"),
    ]
    return encoded(ifinfmsg, RTM_NEWLINK, {"index": 7, "flags": 1}, attrs)


def bridge() -> bytes:
    data = {"attrs": [("IFLA_BR_VLAN_FILTERING", 1), ("IFLA_BR_STP_STATE", 0), ("IFLA_BR_VLAN_DEFAULT_PVID", 1)]}
    attrs = [
        ("IFLA_IFNAME", "cni0"),
        ("IFLA_MTU", 1500),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", data)]}),
    ]
    return encoded(ifinfmsg, RTM_NEWLINK, {"index": 3, "flags": 0x1003}, attrs)


def built(msg) -> list[str]:
    return [slot.name for slot in msg["attrs"] if slot._built is not None]


@pytest.mark.parametrize("make", [bridge_port, bridge])
def test_a_link_decodes_to_what_pyroute2_decodes(make):
    data = make()
    assert decoded(IndexedIfinfmsg, data).dump() == decoded(ifinfmsg, data).dump()


def test_reads_answer_as_pyroute2_answers_them():
    data = bridge_port()
    lazy, eager = decoded(IndexedIfinfmsg, data), decoded(ifinfmsg, data)
    for key in ("IFLA_IFNAME", "IFLA_MTU", "IFLA_MASTER", "IFLA_LINK", "IFLA_ADDRESS", "IFLA_ALT_IFNAME", "index"):
        assert lazy.get(key) == eager.get(key), key
    assert lazy.get("IFLA_ALT_IFNAME") == "first" and lazy.get("IFLA_OPERSTATE", "none") == "none"
    path = ("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_MODE")
    assert lazy.get(path) == eager.get(path) == 1
    assert [name for name, _ in lazy["attrs"]] == [name for name, _ in eager["attrs"]]


def test_only_the_attributes_read_are_built():
    lazy = decoded(IndexedIfinfmsg, bridge_port())
    assert len(lazy["attrs"]) == 8 and all(isinstance(slot, LazySlot) for slot in lazy["attrs"])
    assert built(lazy) == []
    assert lazy.get("IFLA_MTU") == 1400
    assert built(lazy) == ["IFLA_MTU"]
    slave = lazy.get("IFLA_LINKINFO").get("IFLA_INFO_SLAVE_DATA")
    assert built(lazy) == ["IFLA_MTU", "IFLA_LINKINFO"]
    assert slave.get("IFLA_BRPORT_MODE") == 1
    assert [slot.name for slot in slave["attrs"]] == ["IFLA_BRPORT_STATE", "IFLA_BRPORT_MODE", "IFLA_BRPORT_ISOLATED"]
    assert built(slave) == ["IFLA_BRPORT_MODE"]  # the nested level is lazy too


def test_a_bridges_data_is_read_lazily():
    lazy = decoded(IndexedIfinfmsg, bridge())
    data = lazy.get("IFLA_LINKINFO").get("IFLA_INFO_DATA")
    assert data.get("IFLA_BR_VLAN_FILTERING") == 1
    assert built(data) == ["IFLA_BR_VLAN_FILTERING"]


def test_an_unknown_attribute_and_an_overlong_length_are_bounded_as_pyroute2_bounds_them():
    data = bytearray(encoded(ifinfmsg, RTM_NEWLINK, {"index": 2}, [("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 9000)]))
    data += struct.pack("=HH", 8, 0x7FF0) + b"\x01\x02\x03\x04"  # a type no map knows
    data += struct.pack("=HH", 64, 4) + b"\x00\x00\x01\x00"  # IFLA_MTU claiming more than the message holds
    struct.pack_into("=I", data, 0, len(data))
    lazy, eager = decoded(IndexedIfinfmsg, bytes(data)), decoded(ifinfmsg, bytes(data))
    assert [slot.name for slot in lazy["attrs"]] == [slot.name for slot in eager["attrs"]]
    assert [slot.name for slot in lazy["attrs"]][-2:] == ["UNKNOWN", "IFLA_MTU"]
    assert lazy.dump() == eager.dump()


def test_addresses_and_routes_decode_to_what_pyroute2_decodes():
    addr = encoded(
        ifaddrmsg,
        RTM_NEWADDR,
        {"family": 2, "prefixlen": 24, "index": 3},
        [("IFA_ADDRESS", "10.88.0.1"), ("IFA_LOCAL", "10.88.0.1"), ("IFA_LABEL", "cni0")],
    )
    route = encoded(
        rtmsg,
        RTM_NEWROUTE,
        {"family": 2, "dst_len": 16, "table": 254, "proto": 4, "type": 1},
        [("RTA_DST", "10.89.0.0"), ("RTA_GATEWAY", "10.88.0.9"), ("RTA_OIF", 3), ("RTA_TABLE", 254)],
    )
    assert decoded(LazyIfaddrmsg, addr).dump() == decoded(ifaddrmsg, addr).dump()
    assert decoded(LazyRtmsg, route).dump() == decoded(rtmsg, route).dump()
    assert decoded(LazyRtmsg, route).get("RTA_GATEWAY") == "10.88.0.9"


def test_a_slot_outliving_its_message_says_so():
    lazy = decoded(IndexedIfinfmsg, bridge_port())
    slot = lazy["attrs"][1]
    del lazy
    gc.collect()
    assert slot.name == "IFLA_MTU"
    with pytest.raises(ReferenceError):
        slot.get_value()
