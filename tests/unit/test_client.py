"""Which socket the thin client tries: the environment, then the conf's `agentSocket`, then the default."""

from __future__ import annotations

import json

from loxi.agent.protocol import DEFAULT_SOCKET
from loxi.plugin.client import agent_socket


def conf(**fields) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "loxi-cni", **fields}).encode()


def test_the_default_socket_without_env_or_conf_key():
    assert agent_socket({}, conf()) == DEFAULT_SOCKET.encode() == b"/run/loxi/agent.sock"


def test_the_conf_key_names_another_socket():
    assert agent_socket({b"CNI_COMMAND": b"ADD"}, conf(agentSocket="/run/other/a.sock")) == b"/run/other/a.sock"


def test_the_environment_wins_over_the_conf_and_empty_means_in_process():
    stdin = conf(agentSocket="/run/other/a.sock")
    assert agent_socket({b"LOXI_AGENT_SOCKET": b"/tmp/t.sock"}, stdin) == b"/tmp/t.sock"
    assert agent_socket({b"LOXI_AGENT_SOCKET": b""}, stdin) == b""


def test_a_conf_the_client_cannot_read_leaves_the_default():
    # the engine, in the agent or in-process, reports the conf's own error
    assert agent_socket({}, b'{"agentSocket": ') == DEFAULT_SOCKET.encode()
    assert agent_socket({}, b'["agentSocket"]') == DEFAULT_SOCKET.encode()
    assert agent_socket({}, conf(agentSocket=5)) == DEFAULT_SOCKET.encode()
    # only a top-level key counts, not one inside prevResult or ipam
    assert agent_socket({}, conf(ipam={"agentSocket": "/x.sock"})) == DEFAULT_SOCKET.encode()


def test_an_agent_socket_no_path_can_be_keeps_the_call_in_process():
    """A lone surrogate or a NUL: no traceback, no agent; the engine then judges the conf (code 7)."""
    lone = b'{"cniVersion": "1.0.0", "agentSocket": "\\ud800"}'
    nul = b'{"cniVersion": "1.0.0", "agentSocket": "/x/\\u0000"}'
    for stdin in (lone, nul):
        assert agent_socket({}, stdin) == b"", stdin


def test_a_conf_nested_past_the_parsers_depth_leaves_the_default():
    deep = b'{"agentSocket": "/run/x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert agent_socket({}, deep) == DEFAULT_SOCKET.encode()
