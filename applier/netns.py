"""Network namespaces: the node's (where the plugin runs) and the pod's.

Sockets are opened by switching this thread into the namespace with setns(2),
opening the netlink socket, and switching back: a socket stays bound to the
namespace it was created in. That costs well under 1 ms, where pyroute2's
`IPRoute(netns=...)` forks a helper process (10-13 ms). setns moves only the
calling thread (loxi-agent runs each call in a thread of its own; the helper
threads of `RtnlSocket.delete_link` never move), and `inside()` always moves
it back.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from applier import caller_netns
from compiler.model import NODE_NS, POD_NS
from intent.errors import INVALID_NETNS, CniError

if TYPE_CHECKING:
    from applier.netlink.socket import RtnlSocket

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: which kind of namespace it is

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd` (setns(2)); OSError if refused.

    The one setns of the code base: `Namespaces.inside`, loxi-agent's request
    threads and `loxi-plan --node-netns` all go through it."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def same_namespace(path: str) -> bool:
    """Is `path` the namespace this process runs in (CNI's code 8 case)?

    Through loxi-agent, `path` is what the caller resolved (applier.caller_netns)
    and this thread is in the caller's namespace: the same answer as in-process."""
    try:
        a, b = caller_netns.stat(path), os.stat("/proc/thread-self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_netns(path: str) -> int:
    """Open `path` as a network namespace, or raise.

    FileNotFoundError means the namespace is gone (fine for DEL). Anything that
    is not a network namespace (a directory, a FIFO, a device, a regular file)
    is refused without side effects: it is stat()ed before it is opened, and
    opened non-blocking.
    """
    if not os.path.isabs(path):
        raise CniError(INVALID_NETNS, f"CNI_NETNS {path!r} is not an absolute path")
    try:
        info = caller_netns.stat(path)  # FileNotFoundError propagates
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:  # a symlink loop, a path under a regular file, longer than PATH_MAX or NAME_MAX
        raise CniError(INVALID_NETNS, f"failed to open netns {path[:256]!r}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CniError(INVALID_NETNS, f"CNI_NETNS {path} is not a network namespace")
    fd = caller_netns.open_path(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise CniError(INVALID_NETNS, f"CNI_NETNS {path} is not a network namespace")
    return fd


def open_netns_if_any(path: str) -> int | None:
    """`open_netns(path)`, or None where it refuses (gone, not a namespace, not ours to open): for the
    callers that go on without the namespace (DEL's pod side, the node inventory's scan)."""
    try:
        return open_netns(path)
    except (OSError, CniError):
        return None


class Namespaces:
    """Open handles on the node and pod namespaces and their netlink sockets."""

    def __init__(self, pod_path: str = "", pod_fd: int | None = None) -> None:
        self.pod_path = pod_path
        self._fds: dict[str, int] = {NODE_NS: os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)}
        if pod_fd is not None:
            self._fds[POD_NS] = pod_fd
        self._sockets: dict[str, RtnlSocket] = {}
        # Link indexes this command has seen, so a step never asks the kernel for
        # an index an observation already returned (each lookup is a round trip).
        self._indexes: dict[tuple[str, str], int] = {}

    @classmethod
    def for_pod(cls, pod_path: str) -> Namespaces:
        return cls(pod_path, open_netns(pod_path))

    def has(self, ns: str) -> bool:
        return ns in self._fds

    def fd(self, ns: str) -> int:
        return self._fds[ns]

    @contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Run the block with this thread in `ns` (for /proc/sys/net and socket creation)."""
        if ns == NODE_NS:
            yield
            return
        setns(self._fds[ns])
        try:
            yield
        finally:
            setns(self._fds[NODE_NS])

    def ipr(self, ns: str) -> RtnlSocket:
        """A netlink socket bound to `ns`, opened on first use (IPRoute's API, see applier.netlink.socket)."""
        sock = self._sockets.get(ns)
        if sock is None:
            from applier.netlink.socket import RtnlSocket

            with self.inside(ns):
                sock = RtnlSocket(lambda: self._open_iproute(ns), lambda: self.inside(ns))
            self._sockets[ns] = sock
        return sock

    def _open_iproute(self, ns: str) -> Any:
        """pyroute2's IPRoute in `ns`, for the calls RtnlSocket leaves to it."""
        from applier.netlink import IPRoute

        with self.inside(ns):
            return IPRoute(ext_ack=True, strict_check=True)

    def link_index(self, ns: str, name: str) -> int:
        """The index of link `name` in `ns`: remembered from this command's reads, else looked up."""
        index = self._indexes.get((ns, name))
        if index is None:
            found = self.ipr(ns).link_lookup(ifname=name)
            if not found:
                from applier.netlink import NetlinkError

                raise NetlinkError(errno.ENODEV, f"no link named {name}")
            index = self._indexes[(ns, name)] = found[0]
        return index

    def remember_index(self, ns: str, name: str, index: int) -> None:
        self._indexes[(ns, name)] = index

    def forget_index(self, ns: str, name: str) -> None:
        self._indexes.pop((ns, name), None)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError as exc:  # pragma: no cover - closing a valid fd does not fail
                if exc.errno != errno.EBADF:
                    raise
        self._fds.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
