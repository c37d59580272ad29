"""The thin client: hand one CNI call to loxi-agent, or say it could not.

Standard library only. Returns None whenever the agent is absent, refuses, or
breaks off without an answer, and the caller then runs the very same engine
in-process. Running twice is safe: both paths take the same per-attachment lock
and every plan step is idempotent, so a late agent and the fallback converge.
"""

from __future__ import annotations

import base64
import json
import os
import socket

from loxi.agent_protocol import DEFAULT_SOCKET, PROTOCOL_VERSION, ProtocolError, recv_frame, send_frame

# typing costs VERSION ~15 ms to import; annotations need it only for checkers.
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
    if b'"agentSocket"' in stdin:
        try:
            value = json.loads(stdin).get("agentSocket")
        except (ValueError, AttributeError):
            value = None
        if isinstance(value, str):
            return value
    return DEFAULT_SOCKET


def call_agent(environ: Mapping[str, str], stdin: bytes) -> tuple[int, str] | None:
    """(exit status, stdout) from the agent, or None to run in-process."""
    path = agent_socket(environ, stdin)
    if not path or KILL_HOOK in environ or not os.path.exists(path):
        return None
    request = {
        "v": PROTOCOL_VERSION,
        "env": {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES)},
        "stdin": base64.b64encode(stdin).decode(),
    }
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            send_frame(sock, request, [netns_fd])
        finally:
            os.close(netns_fd)
        sock.settimeout(ANSWER_TIMEOUT)
        reply, _ = recv_frame(sock)
    except (OSError, ProtocolError):
        return None
    finally:
        sock.close()
    if "error" in reply or not isinstance(reply.get("rc"), int) or not isinstance(reply.get("stdout"), str):
        return None
    return reply["rc"], reply["stdout"]
