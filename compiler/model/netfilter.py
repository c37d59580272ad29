"""Netfilter kinds: the rules one attachment owns, tied to it by a tag (their comment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import RULE, RULES
from compiler.model.base import NetObject


@dataclass(frozen=True)
class Masquerade(NetObject):
    """The pod's masquerade rules (ipMasq): traffic from its addresses leaving its
    subnet is NATed. `tag` (the rules' comment) ties them to the attachment, so
    DEL can remove them without knowing the addresses."""

    kind: ClassVar[str] = "masquerade"
    rank: ClassVar[int] = 9
    attributes: ClassVar[tuple[str, ...]] = (RULES,)

    tag: str
    backend: str = "nftables"
    rules: tuple[str, ...] = ()  # "address ! subnet"

    @property
    def name(self) -> str:
        return self.tag

    def desired(self) -> dict[str, Any]:
        return {RULES: sorted(self.rules)}


@dataclass(frozen=True)
class SpoofCheck(NetObject):
    """macspoofchk: frames entering the bridge from the pod's port must carry the
    pod's MAC. An nftables bridge-family rule tagged with the attachment."""

    kind: ClassVar[str] = "macspoofchk"
    rank: ClassVar[int] = 7
    attributes: ClassVar[tuple[str, ...]] = (RULE,)

    tag: str
    port: str = ""
    mac: str = ""

    @property
    def name(self) -> str:
        return self.tag

    def desired(self) -> dict[str, Any]:
        return {RULE: f"{self.port} {self.mac}"}
