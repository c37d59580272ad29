"""applier.netlink.socket.RtnlSocket against a real kernel: the same answers and errors as pyroute2's
IPRoute, and a pod's ADD, CHECK and DEL that never load IPRoute (own namespaces)."""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from applier.netlink import IPRoute, NetlinkError
from applier.netlink.messages import IndexedIfinfmsg, LazyIfaddrmsg, LazyRtmsg
from applier.netns import Namespaces
from compiler.model import POD_NS
from tests.conftest import make_conf


def link_view(msg) -> tuple:
    info = msg.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info else None
    return (msg["index"], msg.get("IFLA_IFNAME"), msg.get("IFLA_MASTER"), msg.get("IFLA_MTU"), kind, msg["flags"] & 1)


def test_rtnl_reads_and_errors_match_iproute(netns):
    ns = netns("rtnl")
    ns.ip_run("link", "add", "br0", "type", "bridge")
    ns.ip_run("link", "add", "v0", "type", "veth", "peer", "name", "p0")
    ns.ip_run("link", "set", "v0", "master", "br0")
    ns.ip_run("link", "set", "br0", "up")
    ns.ip_run("addr", "add", "10.81.0.1/24", "dev", "br0")
    ns.ip_run("route", "add", "10.82.0.0/16", "via", "10.81.0.9", "dev", "br0")
    with Namespaces.for_pod(ns.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        with namespaces.inside(POD_NS):
            full = IPRoute(ext_ack=True, strict_check=True)
        try:
            br0 = rtnl.link_lookup(ifname="br0")[0]
            assert full.link_lookup(ifname="br0") == [br0]
            for name in ("br0", "v0", "p0"):
                assert link_view(rtnl.link("get", ifname=name)[0]) == link_view(full.link("get", ifname=name)[0])
            assert link_view(rtnl.link("get", index=br0)[0])[1] == "br0"
            assert [m.get("IFLA_IFNAME") for m in rtnl.link("dump", master=br0, dump_filter={})] == ["v0"]

            def addrs(sock):
                dump = sock.addr("dump", index=br0, dump_filter={})
                return sorted((m.get("IFA_ADDRESS"), m["prefixlen"]) for m in dump)

            assert addrs(rtnl) == addrs(full)
            assert ("10.81.0.1", 24) in addrs(rtnl)

            def routes(sock):
                dump = sock.route("dump", family=2, table=254, dump_filter={})
                return sorted((m.get("RTA_DST"), m["dst_len"], m.get("RTA_GATEWAY")) for m in dump)

            assert routes(rtnl) == routes(full)
            assert ("10.82.0.0", 16, "10.81.0.9") in routes(rtnl)

            for call in (
                lambda sock: sock.link("get", ifname="nothere"),
                lambda sock: sock.addr("add", index=br0, address="10.81.0.1", prefixlen=24),
                lambda sock: sock.route("replace", dst="10.83.0.0/16", oif=br0, table=254, gateway="192.0.2.1"),
                lambda sock: sock.route("append", dst="10.83.0.0/16", oif=br0, table=254, gateway="192.0.2.1"),
                lambda sock: sock.link("del", index=99999),
            ):
                codes = []
                for sock in (rtnl, full):
                    with pytest.raises(NetlinkError) as exc:
                        call(sock)
                    codes.append(exc.value.code)
                assert codes[0] == codes[1]
            assert rtnl.link_lookup(ifname="nothere") == []
            assert rtnl._iproute is None  # everything above went through the plain socket
        finally:
            full.close()


def test_lazy_decoding_of_kernel_messages_matches_pyroute2(netns):
    """Every link, address and route RtnlSocket reads (decoded lazily, applier.netlink.messages) decodes to
    what pyroute2 decodes eagerly from the same bytes: a bridge, a hairpin port, its peer, lo."""
    ns = netns("rtnllazy")
    ns.ip_run("link", "add", "br0", "type", "bridge")
    ns.ip_run("link", "add", "v0", "type", "veth", "peer", "name", "p0")
    ns.ip_run("link", "set", "v0", "master", "br0")
    ns.ip_run("link", "set", "v0", "type", "bridge_slave", "hairpin", "on")
    ns.ip_run("link", "set", "br0", "up")
    ns.ip_run("addr", "add", "10.81.0.1/24", "dev", "br0")
    ns.ip_run("addr", "add", "fd81::1/64", "dev", "br0")
    ns.ip_run("route", "add", "10.82.0.0/16", "via", "10.81.0.9", "dev", "br0")
    with Namespaces.for_pod(ns.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        br0 = rtnl.link_lookup(ifname="br0")[0]
        links = [rtnl.link("get", ifname=name)[0] for name in ("br0", "v0", "p0", "lo")]
        port = links[1].get("IFLA_LINKINFO").get("IFLA_INFO_SLAVE_DATA")
        assert port.get("IFLA_BRPORT_MODE") == 1  # read before the full dump below builds everything
        addrs = rtnl.addr("dump", index=br0, dump_filter={})
        routes = rtnl.route("dump", family=2, table=254, dump_filter={})
        assert len(addrs) >= 2 and len(routes) >= 2
        eager_class = {IndexedIfinfmsg: ifinfmsg, LazyIfaddrmsg: ifaddrmsg, LazyRtmsg: rtmsg}
        for msg in [*links, *addrs, *routes]:
            eager = eager_class[type(msg)](msg.data, offset=msg.offset)
            eager.decode()
            lazy_dump, eager_dump = msg.dump(), eager.dump()
            assert lazy_dump.pop("header")["length"] == eager_dump.pop("header")["length"]  # Marshal adds to it
            assert lazy_dump == eager_dump


def test_rtnl_writes_what_it_is_asked(netns):
    pod = netns("rtnlpod")
    with Namespaces.for_pod(pod.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        rtnl.link("add", ifname="x0", kind="veth", peer={"ifname": "y0", "address": "02:00:00:00:01:02"}, state="up")
        rtnl.link("set", ifname="x0", ifalias="owner")
        x0 = rtnl.link_lookup(ifname="x0")[0]
        rtnl.link("set", index=x0, mtu=1400)
        rtnl.addr("add", index=x0, address="10.84.0.2", prefixlen=24)
        rtnl.addr("add", index=x0, address="fd84::2", prefixlen=64, flags=0x02)
        rtnl.route("replace", dst="10.85.0.0/16", oif=x0, proto=76, table=254, gateway="10.84.0.1")
        assert rtnl._iproute is None
    link = pod.link("x0")
    assert link["ifalias"] == "owner" and link["mtu"] == 1400 and "UP" in link["flags"]
    assert pod.link("y0")["address"] == "02:00:00:00:01:02"
    assert "10.84.0.2/24" in pod.addresses("x0")
    assert "fd84::2/64" in pod.addresses("x0")
    route = next(r for r in pod.routes() if r["dst"] == "10.85.0.0/16")
    assert route["gateway"] == "10.84.0.1" and route["protocol"] in ("76", 76)


def test_a_call_outside_its_set_goes_to_iproute(netns):
    ns = netns("rtnlfb")
    with Namespaces.for_pod(ns.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)
        rtnl.link("add", ifname="brx", kind="bridge")
        assert rtnl._iproute is not None
    assert ns.link("brx")["linkinfo"]["info_kind"] == "bridge"


# loxi-cni ends with posix._exit (no atexit): the hook records sys.modules there.
MODULES_PLUGIN = """#!{python}
import json, posix, sys
_exit = posix._exit
def record_then_exit(status):
    open({out!r}, "w").write(json.dumps(sorted(sys.modules)))
    _exit(status)
posix._exit = record_then_exit
from loxi.plugin.entry import main
main()
"""


def test_a_pods_add_check_and_del_never_load_iproute(node, tmp_path: Path):
    """The per-pod path runs on RtnlSocket alone: no asyncio, no IPRoute (~100 ms of a cold call)."""
    conf = make_conf(node.data_dir)
    first = node.pod()
    assert node.cni("ADD", conf, container_id="rtnl-first", netns=first.path).rc == 0  # the bridge is made
    out = tmp_path / "modules.json"
    plugin = tmp_path / "loxi-cni-modules"
    plugin.write_text(MODULES_PLUGIN.format(python=sys.executable, out=str(out)))
    plugin.chmod(0o755)
    pod = node.pod()
    in_process = {"LOXI_AGENT_SOCKET": ""}
    add = node.cni("ADD", conf, container_id="rtnl-pod", netns=pod.path, env=in_process, plugin=plugin)
    assert add.rc == 0, add
    loaded = {"ADD": set(json.loads(out.read_text()))}
    check = node.cni(
        "CHECK",
        {**conf, "prevResult": add.json},
        container_id="rtnl-pod",
        netns=pod.path,
        env=in_process,
        plugin=plugin,
    )
    assert check.rc == 0, check
    loaded["CHECK"] = set(json.loads(out.read_text()))
    delete = node.cni("DEL", conf, container_id="rtnl-pod", netns=pod.path, env=in_process, plugin=plugin)
    assert delete.rc == 0, delete
    loaded["DEL"] = set(json.loads(out.read_text()))
    for command, modules in loaded.items():
        assert "applier.netlink.socket" in modules, command
        assert "pyroute2.iproute.linux" not in modules, command
        assert "asyncio" not in modules, command
    assert "eth0" not in pod.links()
    assert len(node.ns.loxi_links()) == 1  # the first pod's


def test_delete_link_returns_with_the_link_gone_before_the_kernel_answers(netns):
    """delete_link returns once the kernel has unlisted the link (RTM_DELLINK broadcast); the helper
    thread still inside the request (the kernel's RCU wait) closes its socket when the answer comes."""
    node, pod = netns("rtnldeln"), netns("rtnldelp")
    fds_before = set(os.listdir("/proc/self/fd"))
    still_in_kernel = []
    with Namespaces.for_pod(pod.path) as namespaces:
        rtnl = namespaces.ipr(POD_NS)  # in the pod's namespace: delete_link must open its sockets there too
        rtnl.link("add", ifname="brd", kind="bridge")
        bridge = rtnl.link_lookup(ifname="brd")[0]
        for i in range(5):
            rtnl.link("add", ifname=f"h{i}", kind="veth", peer={"ifname": f"p{i}"}, master=bridge, state="up")
            index = rtnl.link_lookup(ifname=f"h{i}")[0]
            rtnl.delete_link(index)
            still_in_kernel.append(any(t.name == f"loxi-delete-link-{index}" for t in threading.enumerate()))
            assert rtnl.link_lookup(ifname=f"h{i}") == [] and rtnl.link_lookup(ifname=f"p{i}") == []
            assert [m.get("IFLA_IFNAME") for m in rtnl.link("dump", master=bridge)] == []
        with pytest.raises(NetlinkError) as gone:
            rtnl.delete_link(99999)
        assert gone.value.code == errno.ENODEV  # as link("del") raises it
    assert set(pod.links()) == {"lo", "brd"} and "h0" not in node.links()
    assert any(still_in_kernel)  # 15-30 ms of RCU wait against ~1 ms to the broadcast, five times
    deadline = time.monotonic() + 10
    while any(t.name.startswith("loxi-delete-link-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(os.listdir("/proc/self/fd")) == fds_before  # helpers closed their sockets and pipe ends
