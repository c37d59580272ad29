"""`loxi-plan render`: templates, variables, validation before writing, and the atomic write."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from loxi.plan import conftemplate as ct
from loxi.plan.cli import run
from loxi.plan.conf import pick_version
from loxi.plan.errors import PlanError


def test_the_shipped_seed_template_is_listed_and_found():
    infos = {info.name: info for info in ct.list_templates()}
    assert "loxilight" in infos
    seed = infos["loxilight"]
    assert seed.path == ct.SHIPPED_DIR / "loxilight.conflist.j2" and seed.path.is_file()
    assert "node_pod_cidr" in seed.variables
    assert ct.find_template("loxilight") == seed.path
    assert ct.find_template("loxilight.conflist.j2") == seed.path
    assert ct.find_template(str(seed.path)) == seed.path
    with pytest.raises(PlanError, match=r"template 'nope' not found .*loxilight"):
        ct.find_template("nope")


def test_the_seed_template_renders_the_seed_network_for_one_node():
    text = ct.render(ct.find_template("loxilight"), {"node_pod_cidr": "10.244.7.0/24"})
    doc = json.loads(text)
    assert doc["name"] == "loxilight_cni" and doc["cniVersion"] == "1.0.0"
    # readiness: libcni 1.2+ (containerd 2.x, CRI-O) picks 1.1.0 from cniVersions and so sends STATUS;
    # an older libcni (containerd 1.6) reads only cniVersion and gets results it can parse
    assert doc["cniVersions"] == ["1.0.0", "1.1.0"]
    assert pick_version(doc) == "1.1.0"
    plugin = doc["plugins"][0]
    assert plugin["type"] == "loxi-cni" and plugin["bridge"] == "hsvlan100" and plugin["vlanID"] == 100
    assert plugin["isGateway"] is True and plugin["mtu"] == 1500
    assert plugin["ipam"] == {"type": "host-local", "subnet": "10.244.7.0/24", "routes": [{"dst": "10.96.0.0/12"}]}
    assert ct.check_rendered(text, "x").problems == ()


def test_variables_keep_json_scalar_types():
    assert ct.parse_var("mtu=9000") == ("mtu", 9000)
    assert ct.parse_var("bridge=br-pods") == ("bridge", "br-pods")
    assert ct.parse_var("flag=true") == ("flag", True)
    assert ct.parse_var("cidr=10.0.0.0/8") == ("cidr", "10.0.0.0/8")
    with pytest.raises(PlanError, match="expected KEY=VALUE"):
        ct.parse_var("no-equals")
    with pytest.raises(PlanError, match="has host bits set"):
        ct.pod_cidr("10.244.1.5/24")


def test_undefined_variables_are_errors_not_empty_strings():
    with pytest.raises(PlanError, match="'node_pod_cidr' is undefined"):
        ct.render(ct.find_template("loxilight"), {})


def test_write_atomic_replaces_the_file_whole_with_mode_0644(tmp_path):
    target = tmp_path / "10-loxilight.conflist"
    target.write_text("old")
    os.chmod(target, 0o600)
    inode = target.stat().st_ino
    ct.write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.stat().st_ino != inode, "renamed into place, not rewritten in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10-loxilight.conflist"], "no temp file left"


def test_write_atomic_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.conflist"

    def boom(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        ct.write_atomic(str(target), "text")
    assert list(tmp_path.iterdir()) == []


def test_cli_render_writes_a_valid_conf(tmp_path):
    target = tmp_path / "10-loxilight.conflist"
    args = ["render", "loxilight", "--node-pod-cidr", "10.244.3.0/24", "--var", "mtu=9000", "-o", str(target)]
    assert run(args, io.StringIO()) == 0
    doc = json.loads(target.read_text())
    assert doc["plugins"][0]["ipam"]["subnet"] == "10.244.3.0/24" and doc["plugins"][0]["mtu"] == 9000
    out = io.StringIO()
    assert run(["validate", str(target)], out) == 0, out.getvalue()


def test_cli_render_of_an_invalid_conf_writes_nothing(tmp_path, capsys):
    target = tmp_path / "10-loxilight.conflist"
    target.write_text("previous")
    args = ["render", "loxilight", "--node-pod-cidr", "10.244.3.0/24", "--var", "mtu=12", "-o", str(target)]
    assert run(args, io.StringIO()) == 1
    err = capsys.readouterr().err
    assert f"{target}:11:14: plugins[0].mtu: mtu 12 is below the minimum of 68" in err
    assert err.rstrip().splitlines()[-1] == "loxi-plan: error: the rendered conf is invalid (1 error): nothing written"
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["10-loxilight.conflist"]
    fresh = tmp_path / "fresh.conflist"
    assert run(["render", "loxilight", "--var", "node_pod_cidr=", "-o", str(fresh)], io.StringIO()) == 1
    assert not fresh.exists()


def test_cli_render_to_stdout_and_list(tmp_path):
    template = tmp_path / "mine.conf.j2"
    template.write_text('{"cniVersion": "1.0.0", "name": {{ net | tojson }}, "type": "loxi-cni", "bridge": "br0"}\n')
    out = io.StringIO()
    assert run(["render", str(template), "--var", "net=pods"], out) == 0
    assert json.loads(out.getvalue())["name"] == "pods"
    out = io.StringIO()
    assert run(["render", "--list"], out) == 0
    assert f"path: {ct.SHIPPED_DIR / 'loxilight.conflist.j2'}" in out.getvalue()
