"""applier.netlink.requests' messages are the ones pyroute2's IPRoute sends for the same calls.

The expected headers, fields and attributes were read off the wire (strace of
IPRoute 0.9.7 making each call); IFLA_EXT_MASK on link reads is ours (skip the
counters). Calls outside the encoded set are Unsupported, so RtnlSocket hands
them to IPRoute. Pure data: nothing is sent.
"""

from __future__ import annotations

import struct

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

import applier.netlink.requests as rtnl_module
from applier.netlink.messages import IndexedIfinfmsg
from applier.netlink.monitor import _unlisted
from applier.netlink.requests import (
    RTEXT_FILTER_SKIP_STATS,
    Unsupported,
    encode_addr,
    encode_link,
    encode_route,
    encoded_request,
)

REQ, ACK, CREATE, EXCL, REPLACE, DUMP = 0x1, 0x4, 0x400, 0x200, 0x100, 0x300
SKIP_STATS = ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)


def wire(encoded):
    """(type, flags, fixed fields, attrs) of an encoded message, decoded back with pyroute2."""
    msg, msg_type, flags = encoded
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg.encode()
    back = type(msg)(msg.data)
    back.decode()
    fields = {name: back[name] for name, _ in back.fields if not name.startswith("__")}
    attrs = [(slot[0], slot[1]) for slot in back["attrs"]]
    return back["header"]["type"], back["header"]["flags"], fields, attrs


LINK0 = {"family": 0, "ifi_type": 0, "index": 0, "flags": 0, "change": 0}


def test_link_get_by_name_and_by_index():
    assert wire(encode_link("get", {"ifname": "br0"})) == (18, REQ | ACK, LINK0, [("IFLA_IFNAME", "br0"), SKIP_STATS])
    assert wire(encode_link("get", {"index": 7})) == (18, REQ | ACK, {**LINK0, "index": 7}, [SKIP_STATS])


def test_ports_of_a_bridge_are_a_dump_filtered_by_master():
    assert wire(encode_link("dump", {"master": 2})) == (
        18,
        REQ | DUMP,
        LINK0,
        [("IFLA_MASTER", 2), SKIP_STATS],
    )


def test_link_set_state_flags_master_mtu_mac_alias_and_del():
    up = {**LINK0, "index": 3, "flags": 1, "change": 1}
    assert wire(encode_link("set", {"index": 3, "state": "up"})) == (16, REQ | ACK, up, [])
    assert wire(encode_link("set", {"index": 3, "state": "down"}))[2] == {**up, "flags": 0}
    promisc = {**LINK0, "index": 2, "flags": 0x100, "change": 0x100}
    assert wire(encode_link("set", {"index": 2, "flags": 0x100, "change": 0x100})) == (16, REQ | ACK, promisc, [])
    assert wire(encode_link("set", {"index": 3, "master": 0}))[3] == [("IFLA_MASTER", 0)]
    assert wire(encode_link("set", {"index": 3, "mtu": 1300}))[3] == [("IFLA_MTU", 1300)]
    assert wire(encode_link("set", {"index": 3, "address": "02:00:00:00:00:09"}))[3] == [
        ("IFLA_ADDRESS", "02:00:00:00:00:09")
    ]
    assert wire(encode_link("set", {"ifname": "v0", "ifalias": "loxi-owner"})) == (
        16,
        REQ | ACK,
        LINK0,
        [("IFLA_IFNAME", "v0"), ("IFLA_IFALIAS", "loxi-owner")],
    )
    assert wire(encode_link("del", {"index": 3})) == (17, REQ | ACK, {**LINK0, "index": 3}, [])


def test_veth_pair_in_one_message_with_the_peer_in_another_namespace():
    spec = {
        "ifname": "v0",
        "kind": "veth",
        "peer": {"ifname": "eth0", "net_ns_fd": 4, "address": "02:00:00:00:00:02", "mtu": 1400},
        "address": "02:00:00:00:00:01",
        "master": 2,
        "state": "up",
        "mtu": 1400,
    }
    msg_type, flags, fields, attrs = wire(encode_link("add", spec))
    assert (msg_type, flags, fields) == (16, REQ | ACK | CREATE | EXCL, {**LINK0, "flags": 1, "change": 1})
    assert attrs[:4] == [
        ("IFLA_IFNAME", "v0"),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"),
        ("IFLA_MASTER", 2),
        ("IFLA_MTU", 1400),
    ]
    name, linkinfo = attrs[4]
    assert name == "IFLA_LINKINFO"
    assert linkinfo.get("IFLA_INFO_KIND") == "veth"
    peer = linkinfo.get(("IFLA_INFO_DATA", "VETH_INFO_PEER"))
    assert [(slot[0], slot[1]) for slot in peer["attrs"]] == [
        ("IFLA_IFNAME", "eth0"),
        ("IFLA_NET_NS_FD", 4),
        ("IFLA_ADDRESS", "02:00:00:00:00:02"),
        ("IFLA_MTU", 1400),
    ]


def test_addresses_v4_with_local_v6_with_nodad_flag_and_the_dump():
    v4 = {"family": 2, "prefixlen": 24, "flags": 0, "scope": 0, "index": 2}
    assert wire(encode_addr("add", {"index": 2, "address": "10.1.0.1", "prefixlen": 24})) == (
        20,
        REQ | ACK | CREATE | EXCL,
        v4,
        [("IFA_ADDRESS", "10.1.0.1"), ("IFA_LOCAL", "10.1.0.1")],
    )
    assert wire(encode_addr("add", {"index": 2, "address": "fd00::1", "prefixlen": 64, "flags": 2})) == (
        20,
        REQ | ACK | CREATE | EXCL,
        {**v4, "family": 10, "prefixlen": 64},
        [("IFA_ADDRESS", "fd00::1"), ("IFA_FLAGS", 2)],
    )
    assert wire(encode_addr("del", {"index": 2, "address": "10.1.0.1", "prefixlen": 24}))[:2] == (21, REQ | ACK)
    assert wire(encode_addr("dump", {"index": 2})) == (
        22,
        REQ | DUMP,
        {"family": 0, "prefixlen": 0, "flags": 0, "scope": 0, "index": 2},
        [],
    )


def test_routes_replace_del_and_the_table_dump():
    base = {"family": 2, "dst_len": 12, "src_len": 0, "tos": 0, "table": 0, "proto": 76, "scope": 0, "type": 1}
    base["flags"] = 0
    net = {"dst": "10.96.0.0/12", "oif": 2, "proto": 76, "table": 254}
    assert wire(encode_route("replace", net)) == (
        24,
        REQ | ACK | CREATE | REPLACE,
        base,
        [("RTA_DST", "10.96.0.0"), ("RTA_OIF", 2), ("RTA_TABLE", 254)],
    )
    default = {"dst": "0.0.0.0/0", "oif": 2, "proto": 76, "table": 254, "gateway": "10.1.0.254"}
    assert wire(encode_route("replace", default))[2:] == (
        {**base, "dst_len": 0},
        [("RTA_OIF", 2), ("RTA_TABLE", 254), ("RTA_GATEWAY", "10.1.0.254")],
    )
    v6 = {"dst": "fd01::/64", "oif": 2, "proto": 76, "table": 254, "gateway": "fd00::2"}
    assert wire(encode_route("replace", v6))[2:] == (
        {**base, "family": 10, "dst_len": 64},
        [("RTA_DST", "fd01::"), ("RTA_OIF", 2), ("RTA_TABLE", 254), ("RTA_GATEWAY", "fd00::2")],
    )
    assert wire(encode_route("append", default)) == (
        24,
        REQ | ACK | CREATE | 0x800,  # NLM_F_APPEND, as IPRoute.route("append") sends
        {**base, "dst_len": 0},
        [("RTA_OIF", 2), ("RTA_TABLE", 254), ("RTA_GATEWAY", "10.1.0.254")],
    )
    assert wire(encode_route("del", net)) == (
        25,
        REQ | ACK,
        {**base, "type": 0},
        [("RTA_DST", "10.96.0.0"), ("RTA_OIF", 2), ("RTA_TABLE", 254)],
    )
    assert wire(encode_route("dump", {"family": 2, "table": 254})) == (
        26,
        REQ | DUMP,
        {**base, "dst_len": 0, "proto": 0, "type": 0},
        [("RTA_TABLE", 254)],
    )


@pytest.mark.parametrize(
    ("encoder", "command", "kwarg"),
    [
        (encode_link, "add", {"ifname": "br0", "kind": "bridge"}),
        (encode_link, "add", {"ifname": "v.1", "kind": "vlan", "link": 2, "vlan_id": 1}),
        (encode_link, "set", {"index": 2, "kind": "bridge", "br_vlan_filtering": 1}),
        (encode_link, "set", {"index": 2, "state": "dormant"}),
        (encode_link, "add", {"ifname": "v0", "kind": "veth", "peer": "eth0"}),
        (encode_link, "add", {"ifname": "v0", "kind": "veth", "peer": {"ifname": "e", "net_ns_pid": 1}}),
        (encode_link, "get", {"ifname": "a", "index": 1}),
        (encode_link, "dump", {}),
        (encode_addr, "add", {"index": 2, "address": "10.0.0.1", "prefixlen": 24, "broadcast": "10.0.0.255"}),
        (encode_addr, "replace", {"index": 2, "address": "10.0.0.1", "prefixlen": 24}),
        (encode_route, "replace", {"dst": "10.0.0.0/8", "oif": 2, "table": 254, "priority": 5}),
        (encode_route, "get", {"dst": "10.0.0.1"}),
    ],
)
def test_calls_outside_the_encoded_set_are_left_to_iproute(encoder, command, kwarg):
    with pytest.raises(Unsupported):
        encoder(command, kwarg)


def notification(msg_type: int, family: int, index: int, attrs: bytes = b"") -> bytes:
    """One rtnetlink link notification as the kernel writes it (nlmsghdr + ifinfomsg + attributes)."""
    body = struct.pack("=BxHiII", family, 1, index, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), msg_type, 0, 0, 0) + body


def test_a_link_is_unlisted_by_its_own_dellink_only():
    """RTM_DELLINK (17) of family AF_UNSPEC for that index; the bridge's AF_BRIDGE (7) DELLINK for a port
    leaving it, a NEWLINK, or another link's DELLINK do not count."""
    pad = b"\x08\x00\x03\x00eth\x00"  # IFLA_IFNAME "eth", 4-byte aligned
    assert _unlisted(notification(17, 0, 7, pad), 7)
    assert not _unlisted(notification(17, 7, 7), 7)
    assert not _unlisted(notification(16, 0, 7), 7)
    assert not _unlisted(notification(17, 0, 8), 7)
    batch = notification(17, 7, 7) + notification(16, 0, 9, pad) + notification(17, 0, 7)
    assert _unlisted(batch, 7)
    assert not _unlisted(b"", 7) and not _unlisted(b"\x00" * 40, 7)  # a zero length ends the walk


def test_indexed_link_messages_read_as_pyroute2_reads_them():
    """IndexedIfinfmsg.get answers what ifinfmsg.get answers: the first attribute of a name, a field,
    a nested path, or the default."""
    msg = ifinfmsg()
    msg["index"], msg["flags"] = 5, 1
    msg["attrs"] = [
        ("IFLA_IFNAME", "eth0"),
        ("IFLA_MTU", 1500),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}),
        ("IFLA_MASTER", 3),
        ("IFLA_ALT_IFNAME", "first"),
        ("IFLA_ALT_IFNAME", "second"),
    ]
    msg["header"]["type"] = 16
    msg.encode()
    plain, indexed = ifinfmsg(msg.data), IndexedIfinfmsg(msg.data)
    plain.decode()
    indexed.decode()
    keys = ["IFLA_IFNAME", "IFLA_MTU", "IFLA_ADDRESS", "IFLA_MASTER", "IFLA_ALT_IFNAME", "IFLA_LINK", "index", "flags"]
    for key in keys:
        assert indexed.get(key) == plain.get(key) and indexed.get(key, "x") == plain.get(key, "x"), key
    assert indexed.get("IFLA_ALT_IFNAME") == "first" and indexed.get("IFLA_LINK", -1) == -1
    assert indexed.get("IFLA_LINKINFO").get("IFLA_INFO_KIND") == "veth"
    assert indexed.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "veth"


def test_an_encoding_is_remembered_by_its_arguments(monkeypatch):
    """encoded_request gives pyroute2's bytes; the same arguments are not encoded twice, and a call
    with an unhashable value (a veth's peer) is encoded every time."""
    afresh = []
    real = rtnl_module._encode
    monkeypatch.setattr(rtnl_module, "_encode", lambda *args: afresh.append(args[1:]) or real(*args))
    rtnl_module._encode_remembered.cache_clear()
    msg, msg_type, flags = encode_link("get", {"ifname": "cni-remember"})
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg.encode()
    first = encoded_request(encode_link, "get", {"ifname": "cni-remember"})
    assert first == bytes(msg.data)
    assert encoded_request(encode_link, "get", {"ifname": "cni-remember"}) == first
    assert encoded_request(encode_link, "get", {"ifname": "cni-other"}) != first
    assert afresh == [("get", {"ifname": "cni-remember"}), ("get", {"ifname": "cni-other"})]
    veth = {"ifname": "loxi1", "kind": "veth", "peer": {"ifname": "eth0"}}
    assert (
        encoded_request(encode_link, "add", veth)
        == encoded_request(encode_link, "add", veth)
        == real(encode_link, "add", veth)
    )
    assert afresh[2:] == []  # packed directly (encode_veth_add), not by pyroute2
    odd = {**veth, "peer": {"ifname": "eth0", "address": "2:0:0:0:0:1"}}  # a spelling left to pyroute2
    assert encoded_request(encode_link, "add", odd) == real(encode_link, "add", odd)
    assert afresh[2:] == [("add", odd)]
    with pytest.raises(Unsupported):  # never remembered as an answer
        encoded_request(encode_link, "add", {"ifname": "br0", "kind": "bridge"})


@pytest.mark.parametrize("name_len", range(1, 16))
@pytest.mark.parametrize("shape", range(8))
def test_a_veth_packed_directly_is_what_pyroute2_encodes(name_len, shape):
    """encode_veth_add's bytes are pyroute2's, whatever the names' lengths (padding) and the keys given."""
    peer = {"ifname": "e" * (16 - name_len)}
    spec = {"ifname": "v" * name_len, "kind": "veth", "peer": peer}
    if shape & 1:
        spec["address"], peer["address"] = "02:aa:bb:cc:dd:ee", "0A:11:22:33:44:5F"
    if shape & 2:
        spec["mtu"] = peer["mtu"] = 1400 + name_len
        peer["net_ns_fd"] = 7 + name_len
    if shape & 4:
        spec["master"], spec["state"] = 3 + name_len, "up" if name_len % 2 else "down"
    assert rtnl_module.encode_veth_add(spec) == rtnl_module._encode(encode_link, "add", spec)
    assert encoded_request(encode_link, "add", spec) == rtnl_module._encode(encode_link, "add", spec)


def test_a_veth_outside_the_plain_cases_is_refused_or_left_to_pyroute2():
    base = {"ifname": "v1", "kind": "veth", "peer": {"ifname": "eth0"}}
    with pytest.raises(Unsupported):
        rtnl_module.encode_veth_add({**base, "state": "sideways"})
    with pytest.raises(Unsupported):
        rtnl_module.encode_veth_add({**base, "peer": {"ifname": "eth0", "other": 1}})
    for odd in ({**base, "ifname": "vé"}, {**base, "mtu": True}, {**base, "address": "2:0:0:0:0:1"}):
        assert rtnl_module.encode_veth_add(odd) == rtnl_module._encode(encode_link, "add", odd)


def _per_pod_calls():
    for address, prefixlen in (("10.1.2.3", 16), ("192.168.255.254", 32), ("fd00::1", 64), ("2001:db8::abcd:1", 128)):
        for command in ("add", "del"):
            for extra in ({}, {"flags": 2}, {"flags": 0}):
                yield encode_addr, command, {"index": 5, "address": address, "prefixlen": prefixlen, **extra}
    for name_len in range(1, 16):
        yield encode_link, "set", {"ifname": "v" * name_len, "ifalias": "loxi-cni net pod " + "a" * name_len}
        yield encode_link, "set", {"index": name_len, "ifalias": "x" * name_len}
    for index in (1, 7, 65535, 2**31 - 1):
        yield encode_link, "del", {"index": index}


@pytest.mark.parametrize(("encoder", "command", "kwarg"), list(_per_pod_calls()))
def test_a_per_pod_request_packed_directly_is_what_pyroute2_encodes(encoder, command, kwarg):
    """packed_request's bytes (an address, an alias, a deletion: never the same twice) are pyroute2's."""
    assert rtnl_module.packed_request(encoder, command, kwarg) == rtnl_module._encode(encoder, command, kwarg)
    assert encoded_request(encoder, command, kwarg) == rtnl_module._encode(encoder, command, kwarg)


def test_a_per_pod_request_outside_the_plain_cases_is_left_to_pyroute2():
    odd = [
        (encode_link, "set", {"ifname": "vé", "ifalias": "x"}),
        (encode_link, "set", {"index": 3, "ifalias": "pod ünïcode"}),
        (encode_link, "del", {"index": True}),
        (encode_addr, "add", {"index": 2, "address": "10.1.0.1", "prefixlen": True}),
        (encode_addr, "add", {"index": 2, "address": "fd00::1", "prefixlen": 64, "flags": 1 << 33}),
    ]
    for encoder, command, kwarg in odd:
        assert rtnl_module.packed_request(encoder, command, kwarg) is None
    assert encoded_request(*odd[1]) == rtnl_module._encode(*odd[1])
    assert rtnl_module.packed_request(encode_link, "get", {"ifname": "eth0"}) is None  # remembered, not packed
    with pytest.raises(ValueError):  # refused as encode_addr refuses it
        encoded_request(encode_addr, "add", {"index": 2, "address": "10.1.0.300", "prefixlen": 24})


def _nlmsg(msg_type, flags, sequence, payload=b""):
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, sequence, 0) + payload


def test_replies_are_read_to_their_ack_or_the_dumps_end_without_decoding_them():
    """RtnlSocket's reader: ACKs and DONEs end a request undecoded, other sequences are skipped, an error
    is the kernel's NetlinkError, and a link lookup's reply is its index alone."""
    from applier.netlink import NetlinkError
    from applier.netlink.messages import RtnlMarshal
    from applier.netlink.socket import RtnlSocket

    sock = object.__new__(RtnlSocket)
    sock._marshal = RtnlMarshal()
    ack = _nlmsg(2, 0x100, 7, struct.pack("=i", 0) + _nlmsg(16, 5, 7))
    replies = []
    assert sock._parse_into(replies, _nlmsg(2, 0, 6, struct.pack("=i", -19) + _nlmsg(16, 5, 6)) + ack, 7)
    assert replies == []
    assert sock._parse_into(replies, _nlmsg(3, 2, 7, struct.pack("=i", 0)), 7)
    assert not sock._parse_into(replies, _nlmsg(3, 2, 6, struct.pack("=i", 0)), 7)
    with pytest.raises(NetlinkError) as refused:
        sock._parse_into(replies, _nlmsg(2, 0, 7, struct.pack("=i", -19) + _nlmsg(18, 5, 7)), 7)
    assert refused.value.code == 19 and refused.value.args == (19, "No such device")
    text = b"Nexthop has invalid gateway\0"
    extended = struct.pack("=i", -22) + _nlmsg(24, 5, 7) + struct.pack("=HH", 4 + len(text), 1) + text + b"\0"
    with pytest.raises(NetlinkError) as refused:  # the kernel's message: pyroute2 decodes the error
        sock._parse_into(replies, _nlmsg(2, 0x300, 7, extended), 7)
    assert refused.value.args == (22, "Nexthop has invalid gateway")
    link = ifinfmsg()
    link["index"], link["attrs"] = 42, [("IFLA_IFNAME", "eth0")]
    link["header"]["type"], link["header"]["sequence_number"] = 16, 7
    link.encode()
    assert sock._parse_into(replies, bytes(link.data) + ack, 7, links_as_index=True)
    assert replies == [42]
    assert sock._parse_into(replies, bytes(link.data) + ack, 7)
    assert replies[1]["index"] == 42 and replies[1].get("IFLA_IFNAME") == "eth0"


@pytest.mark.parametrize("kwarg", [{"ifname": "v" * n} for n in range(1, 16)] + [{"index": i} for i in (1, 2**31 - 1)])
def test_a_link_read_encoded_afresh_is_packed_as_pyroute2_encodes_it(kwarg):
    """A link read by a name not remembered (the pod's new veth) is packed directly, to pyroute2's bytes."""
    msg, msg_type, flags = encode_link("get", kwarg)
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg.encode()
    assert rtnl_module._packed_link_get(kwarg) == rtnl_module._encode(encode_link, "get", kwarg) == bytes(msg.data)


def test_a_link_read_outside_the_plain_cases_is_left_to_pyroute2():
    for kwarg in ({"ifname": "vé"}, {"index": True}, {"ifname": "v0", "index": 3}):
        assert rtnl_module._packed_link_get(kwarg) is None
    msg, msg_type, flags = encode_link("get", {"ifname": "vé"})
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg.encode()
    assert rtnl_module._encode(encode_link, "get", {"ifname": "vé"}) == bytes(msg.data)
