"""The netfilter driver: nftables and iptables rules owned by one attachment (masquerade, MAC spoof checks).

Netfilter rules are the one kind of state loxi-cni manages through the
netfilter tools rather than pyroute2 (pyroute2's nftables support cannot build
these expressions). Every rule carries the attachment's tag as its comment, so
DEL removes exactly this pod's rules by tag, even when CNI_NETNS is empty and
the pod's addresses are unknown (the reference leaks them then, plugins#810).
Rulesets are rendered from jinja2 templates and loaded atomically (`nft -f -`).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from applier.drivers.base import Applying, Driver, register, sets
from compiler.model import Masquerade, Observed, SpoofCheck
from compiler.model.attrs import RULE, RULES
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer

MASQ_TABLE = "loxi_cni_masquerade"  # inet family; the reference uses cni_plugins_masquerade
SPOOF_TABLE = "loxi_cni_macspoof"  # bridge family
NFT = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/nft"
IPTABLES = {
    4: shutil.which("iptables", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/iptables",
    6: shutil.which("ip6tables", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/ip6tables",
}
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}

MASQ_TEMPLATE = """table inet {{ table }} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
  }
}
{% for rule in rules %}
add rule inet {{ table }} postrouting {{ rule.family_kw }} saddr {{ rule.address }} \
{{ rule.family_kw }} daddr != {{ rule.subnet }} {{ rule.family_kw }} daddr != {{ rule.multicast }} \
masquerade comment "{{ tag }}"
{% endfor %}"""

SPOOF_TEMPLATE = """table bridge {{ table }} {
  chain prerouting {
    type filter hook prerouting priority -300; policy accept;
  }
}
add rule bridge {{ table }} prerouting iifname "{{ port }}" ether saddr != {{ mac }} drop comment "{{ tag }}"
"""


def _render(template: str, **values: object) -> str:
    return _compiled(template).render(**values)


@cache
def _compiled(template: str) -> Any:
    """Each ruleset template compiled once per process (loxi-agent renders them for every pod that has rules);
    jinja2 is imported only by the pods that use netfilter rules."""
    from applier.templating import make_environment

    return make_environment(trim=False).from_string(template)


class NetfilterError(Exception):
    """A netfilter tool refused; the message carries its stderr."""


@dataclass(frozen=True)
class MasqRule:
    address: str  # the pod's address, no prefix
    subnet: str  # traffic to its own subnet is not masqueraded

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def family_kw(self) -> str:
        return "ip6" if self.version == 6 else "ip"

    @property
    def multicast(self) -> str:
        return MULTICAST[self.version]

    def text(self) -> str:
        return f"{self.address} ! {self.subnet}"


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetfilterError(f"{argv[0]}: {exc}") from None
    if proc.returncode != 0:
        raise NetfilterError(f"{' '.join(argv[:3])}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _nft_rules(family: str, table: str, chain: str) -> list[dict]:
    """Rules of one chain with their handles; an absent table has none."""
    try:
        out = _run([NFT, "-j", "-a", "list", "chain", family, table, chain])
    except NetfilterError as exc:
        if "No such file or directory" in str(exc) or "does not exist" in str(exc):
            return []
        raise
    return [item["rule"] for item in json.loads(out).get("nftables", []) if "rule" in item]


def _nft_delete_tagged(family: str, table: str, chain: str, tag: str) -> int:
    handles = [rule["handle"] for rule in _nft_rules(family, table, chain) if rule.get("comment") == tag]
    if handles:
        script = "".join(f"delete rule {family} {table} {chain} handle {handle}\n" for handle in handles)
        _run([NFT, "-f", "-"], script)
    return len(handles)


# -- masquerade --------------------------------------------------------------------


def masquerade_rules(backend: str, tag: str) -> list[str]:
    """The masquerade rules carrying `tag`, as `address ! subnet` texts."""
    if backend == "iptables":
        found = []
        for binary in IPTABLES.values():
            for args in _iptables_rules(binary, tag):
                source, destination = _iptables_field(args, "-s"), _iptables_field(args, "!", "-d")
                if source and destination:
                    found.append(MasqRule(source.split("/")[0], destination).text())
        return sorted(found)
    texts = []
    for rule in _nft_rules("inet", MASQ_TABLE, "postrouting"):
        if rule.get("comment") != tag:
            continue
        matches = [e["match"] for e in rule.get("expr", []) if "match" in e]
        saddr = next((m["right"] for m in matches if m["left"]["payload"]["field"] == "saddr"), None)
        daddr = next((m["right"] for m in matches if m["left"]["payload"]["field"] == "daddr"), None)
        if isinstance(daddr, dict) and "prefix" in daddr:
            daddr = f"{daddr['prefix']['addr']}/{daddr['prefix']['len']}"
        texts.append(MasqRule(str(saddr), str(daddr)).text())
    return sorted(texts)


def add_masquerade(backend: str, tag: str, rules: list[MasqRule]) -> None:
    if backend == "iptables":
        for rule in rules:
            _run([IPTABLES[rule.version], "-w", "-t", "nat", "-A", "POSTROUTING", *_iptables_spec(rule, tag)])
        return
    _run([NFT, "-f", "-"], _render(MASQ_TEMPLATE, table=MASQ_TABLE, rules=rules, tag=tag))


def delete_masquerade(backend: str, tag: str) -> None:
    """Remove every masquerade rule with this tag, from both backends (the conf's
    backend may have changed since ADD)."""
    _nft_delete_tagged("inet", MASQ_TABLE, "postrouting", tag)
    for binary in IPTABLES.values():
        for args in _iptables_rules(binary, tag):
            _run([binary, "-w", "-t", "nat", "-D", *args[1:]])


def _iptables_spec(rule: MasqRule, tag: str) -> list[str]:
    return ["-s", rule.address, "!", "-d", rule.subnet, "-m", "comment", "--comment", tag, "-j", "MASQUERADE"]


def _iptables_rules(binary: str, tag: str) -> list[list[str]]:
    """POSTROUTING rules with our comment, each as `-S` prints it, split into argv
    (`-A POSTROUTING …`)."""
    try:
        out = _run([binary, "-w", "-t", "nat", "-S", "POSTROUTING"])
    except NetfilterError:
        return []
    rules = []
    for line in out.splitlines():
        args = shlex.split(line)
        if _iptables_field(args, "--comment") == tag:
            rules.append(args)
    return rules


def _iptables_field(args: list[str], *flag: str) -> str | None:
    for i in range(len(args) - len(flag)):
        if args[i : i + len(flag)] == list(flag):
            return args[i + len(flag)]
    return None


# -- MAC spoof check ----------------------------------------------------------------


def spoof_rules(tag: str) -> list[str]:
    """`port mac` texts of the spoof-check rules carrying `tag`."""
    found = []
    for rule in _nft_rules("bridge", SPOOF_TABLE, "prerouting"):
        if rule.get("comment") != tag:
            continue
        matches = [e["match"] for e in rule.get("expr", []) if "match" in e]
        port = next((m["right"] for m in matches if m["left"].get("meta", {}).get("key") == "iifname"), "")
        mac = next((m["right"] for m in matches if "payload" in m["left"]), "")
        found.append(f"{port} {mac}")
    return found


def add_spoof_check(tag: str, port: str, mac: str) -> None:
    _run([NFT, "-f", "-"], _render(SPOOF_TEMPLATE, table=SPOOF_TABLE, port=port, mac=mac, tag=tag))


def delete_spoof_check(tag: str) -> None:
    _nft_delete_tagged("bridge", SPOOF_TABLE, "prerouting", tag)


# -- the drivers ------------------------------------------------------------------


@register
class MasqueradeDriver(Driver):
    kinds = (Masquerade,)

    def observe(self, observer: Observer, obj: Masquerade) -> Observed | None:
        """Rules with the attachment's tag; a teardown looks in both backends."""
        if obj.rules:
            rules = masquerade_rules(obj.backend, obj.tag)
        else:
            rules = masquerade_rules("nftables", obj.tag) + masquerade_rules("iptables", obj.tag)
        return Observed({RULES: sorted(rules)}) if rules else None

    def create(self, ctx: Applying, obj: Masquerade) -> None:
        add_masquerade(obj.backend, obj.tag, [MasqRule(*text.split(" ! ")) for text in obj.rules])
        ctx.push(f"masquerade {obj.tag}", lambda: delete_masquerade(obj.backend, obj.tag))

    def delete(self, ctx: Applying, obj: Masquerade) -> None:
        delete_masquerade(obj.backend, obj.tag)

    @sets(RULES)
    def _rules(self, ctx: Applying, obj: Masquerade, change: AttrChange) -> None:
        """The tag's rules replaced as a whole."""
        self.delete(ctx, obj)
        self.create(ctx, obj)


@register
class SpoofCheckDriver(Driver):
    kinds = (SpoofCheck,)

    def observe(self, observer: Observer, obj: SpoofCheck) -> Observed | None:
        rules = spoof_rules(obj.tag)
        return Observed({RULE: rules[0] if len(rules) == 1 else rules}) if rules else None

    def create(self, ctx: Applying, obj: SpoofCheck) -> None:
        add_spoof_check(obj.tag, obj.port, obj.mac)
        ctx.push(f"macspoofchk {obj.tag}", lambda: delete_spoof_check(obj.tag))

    def delete(self, ctx: Applying, obj: SpoofCheck) -> None:
        delete_spoof_check(obj.tag)

    @sets(RULE)
    def _rule(self, ctx: Applying, obj: SpoofCheck, change: AttrChange) -> None:
        self.delete(ctx, obj)
        self.create(ctx, obj)
