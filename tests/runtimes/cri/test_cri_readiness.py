"""The conflist loxi-cni ships, through the CRI: `loxi-plan install --template loxilight` renders
cniVersion 1.0.0 with cniVersions up to 1.1.0, which containerd 1.6 (libcni 1.1) runs pods on, and
newer runtimes (libcni 1.2+) read as 1.1.0, the version they send STATUS for. A bare 1.1.0 conflist
is what containerd 1.6 cannot use."""

from __future__ import annotations

import ipaddress
import json
import sys

import grpc
import pytest

from tests.runtimes.conftest import run
from tests.runtimes.cri.conftest import CriNet


def test_the_rendered_conflist_runs_a_pod_through_cri(cri_net: CriNet) -> None:
    net = cri_net
    daemon = net.daemon
    for old in daemon.conf_dir.iterdir():
        old.unlink()
    argv = [sys.executable, "-m", "loxi.install", "install", "--cni-bin-dir", str(daemon.bin_dir)]
    argv += ["--cni-conf-dir", str(daemon.conf_dir), "--template", "loxilight", "--node-pod-cidr", net.subnet]
    for var in (f"network_name={net.name}", f"bridge={net.bridge}", "vlan_id=0", f"data_dir={net.data_dir}"):
        argv += ["--var", var]
    run(argv, timeout=180)
    (conf,) = daemon.conf_dir.iterdir()
    doc = json.loads(conf.read_text())
    assert (doc["cniVersion"], doc["cniVersions"]) == ("1.0.0", ["1.0.0", "1.1.0"])
    daemon.wait_network(net.name)
    sid = net.run("rendered")
    st = daemon.client.pod_sandbox_status(sid)
    assert ipaddress.ip_address(st.ip) in ipaddress.ip_network(net.subnet)
    assert net.leases() == {st.ip: sid}
    routes = net.pod_exec(st.netns, "ip", "-j", "route", "show", "10.96.0.0/12", check=True).stdout
    assert [(r["dst"], r["gateway"]) for r in json.loads(routes)] == [("10.96.0.0/12", net.gateway)]
    assert net.ping(st.netns, net.gateway)
    daemon.client.stop_pod_sandbox(sid)
    daemon.client.remove_pod_sandbox(sid)
    assert net.leases() == {} and net.veths() == {}


def test_a_bare_1_1_0_conflist_is_refused_by_containerd_1_6_and_its_cleanup_leaves_nothing(cri_net: CriNet) -> None:
    net = cri_net
    conf = net.conflist(net.plugin())
    del conf["cniVersions"]
    conf["cniVersion"] = "1.1.0"
    net.use(conf)
    with pytest.raises(grpc.RpcError) as failed:
        net.run("bare")
    details = failed.value.details()  # type: ignore[attr-defined]
    assert 'plugin type="loxi-cni" failed (add): unsupported CNI result version "1.1.0"' in details, details
    sid = details.split('sandbox "', 1)[1].split('"', 1)[0]
    (add,) = net.lines("ADD", sid)
    assert add["rc"] == 0  # loxi-cni did its part; libcni 1.1 cannot read the 1.1.0 result
    assert net.lines("DEL", sid) and all(d["rc"] == 0 for d in net.lines("DEL", sid))
    assert net.leases() == {} and net.veths() == {}
