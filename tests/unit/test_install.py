"""`install` / `uninstall` on temp dirs, the log module, and the deploy/ manifests (offline)."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
from pathlib import Path

import pytest

import loxi.install as inst
from loxi.plugin import cnilog

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_launcher_is_bound_to_this_interpreter_and_install() -> None:
    text = inst.render_launcher(paths=["/a/site-packages", "/repo"])
    lines = text.splitlines()
    assert lines[0] == f"#!{os.sys.executable} -IS"
    assert "sys.path.extend(['/a/site-packages', '/repo'])" in text
    assert text.rstrip().endswith("main()")
    compile(text, "launcher", "exec")


def test_import_paths_cover_every_package() -> None:
    import importlib.util

    paths = inst.import_paths()
    assert all(os.path.isabs(p) for p in paths) and len(paths) == len(set(paths))
    for name in (*inst.PROJECT_PACKAGES, *inst.DEPENDENCY_PACKAGES, "markupsafe", "attrs", "referencing"):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin or next(iter(spec.submodule_search_locations))).resolve()
        assert any(str(origin).startswith(p + os.sep) for p in paths), name


@pytest.mark.parametrize("python", ["relative/python", "/with space/python", "/" + "x" * 300])
def test_unusable_interpreter_paths_are_refused(python: str) -> None:
    with pytest.raises(inst.InstallError):
        inst.render_launcher(python=python, paths=[])


def test_install_is_idempotent_and_uninstall_removes_only_ours(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    (bin_dir / "bridge").write_text("another plugin")
    first = inst.install(str(bin_dir), str(conf_dir), "loxilight", "10.244.1.0/24", verify=False, shim="")
    assert [c.action for c in first] == ["created", "created"]
    launcher, conf = bin_dir / "loxi-cni", conf_dir / inst.DEFAULT_CONF_NAME
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755 and stat.S_IMODE(conf.stat().st_mode) == 0o644
    doc = json.loads(conf.read_text())
    assert doc["plugins"][0]["ipam"]["subnet"] == "10.244.1.0/24"
    mtimes = (launcher.stat().st_mtime_ns, conf.stat().st_mtime_ns)
    second = inst.install(str(bin_dir), str(conf_dir), "loxilight", "10.244.1.0/24", verify=False, shim="")
    assert [c.action for c in second] == ["unchanged", "unchanged"]
    assert (launcher.stat().st_mtime_ns, conf.stat().st_mtime_ns) == mtimes
    assert not [p for p in bin_dir.iterdir() if p.name.endswith(".tmp")]
    # a new CIDR rewrites the conflist only
    third = inst.install(str(bin_dir), str(conf_dir), "loxilight", "10.244.2.0/24", verify=False, shim="")
    assert [c.action for c in third] == ["unchanged", "updated"]
    # removed files come back
    conf.unlink()
    assert [
        c.action for c in inst.install(str(bin_dir), str(conf_dir), "loxilight", "10.244.2.0/24", verify=False, shim="")
    ][1] == "created"
    removed = inst.uninstall(str(bin_dir))
    assert sorted(c.action for c in removed) == ["removed", "removed"]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["bridge"]
    assert list(conf_dir.iterdir()) == []
    assert inst.uninstall(str(bin_dir)) == []


def test_uninstall_keeps_a_file_changed_since_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    inst.install(str(bin_dir), str(tmp_path / "net.d"), "loxilight", "10.244.1.0/24", verify=False)
    (tmp_path / "net.d" / inst.DEFAULT_CONF_NAME).write_text('{"edited": true}')
    out, err = io.StringIO(), io.StringIO()
    assert inst.main_uninstall(argparse.Namespace(cni_bin_dir=str(bin_dir)), out, err) == 0
    assert "not removed" in err.getvalue()
    assert (tmp_path / "net.d" / inst.DEFAULT_CONF_NAME).exists()
    assert not (bin_dir / "loxi-cni").exists()
    assert list(inst.read_manifest(str(bin_dir))) == [str(tmp_path / "net.d" / inst.DEFAULT_CONF_NAME)]


def test_replacing_a_foreign_file_is_reported(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "loxi-cni").write_text("#!/bin/sh\n")
    changes = inst.install(str(bin_dir), str(tmp_path / "net.d"), verify=False, shim="")
    assert changes[0].action.startswith("replaced")


@pytest.mark.parametrize(
    ("template", "cidr", "message"),
    [
        ("loxilight", "10.244.1.1/24", "--node-pod-cidr"),
        ("no-such-template", "10.244.1.0/24", "not found"),
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, template: str, cidr: str, message: str) -> None:
    with pytest.raises(inst.InstallError, match=message):
        inst.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), template, cidr, verify=False)
    assert not (tmp_path / "bin").exists()


def test_missing_template_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(inst.InstallError, match="node_pod_cidr"):
        inst.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), "loxilight", None, verify=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"name": "n", "type": "loxi-cni"}', "not a conflist"),
        ('{"name": "n", "plugins": [{"type": "bridge"}]}', "no plugin of type"),
        ('{"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "loxi-cni", "mtu": "x"}]}', "mtu"),
    ],
)
def test_conflist_validation(text: str, message: str) -> None:
    with pytest.raises(inst.InstallError, match=message):
        inst.validate_conflist(text)


def test_shipped_template_renders_a_valid_conflist() -> None:
    doc = json.loads(inst.render_conflist("loxilight", "10.244.3.0/24", ["vlan_id=0"]))
    assert doc["plugins"][0]["vlanID"] == 0


def test_cli_register_adds_both_subcommands_with_examples(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="loxi-plan")
    inst.register(parser.add_subparsers(dest="subcommand", required=True))
    args = parser.parse_args(["install", "--cni-bin-dir", str(tmp_path), "--no-verify"])
    assert args.handler is inst.main_install
    assert args.cni_conf_dir == "/etc/cni/net.d" and args.conf_name == "10-loxi.conflist"
    assert parser.parse_args(["uninstall"]).handler is inst.main_uninstall
    with pytest.raises(SystemExit):
        parser.parse_args(["install", "--help"])
    assert "examples:" in capsys.readouterr().out


# ---------------------------------------------------------------------------- logs


def _call(environ: dict, stdin: bytes, log_env: dict | None = None) -> tuple[int, str]:
    from loxi.plugin import cni

    out, err = io.StringIO(), io.StringIO()
    rc = cni.run({**environ, **(log_env or {})}, io.BytesIO(stdin), out, err)  # run is @logged
    return rc, out.getvalue()


def test_log_line_for_a_failed_command_from_the_conf(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "loxi.log"
    conf = {"cniVersion": "1.0.0", "name": "n1", "type": "loxi-cni", "logFile": str(log), "mtu": "bad"}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/"}
    rc, out = _call(env, json.dumps(conf).encode())
    assert rc == 1 and json.loads(out)["code"] == 7  # stdout untouched: the one error document
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert line["command"] == "ADD" and line["containerID"] == "c1" and line["network"] == "n1"
    assert line["rc"] == 1 and line["code"] == 7 and line["level"] == "error" and line["durationMs"] >= 0


def test_log_env_levels_and_version(tmp_path: Path) -> None:
    log = tmp_path / "loxi.log"
    rc, out = _call({"CNI_COMMAND": "VERSION"}, b"{}", {"LOXI_LOG_FILE": str(log)})
    assert rc == 0 and json.loads(out)["supportedVersions"]
    assert not log.exists()  # VERSION only at debug
    _call({"CNI_COMMAND": "VERSION"}, b"{}", {"LOXI_LOG_FILE": str(log), "LOXI_LOG_LEVEL": "debug"})
    assert json.loads(log.read_text())["command"] == "VERSION"


def test_log_never_fails_the_command(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    conf = {"cniVersion": "1.0.0", "name": "n1", "type": "loxi-cni", "logFile": str(blocker / "x.log")}
    rc, out = _call({"CNI_COMMAND": "VERSION"}, json.dumps(conf).encode(), {"LOXI_LOG_LEVEL": "debug"})
    assert rc == 0 and json.loads(out)["cniVersion"]


def test_log_line_carries_the_plan_summary() -> None:
    class Plan:
        steps = ()

        def summary(self) -> str:
            return "3 to create, 0 to modify, 0 to delete"

    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c"}
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24", "interface": 2}]}
    line, level = cnilog.build_line(env, b'{"name": "n"}', json.dumps(result), 0, 0.0123, {"plan": Plan()})
    assert line["plan"].startswith("3 to create") and line["ips"] == ["10.1.0.2/24"] and line["durationMs"] == 12.3
    assert level == cnilog.LEVELS["info"]


# ---------------------------------------------------------------------------- deploy/


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate (test extras)")
    import yaml

    docs = [d for d in yaml.safe_load_all((DEPLOY / "loxi-cni.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]
    version = kv.latest_version() if hasattr(kv, "latest_version") else "1.29.0"
    for doc in docs:
        kv.validate(doc, version, strict=True)
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert ds["metadata"]["namespace"] == "kube-system" and spec["hostNetwork"] is True
    init = spec["initContainers"][0]
    assert init["securityContext"]["privileged"] is True
    assert {v["name"] for v in spec["volumes"]} >= {"cni-bin", "cni-conf", "loxi-run"}
    paths = {v["hostPath"]["path"] for v in spec["volumes"]}
    assert {"/opt/cni/bin", "/etc/cni/net.d", "/run/loxi"} <= paths


def test_dockerfile_and_node_scripts() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "ARG BASE=python:3.11-slim\n" in dockerfile and "FROM ${BASE}\n" in dockerfile
    assert "deploy/make-runtime.py /usr/lib/loxi/runtime" in dockerfile  # pip install --target, from make-runtime
    assert '/venv/bin/pip", "install"' in (DEPLOY / "make-runtime.py").read_text()
    script = (DEPLOY / "loxi-node.sh").read_text()
    assert 'loxi-plan" install' in script and "node-pod-cidr" in script and "loxi-agent" in script
    compile((DEPLOY / "node-pod-cidr.py").read_text(), "node-pod-cidr.py", "exec")


def test_uninstall_from_the_node_after_install_from_a_container(tmp_path: Path) -> None:
    """The DaemonSet's install container writes below /host; the node sees the same files at /. The
    manifest's paths are relative to the bin dir, so uninstall run on the node finds and removes them."""
    container = tmp_path / "host"
    bin_dir, conf_dir = container / "opt/cni/bin", container / "etc/cni/net.d"
    inst.install(str(bin_dir), str(conf_dir), "loxilight", "10.244.1.0/24", verify=False, shim="")
    recorded = json.loads((bin_dir / ".loxi-cni.manifest.json").read_text())
    assert sorted(e["path"] for e in recorded["files"]) == ["../../../etc/cni/net.d/10-loxi.conflist", "loxi-cni"]
    node = tmp_path / "node"
    container.rename(node)  # the same tree, seen without the /host prefix
    removed = inst.uninstall(str(node / "opt/cni/bin"))
    assert sorted((c.path, c.action) for c in removed) == [
        (str(node / "etc/cni/net.d/10-loxi.conflist"), "removed"),
        (str(node / "opt/cni/bin/loxi-cni"), "removed"),
    ]
    assert list((node / "etc/cni/net.d").iterdir()) == []
    assert sorted(p.name for p in (node / "opt/cni/bin").iterdir()) == []


def test_a_manifest_with_absolute_paths_still_reads(tmp_path: Path) -> None:
    """Manifests written before the paths became relative name files by absolute paths: still theirs."""
    bin_dir = tmp_path / "bin"
    inst.install(str(bin_dir), str(tmp_path / "net.d"), "loxilight", "10.244.1.0/24", verify=False, shim="")
    manifest = bin_dir / ".loxi-cni.manifest.json"
    doc = json.loads(manifest.read_text())
    for entry in doc["files"]:
        entry["path"] = str(bin_dir / entry["path"])
    manifest.write_text(json.dumps(doc))
    assert sorted(inst.read_manifest(str(bin_dir))) == sorted(
        [str(tmp_path / "net.d" / inst.DEFAULT_CONF_NAME), str(bin_dir / "loxi-cni")]
    )
    assert sorted(c.action for c in inst.uninstall(str(bin_dir))) == ["removed", "removed"]
