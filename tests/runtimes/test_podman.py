"""podman 4.3 (CNI backend) runs containers on loxi-cni through the installed launcher."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from pathlib import Path

from compiler.graph import host_veth_name as _host_veth_name
from compiler.model import Attachment
from tests.runtimes.conftest import PodmanNode, hook_wired, read_log, run


def conflist(name: str, bridge: str, subnet: str, data_dir: Path, *, log: Path | None = None, **ipam: str) -> dict:
    plugin: dict = {
        "type": "loxi-cni",
        "bridge": bridge,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir), **ipam},
    }
    if log is not None:
        plugin["logFile"] = str(log)
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def host_veth_name(network: str, container_id: str, ifname: str) -> str:
    return _host_veth_name(Attachment(network, container_id, ifname, ""))


def net_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"loxirt-{tag}", f"lxrt{tag}"


def allocations(data_dir: Path, network: str) -> dict[str, str]:
    """{address: container id} from the host-local store."""
    directory = data_dir / network
    if not directory.exists():
        return {}
    return {
        p.name: p.read_bytes().decode().splitlines()[0]
        for p in directory.iterdir()
        if p.name[0].isdigit() or ":" in p.name
    }


def pod_view(node: PodmanNode, name: str, network: str) -> tuple[str, str, str]:
    """(address/prefix, MAC) of eth0 as the kernel has them in the container's namespace, and the netns."""
    info = node.podman.inspect(name)
    sandbox = info["NetworkSettings"]["SandboxKey"]
    out = run(["nsenter", f"--net={sandbox}", "--", "ip", "-j", "addr", "show", "dev", "eth0"]).stdout
    link = json.loads(out)[0]
    addr = next(a for a in link["addr_info"] if a["family"] == "inet")
    return f"{addr['local']}/{addr['prefixlen']}", link["address"], sandbox


def ping(node: PodmanNode, name: str, target: str) -> subprocess.CompletedProcess[str]:
    return node("exec", name, "ping", "-c", "1", "-W", "3", target, check=False)


def test_two_containers_get_pool_addresses_ping_and_inspect_matches(podman_node: PodmanNode, tmp_path: Path) -> None:
    network, bridge = net_names()
    data_dir = tmp_path / "ipam"
    log = tmp_path / "loxi.log"
    podman_node.network(conflist(network, bridge, "10.231.7.0/24", data_dir, log=log))
    podman_node.run_container("a", network)
    podman_node.run_container("b", network)
    pool = ipaddress.ip_network("10.231.7.0/24")
    seen = {}
    for short in ("a", "b"):
        name = podman_node.name(short)
        settings = podman_node.podman.inspect(name)["NetworkSettings"]["Networks"][network]
        cidr, mac, _ = pod_view(podman_node, name, network)
        assert ipaddress.ip_address(settings["IPAddress"]) in pool
        assert cidr == f"{settings['IPAddress']}/{settings['IPPrefixLen']}"
        assert settings["MacAddress"] == mac  # what loxi-cni reported is what the kernel has
        assert settings["Gateway"] == "10.231.7.1"
        cid = podman_node.podman.inspect(name)["Id"]
        assert allocations(data_dir, network)[settings["IPAddress"]] == cid
        seen[short] = settings["IPAddress"]
    assert seen["a"] != seen["b"]
    for short, other in (("a", "b"), ("b", "a")):
        assert ping(podman_node, podman_node.name(short), seen[other]).returncode == 0
        assert ping(podman_node, podman_node.name(short), "10.231.7.1").returncode == 0
    assert len(podman_node.ns.loxi_links()) == 2

    podman_node("rm", "-f", "-t", "0", podman_node.name("a"), podman_node.name("b"))
    assert podman_node.ns.loxi_links() == [], "podman rm -f left a host veth"
    assert allocations(data_dir, network) == {}, "podman rm -f left an allocation"
    if hook_wired():
        commands = [line["command"] for line in read_log(log)]
        assert commands.count("ADD") == 2 and commands.count("DEL") >= 2, commands


def test_restart_gives_a_working_network_again(podman_node: PodmanNode, tmp_path: Path) -> None:
    network, bridge = net_names()
    data_dir = tmp_path / "ipam"
    podman_node.network(conflist(network, bridge, "10.231.8.0/24", data_dir))
    podman_node.run_container("a", network)
    name = podman_node.name("a")
    cid = podman_node.podman.inspect(name)["Id"]
    podman_node("restart", "-t", "0", name)
    settings = podman_node.podman.inspect(name)["NetworkSettings"]["Networks"][network]
    cidr, mac, _ = pod_view(podman_node, name, network)
    assert cidr.startswith(settings["IPAddress"] + "/") and settings["MacAddress"] == mac
    assert allocations(data_dir, network) == {settings["IPAddress"]: cid}  # the old lease was released
    assert ping(podman_node, name, "10.231.8.1").returncode == 0
    assert podman_node.ns.loxi_links() == [host_veth_name(network, cid, "eth0")]


def test_add_failure_is_shown_with_loxi_message_and_its_del_releases_everything(
    podman_node: PodmanNode, tmp_path: Path
) -> None:
    network, bridge = net_names()
    data_dir = tmp_path / "ipam"
    log = tmp_path / "loxi.log"
    one = {"rangeStart": "10.231.9.10", "rangeEnd": "10.231.9.10"}
    podman_node.network(conflist(network, bridge, "10.231.9.0/24", data_dir, log=log, **one))
    podman_node.run_container("a", network)
    first = podman_node.podman.inspect(podman_node.name("a"))["Id"]
    failed = podman_node.run_container("b", network, check=False)
    assert failed.returncode != 0
    assert "no IP addresses available in range set: 10.231.9.10-10.231.9.10" in failed.stderr, failed.stderr
    assert "loxi" in failed.stderr or network in failed.stderr
    # the failed container's DEL (no prevResult) left nothing: only the first container's lease and veth
    assert allocations(data_dir, network) == {"10.231.9.10": first}
    assert podman_node.ns.loxi_links() == [host_veth_name(network, first, "eth0")]
    if hook_wired():
        lines = read_log(log)
        assert any(line["command"] == "ADD" and line.get("code") == 999 for line in lines), lines


def test_chained_portmap_reaches_server_on_host_port(podman_node: PodmanNode, tmp_path: Path) -> None:
    network, bridge = net_names()
    data_dir = tmp_path / "ipam"
    conf = conflist(network, bridge, "10.231.10.0/24", data_dir)
    conf["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})
    podman_node.network(conf)
    server = "mkdir -p /www && echo loxi-portmap-ok > /www/index.html && exec httpd -f -p 80 -h /www"
    podman_node.run_container("web", network, "sh", "-c", server, extra=("-p", "18080:80"))
    probe = (
        "import sys, time, urllib.request\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        print(urllib.request.urlopen(f'http://{sys.argv[1]}:18080/', timeout=2).read().decode()); break\n"
        "    except OSError as err:\n"
        "        last = err; time.sleep(0.1)\n"
        "else:\n"
        "    sys.exit(f'unreachable: {last}')\n"
    )
    for host in ("10.231.10.1", "127.0.0.1"):
        got = run(podman_node.ns.wrap([sys.executable, "-I", "-c", probe, host]), check=False, timeout=60)
        assert got.returncode == 0 and "loxi-portmap-ok" in got.stdout, got.stderr
