"""The loxi-agent wire format, shared by the thin client and the agent.

Version 1, over a SOCK_STREAM unix socket: each side sends one frame, a 4-byte
big-endian length and that many bytes of JSON. The client's request carries the
CNI environment, stdin (base64) and, as SCM_RIGHTS ancillary data, a file
descriptor of the client's own network namespace: the agent serves plugins
started in any node namespace. The reply carries the exit status and stdout,
which the client relays byte for byte. Stdlib only: the client imports it before
it knows whether the agent answers.
"""

from __future__ import annotations

import array
import json
import socket
import struct

# typing costs VERSION ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_SOCKET = "/run/loxi/agent.sock"
MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct("!I")


class ProtocolError(Exception):
    """The peer sent something that is not a version-1 frame."""


def send_frame(sock: socket.socket, doc: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(doc, separators=(",", ":")).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        sent = sock.sendmsg([data], ancillary)
        data = data[sent:]
    if data:
        sock.sendall(data)


def recv_frame(sock: socket.socket, want_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One frame and any descriptors that came with its first bytes."""
    fds: list[int] = []
    buffer = b""
    if want_fds:
        size = socket.CMSG_SPACE(want_fds * array.array("i").itemsize)
        chunk, ancillary, _flags, _addr = sock.recvmsg(65536, size)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - (len(payload) % received.itemsize)])
                fds.extend(received)
        buffer = chunk
    while len(buffer) < _HEADER.size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed before a frame")
        buffer += chunk
    (length,) = _HEADER.unpack(buffer[: _HEADER.size])
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes is too large")
    body = buffer[_HEADER.size :]
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise ProtocolError("connection closed inside a frame")
        body += chunk
    try:
        doc = json.loads(body[:length])
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {doc.get('v') if isinstance(doc, dict) else None!r}")
    return doc, fds
