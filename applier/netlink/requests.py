"""A synchronous rtnetlink socket for the per-pod path: pyroute2's messages, no event loop.

pyroute2 0.9's IPRoute runs every request through an asyncio event loop and
its request-filter pipeline: ~0.3 ms of Python per request, and ~100 ms
of imports (asyncio, ssl, every message family, tc plugins) for a cold call.
A pod's ADD, CHECK and DEL need a dozen plain requests (read a link, its
addresses, routes and bridge ports; make a veth pair; set a link; add an
address or a route). `RtnlSocket` sends those as pyroute2's own message
classes (ifinfmsg, ifaddrmsg, rtmsg, encoded and decoded by pyroute2) over a
plain netlink socket, and reads the replies with pyroute2's Marshal. The
messages are the ones IPRoute sends for the same calls (tests/unit/test_rtnl.py
pins them).

It answers the IPRoute calls loxi-cni makes (`link`, `addr`, `route`,
`link_lookup`) with the same arguments and results, and adds `delete_link`,
which returns once the kernel has unlisted a link rather than freed it. Any
other call, or one with arguments outside that set (a bridge or VLAN device to
create, bridge port flags, VLAN filtering), goes to a real IPRoute opened on
first use: the rare paths keep pyroute2's full API, and the common path never
imports it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.marshal import Marshal
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

from applier.lazy_nla import LazyNlas
from applier.netlink import NetlinkError

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11  # errors carry the kernel's message ("Nexthop has invalid gateway")
NETLINK_GET_STRICT_CHK = 12  # the kernel filters dumps by the request's index, master, table
RTEXT_FILTER_SKIP_STATS = 1 << 3  # a link read without its IPv6 counters: a fifth fewer bytes to decode
RECV_BUFFER = 1 << 16  # the kernel's dump messages are at most 32 KiB
RTMGRP_LINK = 0x1  # the multicast group of link notifications (RTNLGRP_LINK)
MONITOR_BUFFER = 1 << 20  # a busy node's link notifications, queued while a deletion is under way
_NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_NLMSG_SEQUENCE, _NLMSG_SEQUENCE_OFFSET = struct.Struct("=I"), 8
_IFINFO_HEAD = struct.Struct("=BxHi")  # family, device type, index (the start of struct ifinfomsg)
IFF_UP = 0x1
RTN_UNICAST = 1
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6

_LINK_SET_KEYS = frozenset({"index", "ifname", "state", "flags", "change", "master", "mtu", "address", "ifalias"})
_VETH_KEYS = frozenset({"ifname", "kind", "peer", "address", "master", "state", "mtu"})
_PEER_KEYS = frozenset({"ifname", "net_ns_fd", "address", "mtu"})
_ADDR_KEYS = frozenset({"index", "address", "prefixlen", "flags"})
_ROUTE_KEYS = frozenset({"dst", "oif", "proto", "table", "gateway"})
_ATTR_OF = {"ifname": "IFLA_IFNAME", "address": "IFLA_ADDRESS", "master": "IFLA_MASTER", "mtu": "IFLA_MTU"}


class IndexedIfinfmsg(LazyNlas, ifinfmsg):
    """A link message whose `get("IFLA_…")` is one dict lookup, its attributes built when read.

    pyroute2's `get` walks every attribute of the message (a veth's has ~40)
    on each call, and a pod's ADD and CHECK read about a dozen attributes of
    each link they observe. The first call indexes the first attribute of
    each name (the one `get` returns); `LazyNlas` builds only the attributes
    read. Decoded messages are only read, so the index stays true.
    """

    __slots__ = ("_attr_slots",)

    def get(self, key: Any, default: Any = None) -> Any:
        if not (isinstance(key, str) and key.startswith("IFLA_")):
            return super().get(key, default)
        slots = getattr(self, "_attr_slots", None)
        if slots is None:
            slots = {}
            for slot in self["attrs"]:
                slots.setdefault(slot.name, slot)
            self._attr_slots = slots
        slot = slots.get(key)
        value = None if slot is None else slot.get_value()
        return default if value is None else value


class LazyIfaddrmsg(LazyNlas, ifaddrmsg):
    __slots__ = ()


class LazyRtmsg(LazyNlas, rtmsg):
    __slots__ = ()


class _RtnlMarshal(Marshal):
    msg_map: ClassVar[dict[int, type]] = {
        RTM_NEWLINK: IndexedIfinfmsg,
        RTM_DELLINK: IndexedIfinfmsg,
        RTM_NEWADDR: LazyIfaddrmsg,
        RTM_DELADDR: LazyIfaddrmsg,
        RTM_NEWROUTE: LazyRtmsg,
        RTM_DELROUTE: LazyRtmsg,
    }


class Unsupported(Exception):
    """A call this socket does not encode itself: it goes to IPRoute."""


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


def _rta(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _RTA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _u32(value: Any) -> bytes:
    if type(value) is not int or not 0 <= value < 1 << 32:
        raise _NotPlain
    return _U32.pack(value)


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
    return _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), RTM_NEWLINK, _VETH_ADD_FLAGS, 0, 0) + body


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
    try:
        return _encode_remembered(encode, command, tuple(sorted(kwarg.items())))
    except TypeError:  # unhashable
        return _encode(encode, command, kwarg)


class RtnlSocket:
    """An IPRoute stand-in for the calls loxi-cni makes per pod; see the module docstring.

    `open_iproute` makes the real IPRoute, in this socket's namespace, for
    the calls this class leaves to it.
    """

    def __init__(
        self, open_iproute: Callable[[], Any], inside: Callable[[], contextlib.AbstractContextManager] | None = None
    ) -> None:
        self._sock = _netlink_socket()
        try:
            for option in (NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
                self._sock.setsockopt(SOL_NETLINK, option, 1)
        except OSError:
            self._sock.close()
            raise
        self._marshal = _RtnlMarshal()
        self._sequence = 0
        self._open_iproute = open_iproute
        # puts the calling thread in this socket's namespace, to open more sockets there
        self._inside = inside or contextlib.nullcontext
        self._iproute: Any = None

    # -- the IPRoute calls ------------------------------------------------------

    def link(self, command: str, **kwarg: Any) -> list[Any]:
        return self._call(encode_link, "link", command, kwarg)

    def addr(self, command: str, **kwarg: Any) -> list[Any]:
        return self._call(encode_addr, "addr", command, kwarg)

    def route(self, command: str, **kwarg: Any) -> list[Any]:
        return self._call(encode_route, "route", command, kwarg)

    def _call(self, encode: Encoder, method: str, command: str, kwarg: dict) -> list[Any]:
        """Send the call as encoded here, or hand it to IPRoute unchanged when it is outside the encoded set.

        `dump_filter` is IPRoute's option for filtering a dump in Python; the kernel filters ours.
        """
        try:
            data = encoded_request(encode, command, {k: v for k, v in kwarg.items() if k != "dump_filter"})
        except Unsupported:
            return getattr(self.iproute(), method)(command, **kwarg)
        return self.request(data)

    def delete_link(self, index: int) -> None:
        """`link("del", index=index)`, returning once the kernel has unlisted the link rather than freed it.

        The kernel takes a deleted link out of its namespace at once (its name,
        addresses and bridge port, and a veth's peer, gone; RTM_DELLINK
        broadcast, ~1 ms), then waits for RCU callbacks (`rcu_barrier` in
        netdev_run_todo) before it answers the request: 15-30 ms here, most of
        a pod's DEL, for memory nobody can reach any more. So the request goes
        out from a helper thread on a socket of its own, and this returns at
        the broadcast; the helper reads the answer and closes its socket. In
        loxi-agent the runtime has its reply that much sooner; a process that
        exits waits for the kernel as before (its helper thread is inside the
        syscall). An error the kernel answers before unlisting anything
        (ENODEV, EPERM) is raised here as `link("del")` raises it.
        """
        with self._inside():
            monitor = _netlink_socket(RTMGRP_LINK)
            try:
                deleter = RtnlSocket(self._open_iproute)
            except OSError:
                monitor.close()
                raise
        finished, helper_end = os.pipe2(os.O_CLOEXEC)  # the helper closes its end when the kernel has answered
        failures: list[BaseException] = []

        def delete() -> None:
            try:
                deleter.link("del", index=index)
            except BaseException as exc:  # handed to the waiting thread
                failures.append(exc)
            finally:
                deleter.close()
                os.close(helper_end)

        try:
            monitor.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MONITOR_BUFFER)
            threading.Thread(target=delete, name=f"loxi-delete-link-{index}", daemon=True).start()
        except BaseException:
            monitor.close()
            deleter.close()
            os.close(finished)
            os.close(helper_end)
            raise
        try:
            if _wait_unlisted(monitor, finished, index):
                return
        finally:
            monitor.close()
            os.close(finished)
        if failures:  # the helper has finished: the kernel refused, or the request failed
            raise failures[0]

    def link_lookup(self, ifname: str) -> list[int]:
        try:
            return [msg["index"] for msg in self.link("get", ifname=ifname)]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return []
            raise

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.iproute(), name)

    def iproute(self) -> Any:
        """The full pyroute2 IPRoute in this namespace, opened on first use."""
        if self._iproute is None:
            self._iproute = self._open_iproute()
        return self._iproute

    # -- transport --------------------------------------------------------------

    def request(self, encoded: bytes) -> list[Any]:
        """Send one encoded request (`encoded_request`); return its replies, or raise the kernel's error
        as NetlinkError."""
        self._sequence += 1
        sequence = self._sequence
        message = bytearray(encoded)
        _NLMSG_SEQUENCE.pack_into(message, _NLMSG_SEQUENCE_OFFSET, sequence)
        self._sock.send(message)
        replies: list[Any] = []
        while True:
            data, _, recv_flags, _ = self._sock.recvmsg(RECV_BUFFER)
            if recv_flags & socket.MSG_TRUNC:
                raise NetlinkError(errno.EMSGSIZE, "netlink reply larger than the receive buffer")
            for reply in self._marshal.parse(data, sequence):
                header = reply["header"]
                if header["sequence_number"] != sequence:
                    continue  # a reply to an earlier request that was given up on
                if header.get("error") is not None:
                    raise header["error"]
                if header["type"] in (NLMSG_DONE, NLMSG_ERROR):
                    return replies  # end of a dump, or the ACK of a request
                replies.append(reply)

    def close(self) -> None:
        self._sock.close()
        if self._iproute is not None:
            self._iproute.close()
            self._iproute = None


def _netlink_socket(groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket bound in the calling thread's namespace, joined to `groups`."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def _wait_unlisted(monitor: socket.socket, finished: int, index: int) -> bool:
    """Wait until `monitor` hears RTM_DELLINK for link `index` (True) or the deleting helper has
    finished (False: the caller looks at how). A notification queue that overflowed (ENOBUFS) may
    have dropped ours: then only the helper's end counts."""
    poller = select.poll()  # not select(): a busy agent's descriptors may number over FD_SETSIZE
    poller.register(monitor, select.POLLIN)
    poller.register(finished, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if finished in ready:
            return False
        try:
            data = monitor.recv(RECV_BUFFER)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            poller.unregister(monitor)
            continue
        if _unlisted(data, index):
            return True


def _unlisted(data: bytes, index: int) -> bool:
    """Does this batch of link notifications say that link `index` left the namespace?
    (Family AF_UNSPEC: the bridge also sends an AF_BRIDGE RTM_DELLINK when a port leaves it.)"""
    offset = 0
    while offset + _NLMSG_HEADER.size + _IFINFO_HEAD.size <= len(data):
        length, msg_type = _NLMSG_HEADER.unpack_from(data, offset)[:2]
        if length < _NLMSG_HEADER.size:
            return False
        if msg_type == RTM_DELLINK:
            family, _, link = _IFINFO_HEAD.unpack_from(data, offset + _NLMSG_HEADER.size)
            if family == socket.AF_UNSPEC and link == index:
                return True
        offset += (length + 3) & ~3
    return False
