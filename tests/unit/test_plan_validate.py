"""`loxi-plan validate` on pure data: positions, every problem, did-you-mean, strict mode, conflists, files."""

from __future__ import annotations

import io
import json
import textwrap

import pytest

from loxi.plan.cli import run
from loxi.plan.locator import Locator, Position, format_path, parse_path
from loxi.plan.validate import suggest, validate_paths, validate_text

# The conf exactly as the blog post prints it (with the braces its page lost):
# `subnet` and the route's `dst` were left empty for the reader to fill in. The blog's caption line
# (`// /etc/cni/net.d/01-loxilight.conf`) names the file; it is not part of it.
SEED_AS_PRINTED = """\
{
        "cniVersion": "0.2.0",
        "name": "loxilight_cni",
        "type": "loxi-cni",
        "bridge": "hsvlan100",
        "isGateway": true,
        "isDefaultGateway" : false,
        "mtu" : 1500,
        "hairpinMode" : false,
        "promiscMode" : false,
        "vlanID": 100,
        "ipam": {
                "type": "host-local",
                "subnet": "",
                "routes" : [
                        {"dst": ""}
                ]
        }
}
"""


def lines(text: str, source: str = "c.conf", strict: bool = False) -> list[str]:
    return [p.format() for p in validate_text(text, source, strict).problems]


def conf(**fields) -> str:
    doc = {"cniVersion": "1.0.0", "name": "net", "type": "loxi-cni", "bridge": "br0"}
    doc.update(fields)
    return json.dumps(doc, indent=2)


# -- locator ----------------------------------------------------------------------


def test_locator_finds_values_keys_and_duplicates():
    text = '{\n  "a": 1,\n  "b": {"c": [1, {"d": "x\\"y"}], "e": null},\n  "a": -2.5e3\n}'
    loc = Locator(text)
    assert loc.value(("b", "c", 1, "d")) == Position(3, 24)
    assert loc.key(("b", "e")) == Position(3, 34)
    assert loc.value(("a",)) == Position(4, 8), "the last duplicate wins, as in json.loads"
    assert loc.duplicates == [("a",)]
    assert loc.value(("b", "missing", 3)) == Position(3, 8), "a path not in the text falls back to its parent"
    assert loc.value(()) == Position(1, 1)


def test_locator_survives_text_that_is_not_json():
    assert Locator('{"a": [1, ').value(("a", 0)) == Position(1, 8)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), "$"),
        (("ipam", "ranges", 0, 1, "subnet"), "ipam.ranges[0][1].subnet"),
        (("cni.dev/x", "a"), '["cni.dev/x"].a'),
    ],
)
def test_paths_round_trip(path, text):
    assert format_path(path) == text
    assert parse_path(text) == path


# -- the seed --------------------------------------------------------------------


def test_the_seed_conf_as_printed_is_invalid_with_clear_messages():
    report = validate_text(SEED_AS_PRINTED, "01-loxilight.conf")
    assert not report.valid
    assert [p.format() for p in report.problems] == [
        "01-loxilight.conf:14:27: ipam.subnet: subnet is empty: set it to the pod CIDR Kubernetes assigned to this "
        'node (e.g. "10.244.1.0/24"); `loxi-plan render` fills it in per node',
        '01-loxilight.conf:16:33: ipam.routes[0].dst: route destination is empty: give a CIDR such as "10.96.0.0/12", '
        'or "0.0.0.0/0" for a default route',
    ]


def test_the_seed_conf_with_its_blanks_filled_is_valid():
    text = SEED_AS_PRINTED.replace('"subnet": ""', '"subnet": "10.244.1.0/24"').replace(
        '"dst": ""', '"dst": "10.96.0.0/12"'
    )
    assert validate_text(text, "x").problems == ()


# -- every problem, each where it is -----------------------------------------------


def test_every_problem_is_reported_with_line_and_column():
    text = textwrap.dedent(
        """\
        {
          "cniVersion": "1.0.0",
          "name": "bad name!",
          "type": "loxi-cni",
          "bridge": "br0",
          "hairpinMode": true,
          "promiscMode": true,
          "vlanID": 100,
          "vlan": 200,
          "mtu": 20,
          "ipam": {
            "type": "host-local",
            "subnet": "10.244.1.5/24",
            "ranges": [
              [{"subnet": "10.1.0.0/16", "rangeStart": "10.2.0.1", "gateway": "10.3.0.1"}],
              [{"subnet": "10.1.0.0/24"}],
              [{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.200", "rangeEnd": "10.1.0.100"}]
            ],
            "routes": [{"dst": "10.96.0.0/12", "gw": "nope"}]
          }
        }
        """
    )
    assert lines(text) == [
        "c.conf:3:11: name: invalid characters found in network name",
        "c.conf:7:18: promiscMode: promiscMode cannot be combined with hairpinMode (the plugin refuses the pair)",
        "c.conf:9:11: vlan: vlanID (100) and vlan (200) disagree: set only one of them",
        "c.conf:10:10: mtu: mtu 20 is below the minimum of 68 (0 keeps the kernel's default)",
        "c.conf:13:15: ipam.subnet: Network 10.244.1.5/24 has host bits set. For a subnet mask of length 24 the "
        "network address is 10.244.1.0",
        "c.conf:15:48: ipam.ranges[0][0].rangeStart: RangeStart 10.2.0.1 not in network 10.1.0.0/16",
        "c.conf:15:71: ipam.ranges[0][0].gateway: gateway 10.3.0.1 is not in subnet 10.1.0.0/16",
        "c.conf:17:48: ipam.ranges[2][0].rangeStart: RangeStart 10.1.0.200 is after RangeEnd 10.1.0.100",
        "c.conf:19:46: ipam.routes[0].gw: invalid IP address: nope",
    ]


def test_overlapping_range_sets_and_mixed_families():
    ipam = {
        "type": "host-local",
        "ranges": [
            [{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}],
            [{"subnet": "10.1.0.0/25"}],
            [{"subnet": "10.2.0.0/24"}, {"subnet": "10.2.0.0/25"}],
        ],
    }
    messages = [line.split(": ", 2)[1:] for line in lines(conf(ipam=ipam))]
    assert messages == [
        ["ipam.ranges[0][1]", "mixed address families in one range set"],
        ["ipam.ranges[1][0]", "range set 1 overlaps with range set 0 (10.1.0.1-10.1.0.126 and 10.1.0.1-10.1.0.254)"],
        ["ipam.ranges[2][1]", "range 10.2.0.1-10.2.0.126 overlaps 10.2.0.1-10.2.0.254 at ipam.ranges[2][0]"],
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"mtu": "big"}, "mtu: 'big' is not of type 'integer'"),
        ({"vlanID": 4095}, "vlanID: 4095 is greater than the maximum of 4094"),
        ({"vlan": -1}, "vlan: -1 is less than the minimum of 0"),
        ({"mtu": 70000}, "mtu: 70000 is greater than the maximum of 65535"),
        ({"bridge": "a/b"}, "bridge: interface name contains / or : or whitespace characters: 'a/b' cannot be"),
        (
            {"disableContainerInterface": True, "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}},
            "disableContainerInterface: disableContainerInterface cannot be used with ipam",
        ),
        ({"mac": "zz:00:00:00:00:00"}, "mac: invalid MAC address 'zz:00:00:00:00:00'"),
        ({"mac": "01:00:5e:00:00:01"}, "mac: 01:00:5e:00:00:01 is a multicast address"),
        ({"cniVersion": "9.9.9"}, "cniVersion: unsupported cniVersion '9.9.9'"),
        ({"ipam": {"type": "host-local"}}, "ipam: no IP ranges"),
        ({"ipam": {"type": "host-local", "subnet": "10.0.0.0/31"}}, "ipam.subnet: Network 10.0.0.0/31 too small"),
        (
            {"ipam": {"type": "host-local", "subnet": "10.0.0.0/24", "dataDir": "../x"}},
            "ipam.dataDir: must be an absolute path",
        ),
        (
            {"ipam": {"type": "host-local", "subnet": "10.0.0.0/24", "routes": [{"gw": "10.0.0.1"}]}},
            "ipam.routes[0]: 'dst' is a required property",
        ),
    ],
)
def test_one_rule_each(fields, expected):
    report = validate_text(conf(**fields), "c.conf")
    assert not report.valid
    assert any(expected in p.format() for p in report.problems), [p.format() for p in report.problems]


def test_a_broken_value_is_reported_once():
    problems = lines(conf(bridge="x" * 20))
    assert len(problems) == 1 and "is too long" in problems[0]


def test_unknown_keys_warn_with_did_you_mean_and_strict_makes_them_errors():
    text = conf(hairpinmode=True, isGatway=True, somethingElse=1, runtimeConfig={"portMappings": []})
    report = validate_text(text, "c.conf")
    assert report.valid and report.warnings == 3
    assert [p.format() for p in report.problems] == [
        "c.conf:6:3: hairpinmode: warning: unknown key 'hairpinmode': did you mean 'hairpinMode'?",
        "c.conf:7:3: isGatway: warning: unknown key 'isGatway': did you mean 'isGateway'?",
        "c.conf:8:3: somethingElse: warning: unknown key 'somethingElse' (ignored by loxi-cni)",
    ]
    strict = validate_text(text, "c.conf", strict=True)
    assert not strict.valid and strict.errors == 3 and "warning" not in strict.problems[0].format()


def test_agent_socket_is_a_known_key_and_must_be_an_absolute_socket_path():
    assert lines(conf(agentSocket="/run/loxi/other.sock"), strict=True) == []
    assert lines(conf(agentSocket="agent.sock")) == ["c.conf:6:18: agentSocket: 'agent.sock' does not match '^/'"]
    [too_long] = lines(conf(agentSocket="/" + "a" * 107))
    assert too_long.startswith("c.conf:6:18: agentSocket: ") and "is too long" in too_long


def test_unknown_keys_are_looked_for_inside_nested_objects_only_where_loxi_owns_them():
    ipam = {"type": "host-local", "subnet": "10.0.0.0/24", "rangestart": "10.0.0.5", "dns": {"nameservers": []}}
    assert lines(conf(ipam=ipam)) == [
        "c.conf:9:5: ipam.rangestart: warning: unknown key 'rangestart': did you mean 'rangeStart'?"
    ]
    assert lines(conf(ipam={"type": "static", "addresses": []})) == [], "a delegated IPAM's keys are its own"
    assert lines(conf(args={"cni": {"labels": []}}, capabilities={"portMappings": True})) == []
    assert lines(conf(**{"cni.dev/debug": True})) == []


def test_suggest():
    known = ["hairpinMode", "promiscMode", "isGateway"]
    assert suggest("HAIRPINMODE", known) == "hairpinMode"
    assert suggest("promiscmod", known) == "promiscMode"
    assert suggest("bandwidth", known) is None


def test_conflist_paths_point_into_the_list_and_name_and_version_come_from_it():
    text = textwrap.dedent(
        """\
        {
          "cniVersion": "1.0.0",
          "name": "",
          "plugns": 1,
          "plugins": [
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loxi-cni", "mtu": 10, "ipam": {"type": "host-local", "subnet": ""}}
          ]
        }
        """
    )
    assert lines(text, "l.conflist") == [
        "l.conflist:3:11: name: missing network name",
        "l.conflist:4:3: plugns: warning: unknown conflist key 'plugns': did you mean 'plugins'?",
        "l.conflist:7:33: plugins[1].mtu: mtu 10 is below the minimum of 68 (0 keeps the kernel's default)",
        "l.conflist:7:78: plugins[1].ipam.subnet: "
        + lines(conf(ipam={"type": "host-local", "subnet": ""}))[0].split(": ", 2)[2],
    ]


def test_conflist_structure():
    assert lines('{"cniVersion": "1.0.0", "name": "n", "plugins": []}') == [
        "c.conf:1:49: plugins: plugins must be a non-empty array of plugin objects"
    ]
    assert lines('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}, {}]}') == [
        "c.conf:1:49: plugins: warning: no plugin of type 'loxi-cni': nothing of loxi-cni to check",
        "c.conf:1:70: plugins[1].type: every plugin needs a type",
    ]


def test_not_json_and_not_ours():
    assert lines('{"name": "n",\n  "type": }') == ["c.conf:2:11: $: not valid JSON: Expecting value"]
    assert lines("[1]") == ["c.conf:1:1: $: a CNI conf must be a JSON object"]
    assert lines('{"type": "bridge"}') == ["c.conf:1:10: type: warning: type is 'bridge', not 'loxi-cni': not checked"]


def test_the_plugins_own_loader_is_the_last_word():
    """A rule this module does not know yet (here: the cniVersion 0.2.0 limit of one address per family)."""
    ipam = {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}
    assert lines(conf(cniVersion="0.2.0", ipam=ipam)) == [
        "c.conf:8:15: ipam.ranges: CNI version 0.2.0 does not support more than 1 address per family "
        "(the plugin refuses this conf: CNI error 7)"
    ]
    trunk = lines(conf(vlanTrunk=[{"minID": 30, "maxID": 3}]))
    assert len(trunk) == 1 and trunk[0].startswith("c.conf:7:5: vlanTrunk[0]: minID 30 is greater than maxID 3"), trunk


# -- files, directories and the CLI ----------------------------------------------


def test_directories_files_and_unreadable_paths(tmp_path):
    (tmp_path / "10-good.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "loxi-cni", "bridge": "br0"}]})
    )
    (tmp_path / "20-seed.conf").write_text(SEED_AS_PRINTED)
    (tmp_path / "README.md").write_text("not a conf")
    reports = validate_paths([str(tmp_path), str(tmp_path / "missing.conf")])
    assert [(r.source.rsplit("/", 1)[1], r.valid) for r in reports] == [
        ("10-good.conflist", True),
        ("20-seed.conf", False),
        ("missing.conf", False),
    ]
    assert reports[2].problems[0].format() == f"{tmp_path}/missing.conf: cannot read: No such file or directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not validate_paths([str(empty)])[0].valid


def test_cli_text_json_and_exit_codes(tmp_path, capsys):
    seed = tmp_path / "seed.conf"
    seed.write_text(SEED_AS_PRINTED)
    out = io.StringIO()
    assert run(["validate", str(seed)], out) == 1
    text = out.getvalue().splitlines()
    assert text[0].startswith(f"{seed}:14:27: ipam.subnet: subnet is empty")
    assert text[-1] == "1 file invalid: 2 errors, 0 warnings"
    out = io.StringIO()
    assert run(["validate", "--format", "json", str(seed)], out) == 1
    doc = json.loads(out.getvalue())
    assert doc["valid"] is False and doc["errors"] == 2
    assert doc["files"][0]["problems"][0] == {
        "severity": "error",
        "line": 14,
        "column": 27,
        "path": "ipam.subnet",
        "message": doc["files"][0]["problems"][0]["message"],
    }
    good = tmp_path / "good.conf"
    good.write_text(conf(hairpinmode=True))
    assert run(["validate", str(good)], io.StringIO()) == 0
    assert run(["validate", "--strict", str(good)], io.StringIO()) == 1


def test_cli_reads_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SEED_AS_PRINTED))
    out = io.StringIO()
    assert run(["validate", "-"], out) == 1
    assert out.getvalue().startswith("<stdin>:14:27: ipam.subnet: ")
