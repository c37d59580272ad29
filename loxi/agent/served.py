"""The networks loxi-agent has served: what its pool metrics read and what its reconciler looks after.

An ADD the agent answered with success teaches it the network's conf. The agent
reconciles only networks it has served from its own network namespace (on a
node, the DaemonSet's host network: the node's), because the veths and
namespaces that prove an attachment dead are read there; those confs are kept
in `<state dir>/networks/<name>.conf` (0600, written atomically), so a
restarted agent still looks after the networks it served before. The per-pod
parts of the conf (`prevResult`, `runtimeConfig`, `args`) are dropped: what is
kept is the network's.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loxi.agent.metrics import PoolUsage

PER_POD_KEYS = ("prevResult", "runtimeConfig", "args")
SEEN_LIMIT = 256  # distinct ADD stdins remembered, so the usual ADD skips the JSON parse


@dataclass(frozen=True)
class ServedNetwork:
    name: str
    conf: bytes  # the network's conf, per-pod keys dropped
    local: bool  # served from the agent's own namespace: reconciled
    host_local: Any  # intent.ipam_config.HostLocalConfig, or None (no IPAM, or another IPAM)

    @property
    def store_dir(self) -> str | None:
        hl = self.host_local
        return os.path.join(hl.data_dir, hl.network_name) if hl is not None else None


def _host_local(doc: dict[str, Any]) -> Any:
    from intent.errors import CniError
    from intent.ipam_config import load_host_local

    ipam = doc.get("ipam")
    if not isinstance(ipam, dict) or ipam.get("type") != "host-local":
        return None
    try:
        return load_host_local(doc, {})
    except CniError:
        return None


class ServedNetworks:
    def __init__(self, state_dir: str | None) -> None:
        self.directory = os.path.join(state_dir, "networks") if state_dir else None
        self._networks: dict[str, ServedNetwork] = {}
        self._seen: set[tuple[bytes, bool]] = set()
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.directory or not os.path.isdir(self.directory):
            return
        for entry in sorted(os.listdir(self.directory)):
            if entry.endswith(".conf"):
                try:
                    with open(os.path.join(self.directory, entry), "rb") as handle:
                        self._learn(handle.read(), local=True, persist=False)
                except (OSError, ValueError):
                    continue

    def note_add(self, stdin: bytes, local: bool) -> None:
        """After a successful ADD: remember its network (cheap when this stdin was seen before)."""
        key = (stdin, local)
        if key in self._seen:
            return
        try:
            self._learn(stdin, local, persist=local)
        except (OSError, ValueError):
            return
        with self._lock:
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen.add(key)

    def _learn(self, stdin: bytes, local: bool, persist: bool) -> None:
        doc = json.loads(stdin)
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
            raise ValueError("not a conf")
        kept = {k: v for k, v in doc.items() if k not in PER_POD_KEYS}
        data = json.dumps(kept, sort_keys=True).encode()
        name = kept["name"]
        with self._lock:
            old = self._networks.get(name)
            if old is not None and old.conf == data and (old.local or not local):
                return
            network = ServedNetwork(name, data, local or bool(old and old.local), _host_local(kept))
            self._networks[name] = network
        if persist and self.directory:
            from loxi.atomicfile import write_atomic

            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            write_atomic(os.path.join(self.directory, f"{name}.conf"), data, 0o600)

    def networks(self) -> list[ServedNetwork]:
        with self._lock:
            return list(self._networks.values())

    def get(self, name: str) -> ServedNetwork | None:
        with self._lock:
            return self._networks.get(name)

    def conf_path(self, name: str) -> str | None:
        return os.path.join(self.directory, f"{name}.conf") if self.directory else None

    def store_dirs(self) -> list[str]:
        """The IPAM data dirs of the networks served (for /readyz)."""
        return sorted({n.host_local.data_dir for n in self.networks() if n.host_local is not None})

    def pools(self) -> Iterator[PoolUsage]:
        """Addresses used and free in each range set of each host-local network served (read at scrape time)."""
        from applier.ipam import HostLocalStore

        for network in self.networks():
            config = network.host_local
            if config is None:
                continue
            store = HostLocalStore(config)
            ips = [a.ip for a in store.allocations()]
            for index, rset in enumerate(config.range_sets):
                used = sum(1 for ip in ips if rset.contains(ip))
                yield PoolUsage(network.name, rset.text, used, store.free_count(index))
