"""The one IPAM interface: host-local and the delegate both implement every method of `applier.ipam.Ipam`
with its signature, and one CNI call parses the host-local config once (on pure data, and for real:
ADD, a retried ADD, CHECK and DEL run in-process in throw-away namespaces, every parse counted)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import applier.ipam.hostlocal as hostlocal
from applier.ipam import GcOutcome, Ipam, IpamResult, open_ipam
from applier.ipam.delegate import DelegatedIpam
from applier.ipam.hostlocal import HostLocalIpam
from intent.env import CniRequest
from tests.conftest import NSENTER, REPO, NetnsFactory, make_conf

METHODS = sorted(name for name, value in vars(Ipam).items() if inspect.isfunction(value) and name[0] != "_")


def host_local_conf(data_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "net1",
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "subnet": "10.88.0.0/29",
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def request(command: str, cid: str = "ctr1") -> CniRequest:
    return CniRequest(command=command, container_id=cid, netns="/proc/self/ns/net", ifname="eth0")


def test_the_interface_answers_every_cni_command() -> None:
    assert set(METHODS) == {"add", "check", "delete", "gc", "held", "preview", "rollback", "status"}


@pytest.mark.parametrize("implementation", [HostLocalIpam, DelegatedIpam])
def test_each_implementation_has_every_method_with_the_interface_signature(implementation: type) -> None:
    for name in METHODS:
        assert inspect.signature(getattr(implementation, name)) == inspect.signature(getattr(Ipam, name)), name


def test_open_ipam_picks_the_implementation_and_both_carry_the_attributes(tmp_path: Path) -> None:
    host = open_ipam(host_local_conf(tmp_path), b"", request("ADD"))
    delegate = open_ipam({"name": "n", "ipam": {"type": "dhcp"}}, b"", request("ADD"))
    assert isinstance(host, HostLocalIpam) and isinstance(delegate, DelegatedIpam)
    assert open_ipam({"name": "n"}, b"", request("ADD")) is None
    for ipam in (host, delegate):
        for attribute in Ipam.__annotations__:
            assert hasattr(ipam, attribute), (type(ipam).__name__, attribute)
    assert (host.kind, host.store_dir, len(host.range_sets), len(host.routes)) == (
        "host-local",
        f"{tmp_path}/net1",
        1,
        1,
    )
    assert (delegate.kind, delegate.store_dir, delegate.range_sets, delegate.routes) == ("dhcp", "", (), ())
    assert delegate.preview() is None and delegate.held() is None  # only running the plugin could tell


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_one_request_parses_the_host_local_config_once(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = []
    real = hostlocal.load_host_local
    monkeypatch.setattr(hostlocal, "load_host_local", lambda conf, args: parsed.append(1) or real(conf, args))
    conf = host_local_conf(tmp_path)
    ipam = open_ipam(conf, b"", request(command))
    assert ipam is not None
    preview = ipam.preview()
    added = ipam.add()
    assert isinstance(added, IpamResult) and preview is not None and added.leases == preview.leases
    assert [str(lease.address) for lease in ipam.held() or ()] == ["10.88.0.2/29"]
    assert ipam.check().leases == added.leases
    ipam.status()
    ipam.rollback(added, was_running=False)
    assert ipam.held() == ()
    ipam.add()
    assert ipam.gc({("ctr1", "eth0")}) == GcOutcome()
    ipam.delete()
    assert len(parsed) == 1


# -- for real: the plugin's in-process entry point, in a throw-away node namespace ---------------

COUNTING_RUN = textwrap.dedent(
    """
    import io, json, sys
    sys.path.insert(0, sys.argv[1])
    import intent.ipam_config as ipam_config

    parsed = []
    real = ipam_config.load_host_local

    def counting(conf, cni_args):
        parsed.append(1)
        return real(conf, cni_args)

    ipam_config.load_host_local = counting  # before anything imports it: every parse of the process counts
    from loxi.plugin.cni import run

    out = []
    for environ, stdin in json.loads(sys.argv[2]):
        parsed.clear()
        stdout = io.StringIO()
        rc = run(environ, io.BytesIO(stdin.encode()), stdout, io.StringIO())
        out.append({"rc": rc, "stdout": stdout.getvalue(), "parsed": len(parsed)})
    print(json.dumps(out))
    """
)


def test_add_retried_add_check_and_del_each_parse_the_config_once(netns: NetnsFactory, tmp_path: Path) -> None:
    node, pod = netns("node"), netns("pod")
    conf = make_conf(tmp_path / "ipam", bridge="lxipamif0")
    environ = {"CNI_CONTAINERID": "ipamonce", "CNI_NETNS": pod.path, "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}

    def calls(*steps: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        doc = json.dumps([({**environ, "CNI_COMMAND": command}, json.dumps(body)) for command, body in steps])
        proc = subprocess.run(
            [NSENTER, f"--net={node.path}", "--", sys.executable, "-c", COUNTING_RUN, str(REPO), doc],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    add, retried = calls(
        ("ADD", conf), ("ADD", conf)
    )  # the retry finds the attachment running: reattach reads the store
    assert add["rc"] == 0 and retried["rc"] == 0, (add, retried)
    assert json.loads(retried["stdout"])["ips"] == json.loads(add["stdout"])["ips"]
    prev = json.loads(add["stdout"])
    check, delete = calls(("CHECK", {**conf, "prevResult": prev}), ("DEL", {**conf, "prevResult": prev}))
    assert check["rc"] == 0 and delete["rc"] == 0, (check, delete)
    assert [add["parsed"], retried["parsed"], check["parsed"], delete["parsed"]] == [1, 1, 1, 1]


def test_adds_of_other_pods_share_one_parsed_config_and_a_requested_ip_still_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADD's config is remembered by the conf and CNI_ARGS' IP only: kubelet's K8S_POD_* differ
    for every pod and must not make each ADD parse the conf again; IP still picks the address."""
    import intent.ipam_config as ipam_config

    parsed = []
    real = ipam_config._load_host_local
    monkeypatch.setattr(ipam_config, "_load_host_local", lambda conf, args: parsed.append(1) or real(conf, args))
    monkeypatch.setattr(ipam_config, "_loaded", {})
    conf = host_local_conf(tmp_path)

    def add_request(cid: str, **args: str) -> CniRequest:
        kube = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": f"pod-{cid}"}
        return CniRequest(command="ADD", container_id=cid, netns="/proc/self/ns/net", ifname="eth0", args=kube | args)

    first, second = open_ipam(conf, b"", add_request("c1")), open_ipam(conf, b"", add_request("c2"))
    assert first is not None and second is not None and first.config is second.config
    assert len(parsed) == 1
    pinned = open_ipam(conf, b"", add_request("c3", IP="10.88.0.5"))
    assert pinned is not None and [str(lease.address) for lease in pinned.add().leases] == ["10.88.0.5/29"]
    assert len(parsed) == 2
