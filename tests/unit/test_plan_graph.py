"""`loxi-plan graph`: the compiler's desired-state graph as DOT and as node-link JSON."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from compiler.graph import compile_desired, host_veth_name
from compiler.model import Attachment
from intent.config import load_netconf
from intent.env import CniRequest
from loxi.plan.addresses import PLACEHOLDER, placeholder
from loxi.plan.cli import run
from loxi.plan.graphout import to_data, to_dot

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "plan"
SEED = {
    "cniVersion": "1.0.0",
    "name": "loxilight_cni",
    "type": "loxi-cni",
    "bridge": "hsvlan100",
    "isGateway": True,
    "mtu": 1500,
    "vlanID": 100,
    "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "routes": [{"dst": "10.96.0.0/12"}]},
}
ATTACH = Attachment("loxilight_cni", "c0ffee", "eth0", "/var/run/netns/pod-1")


def desired():
    conf = load_netconf(json.dumps(SEED).encode(), CniRequest(command="ADD"), dict(SEED))
    found = placeholder(conf)
    return compile_desired(conf, ATTACH, found.compiler_leases(), found.routes), found


def test_placeholder_addresses_skip_the_gateway():
    _, found = desired()
    assert [(v.address, v.gateway, v.status) for v in found.leases] == [("10.244.1.2/24", "10.244.1.1", PLACEHOLDER)]


def test_dot_golden():
    graph, _ = desired()
    text = to_dot(graph, "loxilight_cni", "/var/run/netns/pod-1")
    path = GOLDEN / "graph_seed.dot"
    if os.environ.get("LOXI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    veth = host_veth_name(ATTACH)
    assert f'"node/bridge/hsvlan100" -> "node/veth/{veth}" [label="veth needs bridge"];' in text
    assert '[label="bridge\\nhsvlan100"]' in text
    assert 'label="pod namespace /var/run/netns/pod-1";' in text


def test_dot_quotes_what_needs_quoting():
    graph, _ = desired()
    assert 'digraph "a \\"b\\" \\\\c" {' in to_dot(graph, 'a "b" \\c')


def test_json_is_node_link_data_in_creation_order():
    graph, _ = desired()
    doc = to_data(graph, {"network": "loxilight_cni"})
    assert doc["directed"] is True and doc["graph"] == {"network": "loxilight_cni"}
    ids = [node["id"] for node in doc["nodes"]]
    assert ids == [str(obj.key) for obj in graph.order()]
    assert {(e["source"], e["target"]) for e in doc["edges"]} == {(str(a), str(b)) for a, b in graph.graph.edges}
    positions = {node_id: i for i, node_id in enumerate(ids)}
    assert all(positions[e["source"]] < positions[e["target"]] for e in doc["edges"]), "edges point forward"
    bridge = doc["nodes"][0]
    assert bridge == {
        "id": "node/bridge/hsvlan100",
        "ns": "node",
        "kind": "bridge",
        "name": "hsvlan100",
        "description": "bridge hsvlan100",
        "shared": True,
        "attrs": {"kind": "bridge", "up": True, "promisc": False, "mtu": 1500, "vlan_filtering": True},
    }


def test_cli_graph(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(json.dumps(SEED))
    out = io.StringIO()
    assert run(["graph", str(conf), "--container-id", "c0ffee", "--netns", "/var/run/netns/pod-1"], out) == 0
    assert out.getvalue() == (GOLDEN / "graph_seed.dot").read_text()
    out = io.StringIO()
    assert run(["graph", str(conf), "--format", "json"], out) == 0
    doc = json.loads(out.getvalue())
    assert doc["graph"]["addresses"]["source"] == "placeholder"
    assert len(doc["nodes"]) == 9
