"""One set of conf rules for ADD and `loxi-plan validate` (intent.conf_rules, intent.ipam_config).

A gateway outside its subnet must not be a rule of validate only (ADD would
take the conf and give pods a route the kernel refuses). Here the real plugin,
run as a runtime runs it, refuses it with code 7 (INVALID_NETWORK_CONFIG, the code of
every other conf error, cni-protocol.md) and changes nothing, and validate
reports the same rule's words at the key. The unit half holds both front ends
to one rule table: a rule added there is seen by both.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from intent import conf_rules
from intent.config import load_netconf
from intent.env import CniRequest
from intent.errors import INVALID_NETWORK_CONFIG, CniError
from loxi.plan.validate import validate_text
from tests.conftest import make_conf

OUTSIDE = "10.9.9.1"


def _ipam_forms(data_dir: Any) -> list[tuple[str, dict[str, Any]]]:
    legacy = {"type": "host-local", "subnet": "10.244.1.0/24", "gateway": OUTSIDE, "dataDir": str(data_dir)}
    ranges = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24", "gateway": OUTSIDE}]],
        "dataDir": str(data_dir),
    }
    return [("ipam.gateway", legacy), ("ipam.ranges[0][0].gateway", ranges)]


@pytest.mark.parametrize("form", [0, 1], ids=["legacy", "ranges"])
def test_add_refuses_a_gateway_outside_the_subnet_and_changes_nothing(node, form: int) -> None:
    where, ipam = _ipam_forms(node.data_dir)[form]
    conf = make_conf(node.data_dir, ipam=ipam)
    pod = node.pod()
    before = set(node.ns.links())
    add = node.cni("ADD", conf, container_id="gw-outside", netns=pod.path)
    assert add.rc == 1, add
    assert add.json["code"] == INVALID_NETWORK_CONFIG == 7
    assert add.json["msg"] == f"{where}: gateway {OUTSIDE} is not in subnet 10.244.1.0/24"
    assert set(node.ns.links()) == before  # no bridge, no veth
    assert set(pod.links()) == {"lo"}
    assert node.store_files("loxilight_cni") == []
    # validate refuses it with the same rule's words, located at the key
    report = validate_text(json.dumps(conf, indent=2), "c.conf")
    assert not report.valid
    assert [p.message for p in report.problems] == [f"gateway {OUTSIDE} is not in subnet 10.244.1.0/24"]


# -- unit: one rule table ------------------------------------------------------------------------

REQUEST = CniRequest(command="ADD", container_id="c1", netns="/var/run/netns/p", ifname="eth0")


def _base(**keys: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "n", "type": "loxi-cni", "bridge": "br0", **keys}


BROKEN = [
    _base(bridge="bad%d"),
    _base(vlanID=100, vlan=200),
    _base(mtu=20),
    _base(hairpinMode=True, promiscMode=True),
    _base(uplink="bad%d", vlanID=100),
    _base(uplink="eth9"),
    _base(disableContainerInterface=True, ipam={"type": "host-local", "subnet": "10.244.1.0/24"}),
]


@pytest.mark.parametrize("doc", BROKEN, ids=lambda d: next(k for k in d if k not in ("cniVersion", "name", "type")))
def test_add_and_validate_report_the_same_rule(doc: dict[str, Any]) -> None:
    violation = next(conf_rules.violations(doc))
    with pytest.raises(CniError) as err:
        load_netconf(json.dumps(doc).encode(), REQUEST)
    assert (err.value.code, err.value.msg, err.value.details) == (violation.code, violation.msg, violation.details)
    report = validate_text(json.dumps(doc), "c.conf")
    assert violation.report in [p.message for p in report.problems]


def test_a_rule_added_to_the_table_reaches_add_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_br9(doc: Mapping[str, Any]) -> Iterator[conf_rules.Violation]:
        if doc.get("bridge") == "br9":
            yield conf_rules.Violation(("bridge",), "br9 is reserved here", "invalid network config: bridge: br9")

    monkeypatch.setattr(conf_rules, "RULES", (*conf_rules.RULES, no_br9))
    doc = _base(bridge="br9")
    with pytest.raises(CniError, match="bridge: br9"):
        load_netconf(json.dumps(doc).encode(), REQUEST)
    assert "br9 is reserved here" in [p.message for p in validate_text(json.dumps(doc), "c.conf").problems]


def test_the_gateway_rule_is_one_function_for_both(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADD's host-local config and validate's range check both reach the one check_gateway of the intent layer."""
    from intent import ipam_config

    rule_module = sys.modules[ipam_config.parse_range.__module__]  # where parse_range looks check_gateway up
    calls: list[str] = []
    real = rule_module.check_gateway

    def spy(gateway, net, path):
        calls.append(path)
        return real(gateway, net, path)

    monkeypatch.setattr(rule_module, "check_gateway", spy)
    monkeypatch.setattr(ipam_config, "_loaded", {})
    doc = _base(ipam={"type": "host-local", "subnet": "10.244.1.0/24", "gateway": OUTSIDE})
    with pytest.raises(CniError, match="is not in subnet"):
        ipam_config.load_host_local(doc, {})
    assert calls == ["ipam.gateway"]
    calls.clear()
    validate_text(json.dumps(doc), "c.conf")
    assert calls and set(calls) == {"ipam.gateway"}
