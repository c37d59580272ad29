"""`loxi-agent`: a node daemon that keeps the engine imported and answers loxi-cni.

A cold loxi-cni pays ~0.5 s of imports (pyroute2, networkx, jsonschema) per
pod. The agent pays them once. Each request runs in its own thread, which first
enters the caller's network namespace (the descriptor the client sent) and then
runs exactly the in-process entry point, `loxi.cni.run`: one code path, the same
locks, so the agent and in-process runs can act on one node at once.

Threads, not asyncio: every thread carries its own network namespace (setns is
per thread) and its own netlink sockets, and pyroute2 is never asked to fork.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import socket
import socketserver
import struct
import sys
import threading

from applier import caller_netns
from applier.netns import _setns
from loxi.agent_protocol import CALLER_NETNS_KEY, DEFAULT_SOCKET, ProtocolError, encode_reply, recv_request
from loxi.cni import run

SO_PEERCRED_FORMAT = "3i"
REQUEST_TIMEOUT = 30.0  # default seconds a client may take to send its request: a stuck one frees its thread


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(SO_PEERCRED_FORMAT))
    return struct.unpack(SO_PEERCRED_FORMAT, creds)[1]


class Handler(socketserver.BaseRequestHandler):
    """One CNI call: enter the caller's namespace, run the engine, reply."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        fds: list[int] = []
        try:
            if _peer_uid(sock) != 0:
                sock.sendall(encode_reply(1, b"only root may use loxi-agent", refused=True))
                return
            sock.settimeout(self.server.request_timeout)
            environ, stdin, fds = recv_request(sock)
            sock.settimeout(None)  # the reply waits for the engine, however long a delegated IPAM takes
            if len(fds) not in (1, 2):
                sock.sendall(encode_reply(1, b"the request carries no network namespace", refused=True))
                return
            view, refusal = _caller_view(environ, fds)
            if refusal:
                sock.sendall(encode_reply(1, refusal, refused=True))
                return
            stdout, stderr = io.StringIO(), io.StringIO()
            _setns(fds[0])  # this thread only
            try:
                with caller_netns.installed(view):
                    rc = run(environ, io.BytesIO(stdin), stdout, stderr)
            finally:
                # Leave the caller's namespace before answering: once the runtime
                # has its reply it may delete the pod's namespace, and a thread
                # still inside would keep it (and the pod's veth) alive.
                _setns(self.server.own_netns)
            if stderr.getvalue():
                sys.stderr.write(stderr.getvalue())
            sock.sendall(encode_reply(rc, stdout.getvalue().encode()))
        except (ProtocolError, OSError, ValueError) as exc:
            print(f"loxi-agent: request failed: {exc}", file=sys.stderr)
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


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    own_netns: int = -1  # the agent's own namespace, which every request thread returns to
    request_timeout: float = REQUEST_TIMEOUT


def serve(path: str, request_timeout: float = REQUEST_TIMEOUT) -> None:
    # Import the engine before the socket exists: a client that finds the socket
    # finds an agent ready to answer at full speed.
    import loxi.engine  # noqa: F401
    from applier.netlink import IPRoute  # noqa: F401  (the rare calls: a new bridge, VLANs, STATUS's probe)
    from intent.config import validate_schema

    validate_schema({"type": "loxi-cni"})

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    if os.path.exists(path):
        os.unlink(path)
    old_umask = os.umask(0o177)
    try:
        server = AgentServer(path, Handler)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    server.own_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    server.request_timeout = request_timeout
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"loxi-agent: listening on {path}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if os.path.exists(path):
            os.unlink(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="loxi-agent",
        description="Serve loxi-cni calls from a warm process over a root-only unix socket.",
        epilog="example: loxi-agent --socket /run/loxi/agent.sock",
    )
    parser.add_argument("--socket", default=os.environ.get("LOXI_AGENT_SOCKET") or DEFAULT_SOCKET)
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=REQUEST_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a client may take to send its request (default {REQUEST_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.socket, args.request_timeout)


if __name__ == "__main__":
    main()
