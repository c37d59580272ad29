"""The static shim (shim/loxi-shim.c), executed as a runtime executes it, against a stub agent
written here and against the real loxi-agent; its fallback with and without a Python runtime.

Every test runs twice: on the product build (static, -O2) and once on a build with
AddressSanitizer and UndefinedBehaviorSanitizer (any report fails the test). Both builds
have short reply timeouts (-DLOXI_ANSWER_TIMEOUT_MS) so the never-answering agent is quick.
Where the shim must do what the Python thin client does, the test runs both and compares
bytes: the frame the agent receives, stdout, the exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from intent.versions import version_info_json
from loxi.agent.protocol import REQUEST_HEADER, encode_reply
from loxi.plugin.client import agent_socket as python_agent_socket
from tests.conftest import AgentProcess, Node, make_conf, needs_root, python_plugin_path, shim_bin_dir

ANSWER_TIMEOUT_MS = 1500
SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"runtime error:", b"ERROR: LeakSanitizer")
IN_PROCESS_ENV_ERROR = b"required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"


@pytest.fixture(scope="module", params=["static", "sanitized"])
def shim_dir(request: pytest.FixtureRequest) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (scripts/setup installs gcc)")
    return shim_bin_dir(f"-DLOXI_ANSWER_TIMEOUT_MS={ANSWER_TIMEOUT_MS}", sanitize=request.param == "sanitized")


def run(binary: Path | str, env: dict, stdin: bytes = b"", **kw) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([str(binary)], input=stdin, env=env, capture_output=True, timeout=60, cwd="/", **kw)
    assert not any(mark in proc.stderr for mark in SANITIZER_MARKS), proc.stderr.decode(errors="replace")
    return proc


def copy_without_launcher(shim_dir: Path, tmp_path: Path, launcher: str | None = None) -> Path:
    """The shim alone in a bin dir (no Python runtime), or beside the given launcher text."""
    directory = tmp_path / "bin"
    directory.mkdir(exist_ok=True)
    shutil.copy2(shim_dir / "loxi-cni", directory / "loxi-cni")
    if launcher is not None:
        (directory / "loxi-cni-inprocess").write_text(launcher)
        (directory / "loxi-cni-inprocess").chmod(0o755)
    return directory / "loxi-cni"


RECORDER = f"""#!{sys.executable} -IS
import os, sys
out = os.environb[b"RECORD_TO"]
with open(out + b".stdin", "wb") as f:
    f.write(sys.stdin.buffer.read())
with open(out + b".env", "wb") as f:
    f.write(b"\\0".join(k + b"=" + v for k, v in os.environb.items()))
sys.stdout.write("recorded")
sys.exit(7)
"""


class StubAgent:
    """A loxi-agent stand-in on `path`: records each request (frame bytes, descriptors' stat) and
    answers as `behaviour` says: reply, refuse, garbage, cut (a reply cut short), close, hang."""

    def __init__(self, path: Path, behaviour: str = "reply", status: int = 0, body: bytes = b"") -> None:
        self.path, self.behaviour, self.status, self.body = path, behaviour, status, body
        self.frames: list[bytes] = []
        self.fds: list[list[os.stat_result]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    self.answer(conn)

    def answer(self, conn: socket.socket) -> None:
        data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
        self.fds.append([os.fstat(fd) for fd in fds])
        for fd in fds:
            os.close(fd)
        while len(data) < REQUEST_HEADER:
            data += conn.recv(65536)
        size = REQUEST_HEADER + int.from_bytes(data[5:9], "big") + int.from_bytes(data[9:13], "big")
        while len(data) < size:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        self.frames.append(data)
        if self.behaviour == "reply":
            conn.sendall(encode_reply(self.status, self.body))
        elif self.behaviour == "refuse":
            conn.sendall(encode_reply(1, b"only root may use loxi-agent", refused=True))
        elif self.behaviour == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        elif self.behaviour == "cut":
            conn.sendall(encode_reply(0, b"x" * 100)[:40])
        elif self.behaviour == "hang":
            conn.settimeout(30)
            conn.recv(1)  # until the client gives up and closes

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def stub(tmp_path: Path) -> Iterator:
    made: list[StubAgent] = []

    def make(behaviour: str = "reply", status: int = 0, body: bytes = b"") -> StubAgent:
        agent = StubAgent(tmp_path / f"stub{len(made)}.sock", behaviour, status, body)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def cni_env(socket_path: str | Path, **extra: str | bytes) -> dict:
    env: dict = {"CNI_COMMAND": "ADD", "LOXI_AGENT_SOCKET": str(socket_path)}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------
# VERSION, and the frame byte for byte


def test_version_is_answered_by_the_shim_from_intent(shim_dir: Path) -> None:
    proc = run(shim_dir / "loxi-cni", {"CNI_COMMAND": "VERSION"}, b"{}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, (version_info_json() + "\n").encode(), b"")
    python = run(python_plugin_path(), {"CNI_COMMAND": "VERSION"}, b"{}")
    assert python.stdout == proc.stdout and python.returncode == 0


@pytest.mark.parametrize(
    "netns",
    [b"/proc/self/ns/net", b"/dev/null", b"/nonexistent/ns", b"relative", b"", None],
    ids=["ns-file", "char-device", "missing", "relative", "empty", "unset"],
)
def test_frame_and_descriptors_are_the_python_clients(shim_dir: Path, stub, tmp_path: Path, netns) -> None:
    agent = stub("reply", 3, b'{"a": "\xff\x00 body"}')
    env = {
        b"CNI_COMMAND": b"ADD",
        b"CNI_CONTAINERID": b"c\xff\xfe1",  # not UTF-8: passed as bytes
        b"CNI_IFNAME": b"eth0",
        b"CNI_ARGS": b"K8S_POD_NAME=p;X=\xe9",
        b"CNI_PATH": b"/opt/cni/bin",
        b"LOXI_LOG_LEVEL": b"debug",
        b"LOXI_CALLER_NETNS": b"forged",  # never forwarded: the client adds its own
        b"TRACEPARENT": b"00-abc",
        b"OTHER": b"not forwarded",
        b"LOXI_AGENT_SOCKET": str(agent.path).encode(),
    }
    if netns is not None:
        env[b"CNI_NETNS"] = netns
    stdin = b'{"cniVersion":"1.0.0","name":"n","type":"loxi-cni","x":"\xc3\xa9"}'
    shim = run(shim_dir / "loxi-cni", env, stdin)
    python = run(python_plugin_path(), env, stdin)
    assert (shim.returncode, shim.stdout) == (python.returncode, python.stdout) == (3, b'{"a": "\xff\x00 body"}')
    assert len(agent.frames) == 2 and agent.frames[0] == agent.frames[1], agent.frames
    ns_ino = os.stat("/proc/self/ns/net").st_ino
    for fds in agent.fds:
        assert fds[0].st_ino == ns_ino  # the caller's own namespace
        assert len(fds) == (2 if netns == b"/proc/self/ns/net" else 1)
        if len(fds) == 2:
            assert fds[1].st_ino == ns_ino and stat.S_ISREG(fds[1].st_mode)


def test_sixteen_mib_stdin_is_bounded_as_the_python_client_bounds_it(shim_dir: Path, stub) -> None:
    agent = stub("reply", 1, b"too large")
    stdin = b'{"name":"' + b"a" * (16 * 1024 * 1024) + b'"}'
    env = cni_env(agent.path)
    shim = run(shim_dir / "loxi-cni", env, stdin)
    python = run(python_plugin_path(), env, stdin)
    assert (shim.returncode, shim.stdout) == (python.returncode, python.stdout) == (1, b"too large")
    assert agent.frames[0] == agent.frames[1]
    assert int.from_bytes(agent.frames[0][9:13], "big") == 4 * 1024 * 1024 + 1


# ---------------------------------------------------------------------------
# fallback: the agent absent, refusing, breaking off, silent


@pytest.mark.parametrize("behaviour", ["absent", "refuse", "garbage", "cut", "close", "hang"])
def test_fallback_runs_in_process_with_the_same_answer(shim_dir: Path, stub, tmp_path: Path, behaviour: str) -> None:
    path = tmp_path / "none.sock" if behaviour == "absent" else stub(behaviour).path
    env = cni_env(path)
    start = time.monotonic()
    shim = run(shim_dir / "loxi-cni", env, b"{}")
    took = time.monotonic() - start
    assert shim.returncode == 1 and IN_PROCESS_ENV_ERROR in shim.stdout, shim
    in_process = run(shim_dir / "loxi-cni-inprocess", env, b"{}")
    assert shim.stdout == in_process.stdout
    if behaviour == "hang":
        assert ANSWER_TIMEOUT_MS / 1000 <= took < ANSWER_TIMEOUT_MS / 1000 + 10
    else:  # the Python client falls back the same way, to the same answer
        python = run(python_plugin_path(), env, b"{}")
        assert (python.returncode, python.stdout) == (shim.returncode, shim.stdout)


def test_fallback_gets_the_same_environment_and_stdin_bytes(shim_dir: Path, stub, tmp_path: Path) -> None:
    shim = copy_without_launcher(shim_dir, tmp_path, RECORDER)
    record = tmp_path / "rec"
    env = {
        b"CNI_COMMAND": b"ADD",
        b"CNI_CONTAINERID": b"\xff\xfe",
        b"NOT_CNI": b"\x80 kept",
        b"LOXI_AGENT_SOCKET": str(stub("refuse").path).encode(),
        b"RECORD_TO": str(record).encode(),
    }
    for stdin in (b"\x00\xff{not json", b"z" * (4 * 1024 * 1024 + 1)):
        proc = run(shim, env, stdin)
        assert (proc.returncode, proc.stdout) == (7, b"recorded")
        assert (tmp_path / "rec.stdin").read_bytes() == stdin
        recorded = dict(e.split(b"=", 1) for e in (tmp_path / "rec.env").read_bytes().split(b"\0"))
        recorded.pop(b"LC_CTYPE", None)  # the recorder's own interpreter adds it (PEP 538 locale coercion)
        assert recorded == env


@pytest.mark.parametrize(
    "launcher", [None, "#!/nonexistent/python3 -IS\nimport sys\n"], ids=["no-launcher", "no-python"]
)
def test_without_a_python_runtime_code_11_names_the_socket(shim_dir: Path, tmp_path: Path, launcher) -> None:
    shim = copy_without_launcher(shim_dir, tmp_path, launcher)
    sock = tmp_path / "absent.sock"
    proc = run(shim, cni_env(sock), b"{}")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["code"] == 11
    assert doc["msg"] == f"loxi-agent did not answer on {sock} and loxi-cni cannot run in-process"
    assert doc["details"] == (
        f"agent: {sock}: No such file or directory; in-process plugin {shim.parent}/loxi-cni-inprocess: "
        "No such file or directory"
    )
    assert proc.stdout.startswith(b'{\n    "code": 11,\n    "msg": "') and proc.stdout.endswith(b'"\n}')


def test_closed_stdout_makes_the_status_1(shim_dir: Path, stub) -> None:
    agent = stub("reply", 0, b"x" * 100_000)
    for plugin in (shim_dir / "loxi-cni", python_plugin_path()):
        read, write = os.pipe()
        os.close(read)  # the runtime stopped reading
        try:
            proc = subprocess.run(
                [str(plugin)], input=b"{}", stdout=write, stderr=subprocess.PIPE, env=cni_env(agent.path), timeout=60
            )
        finally:
            os.close(write)
        assert proc.returncode == 1, (plugin, proc.stderr)


def test_a_closed_descriptor_is_left_to_the_python_plugin(shim_dir: Path, stub) -> None:
    """stdout not open at all: the shim runs the Python plugin, which fails as it does alone."""
    env = cni_env(stub("reply", 0, b"{}").path)
    shim = subprocess.run(
        [str(shim_dir / "loxi-cni")],
        input=b"{}",
        capture_output=False,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    python = subprocess.run(
        [str(python_plugin_path())],
        input=b"{}",
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert shim.returncode == python.returncode == 1


# ---------------------------------------------------------------------------
# the socket: LOXI_AGENT_SOCKET, the conf's agentSocket as json.loads finds it, the default

SOCKET_CASES = [
    (b'{"agentSocket": "/x/a.sock"}', "path"),
    (b'{"agentSocket": "/x/a", "agentSocket": "/x/b"}', "path"),
    (b'{"agentSocket": "/x/a", "agentSocket": 5}', "path"),
    (b'{"agentSocket": 5, "agentSocket": "/x/a"}', "path"),
    (b'{"agentSocket": "\\/x\\/\\u00e9\\ud83d\\ude00 \\"q\\" \\t"}', "path"),
    (b'{"agentSocket": "/x/\\udcff\\udc80"}', "path"),
    (b'{"agentSocket": "/x/\xc3\xa9"}', "path"),
    (b'\xef\xbb\xbf{"agentSocket": "/x/bom"}', "path"),
    (
        b' \t\r\n{ "a" : [1, 2.5e3, -0, 1E+2, true, false, null, NaN, -Infinity, Infinity, {"b": "c"}, []],'
        b' "agentSocket" : "/x/a" } \n',
        "path",
    ),
    (b'{"agent\\u0053ocket": "/x/escaped", "agentSocket": "/x/a"}', "path"),
    (b'{"agentSocket": "/x/a", "agent\\u0053ocket": "/x/escaped"}', "path"),
    (b'{"agent\\ud800Socket": "/x/no", "agentSocket": "/x/a"}', "path"),
    (b'{"a": "\xed\xa0\x80", "agentSocket": "/x/surrogatepass"}', "path"),
    (b'{"agentSocket": ""}', "path"),
    (b'{"agentSocket": "/x/a",}', "path"),
    (b'{"agentSocket": "/x/a"} x', "path"),
    (b'{"a": 01, "agentSocket": "/x/a"}', "path"),
    (b'{"a": 1., "agentSocket": "/x/a"}', "path"),
    (b'{"a": .5, "agentSocket": "/x/a"}', "path"),
    (b'{"a": 1e, "agentSocket": "/x/a"}', "path"),
    (b'{"a": "\xff", "agentSocket": "/x/a"}', "path"),
    (b'{"a": "\xc0\xaf", "agentSocket": "/x/a"}', "path"),
    (b'{"a": "tab\there", "agentSocket": "/x/a"}', "path"),
    (b'{"a": "\\x", "agentSocket": "/x/a"}', "path"),
    (b'{"a": tru, "agentSocket": "/x/a"}', "path"),
    (b'{"nested": {"agentSocket": "/x/n"}}', "path"),
    (b'["agentSocket"]', "path"),
    (b'"agentSocket"', "path"),
    (b'{"agentSocket": "/x/\\ud800"}', "defer"),  # Python raises UnicodeEncodeError
    (b'{"agentSocket": "/x/\\u0000"}', "defer"),  # Python raises ValueError (embedded NUL)
    (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b', "agentSocket": "/x/a"}', "defer"),  # RecursionError
    (b'{"a": ' + b"1" * 4301 + b', "agentSocket": "/x/a"}', "defer-or-path"),
    (b'{"a": ' + b"[" * 600 + b"]" * 600 + b', "agentSocket": "/x/a"}', "defer-or-path"),
]


def python_choice(stdin: bytes) -> bytes | None:
    """The socket the Python client tries, or None where the shim must leave the call to the Python
    plugin: an agentSocket that is no path (a lone surrogate, a NUL; the client then stays
    in-process) or a conf nested past json's depth (the engine then answers code 6)."""
    try:
        doc = json.loads(stdin)
    except RecursionError:
        return None
    except ValueError:
        doc = None
    value = doc.get("agentSocket") if isinstance(doc, dict) else None
    if isinstance(value, str):
        try:
            value.encode(errors="surrogateescape")
        except UnicodeEncodeError:
            return None
        if "\0" in value:
            return None
    return python_agent_socket({}, stdin)


@pytest.mark.parametrize(("stdin", "kind"), SOCKET_CASES, ids=[str(i) for i in range(len(SOCKET_CASES))])
def test_socket_from_the_conf_as_the_python_client_reads_it(shim_dir: Path, tmp_path: Path, stdin, kind) -> None:
    shim = copy_without_launcher(shim_dir, tmp_path)  # code 11 names the socket it tried
    proc = run(shim, {"CNI_COMMAND": "ADD"}, stdin)
    doc = json.loads(proc.stdout)
    expected = python_choice(stdin)
    deferred = doc["msg"] == "loxi-cni cannot run in-process (loxi-agent not tried)"
    if kind == "defer":
        assert expected is None and deferred, doc
        return
    if kind == "defer-or-path" and deferred:
        return
    assert expected is not None and not deferred, doc
    if expected == b"":
        assert doc["msg"].startswith("loxi-agent is off (an empty socket path)")
    else:
        assert doc["msg"] == f"loxi-agent did not answer on {os.fsdecode(expected)} and loxi-cni cannot run in-process"


def test_the_environment_wins_and_empty_means_in_process(shim_dir: Path, tmp_path: Path, stub) -> None:
    agent = stub("reply", 0, b"from the agent")
    conf = json.dumps({"agentSocket": str(tmp_path / "elsewhere.sock")}).encode()
    proc = run(shim_dir / "loxi-cni", cni_env(agent.path), conf)
    assert (proc.returncode, proc.stdout) == (0, b"from the agent")
    proc = run(shim_dir / "loxi-cni", {"CNI_COMMAND": "ADD"}, json.dumps({"agentSocket": str(agent.path)}).encode())
    assert (proc.returncode, proc.stdout) == (0, b"from the agent")
    proc = run(shim_dir / "loxi-cni", cni_env(""), json.dumps({"agentSocket": str(agent.path)}).encode())
    assert proc.returncode == 1 and IN_PROCESS_ENV_ERROR in proc.stdout
    proc = run(shim_dir / "loxi-cni", cni_env(agent.path, LOXI_TEST_KILL_BEFORE_STEP="x"), b"{}")
    assert proc.returncode == 1 and IN_PROCESS_ENV_ERROR in proc.stdout
    assert len(agent.frames) == 2


# ---------------------------------------------------------------------------
# the real loxi-agent


@pytest.fixture(scope="module")
def real_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path_factory.mktemp("shim-agent"))
    try:
        yield agent
    finally:
        agent.stop()


@needs_root
def test_against_the_real_agent(shim_dir: Path, real_agent: AgentProcess, node: Node) -> None:
    shim = shim_dir / "loxi-cni"
    node.agent_socket = str(real_agent.socket)
    conf = make_conf(node.data_dir, bridge="lxshim0")
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="shim1", netns=pod.path, plugin=shim)
    assert add.rc == 0, add
    assert pod.addresses("eth0") == [add.json["ips"][0]["address"]]
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="shim1", netns=pod.path, plugin=shim)
    assert (check.rc, check.stdout) == (0, ""), check
    for bad in (b'{"cniVersion":"1.0.0","name":"n","type":"loxi-cni","mtu":"big"}', b"{" * 10, b" " * (5 << 20)):
        via_shim = node.cni("ADD", bad, container_id="shim2", netns=pod.path, plugin=shim)
        via_python = node.cni("ADD", bad, container_id="shim2", netns=pod.path, plugin=python_plugin_path())
        assert (via_shim.rc, via_shim.stdout) == (via_python.rc, via_python.stdout) and via_shim.rc == 1
    # /proc/self/ns/net is the shim's own namespace, as for the Python client: code 8, nothing made
    own = node.cni("ADD", conf, container_id="shim3", netns="/proc/self/ns/net", plugin=shim)
    assert own.rc == 1 and own.json["code"] == 8, own
    delete = node.cni("DEL", conf, container_id="shim1", netns=pod.path, plugin=shim)
    assert (delete.rc, delete.stdout) == (0, ""), delete
    assert node.ns.loxi_links() == []
    assert "Traceback" not in real_agent.log.read_text()
