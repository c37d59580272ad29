"""Issue 17: files that are not regular files, and the pure halves of the other hardening classes.

loxi-plan (validate, dry-run, graph, render -o, install, uninstall) is run as a
subprocess with a timeout, so a FIFO that blocks an open fails the test instead
of hanging it. Every special file is made in tmp_path: a FIFO, a char device
with /dev/null's numbers (harmless if a bug writes to it), a unix socket, a
symlink; the real /dev/null is never named. Each writer must leave the special
file as it was; each reader must refuse it with a message that says what it is.

Also here, no kernel needed: the host veth's alias within the kernel's 254 bytes
and still naming its network (hypothesis), `%` in names, the one gateway rule
table ADD and `loxi-plan validate` share, lock directories that cannot be made,
and prevResult shapes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from applier import locks
from compiler.graph import MAX_ALIAS_BYTES, alias_names_network, owner_alias, parse_owner_alias
from compiler.model import Attachment
from intent import safe_io
from intent.config import decode
from intent.env import read_request
from intent.errors import CniError
from intent.ipam_config import load_host_local
from intent.result import check_prev_result
from loxi.plan.rules import semantic_findings

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20
KINDS = ("fifo", "chardev", "socket", "symlink", "directory")


def make_special(path: Path, kind: str) -> Iterator[None] | None:
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "chardev":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "symlink":
        target = path.with_name(path.name + ".target")
        target.write_text('{"precious": true}\n')
        path.symlink_to(target)
    elif kind == "directory":
        path.mkdir()
    return None


def fingerprint(path: Path) -> tuple:
    info = os.lstat(path)
    extra = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    target = path.with_name(path.name + ".target")
    content = target.read_text() if target.exists() else None
    return stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev, extra, content


def loxi_plan(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loxi.plan.cli", *argv],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


@pytest.fixture
def special(tmp_path: Path):
    def make(kind: str, name: str = "target") -> Path:
        path = tmp_path / name
        make_special(path, kind)
        return path

    return make


GOOD_CONF = {
    "cniVersion": "1.0.0",
    "name": "net",
    "type": "loxi-cni",
    "bridge": "br-t",
    "ipam": {"type": "host-local", "subnet": "10.250.0.0/24"},
}


# -- readers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["validate", "dry-run", "graph", "check"])
def test_loxi_plan_refuses_a_conf_that_is_not_a_regular_file_without_blocking(special, kind, command):
    path = special(kind)
    before = fingerprint(path)
    argv = [command, str(path)]
    if command in ("dry-run", "check"):
        argv += ["--netns", "/nonexistent-loxi-netns", "--container-id", "c1"]
    proc = loxi_plan(*argv)
    no_traceback(proc)
    assert fingerprint(path) == before
    if kind == "symlink":  # to a regular file: read through, as any reader would (and nothing written)
        return
    assert proc.returncode == 1, proc
    if kind != "directory" or command != "validate":  # validate reads a directory's conf files
        assert "not a regular file" in proc.stdout + proc.stderr, proc


def test_loxi_plan_reads_a_bounded_conf(tmp_path):
    big = tmp_path / "big.conf"
    big.write_text(json.dumps({**GOOD_CONF, "pad": "x" * (5 << 20)}))
    for argv in (["validate", str(big)], ["graph", str(big)], ["validate", "-"]):
        proc = loxi_plan(*argv, stdin=big.read_bytes() if argv[-1] == "-" else b"")
        assert proc.returncode == 1, proc
        no_traceback(proc)
        assert "larger than" in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        json.dumps(GOOD_CONF).replace('"br-t"', "NaN"),
        json.dumps({**GOOD_CONF, "mtu": 1}).replace("1}", "Infinity}"),
        json.dumps({**GOOD_CONF, "mtu": 1}).replace("1}", "1e400}"),
        json.dumps({**GOOD_CONF, "junk": json.loads("[" * 30 + "1" + "]" * 30)}),
    ],
    ids=["deep", "NaN", "Infinity", "1e400", "nested-but-fine"],
)
def test_validate_refuses_what_the_plugin_refuses_without_a_traceback(tmp_path, text):
    path = tmp_path / "x.conf"
    path.write_text(text)
    proc = loxi_plan("validate", str(path))
    no_traceback(proc)
    try:
        decode(text.encode())
        plugin_accepts = True
    except CniError:
        plugin_accepts = False
    assert (proc.returncode == 0) == plugin_accepts, proc


# -- writers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_render_o_replaces_only_a_regular_file(special, kind):
    path = special(kind)
    before = fingerprint(path)
    proc = loxi_plan("render", "loxilight", "--node-pod-cidr", "10.244.1.0/24", "-o", str(path))
    assert proc.returncode == 1, proc
    no_traceback(proc)
    assert "refusing to replace" in proc.stderr, proc
    assert fingerprint(path) == before, "render -o replaced what was not its regular file"


def test_render_o_still_replaces_a_regular_file(tmp_path):
    path = tmp_path / "10-loxi.conflist"
    path.write_text("old\n")
    proc = loxi_plan("render", "loxilight", "--node-pod-cidr", "10.244.1.0/24", "-o", str(path))
    assert proc.returncode == 0, proc
    assert json.loads(path.read_text())["name"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["launcher", "conflist", "manifest"])
def test_install_replaces_only_regular_files(tmp_path, kind, target):
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf_dir.mkdir()
    path = {
        "launcher": bin_dir / "loxi-cni",
        "conflist": conf_dir / "10-loxi.conflist",
        "manifest": bin_dir / ".loxi-cni.manifest.json",
    }[target]
    make_special(path, kind)
    before = fingerprint(path)
    argv = ["install", "--cni-bin-dir", str(bin_dir), "--cni-conf-dir", str(conf_dir), "--no-verify"]
    proc = loxi_plan(*argv, "--template", "loxilight", "--node-pod-cidr", "10.244.1.0/24")
    assert proc.returncode == 1, proc
    no_traceback(proc)
    assert fingerprint(path) == before, f"install replaced a {kind}"
    if kind != "directory":
        assert "not a regular file" in proc.stderr or "symbolic link" in proc.stderr, proc


@pytest.mark.parametrize("kind", ["fifo", "chardev", "symlink"])
def test_uninstall_never_removes_or_blocks_on_a_special_file_in_the_manifest(tmp_path, kind):
    bin_dir = tmp_path / "bin"
    proc = loxi_plan("install", "--cni-bin-dir", str(bin_dir), "--cni-conf-dir", str(tmp_path), "--no-verify")
    assert proc.returncode == 0, proc
    launcher = bin_dir / "loxi-cni"
    launcher.unlink()
    make_special(launcher, kind)
    before = fingerprint(launcher)
    proc = loxi_plan("uninstall", "--cni-bin-dir", str(bin_dir))
    no_traceback(proc)
    assert fingerprint(launcher) == before


# -- safe_io itself --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "chardev", "socket", "directory"])
def test_open_regular_refuses_without_opening(special, kind):
    path = special(kind)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW):
        with pytest.raises(safe_io.NotRegularFile, match="not a regular file"):
            safe_io.open_regular(str(path), flags)
    with pytest.raises(safe_io.NotRegularFile):
        safe_io.read_regular(str(path))
    with pytest.raises(safe_io.NotRegularFile, match="refusing to replace"):
        safe_io.check_replaceable(str(path))


def test_open_regular_follows_a_symlink_only_without_o_nofollow(special):
    path = special("symlink")
    assert safe_io.read_regular(str(path)) == b'{"precious": true}\n'
    with pytest.raises(OSError, match="symbolic link"):
        safe_io.open_regular(str(path), os.O_RDONLY | os.O_NOFOLLOW)
    with pytest.raises(safe_io.NotRegularFile):
        safe_io.check_replaceable(str(path))


def test_read_regular_is_bounded(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    assert safe_io.read_regular(str(path), 101) == b"x" * 101
    with pytest.raises(safe_io.FileTooLarge):
        safe_io.read_regular(str(path), 100)


# -- locks --------------------------------------------------------------------------------------


@pytest.fixture
def lock_dir(monkeypatch, tmp_path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("LOXI_LOCK_DIR", str(blocker / "locks"))
    return blocker / "locks"


def test_a_lock_directory_that_cannot_be_made_is_a_clear_error(lock_dir):
    with pytest.raises(CniError) as err, locks.exclusive("attach-x"):
        pass
    assert err.value.code == 5 and str(lock_dir) in err.value.msg


def test_best_effort_goes_on_without_the_lock(lock_dir, capsys):
    ran = []
    with locks.best_effort(), locks.exclusive("attach-x", remove=True), locks.exclusive("bridge-br0"):
        ran.append(True)
    assert ran == [True]
    assert "without the lock" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "chardev", "symlink"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused(monkeypatch, tmp_path, kind):
    monkeypatch.setenv("LOXI_LOCK_DIR", str(tmp_path))
    make_special(tmp_path / "attach-x.lock", kind)
    with pytest.raises(CniError) as err, locks.exclusive("attach-x"):
        pass
    assert err.value.code == 5


# -- names ---------------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def valid_names(longest: int) -> st.SearchStrategy[str]:
    """A valid network name or container id of any length up to `longest`, long ones as likely as short."""
    return (
        st.integers(1, longest)
        .flatmap(
            lambda n: st.tuples(st.sampled_from(ALNUM), st.text(alphabet=ALNUM + "_.-", min_size=n - 1, max_size=n - 1))
        )
        .map("".join)
    )


names = valid_names(255)
container_ids = valid_names(1024)
# no surrogates: a CNI_IFNAME that is not UTF-8 is refused (code 4) before any alias is made
ifnames = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/:% \t\n\r\x0b\x0c\0", min_codepoint=33),
    min_size=1,
    max_size=7,
)


@settings(max_examples=400, deadline=None, database=None, derandomize=True)
@given(network=names, cid=container_ids, ifname=ifnames)
def test_the_owner_alias_fits_the_kernel_and_names_its_network(network, cid, ifname):
    if len(ifname.encode()) > 15 or ifname in (".", ".."):
        return
    alias = owner_alias(Attachment(network, cid, ifname, ""))
    assert len(alias.encode()) <= MAX_ALIAS_BYTES
    owner = parse_owner_alias(alias)
    assert owner is not None and owner[2] == ifname
    assert alias_names_network(owner[0], network)
    assert not alias_names_network(owner[0], network + "x")
    if len(f"loxi-cni {network} {cid} {ifname}".encode()) <= MAX_ALIAS_BYTES:
        assert owner == (network, cid, ifname)


@pytest.mark.parametrize("name", ["br%d", "%d", "a%", "%s"])
def test_percent_is_refused_in_every_interface_name(name):
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": name, "CNI_PATH": "/p"}
    with pytest.raises(CniError) as err:
        read_request(env)
    assert err.value.code == 4
    for key in ("bridge", "uplink"):
        doc = {**GOOD_CONF, key: name, "vlanID": 100}
        assert any(f.path == (key,) for f in semantic_findings(doc)), key


# -- gateways: one rule for ADD and validate ----------------------------------------------------

GATEWAY_CASES = [
    ({"gateway": "10.250.1.1"}, None, ("ipam", "gateway")),
    ({"gateway": "10.250.0.0"}, None, ("ipam", "gateway")),
    ({"gateway": "10.250.0.255"}, None, ("ipam", "gateway")),
    ({}, [{"dst": "0.0.0.0/0", "gw": "10.9.9.9"}], ("ipam", "routes", 0, "gw")),
    ({}, [{"dst": "fd00::/8", "gw": "fd00::1"}], ("ipam", "routes", 0, "gw")),
    ({"ranges": [[{"subnet": "fd00:1::/64", "gateway": "fd00:1::"}]]}, None, ("ipam", "ranges", 0, 0, "gateway")),
]


@pytest.mark.parametrize(("extra", "routes", "path"), GATEWAY_CASES)
def test_the_plugin_and_validate_refuse_the_same_gateways(extra, routes, path):
    ipam = {**GOOD_CONF["ipam"], **extra}
    if "ranges" in extra:
        ipam.pop("subnet")
    if routes is not None:
        ipam["routes"] = routes
    doc = {**GOOD_CONF, "ipam": ipam}
    with pytest.raises(CniError) as err:
        load_host_local(doc, {})
    assert err.value.code == 7
    findings = [f for f in semantic_findings(doc) if f.severity == "error"]
    assert [f.path for f in findings] == [path], findings
    assert err.value.msg.split(": ", 1)[1] in findings[0].message


def test_good_gateways_pass_both():
    ipam = {**GOOD_CONF["ipam"], "gateway": "10.250.0.254", "routes": [{"dst": "0.0.0.0/0", "gw": "10.250.0.254"}]}
    doc = {**GOOD_CONF, "ipam": ipam}
    load_host_local(doc, {})
    assert [f for f in semantic_findings(doc) if f.severity == "error"] == []


# -- prevResult -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prev",
    [
        {},
        {"cniVersion": "1.0.0"},
        {"ips": "x"},
        {"ips": [{"address": "10.0.0.1"}]},
        {"ips": [{"address": "10.0.0.1/24", "gateway": "x"}]},
        {"ips": [{"address": "10.0.0.1/24", "interface": True}]},
        {"interfaces": [{"name": "eth0", "mac": 5}]},
        {"interfaces": [{"name": "eth0"}], "routes": [{"dst": "0.0.0.0/0", "gw": 1}]},
        {"ip4": {"ip": "10.0.0.1/24", "routes": "x"}},
        "junk",
        None,
    ],
)
def test_check_prev_result_refuses_shapes_check_cannot_use(prev):
    with pytest.raises(CniError) as err:
        check_prev_result(prev)
    assert err.value.code == 7


def test_check_prev_result_accepts_what_add_prints():
    check_prev_result(
        {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "br", "mac": "02:00:00:00:00:01"}, {"name": "eth0", "sandbox": "/ns"}],
            "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
            "dns": {},
        }
    )
    check_prev_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}, "dns": {}})


# -- bytes that are not UTF-8, in every variable (hypothesis) ------------------------------------

CNI_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
# os.environ and loxi-agent decode the environment with surrogateescape: a byte that is not UTF-8 is a lone surrogate
not_utf8 = (
    st.binary(min_size=1, max_size=12)
    .filter(lambda b: not _is_utf8(b))
    .map(lambda b: b.decode("utf-8", "surrogateescape"))
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    command=st.sampled_from(["ADD", "CHECK", "DEL"]),
    var=st.sampled_from(CNI_VARS),
    prefix=st.sampled_from(["", "eth", "/var/run/netns/", "K8S_POD_NAME="]),
    junk=not_utf8,
)
def test_a_variable_that_is_not_utf8_never_breaks_the_plugin(tmp_path_factory, command, var, prefix, junk):
    """ADD and CHECK: code 4 naming the variable. DEL with an id or ifname that is not UTF-8: success, and
    nothing touched (it names nothing ADD could have made). A junk CNI_COMMAND: code 4. Never 110."""
    import io

    from loxi.plugin.cni import run

    store = tmp_path_factory.mktemp("store")
    environ = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/nonexistent-loxi-netns/ns",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "",
        "CNI_PATH": "/usr/lib/cni",
        var: prefix + junk,
    }
    conf = {**GOOD_CONF, "ipam": {**GOOD_CONF["ipam"], "dataDir": str(store / "never")}}
    if command == "CHECK":
        conf["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": "10.250.0.2/24"}]}
    if command == "DEL" and var not in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_COMMAND"):
        return  # DEL would go on to the kernel: the integration tests cover it in a throw-away namespace
    out, err = io.StringIO(), io.StringIO()
    rc = run(environ, io.BytesIO(json.dumps(conf).encode()), out, err)
    assert "Traceback" not in out.getvalue() + err.getvalue(), err.getvalue()
    if command == "DEL" and var != "CNI_COMMAND":
        assert (rc, out.getvalue()) == (0, ""), out.getvalue()
    else:
        doc = json.loads(out.getvalue())
        assert rc == 1 and doc["code"] == 4, doc
        assert var in doc["msg"] or var == "CNI_COMMAND", doc
    assert not (store / "never").exists()
