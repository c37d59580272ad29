"""A synchronous rtnetlink socket for the per-pod path: pyroute2's messages, no event loop.

pyroute2 0.9's IPRoute runs every request through an asyncio event loop and
its request-filter pipeline: ~0.3 ms of Python per request, and ~100 ms
of imports (asyncio, ssl, every message family, tc plugins) for a cold call.
`RtnlSocket` is the transport that replaces it for a pod's ADD, CHECK and DEL:
a plain netlink socket that sends the requests applier.netlink.requests
encodes (the ones IPRoute sends for the same calls) and reads the replies with
pyroute2's Marshal into applier.netlink.messages' lazy classes.

It answers the IPRoute calls loxi-cni makes (`link`, `addr`, `route`,
`link_lookup`) with the same arguments and results, and adds `delete_link`
(applier.netlink.monitor), which returns once the kernel has unlisted a link
rather than freed it. A call with arguments outside the encoded set, and the
few other IPRoute calls the code makes, each named in applier.netlink.
fallbacks, go to a real IPRoute opened on first use: the rare paths keep
pyroute2's full API, the common path never imports it, and any other name is
an AttributeError.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

from pyroute2.netlink import NLM_F_ACK_TLVS, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_NEWLINK

from applier.netlink import NetlinkError
from applier.netlink.fallbacks import IPRouteFallbacks
from applier.netlink.messages import RtnlMarshal
from applier.netlink.monitor import RTMGRP_LINK, delete_when_unlisted
from applier.netlink.requests import (
    RECV_BUFFER,
    Encoder,
    Unsupported,
    encode_addr,
    encode_link,
    encode_route,
    encoded_request,
)

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11  # errors carry the kernel's message ("Nexthop has invalid gateway")
NETLINK_GET_STRICT_CHK = 12  # the kernel filters dumps by the request's index, master, table
_NLMSG_SEQUENCE, _NLMSG_SEQUENCE_OFFSET = struct.Struct("=I"), 8
_NLMSG_HEAD = struct.Struct("=IHHI")  # length, type, flags, sequence: as Marshal.parse reads them
_IFINFO_INDEX = struct.Struct("=4xi")  # a link message's index, after the header and family, device type
_LINK_INDEX_END = 16 + _IFINFO_INDEX.size
_NLMSG_ERRNO = struct.Struct("=i")  # an NLMSG_ERROR's error, after the header


class RtnlSocket(IPRouteFallbacks):
    """An IPRoute stand-in for the calls loxi-cni makes per pod; see the module docstring.

    `open_iproute` makes the real IPRoute, in this socket's namespace, for
    the calls this class leaves to it.
    """

    def __init__(
        self, open_iproute: Callable[[], Any], inside: Callable[[], contextlib.AbstractContextManager] | None = None
    ) -> None:
        self._sock = netlink_socket()
        try:
            for option in (NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
                self._sock.setsockopt(SOL_NETLINK, option, 1)
        except OSError:
            self._sock.close()
            raise
        self._marshal = RtnlMarshal()
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
        """`link("del", index=index)`, returning once the kernel has unlisted the link rather than freed
        it (applier.netlink.monitor): the monitor and the deleting socket are opened in this namespace."""
        with self._inside():
            monitor = netlink_socket(RTMGRP_LINK)
            try:
                deleter = RtnlSocket(self._open_iproute)
            except OSError:
                monitor.close()
                raise
        delete_when_unlisted(monitor, deleter, index)

    def link_lookup(self, ifname: str) -> list[int]:
        """IPRoute's `link_lookup`: the link's index, read off its reply with nothing else decoded."""
        try:
            try:
                data = encoded_request(encode_link, "get", {"ifname": ifname})
            except Unsupported:  # pragma: no cover - every name is encoded
                return [msg["index"] for msg in self.link("get", ifname=ifname)]
            return [msg if type(msg) is int else msg["index"] for msg in self.request(data, links_as_index=True)]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return []
            raise

    # -- transport --------------------------------------------------------------

    def request(self, encoded: bytes, links_as_index: bool = False) -> list[Any]:
        """Send one encoded request (`encoded_request`); return its replies, or raise the kernel's error
        as NetlinkError. `links_as_index`: a link's reply is its index alone (an int), not decoded."""
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
            if self._parse_into(replies, data, sequence, links_as_index):
                return replies

    def _parse_into(self, replies: list[Any], data: bytes, sequence: int, links_as_index: bool = False) -> bool:
        """Append the messages of `data` that answer `sequence` to `replies`; True at its ACK or a dump's end.

        The headers are read here, as pyroute2's Marshal.parse bounds them; an
        ACK (an NLMSG_ERROR of 0), a plain NLMSG_DONE and an error without the
        kernel's message (ENODEV of a link read) end the request with nothing
        decoded, which is most of a pod's replies; every other message (data,
        an error with an extended ack or ENOBUFS, a DONE with an extended ack)
        is pyroute2's `parse_one_message`, as before.
        """
        offset, size = 0, len(data)
        while offset <= size - 16:
            length, msg_type, flags, msg_sequence = _NLMSG_HEAD.unpack_from(data, offset)
            if not 0 < length <= size:
                break
            if msg_sequence == sequence:  # else a reply to an earlier request that was given up on
                if msg_type == NLMSG_ERROR and length >= 20:
                    (error,) = _NLMSG_ERRNO.unpack_from(data, offset + 16)
                    if not error:
                        return True  # the ACK of a request
                    if not flags & NLM_F_ACK_TLVS and abs(error) != errno.ENOBUFS:
                        raise NetlinkError(abs(error))  # no message from the kernel: pyroute2's error alike
                if msg_type == NLMSG_DONE and not flags & NLM_F_ACK_TLVS:
                    return True  # end of a dump
                if links_as_index and msg_type == RTM_NEWLINK and length >= _LINK_INDEX_END:
                    replies.append(_IFINFO_INDEX.unpack_from(data, offset + 16)[0])
                    offset += length
                    continue
                reply = self._marshal.parse_one_message(msg_type, flags, msg_sequence, data, offset, length)
                header = reply["header"]
                if header.get("error") is not None:
                    raise header["error"]
                if header["type"] in (NLMSG_DONE, NLMSG_ERROR):
                    return True
                replies.append(reply)
            offset += length
        return False

    def close(self) -> None:
        self._sock.close()
        if self._iproute is not None:
            self._iproute.close()
            self._iproute = None


def netlink_socket(groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket bound in the calling thread's namespace, joined to `groups`."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock
