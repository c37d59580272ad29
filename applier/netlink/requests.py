"""The rtnetlink requests loxi-cni sends per pod, encoded as pyroute2's IPRoute encodes them, and remembered.

It exists apart from the socket (applier.netlink.socket) so that what goes on
the wire can be read, and is pinned, on its own: tests/unit/test_rtnl.py holds
every encoder here to the bytes IPRoute sends for the same call (read off the
wire), with nothing sent.

A pod's ADD, CHECK and DEL need a dozen plain requests (read a link, its
addresses, routes and bridge ports; make a veth pair; set a link; add an
address or a route). `encode_link`, `encode_addr` and `encode_route` build
each as pyroute2's own message class (ifinfmsg, ifaddrmsg, rtmsg), filled in
from the IPRoute call's arguments; a call outside that set (a bridge or VLAN
device to create, bridge port flags) is `Unsupported`, and the socket hands it
to IPRoute unchanged. `encoded_request` remembers an encoding by its arguments
(the agent sends the same reads for every pod), and packs the ones never the
same twice (a veth, an address, an alias, a deletion by index) directly into
their fixed layouts: a warm ADD pays a dict lookup or a struct.pack, not
pyroute2's 35-100 µs, per request.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Callable
from typing import Any

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

RTEXT_FILTER_SKIP_STATS = 1 << 3  # a link read without its IPv6 counters: a fifth fewer bytes to decode
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port
RECV_BUFFER = 1 << 16  # the kernel's dump messages and notification batches are at most 32 KiB
IFF_UP = 0x1
RTN_UNICAST = 1
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6

_LINK_SET_KEYS = frozenset({"index", "ifname", "state", "flags", "change", "master", "mtu", "address", "ifalias"})
_VETH_KEYS = frozenset({"ifname", "kind", "peer", "address", "master", "state", "mtu"})
_PEER_KEYS = frozenset({"ifname", "net_ns_fd", "address", "mtu"})
_ADDR_KEYS = frozenset({"index", "address", "prefixlen", "flags"})
_ROUTE_KEYS = frozenset({"dst", "oif", "proto", "table", "gateway"})
_ATTR_OF = {"ifname": "IFLA_IFNAME", "address": "IFLA_ADDRESS", "master": "IFLA_MASTER", "mtu": "IFLA_MTU"}


class Unsupported(Exception):
    """A call the encoders here do not take: the socket hands it to IPRoute unchanged."""


def _link_attrs(spec: dict[str, Any], names: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(_ATTR_OF[name], spec[name]) for name in names if name in spec]


def _state_flags(msg: ifinfmsg, state: str | None) -> None:
    if state is not None:
        if state not in ("up", "down"):
            raise Unsupported(f"state {state!r}")
        msg["flags"] = IFF_UP if state == "up" else 0
        msg["change"] = IFF_UP


def encode_link(command: str, kwarg: dict[str, Any]) -> tuple[ifinfmsg, int, int]:
    """(message, type, flags) of `IPRoute.link(command, **kwarg)`; Unsupported for anything else."""
    msg = ifinfmsg()
    msg["attrs"] = []
    if command == "get" and kwarg.keys() in ({"ifname"}, {"index"}):
        msg["index"] = kwarg.get("index", 0)
        msg["attrs"] = [*_link_attrs(kwarg, ("ifname",)), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        return msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK
    if command == "dump" and kwarg.keys() == {"master"}:
        msg["attrs"] = [("IFLA_MASTER", kwarg["master"]), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        return msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP
    if command == "del" and kwarg.keys() == {"index"}:
        msg["index"] = kwarg["index"]
        return msg, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK
    if command == "set" and kwarg.keys() <= _LINK_SET_KEYS and ("index" in kwarg or "ifname" in kwarg):
        msg["index"] = kwarg.get("index", 0)
        msg["flags"], msg["change"] = kwarg.get("flags", 0), kwarg.get("change", 0)
        _state_flags(msg, kwarg.get("state"))
        msg["attrs"] = _link_attrs(kwarg, ("ifname", "address", "master", "mtu"))
        if "ifalias" in kwarg:
            msg["attrs"].append(("IFLA_IFALIAS", kwarg["ifalias"]))
        return msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK
    if command == "add" and kwarg.get("kind") == "veth" and kwarg.keys() <= _VETH_KEYS:
        peer = kwarg.get("peer") or {}
        if not isinstance(peer, dict) or not peer.keys() <= _PEER_KEYS or "ifname" not in peer:
            raise Unsupported("veth peer")
        _state_flags(msg, kwarg.get("state"))
        peer_attrs = _link_attrs(peer, ("ifname",))
        if "net_ns_fd" in peer:
            peer_attrs.append(("IFLA_NET_NS_FD", peer["net_ns_fd"]))
        peer_attrs += _link_attrs(peer, ("address", "mtu"))
        peer_msg = {"attrs": peer_attrs, "family": 0, "ifi_type": 0, "index": 0, "flags": 0, "change": 0}
        info_data = {"attrs": [("VETH_INFO_PEER", peer_msg)]}
        linkinfo = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", info_data)]}
        msg["attrs"] = [*_link_attrs(kwarg, ("ifname", "address", "master", "mtu")), ("IFLA_LINKINFO", linkinfo)]
        return msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    raise Unsupported(f"link {command} {sorted(kwarg)}")


def encode_addr(command: str, kwarg: dict[str, Any]) -> tuple[ifaddrmsg, int, int]:
    """(message, type, flags) of `IPRoute.addr(command, **kwarg)`; Unsupported for anything else."""
    msg = ifaddrmsg()
    if command == "dump" and kwarg.keys() == {"index"}:
        msg["index"] = kwarg["index"]
        return msg, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP
    if command in ("add", "del") and {"index", "address", "prefixlen"} <= kwarg.keys() <= _ADDR_KEYS:
        address = ipaddress.ip_address(kwarg["address"])
        msg["family"] = AF_INET if address.version == 4 else AF_INET6
        msg["prefixlen"], msg["index"] = kwarg["prefixlen"], kwarg["index"]
        msg["attrs"] = [("IFA_ADDRESS", str(address))]
        if address.version == 4:
            msg["attrs"].append(("IFA_LOCAL", str(address)))
        if kwarg.get("flags"):
            msg["attrs"].append(("IFA_FLAGS", kwarg["flags"]))
        if command == "add":
            return msg, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        return msg, RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK
    raise Unsupported(f"addr {command} {sorted(kwarg)}")


def encode_route(command: str, kwarg: dict[str, Any]) -> tuple[rtmsg, int, int]:
    """(message, type, flags) of `IPRoute.route(command, **kwarg)`; Unsupported for anything else."""
    msg = rtmsg()
    if command == "dump" and kwarg.keys() == {"family", "table"}:
        msg["family"] = kwarg["family"]
        msg["attrs"] = [("RTA_TABLE", kwarg["table"])]
        return msg, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP
    if command in ("replace", "append", "del") and {"dst", "oif", "table"} <= kwarg.keys() <= _ROUTE_KEYS:
        dst = ipaddress.ip_network(kwarg["dst"])
        msg["family"] = AF_INET if dst.version == 4 else AF_INET6
        msg["dst_len"], msg["proto"] = dst.prefixlen, kwarg.get("proto", 0)
        msg["type"] = RTN_UNICAST if command != "del" else 0
        msg["attrs"] = [("RTA_DST", str(dst.network_address))] if dst.prefixlen else []
        msg["attrs"] += [("RTA_OIF", kwarg["oif"]), ("RTA_TABLE", kwarg["table"])]
        if kwarg.get("gateway"):
            msg["attrs"].append(("RTA_GATEWAY", str(ipaddress.ip_address(kwarg["gateway"]))))
        if command == "replace":
            return msg, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        if command == "append":  # a route beside any other to dst: never moves or takes one (engine's ADD)
            return msg, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        return msg, RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    raise Unsupported(f"route {command} {sorted(kwarg)}")


Encoder = Callable[[str, dict[str, Any]], tuple[Any, int, int]]
ENCODED_CACHE_SIZE = 512  # requests: a node's bridges, its pods' links and their reads


def _encode(encode: Encoder, command: str, kwarg: dict[str, Any]) -> bytes:
    """The request's bytes, made afresh: a plain link read packed directly (`_packed_link_get`), anything
    else by pyroute2 (`encode`'s message)."""
    if encode is encode_link and command == "get":
        packed = _packed_link_get(kwarg)
        if packed is not None:
            return packed
    msg, msg_type, flags = encode(command, kwarg)
    msg["header"]["type"], msg["header"]["flags"] = msg_type, flags
    msg.encode()
    return bytes(msg.data)


@functools.lru_cache(maxsize=ENCODED_CACHE_SIZE)
def _encode_remembered(encode: Encoder, command: str, items: tuple[tuple[str, Any], ...]) -> bytes:
    return _encode(encode, command, dict(items))


_RTA = struct.Struct("=HH")  # length, type
_U32 = struct.Struct("=I")
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, device type, index, flags, change
_NO_IFINFO = _IFINFO.pack(0, 0, 0, 0, 0)
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_VETH_KIND = b"veth\0"
_VETH_ADD_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL


class _NotPlain(Exception):
    """A veth argument the direct encoding does not take as it is: pyroute2 encodes the call."""


def _message(msg_type: int, flags: int, body: bytes) -> bytes:
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), msg_type, flags, 0, 0) + body


def _rta(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _uint(value: Any, bits: int = 32) -> int:
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise _NotPlain
    return value


def _u32(value: Any) -> bytes:
    return _U32.pack(_uint(value))


def _name(value: Any) -> bytes:
    if type(value) is not str or not value.isascii() or "\0" in value:
        raise _NotPlain
    return value.encode() + b"\0"


def _mac(value: Any) -> bytes:
    parts = value.split(":") if type(value) is str else ()
    if len(parts) != 6 or not all(len(p) == 2 and p.isascii() and p.isalnum() for p in parts):
        raise _NotPlain
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise _NotPlain from None


def _link_attr_bytes(spec: dict[str, Any], fd: bool = False) -> bytes:
    out = _rta(_IFLA_IFNAME, _name(spec["ifname"])) if "ifname" in spec else b""
    if fd and "net_ns_fd" in spec:
        out += _rta(_IFLA_NET_NS_FD, _u32(spec["net_ns_fd"]))
    if "address" in spec:
        out += _rta(_IFLA_ADDRESS, _mac(spec["address"]))
    if not fd and "master" in spec:
        out += _rta(_IFLA_MASTER, _u32(spec["master"]))
    if "mtu" in spec:
        out += _rta(_IFLA_MTU, _u32(spec["mtu"]))
    return out


def encode_veth_add(kwarg: dict[str, Any]) -> bytes:
    """`link("add", kind="veth", ...)`'s bytes, the ones `encode_link` and pyroute2 give, packed directly.

    A veth's names, MACs and peer namespace differ for every pod, so its
    encoding cannot be remembered, and pyroute2 took ~1 ms of loxi-agent's
    CPU per ADD to encode this one message. The layout is fixed (the
    attributes in `encode_link`'s order), so the values are packed into it;
    an argument outside the plain cases (a non-ASCII name, a MAC in another
    spelling) goes to `encode_link`, as does anything it refuses.
    """
    peer = kwarg.get("peer")
    if (
        kwarg.get("kind") != "veth"
        or not kwarg.keys() <= _VETH_KEYS
        or type(peer) is not dict
        or not peer.keys() <= _PEER_KEYS
        or "ifname" not in peer
        or kwarg.get("state", "up") not in ("up", "down")
    ):
        return _encode(encode_link, "add", kwarg)
    try:
        flags = change = 0
        if "state" in kwarg:
            flags, change = (IFF_UP if kwarg["state"] == "up" else 0), IFF_UP
        peer_msg = _NO_IFINFO + _link_attr_bytes(peer, fd=True)
        info = _rta(_IFLA_INFO_KIND, _VETH_KIND) + _rta(_IFLA_INFO_DATA, _rta(_VETH_INFO_PEER, peer_msg))
        body = _IFINFO.pack(0, 0, 0, flags, change) + _link_attr_bytes(kwarg) + _rta(_IFLA_LINKINFO, info)
    except _NotPlain:
        return _encode(encode_link, "add", kwarg)
    return _message(RTM_NEWLINK, _VETH_ADD_FLAGS, body)


_IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg: family, prefix length, flags, scope, index
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS, _IFLA_IFALIAS = 1, 2, 8, 20
_ADDR_TYPES = {
    "add": (RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL),
    "del": (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK),
}
_SKIP_STATS = _rta(29, _u32(RTEXT_FILTER_SKIP_STATS))  # IFLA_EXT_MASK, as encode_link ends a link read
_ALIAS_KEYS = (frozenset({"ifname", "ifalias"}), frozenset({"index", "ifalias"}))


def _index(value: Any) -> int:
    if type(value) is not int or not -(1 << 31) <= value < 1 << 31:
        raise _NotPlain
    return value


def _packed_addr(command: str, kwarg: dict[str, Any]) -> bytes:
    """`addr("add"|"del", index=, address=, prefixlen=[, flags=])`: the address differs for every pod."""
    address = ipaddress.ip_address(kwarg["address"])  # what encode_addr refuses, refused alike
    prefixlen = _uint(kwarg["prefixlen"], 8)
    attrs = _rta(_IFA_ADDRESS, address.packed)
    if address.version == 4:
        attrs += _rta(_IFA_LOCAL, address.packed)
    if kwarg.get("flags"):
        attrs += _rta(_IFA_FLAGS, _u32(kwarg["flags"]))
    family = AF_INET if address.version == 4 else AF_INET6
    return _message(*_ADDR_TYPES[command], _IFADDR.pack(family, prefixlen, 0, 0, _uint(kwarg["index"])) + attrs)


def _packed_link_get(kwarg: dict[str, Any]) -> bytes | None:
    """`link("get", ifname=)` or `link("get", index=)` as `encode_link` and pyroute2 give it, or None.

    A read of a link by a name not read before (the pod's new veth, once per
    ADD) misses the remembered encodings, and pyroute2 takes ~60 µs for it."""
    try:
        if kwarg.keys() == {"ifname"}:
            attrs, index = _rta(_IFLA_IFNAME, _name(kwarg["ifname"])), 0
        elif kwarg.keys() == {"index"}:
            attrs, index = b"", _index(kwarg["index"])
        else:
            return None
    except _NotPlain:
        return None
    body = _IFINFO.pack(0, 0, index, 0, 0) + attrs + _SKIP_STATS
    return _message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, body)


def packed_request(encode: Encoder, command: str, kwarg: dict[str, Any]) -> bytes | None:
    """The bytes of a call whose arguments differ for every pod (an address, an alias, a deletion by
    index), packed directly as `encode_veth_add` packs a veth: remembering them would only churn the
    cache, and pyroute2 takes 35-75 µs for each. None for any other call, or an argument outside the
    plain cases: `encoded_request` then remembers pyroute2's encoding."""
    keys = kwarg.keys()
    try:
        if encode is encode_addr and command in _ADDR_TYPES and {"index", "address", "prefixlen"} <= keys <= _ADDR_KEYS:
            return _packed_addr(command, kwarg)
        if encode is encode_link and command == "del" and keys == {"index"}:
            return _message(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, _IFINFO.pack(0, 0, _index(kwarg["index"]), 0, 0))
        if encode is encode_link and command == "set" and keys in _ALIAS_KEYS:
            name = _rta(_IFLA_IFNAME, _name(kwarg["ifname"])) if "ifname" in kwarg else b""
            head = _IFINFO.pack(0, 0, _index(kwarg.get("index", 0)), 0, 0)
            return _message(
                RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, head + name + _rta(_IFLA_IFALIAS, _name(kwarg["ifalias"]))
            )
    except _NotPlain:
        return None
    return None


def encoded_request(encode: Encoder, command: str, kwarg: dict[str, Any]) -> bytes:
    """The request's bytes (sequence number 0), as pyroute2 encodes them; Unsupported from `encode`.

    pyroute2 takes ~100 µs to encode even a link read, ten times the kernel's
    answer, and loxi-agent sends the same reads for every pod of a node (its
    bridge, the pod's `eth0`, a veth read again by CHECK and DEL). So an
    encoding is remembered by its arguments; a call with a value that cannot
    be a key (a veth's peer) is encoded each time.
    """
    if encode is encode_link and command == "add" and kwarg.get("kind") == "veth":
        return encode_veth_add(kwarg)  # never the same twice: packed directly
    packed = packed_request(encode, command, kwarg)
    if packed is not None:
        return packed
    try:
        return _encode_remembered(encode, command, tuple(sorted(kwarg.items())))
    except TypeError:  # unhashable
        return _encode(encode, command, kwarg)
