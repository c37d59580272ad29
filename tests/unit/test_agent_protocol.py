"""The loxi-agent wire format (version 2), over socket pairs: no agent, no kernel state."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loxi.agent.protocol import (
    MAGIC,
    REQUEST_HEADER,
    ProtocolError,
    encode_reply,
    encode_request,
    recv_reply,
    recv_request,
    send_request,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        yield a, b


def test_a_request_carries_env_stdin_and_one_descriptor(pair, tmp_path):
    client, agent = pair
    env = {b"CNI_COMMAND": b"ADD", b"CNI_ARGS": b"K8S_POD_NAME=a=b;IgnoreUnknown=1", b"CNI_PATH": b"/opt/cni/bin"}
    env[b"LOXI_LOG_FILE"] = b"/tmp/\xff-not-utf8"  # any bytes survive, decoded as os.environ decodes them
    stdin = b'{"cniVersion":"1.0.0"}\0\xff binary is fine'
    marker = tmp_path / "marker"
    marker.write_text("x")
    fd = os.open(marker, os.O_RDONLY)
    try:
        send_request(client, encode_request(env, stdin), fd)
    finally:
        os.close(fd)
    got_env, got_stdin, fds = recv_request(agent)
    try:
        assert got_env == {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()} and got_stdin == stdin
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == marker.stat().st_ino
    finally:
        for received in fds:
            os.close(received)


def test_an_empty_environment_and_stdin(pair):
    client, agent = pair
    client.sendall(encode_request({}, b""))
    assert recv_request(agent) == ({}, b"", [])


@pytest.mark.parametrize(
    ("status", "body", "refused"),
    [(0, b'{"cniVersion":"1.0.0"}\n', False), (1, b'{"code":7}', False), (-9, b"", False), (1, b"why", True)],
)
def test_replies_round_trip(pair, status, body, refused):
    agent, client = pair
    agent.sendall(encode_reply(status, body, refused=refused))
    assert recv_reply(client) == (refused, status, body)


def test_a_large_request_arrives_whole(pair):
    client, agent = pair
    stdin = b"x" * (3 * 1024 * 1024)
    frame = encode_request({b"CNI_COMMAND": b"ADD"}, stdin)
    import threading

    sender = threading.Thread(target=client.sendall, args=(frame,))
    sender.start()
    _, got, _ = recv_request(agent)
    sender.join()
    assert got == stdin


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "closed before a frame"),
        (b'\x00\x00\x00\x10{"v":1,"env":{}}', "not a loxi-agent version 2 request"),
        (MAGIC + b"\x00\x00", "closed inside a frame"),
        (MAGIC + b"\xff\xff\xff\xff\x00\x00\x00\x00", "too large"),
        (MAGIC + b"\x00\x00\x00\x05\x00\x00\x00\x00abc", "closed inside a frame"),
    ],
)
def test_broken_requests_are_protocol_errors(pair, raw, why):
    client, agent = pair
    client.sendall(raw)
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError, match=why):
        recv_request(agent)


def test_descriptors_of_a_broken_request_are_closed(pair, tmp_path):
    client, agent = pair
    before = set(os.listdir("/proc/self/fd"))
    fd = os.open(tmp_path, os.O_RDONLY)
    send_request(client, MAGIC + b"\x00", fd)  # a truncated header
    os.close(fd)
    client.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError):
        recv_request(agent)
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_reply_that_is_not_version_2(pair):
    agent, client = pair
    agent.sendall(b"\x00\x00\x00\x02{}" + b"\0" * REQUEST_HEADER)
    with pytest.raises(ProtocolError, match="not a loxi-agent version 2 reply"):
        recv_reply(client)


def test_the_thin_client_imports_interpreter_built_ins_only():
    """What `loxi-cni` loads before it knows whether the agent answers (as the launcher runs it)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules);"
        "import loxi.plugin.entry, loxi.plugin.client;"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, str(ROOT)], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {"json", "base64", "socket", "selectors", "enum", "re", "typing", "struct", "array", "functools"}
    assert not loaded & (heavy | {"collections", "os", "io"}), loaded
    assert loaded <= {
        "__future__",
        "_socket",
        "posix",
        "loxi",
        "loxi.plugin",
        "loxi.plugin.entry",
        "loxi.plugin.exit",
        "loxi.plugin.client",
        "loxi.agent",
        "loxi.agent.protocol",
    }
    assert not any(name.split(".")[0] in {"pyroute2", "networkx", "jsonschema", "jinja2"} for name in loaded)
