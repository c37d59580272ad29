"""A private containerd 1.6 with its CRI plugin on, inside a node namespace (test-environments.md §7).

Everything is its own: root, state, sockets, runc root, the CNI conf dir and the
one CNI bin dir containerd 1.6 takes (so it must hold loopback, which the CRI
plugin always runs, and every chained plugin besides loxi-cni). It runs inside
a throw-away node network namespace, so pod bridges, veths, host ports and
netfilter rules are made there and never in the host's namespace; the pods'
namespaces are mounted under the state dir, not /var/run/netns. containerd
keeps the libcni result cache in the host's /var/lib/cni/results (the CRI plugin
has no setting for it): entries are named by network and sandbox id, and the
tests check theirs are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

from tests.conftest import stop_process
from tests.runtimes.conftest import NodeNs, run
from tests.runtimes.cri.client import CriClient

PAUSE_IMAGE = "localhost/loxi-pause:1"
CNI_CACHE = Path("/var/lib/cni/results")


def config_toml(base: Path, bin_dir: Path, conf_dir: Path) -> str:
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    return "\n".join(
        [
            "version = 2",
            f'root = "{base / "root"}"',
            f'state = "{base / "state"}"',
            f'[grpc]\n  address = "{base / "containerd.sock"}"',
            f'[ttrpc]\n  address = "{base / "containerd.sock"}.ttrpc"',
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base / "opt"}"',
            cri,
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            "  restrict_oom_score_adj = true",  # no CAP_SYS_RESOURCE here: runc cannot set -998
            "  disable_apparmor = true",
            "  netns_mounts_under_state_dir = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"{cri[:-1]}.cni]",
            f'  bin_dir = "{bin_dir}"',
            f'  conf_dir = "{conf_dir}"',
            "  max_conf_num = 1",
            f"{cri[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc[:-1]}.options]",
            "  SystemdCgroup = false",
            f'  Root = "{base / "runc"}"',
            "",
        ]
    )


class CriContainerd:
    """The daemon, its node namespace and a CRI client on its socket."""

    def __init__(self, base: Path, bin_dir: Path, conf_dir: Path, stubs: tuple[ModuleType, ModuleType]) -> None:
        self.base = base
        self.bin_dir = bin_dir
        self.conf_dir = conf_dir
        for sub in ("root", "state", "opt", "runc"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        conf_dir.mkdir(parents=True, exist_ok=True)
        self.socket = base / "containerd.sock"
        self.config = base / "config.toml"
        self.config.write_text(config_toml(base, bin_dir, conf_dir))
        self.stubs = stubs
        self.ns = NodeNs("cri")
        # the environment the plugins inherit from containerd: no agent socket of the caller's
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOXI_")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.cri: CriClient | None = None
        self.starts = 0

    @property
    def client(self) -> CriClient:
        assert self.cri is not None, "containerd is not running"
        return self.cri

    def start(self, **env: str) -> None:
        """Start (or restart) the daemon and wait until its CRI answers Version."""
        self.env.update(env)
        self.starts += 1
        log = open(self.base / f"containerd.{self.starts}.log", "wb")  # noqa: SIM115 - the child holds it
        try:
            self.proc = subprocess.Popen(
                self.ns.wrap(["containerd", "--config", str(self.config)]), stdout=log, stderr=log, env=self.env
            )
        finally:
            log.close()
        self.cri = CriClient(self.socket, *self.stubs)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.socket.exists():
                with contextlib.suppress(Exception):
                    self.cri.version()
                    return
            time.sleep(0.05)
        raise RuntimeError(f"containerd (CRI) did not start: {self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        return (self.base / f"containerd.{self.starts}.log").read_text(errors="replace")[-size:]

    def stop(self) -> None:
        """SIGTERM the daemon only: the pods' shims and pause processes go on, as on a node."""
        if self.cri is not None:
            self.cri.close()
            self.cri = None
        if self.proc is not None:
            stop_process(self.proc, timeout=20)
        self.proc = None

    def import_image(self, archive: Path) -> None:
        run(["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import", str(archive)], timeout=120)

    def use_conflist(self, conflist: dict) -> None:
        """Make `conflist` the network the CRI plugin uses (the only file in its conf dir) and wait
        until its Status shows it loaded: the plugin rereads the dir on a change, asynchronously."""
        for old in self.conf_dir.iterdir():
            old.unlink()
        path = self.conf_dir / "10-loxi.conflist"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(conflist, indent=1))
        tmp.rename(path)
        self.wait_network(conflist["name"])

    def wait_network(self, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        loaded: object = None
        while time.monotonic() < deadline:
            conditions, info = self.client.status()
            loaded = json.loads(info.get("cniconfig", "{}"))
            names = [n.get("Config", {}).get("Name") for n in loaded.get("Networks") or []]  # type: ignore[union-attr]
            if name in names and conditions.get("NetworkReady"):
                return
            time.sleep(0.1)
        raise AssertionError(f"CRI never loaded network {name}: {loaded}")

    def shim_pids(self) -> list[int]:
        """Our daemon's runc shims (started by it, named by its socket on their command line)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in argv:
                    pids.append(int(entry.name))
        return pids

    def remove_all_sandboxes(self) -> None:
        for sandbox_id in self.client.list_pod_sandbox():
            with contextlib.suppress(Exception):
                self.client.stop_pod_sandbox(sandbox_id)
            with contextlib.suppress(Exception):
                self.client.remove_pod_sandbox(sandbox_id)

    def shutdown(self) -> None:
        """Remove every sandbox, stop the daemon, kill shims it left, delete the node namespace."""
        with contextlib.suppress(Exception):
            if self.cri is None and self.proc is None:
                self.start()
            self.remove_all_sandboxes()
        self.stop()
        runc_root = self.base / "runc" / "k8s.io"  # pause processes of sandboxes the CRI could not remove
        for container in runc_root.iterdir() if runc_root.is_dir() else ():
            run(["runc", "--root", str(runc_root), "delete", "--force", container.name], check=False)
        for pid in self.shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.ns.delete()
