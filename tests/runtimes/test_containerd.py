"""containerd 1.6 (`ctr run --cni`) runs a container on loxi-cni through the installed launcher."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtimes.conftest import Containerd, NodeNs, hook_wired, read_log
from tests.runtimes.test_podman import allocations, conflist


@pytest.fixture
def node() -> Iterator[NodeNs]:
    ns = NodeNs()
    try:
        yield ns
    finally:
        ns.delete()


def test_ctr_run_cni_gets_address_pings_gateway_and_del_with_empty_netns_releases(
    containerd: Containerd, node: NodeNs, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    network, bridge = f"loxirt-{tag}", f"lxrt{tag}"
    data_dir = tmp_path / "ipam"
    log = tmp_path / "loxi.log"
    conf = conflist(network, bridge, "10.231.20.0/24", data_dir, log=log)
    cid = f"loxirt-{tag}"
    proc = containerd.run_cni(node, conf, cid, "sh", "-c", "ip -o -4 addr show dev eth0; ping -c 1 -W 3 10.231.20.1")
    assert proc.returncode == 0, f"stdout={proc.stdout}\nstderr={proc.stderr}"
    match = re.search(r"inet (\S+)", proc.stdout)
    assert match, proc.stdout
    assert ipaddress.ip_interface(match.group(1)) in ipaddress.ip_network("10.231.20.0/24") or (
        ipaddress.ip_interface(match.group(1)).ip in ipaddress.ip_network("10.231.20.0/24")
    )
    assert "1 packets received" in proc.stdout
    # --rm: after the task exited, ctr sent DEL (CNI_NETNS empty: the namespace died with the task)
    assert allocations(data_dir, network) == {}, "DEL did not release the address"
    assert node.loxi_links() == [], "DEL left the host veth"
    if hook_wired():
        lines = read_log(log)
        dels = [line for line in lines if line["command"] == "DEL"]
        assert dels and dels[-1]["netns"] == "" and dels[-1]["rc"] == 0, lines
        assert all(line["containerID"] == f"loxirt-{cid}" for line in lines if line["command"] != "VERSION")
