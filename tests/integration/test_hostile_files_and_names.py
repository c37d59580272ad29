"""Issue 17, hardening: names the kernel treats specially, files that are not files, input that is not text.

Each test is one defect class, run against the installed plugin as a runtime
runs it (in-process, and through loxi-agent in the suite's agent pass), with
the exact error code and the node's, the pod's and the store's state after.

* `%` in a bridge name or CNI_IFNAME (the kernel expands `%d`), long network
  names and container ids (the host veth's alias has 254 bytes);
* FIFOs and devices wherever the plugin opens a file: the log file, the IPAM
  store's lock, resolvConf; a lock directory that cannot be made;
* CNI_* variables that are not UTF-8, CNI_NETNS paths the kernel refuses
  (a symlink loop, a path under a regular file, longer than PATH_MAX);
* stdin that is not the JSON Go reads (deeply nested, NaN, a BOM, UTF-16);
  prevResult of the wrong shape on CHECK;
* gateways the subnet cannot have, refused by ADD as by `loxi-plan validate`.

FIFOs and device nodes are made in tmp_path (the char device has /dev/null's
numbers, so nothing is harmed if a bug writes to it); the real /dev/null is
never named.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import AGENT_MODE, Node, make_conf
from tests.snapshots import assert_cni_error, kernel_state, lease_files, run_plugin

NETWORK = "loxilight_cni"
FAST = 15  # seconds: a call that blocks on a FIFO fails with TimeoutExpired long before the suite's timeout


def fifo_at(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def chardev_at(path: Path) -> Path:
    """A character device with /dev/null's numbers, owned by the test, in tmp_path."""
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def special_files(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    return {"fifo": fifo_at(tmp / "a-fifo"), "chardev": chardev_at(tmp / "a-chardev")}


def assert_untouched(path: Path, kind: str) -> None:
    mode = os.lstat(path).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode), f"{path} was replaced"
    if kind == "fifo":
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert os.read(fd, 16) == b"", "something was written into the FIFO"
        finally:
            os.close(fd)


def add(node: Node, conf: dict | bytes, cid: str = "c1", **kw):
    pod = kw.pop("pod", None) or node.pod()
    return pod, node.cni("ADD", conf, container_id=cid, netns=pod.path, timeout=FAST, **kw)


def nothing_attached(node: Node, pod, network: str = NETWORK) -> None:
    assert node.ns.loxi_links() == [], "a host veth was left behind"
    assert [n for n in pod.links() if n != "lo"] == [], "a pod interface was left behind"
    assert lease_files(node, network) == {}, "a lease was left behind"


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bridge", ["br%d", "%d", "br%s", "b%"])
def test_a_bridge_name_with_percent_is_refused_before_anything_is_created(node, bridge):
    """The kernel expands `%d` in a new link's name: `br%d` would create br0 and leave it behind."""
    before = kernel_state(node.ns)
    pod, call = add(node, make_conf(node.data_dir, bridge=bridge))
    doc = assert_cni_error(call, 7)
    assert "bridge" in doc["msg"] and "%" in doc["msg"], doc
    assert kernel_state(node.ns) == before, "the refused ADD created a link in the node"
    nothing_attached(node, pod)


@pytest.mark.parametrize("ifname", ["eth%d", "%d", "e%"])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_an_ifname_with_percent_is_code_4(node, ifname, command):
    conf = make_conf(node.data_dir)
    if command == "CHECK":
        conf["prevResult"] = {"cniVersion": "1.0.0", "interfaces": [{"name": ifname, "sandbox": "/x"}]}
    pod = node.pod()
    before = kernel_state(node.ns)
    call = node.cni(command, conf, container_id="c1", netns=pod.path, ifname=ifname, timeout=FAST)
    doc = assert_cni_error(call, 4)
    assert "%" in doc["msg"], doc
    assert kernel_state(node.ns) == before
    nothing_attached(node, pod)


LONG_NAME = "n" * 185
LONG_ID = "c" * 1000


@pytest.mark.parametrize(
    ("network", "cid"),
    [(LONG_NAME, "short"), ("net", LONG_ID), (LONG_NAME, LONG_ID), ("x" * 255, "c" * 64)],
    ids=["long-name", "long-id", "both", "max-name"],
)
def test_long_network_names_and_container_ids_attach_check_gc_and_delete(node, network, cid):
    """The host veth's alias (what GC reads) is cut to the kernel's 254 bytes and still names the network."""
    conf = make_conf(node.data_dir, name=network, cniVersion="1.1.0")
    pod, call = add(node, conf, cid)
    assert call.rc == 0, call
    host = call.json["interfaces"][1]["name"]
    alias = node.ns.link(host).get("ifalias", "")
    assert alias.startswith("loxi-cni ") and len(alias.encode()) <= 254, alias
    check = node.cni("CHECK", {**conf, "prevResult": call.json}, container_id=cid, netns=pod.path)
    assert check.rc == 0, check
    # GC keeping the attachment leaves it; GC without it finds the port by its alias and removes it
    keep = {**conf, "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"}]}
    assert node.cni("GC", keep).rc == 0
    assert host in node.ns.loxi_links()
    other = make_conf(node.data_dir, name=network[:-1] + "z", cniVersion="1.1.0")
    assert node.cni("GC", {**other, "cni.dev/valid-attachments": []}).rc == 0
    assert host in node.ns.loxi_links(), "GC of another network (same prefix) removed this port"
    assert node.cni("GC", {**conf, "cni.dev/valid-attachments": []}).rc == 0
    assert host not in node.ns.loxi_links(), "GC could not tell the port belongs to its network"
    # ADD again, then DEL finds everything
    pod2, again = add(node, conf, cid)
    assert again.rc == 0, again
    delete = node.cni("DEL", conf, container_id=cid, netns=pod2.path)
    assert delete.rc == 0 and delete.stdout == "", delete
    nothing_attached(node, pod2, network)


# -- files that are not regular files -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
@pytest.mark.parametrize("where", ["conf logFile", "LOXI_LOG_FILE"])
def test_a_log_file_that_is_not_a_regular_file_never_blocks_or_is_written(node, tmp_path, kind, where):
    target = special_files(tmp_path / "special")[kind]
    conf = make_conf(node.data_dir)
    env = {}
    if where == "conf logFile":
        conf["logFile"] = str(target)
    else:
        env["LOXI_LOG_FILE"] = str(target)
    start = time.monotonic()
    pod, call = add(node, conf, env=env)
    assert call.rc == 0, call  # a log that cannot be written never fails the command
    assert time.monotonic() - start < FAST
    delete = node.cni("DEL", conf, container_id="c1", netns=pod.path, env=env, timeout=FAST)
    assert delete.rc == 0, delete
    assert_untouched(target, kind)
    nothing_attached(node, pod)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_an_ipam_store_lock_that_is_not_a_regular_file_is_refused_without_blocking(node, kind):
    store = node.data_dir / NETWORK
    store.mkdir(parents=True)
    (fifo_at if kind == "fifo" else chardev_at)(store / "lock")
    conf = make_conf(node.data_dir)
    pod, call = add(node, conf)
    doc = assert_cni_error(call, 5)
    assert "lock" in doc["msg"] and "not a regular file" in doc["msg"], doc
    nothing_attached(node, pod)
    delete = node.cni("DEL", conf, container_id="c1", netns=pod.path, timeout=FAST)
    assert_cni_error(delete, 5)  # DEL says why it cannot release
    assert_untouched(store / "lock", kind)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_a_resolv_conf_that_is_not_a_regular_file_is_refused_without_blocking(node, tmp_path, kind):
    target = special_files(tmp_path / "special")[kind]
    conf = make_conf(node.data_dir)
    conf["ipam"]["resolvConf"] = str(target)
    pod, call = add(node, conf)
    doc = assert_cni_error(call, 5)
    assert "resolvConf" in doc["msg"] and "not a regular file" in doc["msg"], doc
    nothing_attached(node, pod)
    assert_untouched(target, kind)


def test_a_resolv_conf_larger_than_the_bound_is_refused(node, tmp_path):
    big = tmp_path / "resolv.conf"
    big.write_bytes(b"# padding\n" * 500_000)  # 5 MB
    conf = make_conf(node.data_dir)
    conf["ipam"]["resolvConf"] = str(big)
    pod, call = add(node, conf)
    assert_cni_error(call, 5)
    nothing_attached(node, pod)


@pytest.mark.skipif(AGENT_MODE, reason="LOXI_LOCK_DIR is the agent's own: see the in-process variant")
def test_a_lock_directory_that_cannot_be_created(node, tmp_path):
    """ADD: code 5 naming the directory, nothing made. DEL: still tears the pod down."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    conf = make_conf(node.data_dir)
    pod, ok = add(node, conf)
    assert ok.rc == 0, ok
    env = {"LOXI_LOCK_DIR": str(blocker / "locks")}
    other = node.pod()
    call = run_plugin(node, "ADD", conf, container_id="c2", netns=other.path, env=env)
    doc = assert_cni_error(call, 5)
    assert str(blocker / "locks") in doc["msg"], doc
    assert [n for n in other.links() if n != "lo"] == []
    delete = run_plugin(node, "DEL", conf, container_id="c1", netns=pod.path, env=env)
    assert delete.rc == 0 and delete.stdout == "", delete
    nothing_attached(node, pod)


# -- CNI_NETNS the kernel refuses -----------------------------------------------------------------


def netns_paths_the_kernel_refuses(tmp: Path) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    loop_a, loop_b = tmp / "loop-a", tmp / "loop-b"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    regular = tmp / "regular"
    regular.write_text("x")
    return {
        "symlink loop": str(loop_a),
        "under a regular file": str(regular / "ns"),
        "longer than PATH_MAX": "/" + "a/" * 2100,
        "a component longer than NAME_MAX": "/var/run/netns/" + "n" * 300,
    }


def test_cni_netns_the_kernel_refuses_is_code_8_on_add_and_check_and_del_succeeds(node, tmp_path):
    conf = make_conf(node.data_dir)
    pod, ok = add(node, conf, "resident")
    assert ok.rc == 0, ok
    before = kernel_state(node.ns)
    for label, path in netns_paths_the_kernel_refuses(tmp_path / "netns").items():
        call = node.cni("ADD", conf, container_id="c2", netns=path, timeout=FAST)
        assert assert_cni_error(call, 8)["msg"], label
        check = node.cni("CHECK", {**conf, "prevResult": ok.json}, container_id="c2", netns=path, timeout=FAST)
        assert assert_cni_error(check, 8)["msg"], label
        assert kernel_state(node.ns) == before, label
        delete = node.cni("DEL", conf, container_id="c2", netns=path, timeout=FAST)
        assert delete.rc == 0 and delete.stdout == "", (label, delete)
    # a real attachment's DEL with such a CNI_NETNS still removes it
    delete = node.cni("DEL", conf, container_id="resident", netns=str(tmp_path / "netns" / "loop-a"))
    assert delete.rc == 0, delete
    nothing_attached(node, pod)


# -- bytes that are not UTF-8 ----------------------------------------------------------------------

NOT_UTF8 = "\udcff\udcfe"  # os.fsencode: the bytes 0xff 0xfe, as a runtime could pass them


@pytest.mark.parametrize("var", ["CNI_IFNAME", "CNI_CONTAINERID", "CNI_NETNS", "CNI_ARGS", "CNI_PATH"])
def test_a_variable_that_is_not_utf8_is_code_4_on_add_and_check(node, var):
    conf = make_conf(node.data_dir)
    pod = node.pod()
    base = {"CNI_CONTAINERID": "c1", "CNI_NETNS": pod.path, "CNI_IFNAME": "eth0", "CNI_ARGS": ""}
    value = {"CNI_NETNS": pod.path + NOT_UTF8, "CNI_ARGS": "K8S_POD_NAME=" + NOT_UTF8}.get(var, "e" + NOT_UTF8)
    env = {**base, var: value}
    if var == "CNI_PATH":
        env["CNI_PATH"] = "/usr/lib/cni:/opt/" + NOT_UTF8
    for command in ("ADD", "CHECK"):
        body = conf if command == "ADD" else {**conf, "prevResult": {"cniVersion": "1.0.0", "ips": []}}
        call = node.cni(command, body, env=env, timeout=FAST)
        doc = assert_cni_error(call, 4)
        assert var in doc["msg"] and "UTF-8" in doc["msg"], doc
    nothing_attached(node, pod)


@pytest.mark.parametrize("var", ["CNI_NETNS", "CNI_ARGS", "CNI_PATH", "CNI_IFNAME", "CNI_CONTAINERID"])
def test_del_with_a_variable_that_is_not_utf8_still_cleans_up(node, var):
    """CNI_NETNS, CNI_ARGS, CNI_PATH: DEL does not need them and removes the pod. An id or ifname
    that is not UTF-8 names nothing ADD could have made: DEL succeeds and leaves the others alone."""
    conf = make_conf(node.data_dir)
    pod, ok = add(node, conf)
    assert ok.rc == 0, ok
    env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": pod.path, "CNI_IFNAME": "eth0", "CNI_ARGS": ""}
    env[var] = {
        "CNI_NETNS": "/var/run/netns/" + NOT_UTF8,
        "CNI_ARGS": "K8S_POD_NAME=" + NOT_UTF8,
        "CNI_PATH": "/usr/lib/cni:" + NOT_UTF8,
    }.get(var, "e" + NOT_UTF8)
    delete = node.cni("DEL", conf, env=env, timeout=FAST)
    assert delete.rc == 0 and delete.stdout == "", delete
    if var in ("CNI_IFNAME", "CNI_CONTAINERID"):
        assert ok.json["interfaces"][1]["name"] in node.ns.loxi_links(), "another attachment was torn down"
        assert node.cni("DEL", conf, container_id="c1", netns=pod.path).rc == 0
    nothing_attached(node, pod)


# -- stdin that Go's json refuses -------------------------------------------------------------------


def _stdins(conf: dict) -> dict[str, bytes]:
    text = json.dumps(conf)
    return {
        "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
        "nested object 100000 deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "conf with nested junk": (text[:-1] + ', "junk": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(),
        "NaN": text.replace('"mtu": 1500', '"mtu": NaN').encode(),
        "Infinity": text.replace('"mtu": 1500', '"mtu": Infinity').encode(),
        "-Infinity": text.replace('"mtu": 1500', '"mtu": -Infinity').encode(),
        "1e400": text.replace('"mtu": 1500', '"mtu": 1e400').encode(),
        "UTF-8 BOM": b"\xef\xbb\xbf" + text.encode(),
        "UTF-16": text.encode("utf-16"),
        "UTF-16-LE": text.encode("utf-16-le"),
        "UTF-32": text.encode("utf-32"),
        "latin-1 byte": text.replace("loxi-cni", "loxi-cn\xe9").encode("latin-1"),
        "larger than 4 MiB": json.dumps({**conf, "pad": "x" * (5 << 20)}).encode(),
    }


def test_stdin_go_refuses_is_code_6_and_never_a_traceback(node):
    conf = make_conf(node.data_dir)
    pod = node.pod()
    before = kernel_state(node.ns)
    for label, stdin in _stdins(conf).items():
        for command in ("ADD", "DEL", "CHECK"):
            call = node.cni(command, stdin, container_id="c1", netns=pod.path, timeout=FAST)
            doc = assert_cni_error(call, 6)
            assert doc["msg"].startswith("error unmarshall network config"), (label, doc)
    assert kernel_state(node.ns) == before
    nothing_attached(node, pod)


def test_escaped_lone_surrogates_in_the_conf_are_never_a_traceback(node):
    """Go's json turns a lone \\ud800 into U+FFFD, and so does loxi-cni: the network name's check refuses it
    (code 7); a bridge name or a resolvConf path with U+FFFD is only a name (the kernel takes the bridge)."""
    conf = make_conf(node.data_dir)
    pod = node.pod()
    text = json.dumps({**conf, "name": "net"}).replace('"net"', '"net\\ud800"')
    assert_cni_error(node.cni("ADD", text.encode(), container_id="c1", netns=pod.path, timeout=FAST), 7)
    for variant in ({**conf, "bridge": "br@"}, {**conf, "ipam": {**conf["ipam"], "resolvConf": "/etc/resolv@"}}):
        text = json.dumps(variant).replace("@", "\\udc00")
        call = node.cni("ADD", text.encode(), container_id="c1", netns=pod.path, timeout=FAST)
        assert call.rc in (0, 1) and "Traceback" not in call.stderr, call
        if call.rc == 1:
            assert call.json["code"] not in (110, 6), call
        else:
            assert call.json["interfaces"][0]["name"] in ("br\ufffd", conf["bridge"]), call
            assert node.cni("DEL", text.encode(), container_id="c1", netns=pod.path).rc == 0
    nothing_attached(node, pod)


# -- prevResult of the wrong shape on CHECK ---------------------------------------------------------

BAD_PREV_RESULTS = {
    "empty": {},
    "only a version": {"cniVersion": "1.0.0"},
    "ips not a list": {"cniVersion": "1.0.0", "ips": {"address": "10.244.1.2/24"}},
    "ips of strings": {"cniVersion": "1.0.0", "ips": ["10.244.1.2/24"]},
    "address not an address": {"cniVersion": "1.0.0", "ips": [{"address": "junk"}]},
    "address without prefix": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2"}]},
    "address a number": {"cniVersion": "1.0.0", "ips": [{"address": 7}]},
    "interfaces an object": {"cniVersion": "1.0.0", "interfaces": {"name": "eth0"}},
    "interfaces of strings": {"cniVersion": "1.0.0", "interfaces": ["eth0"]},
    "interface name a number": {"cniVersion": "1.0.0", "interfaces": [{"name": 5}]},
    "interface index a string": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24", "interface": "2"}]},
    "bad gateway": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24", "gateway": "10.244.1"}]},
    "gateway a list": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24", "gateway": []}]},
    "routes an object": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}], "routes": {"dst": "x"}},
    "routes of strings": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}], "routes": ["0.0.0.0/0"]},
    "route dst junk": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}], "routes": [{"dst": "x"}]},
    "route gw junk": {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.244.1.2/24"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "x"}],
    },
    "legacy ip4 a string": {"cniVersion": "0.2.0", "ip4": "10.244.1.2/24"},
    "legacy ip junk": {"cniVersion": "0.2.0", "ip4": {"ip": "junk"}},
    "dns a list": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}], "dns": []},
}


def test_check_with_a_malformed_or_empty_prev_result_is_code_7(node):
    conf = make_conf(node.data_dir)
    pod, ok = add(node, conf)
    assert ok.rc == 0, ok
    for label, prev in BAD_PREV_RESULTS.items():
        call = node.cni("CHECK", {**conf, "prevResult": prev}, container_id="c1", netns=pod.path, timeout=FAST)
        doc = assert_cni_error(call, 7)
        assert "prevResult" in doc["msg"], (label, doc)
    # the real prevResult still passes; DEL then removes the pod
    good = node.cni("CHECK", {**conf, "prevResult": ok.json}, container_id="c1", netns=pod.path)
    assert good.rc == 0, good
    assert node.cni("DEL", conf, container_id="c1", netns=pod.path).rc == 0
    nothing_attached(node, pod)


# -- gateways: one rule table for ADD and loxi-plan validate ----------------------------------------

BAD_GATEWAYS = {
    "gateway outside the subnet": ({"gateway": "10.245.0.1"}, None),
    "gateway is the network address": ({"gateway": "10.244.1.0"}, None),
    "gateway is the broadcast address": ({"gateway": "10.244.1.255"}, None),
    "route gateway outside every range": ({}, [{"dst": "10.96.0.0/12", "gw": "10.9.9.9"}]),
    "default route gateway outside every range": ({}, [{"dst": "0.0.0.0/0", "gw": "192.168.7.1"}]),
}


def _plan_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.prefix) / "bin" / "loxi-plan"), "validate", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("label", sorted(BAD_GATEWAYS))
def test_gateways_the_subnet_cannot_have_are_refused_by_add_as_by_validate(node, tmp_path, label):
    ipam_extra, routes = BAD_GATEWAYS[label]
    conf = make_conf(node.data_dir)
    conf["ipam"].update(ipam_extra)
    if routes is not None:
        conf["ipam"]["routes"] = routes
    pod, call = add(node, conf)
    doc = assert_cni_error(call, 7)
    assert "gateway" in doc["msg"] or "gw" in doc["msg"], doc
    nothing_attached(node, pod)
    path = tmp_path / "bad.conf"
    path.write_text(json.dumps(conf))
    validated = _plan_validate(path)
    assert validated.returncode == 1, validated
    assert "gateway" in validated.stdout + validated.stderr or "gw" in validated.stdout + validated.stderr


def test_a_good_conf_with_an_explicit_gateway_and_route_gateway_still_attaches(node, tmp_path):
    conf = make_conf(node.data_dir)
    conf["ipam"].update({"gateway": "10.244.1.254", "routes": [{"dst": "10.96.0.0/12", "gw": "10.244.1.254"}]})
    pod, call = add(node, conf)
    assert call.rc == 0, call
    path = tmp_path / "good.conf"
    path.write_text(json.dumps(conf))
    assert _plan_validate(path).returncode == 0
    assert node.cni("DEL", conf, container_id="c1", netns=pod.path).rc == 0
    nothing_attached(node, pod)


# -- special files at every path the plugin opens (hypothesis) -------------------------------------

PLACES = ("conf logFile", "LOXI_LOG_FILE", "resolvConf", "store lock")
SPECIAL_KINDS = ("fifo", "chardev", "socket", "symlink to a fifo", "directory")


def make_special_file(path: Path, kind: str) -> None:
    if kind == "fifo":
        fifo_at(path)
    elif kind == "chardev":
        chardev_at(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "symlink to a fifo":
        path.symlink_to(fifo_at(path.with_name(path.name + ".fifo")))
    else:
        path.mkdir()


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(place=st.sampled_from(PLACES), kind=st.sampled_from(SPECIAL_KINDS))
def test_special_files_at_every_path_the_plugin_opens(node, tmp_path, place, kind):
    """Never blocks, never writes into or replaces the file: a log is skipped (ADD succeeds), the store's
    lock and resolvConf are refused with code 5 and the ADD leaves nothing."""
    case = tmp_path / uuid.uuid4().hex[:8]
    case.mkdir()
    data_dir = case / "ipam"
    conf = make_conf(data_dir)
    env: dict[str, str] = {}
    if place == "store lock":
        (data_dir / NETWORK).mkdir(parents=True)
        target = data_dir / NETWORK / "lock"
    else:
        target = case / "target"
    make_special_file(target, kind)
    before = os.lstat(target)
    if place == "conf logFile":
        conf["logFile"] = str(target)
    elif place == "LOXI_LOG_FILE":
        env["LOXI_LOG_FILE"] = str(target)
    elif place == "resolvConf":
        conf["ipam"]["resolvConf"] = str(target)
    pod, call = add(node, conf, env=env)
    if place in ("conf logFile", "LOXI_LOG_FILE"):
        assert call.rc == 0, call
        assert node.cni("DEL", conf, container_id="c1", netns=pod.path, env=env, timeout=FAST).rc == 0
    else:
        assert_cni_error(call, 5)
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), f"{place}: the {kind} was replaced"
    assert node.ns.loxi_links() == [] and [n for n in pod.links() if n != "lo"] == []
    assert lease_files(Node(node.ns, data_dir, node.factory), NETWORK) == {}
    node.factory.delete(pod)
    SPECIAL_FILE_CASES[(place, kind)] += 1


SPECIAL_FILE_CASES: Counter = Counter()
