"""loxi-agent: the warm path, its socket, its fallback and its robustness."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time

import pytest

from bench.run import AgentCpu
from loxi.agent.protocol import encode_request, recv_reply
from tests.conftest import AgentProcess, Node, make_conf


@pytest.fixture
def agent(tmp_path):
    process = AgentProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()


def agent_node(node: Node, agent: AgentProcess) -> Node:
    return Node(node.ns, node.data_dir, node.factory, str(agent.socket))


def test_the_agent_serves_add_check_del_from_a_node_namespace(node, agent):
    warm = agent_node(node, agent)
    pod = warm.pod()
    conf = make_conf(warm.data_dir)
    add = warm.cni("ADD", conf, container_id="via-agent", netns=pod.path)
    assert add.rc == 0, add
    assert pod.addresses("eth0") == ["10.244.1.2/24"]
    assert node.ns.addresses("hsvlan100") == ["10.244.1.1/24"], "made in the caller's node namespace"
    check = warm.cni("CHECK", {**conf, "prevResult": add.json}, container_id="via-agent", netns=pod.path)
    assert check.rc == 0, check
    # the in-process path sees the same state: one engine
    same = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="via-agent", netns=pod.path)
    assert same.rc == 0, same
    bad = warm.cni("ADD", b"{not json", container_id="x", netns=pod.path)
    assert bad.rc == 1 and bad.json["code"] == 6
    assert warm.cni("DEL", conf, container_id="via-agent", netns=pod.path).rc == 0
    assert node.ns.loxi_links() == [] and node.store_files("loxilight_cni") == []
    assert "loxi-agent: listening" in agent.log.read_text()


def agent_cpu_s(agent: AgentProcess) -> float:
    """The agent's CPU time, all threads of all its engine processes: it grows only when it serves."""
    return AgentCpu(agent.proc.pid).cpu_s(refresh=True)


def test_the_conf_key_agent_socket_routes_calls_to_that_agent(node, agent):
    pod = node.pod()
    conf = {**make_conf(node.data_dir), "agentSocket": str(agent.socket)}
    no_env = {"LOXI_AGENT_SOCKET": None}  # as a runtime runs it: only the conf names the socket
    before = agent_cpu_s(agent)
    add = node.cni("ADD", conf, container_id="conf-socket", netns=pod.path, env=no_env)
    assert add.rc == 0, add
    served = agent_cpu_s(agent) - before
    assert served > 0.001, f"the agent spent {served * 1000:.2f} ms: it did not serve the ADD"
    assert pod.addresses("eth0") == ["10.244.1.2/24"]
    # LOXI_AGENT_SOCKET='' (in-process) overrides the conf: the agent stays idle
    before = agent_cpu_s(agent)
    check = node.cni(
        "CHECK",
        {**conf, "prevResult": add.json},
        container_id="conf-socket",
        netns=pod.path,
        env={"LOXI_AGENT_SOCKET": ""},
    )
    assert check.rc == 0, check
    assert agent_cpu_s(agent) - before < served / 2
    # a relative path is refused by the schema, whichever process runs the engine
    bad = node.cni(
        "CHECK",
        {**conf, "agentSocket": "agent.sock", "prevResult": add.json},
        container_id="conf-socket",
        netns=pod.path,
        env=no_env,
    )
    assert bad.rc == 1 and bad.json["code"] == 7 and "agentSocket" in bad.json["msg"], bad
    assert node.cni("DEL", conf, container_id="conf-socket", netns=pod.path, env=no_env).rc == 0
    assert node.ns.loxi_links() == [] and node.store_files("loxilight_cni") == []


def test_socket_is_root_only(agent):
    assert stat.S_IMODE(agent.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.socket.parent.stat().st_mode) == 0o700


def test_a_broken_request_does_not_kill_the_agent(node, agent):
    version_1 = b'\x00\x00\x00\x2b{"v":1,"env":{},"stdin":""}'  # the old JSON frame
    for garbage in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b"", version_1, b"LOXI\x02\xff\xff\xff\xff\0\0\0\0"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(agent.socket))
            sock.sendall(garbage)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(agent.socket))
        sock.sendall(encode_request({}, b""))  # no namespace descriptor
        assert recv_reply(sock) == (True, 1, b"the request carries no network namespace")
    assert agent.proc.poll() is None
    warm = agent_node(node, agent)
    call = warm.cni("ADD", make_conf(warm.data_dir), container_id="after-garbage", netns=warm.pod().path)
    assert call.rc == 0, call


def test_non_root_callers_are_refused(agent):
    code = (
        "import socket,sys; from loxi.agent.protocol import *; s=socket.socket(socket.AF_UNIX);"
        f"s.connect({str(agent.socket)!r}); print(recv_reply(s))"
    )
    # the socket is 0600: a non-root process cannot even connect
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


def test_plugin_falls_back_in_process_when_the_agent_is_gone(node, agent):
    warm = agent_node(node, agent)
    agent.stop()
    warm_socket_exists = agent.socket.exists()
    call = warm.cni("ADD", make_conf(warm.data_dir), container_id="fallback", netns=warm.pod().path)
    assert call.rc == 0, call
    assert not warm_socket_exists, "the agent removed its socket on SIGTERM"
    # a stale socket file (agent crashed) also falls back
    agent.socket.touch()
    call = warm.cni("DEL", make_conf(warm.data_dir), container_id="fallback")
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == []


def test_a_client_that_never_sends_is_cut_off(tmp_path):
    agent = AgentProcess(tmp_path, "--request-timeout", "0.5")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(agent.socket))
            sock.sendall(b"LOXI\x02")  # half a header, then silence
            sock.settimeout(10)
            started = time.monotonic()
            assert sock.recv(100) == b"", "the agent closes the connection"
            assert 0.4 < time.monotonic() - started < 5
        assert agent.proc.poll() is None
        assert "request failed: timed out" in agent.log.read_text()
    finally:
        agent.stop()
