"""A CRI client that calls containerd's RuntimeService the way kubelet does.

kubelet talks to the runtime over gRPC on a unix socket and never runs a CNI
plugin itself; everything loxi-cni sees on a Kubernetes node comes from the
runtime's CRI layer answering these calls. The client keeps to the calls and
fields kubelet sends for a pod sandbox (metadata, hostname, log directory, DNS,
port mappings, labels, the Linux security context), so what reaches the plugin
is what a cluster would send.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

API_VERSION = "v1"


@dataclass(frozen=True)
class Port:
    """A hostPort of the pod spec, as kubelet puts it in PodSandboxConfig.port_mappings."""

    container_port: int
    host_port: int
    protocol: str = "TCP"
    host_ip: str = ""


@dataclass
class SandboxStatus:
    """What PodSandboxStatus says (verbose): the state, the IPs kubelet reports, the pod's netns."""

    id: str
    state: str
    ip: str
    additional_ips: list[str]
    netns: str
    info: dict[str, Any] = field(repr=False)


class CriClient:
    """runtime.v1.RuntimeService over the daemon's unix socket."""

    def __init__(self, socket: Path, pb2: ModuleType, pb2_grpc: ModuleType, timeout: float = 120) -> None:
        self.pb2 = pb2
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = pb2_grpc.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def version(self) -> Any:
        return self.stub.Version(self.pb2.VersionRequest(version=API_VERSION), timeout=self.timeout)

    def status(self) -> tuple[dict[str, bool], dict[str, str]]:
        """({condition type: status}, verbose info), as kubelet's runtime health check reads it."""
        reply = self.stub.Status(self.pb2.StatusRequest(verbose=True), timeout=self.timeout)
        return {c.type: c.status for c in reply.status.conditions}, dict(reply.info)

    def run_pod_sandbox(self, name: str, *, namespace: str = "default", ports: tuple[Port, ...] = ()) -> str:
        """RunPodSandbox with the config kubelet builds for a pod (a fresh uid, attempt 0)."""
        pb2 = self.pb2
        uid = str(uuid.uuid4())
        config = pb2.PodSandboxConfig(
            metadata=pb2.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname=name,
            log_directory=f"/var/log/pods/{namespace}_{name}_{uid}",
            dns_config=pb2.DNSConfig(servers=["10.96.0.10"], searches=[f"{namespace}.svc.cluster.local"]),
            port_mappings=[
                pb2.PortMapping(
                    protocol=getattr(pb2, p.protocol),
                    container_port=p.container_port,
                    host_port=p.host_port,
                    host_ip=p.host_ip,
                )
                for p in ports
            ],
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
            annotations={"kubernetes.io/config.source": "api"},
            linux=pb2.LinuxPodSandboxConfig(
                security_context=pb2.LinuxSandboxSecurityContext(
                    namespace_options=pb2.NamespaceOption(network=pb2.POD, pid=pb2.CONTAINER, ipc=pb2.POD)
                )
            ),
        )
        reply = self.stub.RunPodSandbox(pb2.RunPodSandboxRequest(config=config), timeout=self.timeout)
        return reply.pod_sandbox_id

    def pod_sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        pb2 = self.pb2
        reply = self.stub.PodSandboxStatus(
            pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True), timeout=self.timeout
        )
        info = json.loads(reply.info.get("info", "{}") or "{}")
        netns = ""
        for ns in (info.get("runtimeSpec") or {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network":
                netns = ns.get("path", "")
        status = reply.status
        return SandboxStatus(
            id=status.id,
            state=pb2.PodSandboxState.Name(status.state),
            ip=status.network.ip,
            additional_ips=[p.ip for p in status.network.additional_ips],
            netns=netns,
            info=info,
        )

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self.stub.StopPodSandbox(self.pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self.stub.RemovePodSandbox(self.pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def list_pod_sandbox(self) -> dict[str, str]:
        """{sandbox id: state name} of every sandbox the runtime knows."""
        reply = self.stub.ListPodSandbox(self.pb2.ListPodSandboxRequest(), timeout=self.timeout)
        return {item.id: self.pb2.PodSandboxState.Name(item.state) for item in reply.items}
