"""The demo: three pods on a loxi-cni bridge, in throw-away network namespaces.

It runs the installed `loxi-cni` exactly as a container runtime does (the CNI
variables, the conf on stdin, the result on stdout), shows what the plugin made,
has the pods ping each other and their gateway, runs CHECK, then DEL for every
pod, and removes every namespace it made, whatever happens. Nothing outside its
own namespaces is touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
PING = shutil.which("ping") or "/usr/bin/ping"


def _conf(data_dir: str) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "loxilight_cni",
        "type": "loxi-cni",
        "bridge": "hsvlan100",
        "isGateway": True,
        "isDefaultGateway": True,
        "mtu": 1500,
        "hairpinMode": False,
        "promiscMode": False,
        "ipam": {
            "type": "host-local",
            "subnet": "10.244.1.0/24",
            "routes": [{"dst": "10.96.0.0/12"}],
            "dataDir": data_dir,
        },
    }


def _cni(plugin: str, node: str, command: str, conf: dict, cid: str, pod: str) -> tuple[int, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/var/run/netns/{pod}" if pod else "",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={cid}",
        "CNI_PATH": str(Path(plugin).parent),
    }
    proc = subprocess.run(
        [NSENTER, f"--net=/var/run/netns/{node}", "--", plugin],
        input=json.dumps(conf).encode(),
        capture_output=True,
        env=env,
        timeout=60,
    )
    return proc.returncode, proc.stdout.decode()


def _ping(pod: str, address: str) -> bool:
    proc = subprocess.run(
        [NSENTER, f"--net=/var/run/netns/{pod}", "--", PING, "-c", "1", "-W", "2", address], capture_output=True
    )
    return proc.returncode == 0


def main() -> int:
    plugin = str(Path(sys.executable).parent / "loxi-cni")
    suffix = uuid.uuid4().hex[:6]
    node = f"loxidemo-node-{suffix}"
    pods = [f"loxidemo-pod{i}-{suffix}" for i in range(3)]
    made: list[str] = []
    data_dir = tempfile.mkdtemp(prefix="loxi-demo-ipam-")
    conf = _conf(data_dir)
    ok = True
    try:
        for name in [node, *pods]:
            pyroute2_netns.create(name)
            made.append(name)
        print(f"namespaces: node {node}, pods {', '.join(pods)} (IPAM store {data_dir})")
        addresses = {}
        for pod in pods:
            rc, out = _cni(plugin, node, "ADD", conf, pod, pod)
            if rc != 0:
                print(f"ADD {pod} failed: {out}")
                return 1
            result = json.loads(out)
            address = result["ips"][0]["address"]
            addresses[pod] = (address.split("/")[0], result)
            host = result["interfaces"][1]["name"]
            print(f"ADD   {pod}: eth0 {address} mac {result['interfaces'][2]['mac']} ↔ {host} on hsvlan100")
        print("pings:")
        for src in pods:
            for dst, (address, _) in [*addresses.items(), ("gateway", ("10.244.1.1", None))]:
                if dst == src:
                    continue
                reached = _ping(src, address)
                ok &= reached
                print(f"  {src} → {dst} ({address}): {'ok' if reached else 'FAILED'}")
        for pod in pods:
            rc, out = _cni(plugin, node, "CHECK", {**conf, "prevResult": addresses[pod][1]}, pod, pod)
            ok &= rc == 0
            print(f"CHECK {pod}: {'passes' if rc == 0 else out}")
        for pod in pods:
            rc, out = _cni(plugin, node, "DEL", conf, pod, pod)
            ok &= rc == 0
            print(f"DEL   {pod}: {'done' if rc == 0 else out}")
        left = sorted(p.name for p in Path(data_dir, "loxilight_cni").iterdir() if p.name[0].isdigit())
        print(f"after DEL: allocations left {left or 'none'}; the bridge stays for the next pod")
    finally:
        for name in made:
            pyroute2_netns.remove(name)
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"removed namespaces {', '.join(made)}")
    print("demo passed" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
