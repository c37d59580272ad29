"""Environment and CNI_ARGS parsing, without a kernel: the Go skel's and LoadArgs' rules and messages."""

from __future__ import annotations

import pytest

from intent.env import CniRequest, go_quote, parse_cni_args, read_request, validate_container_id, validate_ifname
from intent.errors import CniError

FULL = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/p",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}


def env(**changes):
    out = dict(FULL)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def code_and_msg(call):
    with pytest.raises(CniError) as info:
        call()
    return info.value.code, info.value.msg


def test_full_add_request():
    request = read_request(env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web;X=1"))
    assert isinstance(request, CniRequest)
    assert (request.command, request.container_id, request.netns, request.ifname) == (
        "ADD",
        "abc",
        "/var/run/netns/p",
        "eth0",
    )
    assert request.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert request.args["K8S_POD_NAME"] == "web" and request.args["IgnoreUnknown"] == "1"
    assert request.environ["CNI_PATH"] == FULL["CNI_PATH"]


@pytest.mark.parametrize(
    ("command", "drop", "missing"),
    [
        ("ADD", ["CNI_CONTAINERID", "CNI_NETNS"], "CNI_CONTAINERID,CNI_NETNS"),
        (
            "ADD",
            ["CNI_PATH", "CNI_IFNAME", "CNI_NETNS", "CNI_CONTAINERID"],
            "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH",
        ),
        ("CHECK", ["CNI_IFNAME"], "CNI_IFNAME"),
        ("DEL", ["CNI_CONTAINERID", "CNI_PATH"], "CNI_CONTAINERID,CNI_PATH"),
        ("GC", ["CNI_PATH"], "CNI_PATH"),
        ("STATUS", ["CNI_PATH"], "CNI_PATH"),
    ],
)
@pytest.mark.parametrize("empty", [False, True])
def test_missing_variables_in_skel_order(command, drop, missing, empty):
    changes = {var: ("" if empty else None) for var in drop}
    assert code_and_msg(lambda: read_request(env(CNI_COMMAND=command, **changes))) == (
        4,
        f"required env variables [{missing}] missing",
    )


@pytest.mark.parametrize(
    ("command", "drop"),
    [
        ("ADD", ["CNI_ARGS"]),
        ("DEL", ["CNI_NETNS", "CNI_ARGS"]),
        ("GC", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"]),
        ("STATUS", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"]),
        ("VERSION", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]),
    ],
)
def test_optional_variables(command, drop):
    read_request(env(CNI_COMMAND=command, **dict.fromkeys(drop)))


def test_gc_and_status_do_not_validate_container_id_or_ifname():
    read_request(env(CNI_COMMAND="GC", CNI_CONTAINERID="../x", CNI_IFNAME="a/b"))


def test_unknown_command():
    assert code_and_msg(lambda: read_request(env(CNI_COMMAND="add"))) == (4, "unknown CNI_COMMAND: add")


@pytest.mark.parametrize("cid", ["a", "0", "A-b_c.d", "x" * 1024, "k8s_POD_default-x_0123"])
def test_good_container_ids(cid):
    validate_container_id(cid)


@pytest.mark.parametrize(
    "cid", ["../../etc", "abc\n", "\nabc", "-abc", ".abc", "_abc", "a/b", "a b", "a;b", "a\x00b", "ä", "x" * 1025]
)
def test_bad_container_ids(cid):
    assert code_and_msg(lambda: validate_container_id(cid)) == (4, "invalid characters in containerID")
    assert code_and_msg(lambda: read_request(env(CNI_CONTAINERID=cid))) == (4, "invalid characters in containerID")


@pytest.mark.parametrize("name", ["eth0", "a", "a" * 15, "net1.100", "e-t_h"])
def test_good_ifnames(name):
    validate_ifname(name)


@pytest.mark.parametrize("name", ["", "a" * 16, "é" * 8, ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "eth\n0"])
def test_bad_ifnames(name):
    assert code_and_msg(lambda: validate_ifname(name))[0] == 4


@pytest.mark.parametrize("name", ["a" * 16, ".", "..", "a/b", "a:b", "a b"])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_bad_ifname_in_request(command, name):
    assert code_and_msg(lambda: read_request(env(CNI_COMMAND=command, CNI_IFNAME=name)))[0] == 4


def test_netns_with_nul_is_refused():
    assert code_and_msg(lambda: read_request(env(CNI_NETNS="/x\x00y")))[0] == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("IP=10.0.0.5", {"IP": "10.0.0.5"}),
        ("IgnoreUnknown=1;FOO=bar", {"IgnoreUnknown": "1", "FOO": "bar"}),
        ("IgnoreUnknown=TRUE;FOO=bar", {"IgnoreUnknown": "TRUE", "FOO": "bar"}),
        ("FOO=bar;IgnoreUnknown=true", {"IgnoreUnknown": "true", "FOO": "bar"}),  # position does not matter
        ("IP=10.0.0.5;IP=10.0.0.6", {"IP": "10.0.0.6"}),  # the last one wins, as in Go
        ("IP=", {"IP": ""}),
        (
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=n;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u;MAC=m",
            {
                "IgnoreUnknown": "1",
                "K8S_POD_NAMESPACE": "ns",
                "K8S_POD_NAME": "n",
                "K8S_POD_INFRA_CONTAINER_ID": "c",
                "K8S_POD_UID": "u",
                "MAC": "m",
            },
        ),
    ],
)
def test_cni_args_parsed(text, expected):
    assert parse_cni_args(text) == expected


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("FOO=bar;IgnoreUnknown=0", 'ARGS: unknown args ["FOO=bar"]'),
        ("B=2;A=1", 'ARGS: unknown args ["B=2" "A=1"]'),  # in the order given, not sorted
        ("ip=10.0.0.5", 'ARGS: unknown args ["ip=10.0.0.5"]'),  # keys are case-sensitive
        ('Q=a"b', 'ARGS: unknown args ["Q=a\\"b"]'),
        ("FOO", 'ARGS: invalid pair "FOO"'),
        ("IP=1;", 'ARGS: invalid pair ""'),
        (";IP=1", 'ARGS: invalid pair ""'),
        ("IP=a=b", 'ARGS: invalid pair "IP=a=b"'),
        (
            "IgnoreUnknown=yes;FOO=1",
            'ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes',
        ),
        (
            "IgnoreUnknown=Maybe",
            'ARGS: error parsing value of pair "IgnoreUnknown=Maybe": boolean unmarshal error: invalid input maybe',
        ),
        # the K8S_POD_* keys are known to neither reference struct (bridge: MAC; host-local: IP)
        ("K8S_POD_NAME=web", 'ARGS: unknown args ["K8S_POD_NAME=web"]'),
        ("IP=10.0.0.5;K8S_POD_UID=u", 'ARGS: unknown args ["K8S_POD_UID=u"]'),
    ],
)
def test_cni_args_errors(text, msg):
    """LoadArgs' plain Go errors, which skel prints as 999 (the reference bridge's code and text)."""
    assert code_and_msg(lambda: parse_cni_args(text)) == (999, msg)
    assert code_and_msg(lambda: read_request(env(CNI_ARGS=text))) == (999, msg)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("abc", '"abc"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb\t", '"a\\nb\\t"'),
        ("\x01", '"\\x01"'),
        ("é", '"é"'),
    ],
)
def test_go_quote(text, quoted):
    assert go_quote(text) == quoted
