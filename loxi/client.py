"""The thin client: hand one CNI call to loxi-agent, or say it could not.

Imports only `os`, `sys` and `_socket` (the wire format is binary: no json,
base64 or `socket` module, whose imports would cost more than the call).
Returns None whenever the agent is absent, refuses, or breaks off without an
answer, and the caller then runs the very same engine in-process. Running twice
is safe: both paths take the same per-attachment lock and every plan step is
idempotent, so a late agent and the fallback converge.
"""

from __future__ import annotations

import _socket
import os

from loxi.agent_protocol import DEFAULT_SOCKET, ProtocolError, encode_request, recv_reply, send_request

# typing costs the client ~15 ms to import; annotations need it only for checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CONNECT_TIMEOUT = 0.5  # seconds: an agent that does not accept this fast is treated as absent
ANSWER_TIMEOUT = 60.0  # seconds: the longest a real ADD may take (delegated IPAM included)
FORWARDED_PREFIXES = ("CNI_", "LOXI_LOG_")
KILL_HOOK = "LOXI_TEST_KILL_BEFORE_STEP"  # the test suite's crash hook works in-process only


def agent_socket(environ: Mapping[str, str], stdin: bytes) -> str:
    """LOXI_AGENT_SOCKET, else the conf's `agentSocket`, else /run/loxi/agent.sock.
    An empty LOXI_AGENT_SOCKET disables the agent (in-process only)."""
    if "LOXI_AGENT_SOCKET" in environ:
        return environ["LOXI_AGENT_SOCKET"]
    if b'"agentSocket"' in stdin:  # rare: only then is json worth importing
        import json

        try:
            value = json.loads(stdin).get("agentSocket")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
    return DEFAULT_SOCKET


def call_agent(environ: Mapping[str, str], stdin: bytes) -> tuple[int, bytes] | None:
    """(exit status, stdout) from the agent, or None to run in-process."""
    path = agent_socket(environ, stdin)
    if not path or KILL_HOOK in environ or not os.path.exists(path):
        return None
    frame = encode_request({k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)}, stdin)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            send_request(sock, frame, netns_fd)
        finally:
            os.close(netns_fd)
        sock.settimeout(ANSWER_TIMEOUT)
        refused, status, body = recv_reply(sock)
    except (OSError, ProtocolError):
        return None
    finally:
        sock.close()
    return None if refused else (status, body)
