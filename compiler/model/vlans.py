"""VLAN kinds: a bridge port's VLAN membership and the uplink's 802.1Q device, and
the membership's text form (the one plans, CHECK and observations all use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import KIND, MASTER, PARENT, UP, VLAN_ID, VLANS
from compiler.model.base import NetObject


@dataclass(frozen=True)
class PortVlans(NetObject):
    """VLAN membership of one bridge port (or of the bridge itself, `self_entry`).

    `vids` holds (VLAN id, pvid, untagged). `exact` ports must carry these VLANs
    and no others (a pod's port: VLAN 1 appearing is drift); the others must
    carry at least these (a shared uplink trunk serves several networks).
    """

    kind: ClassVar[str] = "port_vlans"
    rank: ClassVar[int] = 5
    attributes: ClassVar[tuple[str, ...]] = (VLANS,)

    port: str
    vids: tuple[tuple[int, bool, bool], ...]
    self_entry: bool = False
    exact: bool = True
    bridge: str = ""

    @property
    def name(self) -> str:
        return self.port

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return not self.exact

    @property
    def guard_bridge(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        return {VLANS: format_vlans(self.vids)}

    def satisfied(self, name: str, have: Any, want: Any) -> bool:
        """A shared port (not `exact`) needs these VLANs among others: a superset is enough."""
        if not self.exact:
            have_vids = parse_vlans(have)
            if all(have_vids.get(vid) == flags for vid, flags in parse_vlans(want).items()):
                return True
        return have == want


@dataclass(frozen=True)
class VlanDevice(NetObject):
    """An 802.1Q device `<uplink>.<vid>` on the node's uplink, a port of the bridge:
    it carries the network's VLAN off the node, tagged, while the bridge sees it
    untagged on this port. Shared by every pod of the network."""

    kind: ClassVar[str] = "vlan"
    rank: ClassVar[int] = 1
    shared: ClassVar[bool] = True
    attributes: ClassVar[tuple[str, ...]] = (KIND, VLAN_ID, PARENT, MASTER, UP)
    immutable: ClassVar[tuple[str, ...]] = (VLAN_ID, PARENT)

    device: str
    parent: str
    vlan_id: int
    bridge: str

    @property
    def name(self) -> str:
        return self.device

    @property
    def guard_bridge(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        return {KIND: "vlan", VLAN_ID: self.vlan_id, PARENT: self.parent, MASTER: self.bridge, UP: True}

    def immutable_text(self, attrs: dict[str, Any]) -> str:
        return f"VLAN {attrs.get(VLAN_ID)} on {attrs.get(PARENT)}"


def format_vlans(vids: tuple[tuple[int, bool, bool], ...] | list[tuple[int, bool, bool]]) -> list[str]:
    """Stable, readable VLAN membership, runs of plain tagged VLANs compressed:
    ['100 pvid untagged', '200-299']."""
    out: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()

    for vid, pvid, untagged in sorted(set(vids)):
        if pvid or untagged:
            flush()
            out.append(f"{vid}{' pvid' if pvid else ''}{' untagged' if untagged else ''}")
        elif run and vid == run[-1] + 1:
            run.append(vid)
        else:
            flush()
            run.append(vid)
    flush()
    return out


def parse_vlans(texts: list[str] | None) -> dict[int, tuple[bool, bool]]:
    """The inverse of format_vlans: {vid: (pvid, untagged)}."""
    vids: dict[int, tuple[bool, bool]] = {}
    for text in texts or []:
        parts = text.split()
        first, _, last = parts[0].partition("-")
        for vid in range(int(first), int(last or first) + 1):
            vids[vid] = ("pvid" in parts, "untagged" in parts)
    return vids
