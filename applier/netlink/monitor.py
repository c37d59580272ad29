"""A link deletion that returns when the kernel has unlisted the link, not when it has freed it.

It exists apart from the socket (applier.netlink.socket) because it is the one
piece of the netlink path with a thread, a multicast subscription and a pipe:
the socket's plain request and reply never wait on anything but their answer.

The kernel takes a deleted link out of its namespace at once (its name,
addresses and bridge port, and a veth's peer, gone; RTM_DELLINK broadcast,
~1 ms), then waits for RCU callbacks (`rcu_barrier` in netdev_run_todo) before
it answers the request: 15-30 ms here, most of a pod's DEL, for memory nobody
can reach any more. So the request goes out from a helper thread on a socket of
its own, and `delete_when_unlisted` returns at the broadcast; the helper reads
the answer and closes its socket. In loxi-agent the runtime has its reply that
much sooner; a process that exits waits for the kernel as before (its helper
thread is inside the syscall). An error the kernel answers before unlisting
anything (ENODEV, EPERM) is raised as `link("del")` raises it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
from typing import Any, Protocol

from pyroute2.netlink.rtnl import RTM_DELLINK

from applier.netlink.requests import NLMSG_HEADER, RECV_BUFFER

RTMGRP_LINK = 0x1  # the multicast group of link notifications (RTNLGRP_LINK)
MONITOR_BUFFER = 1 << 20  # a busy node's link notifications, queued while a deletion is under way
_IFINFO_HEAD = struct.Struct("=BxHi")  # family, device type, index (the start of struct ifinfomsg)


class Deleter(Protocol):
    """The socket the helper thread sends `link("del")` on (an RtnlSocket of its own)."""

    def link(self, command: str, **kwarg: Any) -> list[Any]: ...

    def close(self) -> None: ...


def delete_when_unlisted(monitor: socket.socket, deleter: Deleter, index: int) -> None:
    """Delete link `index` through `deleter` in a helper thread; return once `monitor` (a socket
    joined to RTMGRP_LINK in the link's namespace) hears it unlisted, or raise the helper's error.

    Both sockets are this function's: `monitor` is closed before it returns, `deleter` by the helper
    (or here, if the helper never starts)."""
    try:
        finished, helper_end = os.pipe2(os.O_CLOEXEC)  # the helper closes its end when the kernel has answered
    except BaseException:
        monitor.close()
        deleter.close()
        raise
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
    while offset + NLMSG_HEADER.size + _IFINFO_HEAD.size <= len(data):
        length, msg_type = NLMSG_HEADER.unpack_from(data, offset)[:2]
        if length < NLMSG_HEADER.size:
            return False
        if msg_type == RTM_DELLINK:
            family, _, link = _IFINFO_HEAD.unpack_from(data, offset + NLMSG_HEADER.size)
            if family == socket.AF_UNSPEC and link == index:
                return True
        offset += (length + 3) & ~3
    return False
