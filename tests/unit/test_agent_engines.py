"""loxi-agent's engine books (loxi.agent.engine): what a child sends is what the agent's own bookkeeping counts.

A child's `EngineServer` writes its events into one end of a socket pair; `Engines._relay` reads
the other end into a recording server, as the agent does. No kernel state, no child process.
"""

from __future__ import annotations

import os
import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from loxi.agent import engine
from loxi.agent.health import AgentState


class RecordingServer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.state = AgentState()

    def begin(self) -> None:
        self.calls.append(("begin",))

    def end(self) -> None:
        self.calls.append(("end",))

    def refused(self, reason: str, error: str = "") -> None:
        self.calls.append(("refused", reason, error))

    def served_call(self, environ, stdin, rc, answer, seconds, timings, local) -> None:
        self.calls.append(("served", environ, stdin, rc, answer, timings, local))


def child_side(books: socket.socket) -> engine.EngineServer:
    """An EngineServer's bookkeeping without its listening socket (only `_send` and the book methods run)."""
    child = engine.EngineServer.__new__(engine.EngineServer)
    child.books, child.phases, child.seen, child.state = books, True, set(), AgentState()
    child.write_lock, child.ack_lock = threading.Lock(), threading.Lock()
    return child


def test_a_childs_books_reach_the_agents_bookkeeping_in_order_and_acknowledged() -> None:
    ours, theirs = socket.socketpair()
    agent = RecordingServer()
    engines = engine.Engines.__new__(engine.Engines)
    engines.server, engines.options, engines.count = agent, SimpleNamespace(log=lambda *a, **k: None), 2
    slot = engine._Slot(2)
    relay = threading.Thread(target=engines._relay, args=(slot, ours))
    relay.start()
    child = child_side(theirs)
    conf = b'{"cniVersion":"1.0.0","name":"n","type":"loxi-cni"}'
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_ARGS": "K8S_POD_NAME=p"}
    child.begin()
    child.served_call(env, conf, 0, '{"cniVersion":"1.0.0"}', 0.01, {"ipam": 0.002}, False)
    child.end()
    child.begin()
    child.served_call(env, conf, 0, "{}", 0.01, {}, False)  # the same conf again: not sent twice
    child.refused("agent-busy", "")
    child.begin()  # accepted, then the child dies: the agent counts it ended
    theirs.close()
    relay.join(5)
    assert not relay.is_alive()
    assert [c[0] for c in agent.calls] == ["begin", "served", "end", "begin", "served", "refused", "begin"]
    first, second = agent.calls[1], agent.calls[4]
    assert first[1] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1"}  # no pod names or paths travel
    assert first[2] == conf and second[2] == b"" and first[3] == 0 and first[4] == ""  # a success's answer stays
    assert first[5] == {"ipam": 0.002} and agent.calls[5][1] == "agent-busy"
    assert slot.served == 2 and slot.outstanding == 2  # two begins without an end: _keep ends them
    ours.close()


def test_a_failed_calls_answer_travels_for_its_error_code() -> None:
    ours, theirs = socket.socketpair()
    agent = RecordingServer()
    engines = engine.Engines.__new__(engine.Engines)
    engines.server, engines.options, engines.count = agent, SimpleNamespace(log=lambda *a, **k: None), 2
    relay = threading.Thread(target=engines._relay, args=(engine._Slot(2), ours))
    relay.start()
    answer = '{"code": 7, "msg": "bad"}'
    child_side(theirs).served_call({"CNI_COMMAND": "DEL"}, b"{}", 1, answer, 0.0, {}, True)
    theirs.close()
    relay.join(5)
    assert agent.calls == [("served", {"CNI_COMMAND": "DEL"}, b"", 1, answer, {}, True)]
    ours.close()


@pytest.mark.parametrize(("cpus", "want"), [(1, 1), (2, 2), (4, 4), (64, engine.MAX_DEFAULT_ENGINES)])
def test_the_default_is_one_engine_per_cpu_up_to_the_cap(monkeypatch: pytest.MonkeyPatch, cpus: int, want: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert engine.default_engines() == want


def test_loxi_plan_show_names_the_engines_when_there_are_several() -> None:
    from loxi.plan.render import agent_text

    doc: dict[str, Any] = {"pid": 10, "requests_served": 7, "in_flight": 0, "ready": {"engine imported": True}}
    doc["reconciler"] = {"enabled": False}
    assert "engines:" not in agent_text({**doc, "engines": [{"engine": 1, "pid": 10, "serving": True}]})
    engines = [
        {"engine": 1, "pid": 10, "serving": True, "requests_served": 4},
        {"engine": 2, "pid": 11, "serving": False, "requests_served": 3},
    ]
    text = agent_text({**doc, "engines": engines})
    assert "  engines: 1 of 2 serving; requests served by each: 4 (pid 10), 3 (pid 11)" in text.splitlines()
