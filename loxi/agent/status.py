"""Ask a running loxi-agent how it is, over its root-only status socket (for `loxi-plan show`).

Standard library only: loxi-plan must not need prometheus_client to say that
no agent runs. The status socket lives next to the agent's socket
(`agent-status.sock` in the same directory), so whoever knows where the agent
listens knows where to ask.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

STATUS_SOCKET_NAME = "agent-status.sock"


def status_socket(agent_socket: str) -> str:
    return os.path.join(os.path.dirname(agent_socket) or ".", STATUS_SOCKET_NAME)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def fetch(path: str, endpoint: str = "/status", timeout: float = 2.0) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body) from the unix socket at `path`; raises OSError when nothing answers."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", endpoint)
        answer = conn.getresponse()
        body = answer.read()
    except http.client.HTTPException as exc:
        raise OSError(f"{path}: {exc}") from None
    finally:
        conn.close()
    try:
        return answer.status, json.loads(body)
    except ValueError:
        return answer.status, body.decode(errors="replace")


def agent_status(agent_socket: str) -> dict[str, Any] | None:
    """The agent's /status, or None when no agent answers there."""
    try:
        code, doc = fetch(status_socket(agent_socket))
    except OSError:
        return None
    return doc if code == 200 and isinstance(doc, dict) else None
