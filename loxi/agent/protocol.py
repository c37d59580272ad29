"""The loxi-agent wire format, shared by the thin client and the agent.

Version 2, one request and one reply over a SOCK_STREAM unix socket. Binary
and fixed, so that the client needs neither json, base64 nor the `socket`
module (`_socket` is enough): the client runs once per pod and its imports are
most of its cost.

    request  b"LOXI\\x02" | env length u32 | stdin length u32 | env | stdin
             env: KEY=VALUE entries separated by NUL, the bytes of the
             client's environment (decoded by the agent as os.fsdecode does)
             ancillary (SCM_RIGHTS, with the first bytes): one descriptor of
             the caller's network namespace, so one agent serves plugins
             started in any node namespace; a second one, the caller's open
             CNI_NETNS, when the env says `LOXI_CALLER_NETNS=fd`
             LOXI_CALLER_NETNS (added by the client, never forwarded from its
             environment): how the caller itself resolved an absolute
             CNI_NETNS, `fd`, `mode:N` (not a regular file) or `errno:N`, so
             /proc/self/... means the caller's file (applier.caller_netns)
    reply    b"LOXI\\x02" | kind 1 byte | status i32 | body length u32 | body
             kind b"R": body is the plugin's stdout, status its exit status
             kind b"E": refused (body: why); the client runs the call itself

All integers are big-endian. Interpreter built-ins only (`sys`, `posix`,
`_socket`): even `os` would add ~3 ms to every call through the agent.
"""

from __future__ import annotations

import _socket
import posix
import sys

# typing costs the client ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

PROTOCOL_VERSION = 2
DEFAULT_SOCKET = "/run/loxi/agent.sock"
MAGIC = b"LOXI" + bytes([PROTOCOL_VERSION])
REQUEST_HEADER = len(MAGIC) + 8
REPLY_HEADER = len(MAGIC) + 9
RESULT, REFUSED = b"R", b"E"
MAX_FRAME = 16 * 1024 * 1024
CALLER_NETNS_KEY = "LOXI_CALLER_NETNS"
FD_SIZE = 4  # a C int in SCM_RIGHTS, in the machine's byte order
_FD_ORDER = sys.byteorder


class ProtocolError(Exception):
    """The peer sent something that is not a version-2 frame, or hung up inside one."""


def _fsdecode(raw: bytes) -> str:
    return raw.decode(sys.getfilesystemencoding(), "surrogateescape")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def encode_request(env: Mapping[bytes, bytes], stdin: bytes) -> bytes:
    block = b"\0".join(key + b"=" + value for key, value in env.items())
    return MAGIC + _u32(len(block)) + _u32(len(stdin)) + block + stdin


def encode_reply(status: int, body: bytes, refused: bool = False) -> bytes:
    kind = REFUSED if refused else RESULT
    return MAGIC + kind + status.to_bytes(4, "big", signed=True) + _u32(len(body)) + body


def send_request(sock: _socket.socket, frame: bytes, netns_fd: int, pod_fd: int = -1) -> None:
    """The frame, with the namespace descriptor (and the caller's CNI_NETNS, if open) on its first bytes."""
    fds = netns_fd.to_bytes(FD_SIZE, _FD_ORDER) + (pod_fd.to_bytes(FD_SIZE, _FD_ORDER) if pod_fd >= 0 else b"")
    ancillary = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)]
    sent = sock.sendmsg([frame], ancillary)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def _read_exact(sock: _socket.socket, buffer: bytes, size: int) -> bytes:
    while len(buffer) < size:
        chunk = sock.recv(min(65536, size - len(buffer)))
        if not chunk:
            raise ProtocolError("connection closed inside a frame")
        buffer += chunk
    return buffer


def recv_request(sock: _socket.socket) -> tuple[dict[str, str], bytes, list[int]]:
    """(environment, stdin, descriptors). The caller closes the descriptors,
    which it owns even when this raises ProtocolError (they are closed here then)."""
    first, ancillary, _flags, _addr = sock.recvmsg(65536, _socket.CMSG_SPACE(2 * FD_SIZE))
    fds = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [
                int.from_bytes(payload[i : i + FD_SIZE], _FD_ORDER)
                for i in range(0, len(payload) - FD_SIZE + 1, FD_SIZE)
            ]
    try:
        if not first:
            raise ProtocolError("connection closed before a frame")
        head = _read_exact(sock, first, REQUEST_HEADER)
        if head[: len(MAGIC)] != MAGIC:
            raise ProtocolError("not a loxi-agent version 2 request")
        env_size = int.from_bytes(head[len(MAGIC) : len(MAGIC) + 4], "big")
        stdin_size = int.from_bytes(head[len(MAGIC) + 4 : REQUEST_HEADER], "big")
        if env_size + stdin_size > MAX_FRAME:
            raise ProtocolError(f"request of {env_size + stdin_size} bytes is too large")
        data = _read_exact(sock, head, REQUEST_HEADER + env_size + stdin_size)
    except BaseException:
        for fd in fds:
            posix.close(fd)
        raise
    # Decoded at once: NUL and "=" are single bytes in any encoding the filesystem may use
    # and never inside a multi-byte sequence, so this is the same as decoding each part.
    block = _fsdecode(data[REQUEST_HEADER : REQUEST_HEADER + env_size])
    env = {}
    for entry in block.split("\0") if block else ():
        key, _, value = entry.partition("=")
        env[key] = value
    return env, data[REQUEST_HEADER + env_size :], fds


def recv_reply(sock: _socket.socket) -> tuple[bool, int, bytes]:
    """(refused, status, body)."""
    head = _read_exact(sock, b"", REPLY_HEADER)
    if head[: len(MAGIC)] != MAGIC or head[len(MAGIC) : len(MAGIC) + 1] not in (RESULT, REFUSED):
        raise ProtocolError("not a loxi-agent version 2 reply")
    status = int.from_bytes(head[len(MAGIC) + 1 : len(MAGIC) + 5], "big", signed=True)
    size = int.from_bytes(head[len(MAGIC) + 5 : REPLY_HEADER], "big")
    if size > MAX_FRAME:
        raise ProtocolError(f"reply of {size} bytes is too large")
    body = _read_exact(sock, head, REPLY_HEADER + size)[REPLY_HEADER:]
    return head[len(MAGIC) : len(MAGIC) + 1] == REFUSED, status, body
