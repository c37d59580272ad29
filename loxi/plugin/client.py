"""The thin client: hand one CNI call to loxi-agent, or say it could not.

Interpreter built-ins only (`posix`, `_socket`; the wire format is binary), so
the call costs little more than the interpreter's own start: json, base64, the
`socket` module or even `os` would each add milliseconds to every pod. Returns
None whenever the agent is absent, refuses, or breaks off without an answer,
and the caller then runs the very same engine in-process. Running twice is
safe: both paths take the same per-attachment lock and every plan step is
idempotent, so a late agent and the fallback converge.
"""

from __future__ import annotations

import _socket
import posix

from loxi.agent.protocol import (
    CALLER_NETNS_KEY,
    DEFAULT_SOCKET,
    ProtocolError,
    encode_request,
    recv_reply,
    send_request,
)

# typing costs the client ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CONNECT_TIMEOUT = 0.5  # seconds: an agent that does not accept this fast is treated as absent
ANSWER_TIMEOUT = 60.0  # seconds: the longest a real ADD may take (delegated IPAM included)
FORWARDED_PREFIXES = (b"CNI_", b"LOXI_LOG_", b"TRACEPARENT", b"TRACESTATE")
SOCKET_ENV = b"LOXI_AGENT_SOCKET"
KILL_HOOK = b"LOXI_TEST_KILL_BEFORE_STEP"  # the test suite's crash hook works in-process only
S_IFMT, S_IFREG = 0o170000, 0o100000
NETNS_OPEN_FLAGS = posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NONBLOCK | posix.O_NOCTTY


def caller_netns(path: bytes) -> tuple[bytes, int]:
    """CNI_NETNS resolved here, as `applier.netns.open_netns` resolves it in-process:
    (the LOXI_CALLER_NETNS value, an open descriptor or -1). `/proc/self/...` and
    symlinks to it must mean this process's file, not the agent's. A path that is
    not absolute is left to the agent (refused by its text alone)."""
    if not path.startswith(b"/"):
        return b"", -1
    try:
        mode = posix.stat(path).st_mode
        if mode & S_IFMT != S_IFREG:  # a FIFO or a device is never opened (it could block or act)
            return b"mode:%d" % mode, -1
        return b"fd", posix.open(path, NETNS_OPEN_FLAGS)
    except OSError as exc:
        return b"errno:%d" % (exc.errno or 0), -1
    except ValueError:
        return b"", -1


def agent_socket(environ: Mapping[bytes, bytes], stdin: bytes) -> bytes:
    """LOXI_AGENT_SOCKET, else the conf's `agentSocket`, else /run/loxi/agent.sock.
    An empty LOXI_AGENT_SOCKET disables the agent (in-process only)."""
    if SOCKET_ENV in environ:
        return environ[SOCKET_ENV]
    if b'"agentSocket"' in stdin:  # rare: only then is json worth importing
        import json

        try:
            value = json.loads(stdin).get("agentSocket")
        except (ValueError, AttributeError, RecursionError):
            value = None  # the engine, in the agent or in-process, reports the conf's own error
        if isinstance(value, str):
            try:  # a lone surrogate or a NUL is no path: in-process, where the engine judges the conf
                return value.encode(errors="surrogateescape") if "\0" not in value else b""
            except UnicodeEncodeError:
                return b""
    return DEFAULT_SOCKET.encode()


def call_agent(environ: Mapping[bytes, bytes], stdin: bytes) -> tuple[int, bytes] | None:
    """(exit status, stdout) from the agent, or None to run in-process.
    `environ` is the process environment as bytes (`posix.environ`)."""
    path = agent_socket(environ, stdin)
    if not path or KILL_HOOK in environ:
        return None
    try:
        posix.stat(path)
    except OSError:
        return None
    forwarded = {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)}
    view, pod_fd = caller_netns(environ.get(b"CNI_NETNS", b""))
    if view:
        forwarded[CALLER_NETNS_KEY.encode()] = view
    frame = encode_request(forwarded, stdin)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        netns_fd = posix.open("/proc/thread-self/ns/net", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            send_request(sock, frame, netns_fd, pod_fd)
        finally:
            posix.close(netns_fd)
        sock.settimeout(ANSWER_TIMEOUT)
        refused, status, body = recv_reply(sock)
    except (OSError, ProtocolError):
        return None
    finally:
        sock.close()
        if pod_fd >= 0:
            posix.close(pod_fd)
    return None if refused else (status, body)
