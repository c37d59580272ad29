"""One node of the two-kernel test: runs inside a guest, as PID 1's child, and records facts.

``tests/kernel/test_two_nodes.py`` boots two guests joined by one virtual Ethernet link
(each guest's ``eth0``) and runs ``python -m tests.kernel.twonode ROLE DIR`` in each.
Each guest is a node of its own: its own kernel, bridge, IPAM store (on its tmpfs) and
loxi-cni, the link as its ``uplink``. Node ``a`` runs every call in-process and carries
the VLANs on 802.1Q devices (``uplinkMode: vlan``); node ``b`` runs every call through
loxi-agent and makes the link itself a tagged port of its bridge (``uplinkMode: trunk``).

The nodes meet at barriers: files ``DIR/<role>.<step>.json`` on the host's filesystem
(both guests see it over 9p). This program asserts nothing: it writes what it saw
(results, pings, tagged frames counted on the wire, CHECK and DEL outcomes) to
``DIR/<role>.facts.json``, and the host-side test asserts on both nodes' facts, so a
failure reads as a pytest assertion with both sides' evidence.

Python in the guest is ~16x slower than on the host: the program makes few calls and
uses only the standard library (plus the installed plugin and agent it executes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.prefix) / "bin"
UPLINK = "eth0"
BRIDGE = "br-pods"
AGENT_SOCKET = "/run/loxi/agent.sock"
#: Per node: the ranges it hands out. One subnet for all three networks, so that only the
#: VLANs keep them apart (a ping between VLANs fails for want of L2, not of a route).
RANGES = {
    "a": {"v100": ("10.244.0.2", "10.244.0.49"), "v200": ("10.244.0.50", "10.244.0.99"), "none": "10.244.0.200"},
    "b": {"v100": ("10.244.0.100", "10.244.0.149"), "v200": ("10.244.0.150", "10.244.0.199"), "none": "10.244.0.220"},
}
BARRIER_TIMEOUT = 400.0
_SOL_PACKET, _PACKET_AUXDATA, _TP_STATUS_VLAN_VALID = 263, 8, 0x10


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=120)


def ip_json(*argv: str) -> Any:
    out = sh("ip", "-j", *argv).stdout
    return json.loads(out) if out.strip() else []


def vlans(port: str) -> list[str]:
    """``["100 pvid untagged", "200"]`` for a bridge port, as the kernel reports it."""
    entries = json.loads(sh("bridge", "-j", "vlan", "show", "dev", port).stdout or "[]")
    found = []
    for entry in entries:
        for vlan in entry["vlans"]:
            flags = " ".join(vlan.get("flags", [])).lower()
            found.append(" ".join([str(vlan["vlan"]), *(f for f in ("pvid", "untagged") if f in flags)]))
    return sorted(found)


def conf(role: str, network: str, mode: str) -> dict[str, Any]:
    """The seed conf's keys, on a shared bridge with the link as uplink; ``network`` v100, v200 or none."""
    ipam: dict[str, Any] = {"type": "host-local", "dataDir": "/var/lib/cni/networks"}
    body: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": f"net-{network}",
        "type": "loxi-cni",
        "bridge": BRIDGE,
        "isGateway": False,
        "mtu": 1500,
        "ipam": ipam,
    }
    if network == "none":
        only = RANGES[role]["none"]
        ipam.update(subnet="10.244.0.0/24", rangeStart=only, rangeEnd=only)
        return body
    first, last = RANGES[role][network]
    ipam.update(subnet="10.244.0.0/24", rangeStart=first, rangeEnd=last)
    body.update(vlanID=100 if network == "v100" else 200, uplink=UPLINK, uplinkMode=mode)
    return body


class Node:
    """This guest as a node: runs the installed loxi-cni as a runtime does, in-process or via the agent."""

    def __init__(self, role: str, rendezvous: Path) -> None:
        self.role = role
        self.peer = "b" if role == "a" else "a"
        self.rendezvous = rendezvous
        self.mode = "vlan" if role == "a" else "trunk"
        self.socket = AGENT_SOCKET if role == "b" else ""
        self.agent: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {"role": role, "mode": self.mode, "calls": []}
        self.pods: dict[str, str] = {}  # pod name -> namespace path

    # -- the plugin, as a runtime runs it

    def cni(self, command: str, body: dict, pod: str, ifname: str = "eth0") -> dict[str, Any]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"{self.role}-{pod}",
            "CNI_NETNS": self.pods.get(pod, ""),
            "CNI_IFNAME": ifname,
            "CNI_PATH": "/usr/lib/cni",
            "LOXI_AGENT_SOCKET": self.socket,
        }
        before = self.agent_cpu()
        start = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "loxi-cni")], input=json.dumps(body).encode(), capture_output=True, env=env, timeout=300
        )
        stdout = proc.stdout.decode(errors="replace")
        try:
            parsed = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            parsed = None
        call = {
            "command": command,
            "network": body["name"],
            "pod": pod,
            "rc": proc.returncode,
            "json": parsed,
            "stderr": proc.stderr.decode(errors="replace")[-2000:],
            "seconds": round(time.monotonic() - start, 2),
            "agent_cpu_ticks": self.agent_cpu() - before,
        }
        self.facts["calls"].append(call)
        return call

    def agent_cpu(self) -> int:
        """loxi-agent's user+system CPU in clock ticks (0 without an agent)."""
        if self.agent is None:
            return 0
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{self.agent.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        return 0

    def start_agent(self) -> None:
        log = open("/run/loxi/agent.log", "wb")  # noqa: SIM115 - open for the agent's lifetime
        self.agent = subprocess.Popen([str(BIN / "loxi-agent"), "--socket", AGENT_SOCKET], stderr=log)
        deadline = time.monotonic() + 300
        while not os.path.exists(AGENT_SOCKET):
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("loxi-agent did not start: " + Path("/run/loxi/agent.log").read_text())
            time.sleep(0.2)

    def new_pod(self, name: str) -> None:
        ns = f"{self.role}-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.pods[name] = f"/run/netns/{ns}"

    def ping(self, pod: str, target: str, expect: bool) -> int:
        wait = "5" if expect else "1"  # a reply that must not come: one second is plenty on the link
        cmd = ["nsenter", f"--net={self.pods[pod]}", "ping", "-c", "1" if not expect else "2", "-W", wait, target]
        return sh(*cmd, check=False).returncode

    # -- barriers

    def publish(self, step: str, data: Any = None) -> None:
        path = self.rendezvous / f"{self.role}.{step}.json"
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps(data))
        tmp.rename(path)

    def wait_for(self, step: str) -> Any:
        path = self.rendezvous / f"{self.peer}.{step}.json"
        failed = self.rendezvous / f"{self.peer}.failed.json"
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while True:
            with contextlib.suppress(OSError, ValueError):
                return json.loads(path.read_text())
            if failed.exists():
                raise RuntimeError(f"node {self.peer} failed before {step!r}: {failed.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.peer} never reached {step!r}")
            time.sleep(0.3)

    def save(self) -> None:
        self.publish("facts", self.facts)


class TagCounter:
    """Counts the ICMP frames on the link by 802.1Q VLAN id, read from the kernel's packet auxdata.

    The tag of a frame is usually carried out of band (VLAN acceleration), so a packet
    socket sees it in ``tpacket_auxdata``; an in-band 0x8100 header counts too.
    """

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind((ifname, 0))
        self.sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
        self.sock.settimeout(0.5)
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                frame, ancillary, _, _ = self.sock.recvmsg(65535, socket.CMSG_SPACE(32))
            except TimeoutError:
                continue
            vid = None
            for level, kind, data in ancillary:
                if level == _SOL_PACKET and kind == _PACKET_AUXDATA and len(data) >= 20:
                    status, _, _, _, _, tci, _ = struct.unpack("IIIHHHH", data[:20])
                    if status & _TP_STATUS_VLAN_VALID:
                        vid = tci & 0xFFF
            payload = frame[12:]
            if payload[:2] == b"\x81\x00":
                vid, payload = int.from_bytes(payload[2:4], "big") & 0xFFF, payload[4:]
            if payload[:2] != b"\x08\x00" or len(payload) < 22 or payload[11] != 1:  # IPv4 ICMP only
                continue
            src, dst = socket.inet_ntoa(payload[14:18]), socket.inet_ntoa(payload[18:22])
            key = f"{'untagged' if vid is None else vid} {src}>{dst}"
            self.counts[key] = self.counts.get(key, 0) + 1

    def close(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return dict(sorted(self.counts.items()))


def address(call: dict[str, Any]) -> str:
    return call["json"]["ips"][0]["address"].split("/")[0] if call["rc"] == 0 else ""


def host_port(call: dict[str, Any]) -> str:
    return call["json"]["interfaces"][1]["name"] if call["rc"] == 0 else ""  # [0] is the bridge


def run(role: str, rendezvous: Path) -> None:
    node = Node(role, rendezvous)
    facts = node.facts
    try:
        sh("ip", "link", "set", UPLINK, "up")
        if node.socket:
            node.start_agent()
        confs = {net: conf(role, net, node.mode) for net in ("v100", "v200", "none")}
        # 1. pods: two on VLAN 100 (b's second shows its own pods still talk after a's DEL), one on 200, one untagged
        layout = [("p100", "v100"), ("p200", "v200"), ("p0", "none")] + ([("p100b", "v100")] if role == "b" else [])
        adds = {}
        for pod, net in layout:
            node.new_pod(pod)
            adds[pod] = node.cni("ADD", confs[net], pod)
        addresses = {pod: address(call) for pod, call in adds.items()}
        ports = {pod: host_port(call) for pod, call in adds.items()}
        facts["addresses"], facts["ports"] = addresses, ports
        facts["links"] = {link["ifname"]: link for link in ip_json("-d", "link", "show")}
        facts["vlans"] = {name: vlans(name) for name in facts["links"] if facts["links"][name].get("master") == BRIDGE}
        node.publish("up", addresses)
        peer = node.wait_for("up")

        # 2. reachability across the link, with the frames on the wire counted by tag
        counter = TagCounter(UPLINK)
        facts["pings"] = {
            "v100 to peer v100": node.ping("p100", peer["p100"], expect=True),
            "v200 to peer v200": node.ping("p200", peer["p200"], expect=True),
            "v200 to peer v100": node.ping("p200", peer["p100"], expect=False),
            "untagged to peer v100": node.ping("p0", peer["p100"], expect=False),
            "untagged to peer v200": node.ping("p0", peer["p200"], expect=False),
            "untagged to own v100": node.ping("p0", addresses["p100"], expect=False),
        }
        facts["wire"] = counter.close()
        node.publish("pinged")
        node.wait_for("pinged")

        # 3. CHECK sees every pod as made, then a VLAN taken off a port; a re-ADD repairs it
        facts["check"] = {
            pod: node.cni("CHECK", {**confs[net], "prevResult": adds[pod]["json"]}, pod)["rc"] for pod, net in layout
        }
        sh("bridge", "vlan", "del", "dev", ports["p100"], "vid", "100")
        facts["vlans_after_removal"] = vlans(ports["p100"])
        drift = node.cni("CHECK", {**confs["v100"], "prevResult": adds["p100"]["json"]}, "p100")
        facts["check_drift"] = {"rc": drift["rc"], "json": drift["json"]}
        facts["readd_rc"] = node.cni("ADD", confs["v100"], "p100")["rc"]
        facts["vlans_after_readd"] = vlans(ports["p100"])
        facts["check_after_readd"] = node.cni("CHECK", {**confs["v100"], "prevResult": adds["p100"]["json"]}, "p100")[
            "rc"
        ]
        node.publish("checked")
        node.wait_for("checked")

        # 4. node a deletes all its pods; node b's pods go on working; then b deletes its own
        if role == "b":
            node.wait_for("deleted")
            facts["after_peer_del"] = {
                "check": {
                    pod: node.cni("CHECK", {**confs[net], "prevResult": adds[pod]["json"]}, pod)["rc"]
                    for pod, net in layout
                },
                "v100 to own v100": node.ping("p100", addresses["p100b"], expect=True),
                "v100 to deleted peer v100": node.ping("p100", peer["p100"], expect=False),
            }
        facts["del"] = {
            pod: node.cni("DEL", {**confs[net], "prevResult": adds[pod]["json"]}, pod)["rc"] for pod, net in layout
        }
        facts["del_again"] = node.cni("DEL", confs["v100"], "p100")["rc"]
        facts["after_del"] = {
            "links": sorted(x["ifname"] for x in ip_json("link", "show")),
            "leases": sorted(
                f"{d}/{f}"
                for d in os.listdir("/var/lib/cni/networks")
                for f in os.listdir(f"/var/lib/cni/networks/{d}")
                if f[0].isdigit()
            ),
        }
        node.publish("deleted")
    except Exception as exc:  # the host test shows it with the facts so far
        facts["error"] = f"{type(exc).__name__}: {exc}"
        node.publish("failed", facts["error"])
    finally:
        if node.agent is not None:
            node.agent.terminate()
            node.agent.wait(timeout=30)
        node.save()


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]))
