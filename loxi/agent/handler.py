"""One CNI call through loxi-agent: check the caller, enter its namespace, run the engine, reply.

Run by one of the agent's workers (loxi.agent.pool) for each connection the
accept loop queued. The engine is exactly the in-process entry point,
`loxi.plugin.cni.run`: one code path, the same locks, so the agent and
in-process runs can act on one node at once. Every refusal here is a version-2
`E` reply, on which the client (and the shim) runs the call in-process.
"""

from __future__ import annotations

import io
import os
import socket
import socketserver
import struct
import time
from typing import TYPE_CHECKING

from applier import caller_netns
from applier.netns import setns
from loxi.agent import metrics as am
from loxi.agent.protocol import CALLER_NETNS_KEY, ProtocolError, encode_reply, recv_request
from loxi.engine import phases
from loxi.plugin.cni import run

if TYPE_CHECKING:
    from loxi.agent.server import AgentServer

PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
NOT_ROOT = encode_reply(1, b"only root may use loxi-agent", refused=True)
NO_NETNS = encode_reply(1, b"the request carries no network namespace", refused=True)


def _peer_uid(sock: socket.socket) -> int:
    return PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))[1]


class Handler(socketserver.BaseRequestHandler):
    """One CNI call: enter the caller's namespace, run the engine, reply."""

    def handle(self) -> None:
        server: AgentServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        fds: list[int] = []
        try:
            if _peer_uid(sock) != 0:
                server.refused(am.FALLBACK_NOT_ROOT)
                sock.sendall(NOT_ROOT)
                return
            sock.settimeout(server.request_timeout)
            environ, stdin, fds = recv_request(sock)
            sock.settimeout(None)  # the reply waits for the engine, however long a delegated IPAM takes
            if len(fds) not in (1, 2):
                server.refused(am.FALLBACK_NO_NETNS)
                sock.sendall(NO_NETNS)
                return
            view, refusal = _caller_view(environ, fds)
            if refusal:
                server.refused(am.FALLBACK_NETNS_VIEW)
                sock.sendall(encode_reply(1, refusal, refused=True))
                return
            stdout, stderr = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            timings = phases.record() if server.wants_phases() else {}
            caller = os.fstat(fds[0])
            local = (caller.st_dev, caller.st_ino) == server.own_netns_id
            if not local:  # a worker starts every request in the agent's own namespace (see below)
                setns(fds[0])  # this thread only
            try:
                with caller_netns.installed(view):
                    rc = run(environ, io.BytesIO(stdin), stdout, stderr)
            finally:
                # Leave the caller's namespace before answering: once the runtime
                # has its reply it may delete the pod's namespace, and a thread
                # still inside would keep it (and the pod's veth) alive. Always,
                # even for a local caller: whatever namespace the engine left.
                setns(server.own_netns)
                phases.stop()
            warnings = stderr.getvalue()
            if warnings:
                server.log.raw(warnings)
            answer = stdout.getvalue()
            # Counted before the answer goes out: whoever has the answer sees the call counted.
            server.served_call(environ, stdin, rc, answer, time.perf_counter() - start, timings, local)
            sock.sendall(encode_reply(rc, answer.encode()))
        except (ProtocolError, OSError, ValueError) as exc:
            server.refused(am.FALLBACK_TIMEOUT if isinstance(exc, TimeoutError) else am.FALLBACK_BROKEN, str(exc))
            server.log(f"request failed: {exc}", level="error")
        finally:
            for fd in fds:
                os.close(fd)


def _caller_view(environ: dict[str, str], fds: list[int]) -> tuple[caller_netns.CallerView | None, bytes]:
    """How the caller resolved CNI_NETNS (see applier.caller_netns), or why the request is refused.

    A client that does not say (an older one) is refused rather than served
    with the agent's own reading of a per-process path: it then runs the call
    in-process, where the answer is right."""
    value = environ.pop(CALLER_NETNS_KEY, None)
    path = environ.get("CNI_NETNS", "")
    pod_fd = fds[1] if len(fds) == 2 else -1
    if not path.startswith("/"):
        return None, b"" if value is None and pod_fd < 0 else b"a CNI_NETNS view for a relative CNI_NETNS"
    view = caller_netns.parse_view(path, value or "", pod_fd)
    if view is None:
        return None, b"the request does not say how the caller resolved CNI_NETNS"
    return view, b""
