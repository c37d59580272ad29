"""`loxi-plan install` binds the launcher only to a private interpreter (loxi.install.private).

The distribution's top-level packages (intent, compiler, applier, schemas,
templates) have generic names; a virtualenv or the image's own runtime keeps
them from meeting another distribution's. These tests fake the interpreter's
prefixes: the suite itself runs from .venv, which is private.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

import loxi.install as inst
from loxi.install import private


def _shared(monkeypatch: pytest.MonkeyPatch, prefix: Path) -> None:
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "base_prefix", str(prefix))


def test_the_suites_interpreter_is_private() -> None:
    assert private.private_environment() == "virtualenv"


def test_install_refuses_a_shared_interpreter_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shared(monkeypatch, tmp_path / "usr")
    with pytest.raises(inst.InstallError, match=r"not a private environment.*--allow-shared-interpreter"):
        inst.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), verify=False, shim="")
    assert not (tmp_path / "bin").exists()


def test_the_cli_says_why_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _shared(monkeypatch, tmp_path / "usr")
    parser = argparse.ArgumentParser(prog="loxi-plan")
    inst.register(parser.add_subparsers(dest="subcommand", required=True))
    args = parser.parse_args(["install", "--cni-bin-dir", str(tmp_path / "bin"), "--no-verify", "--shim", ""])
    out, err = io.StringIO(), io.StringIO()
    assert inst.main_install(args, out, err) == 1
    assert "is not a private environment" in err.getvalue() and "intent, compiler, applier" in err.getvalue()
    assert not (tmp_path / "bin").exists()
    # the operator's explicit word
    args = parser.parse_args(
        ["install", "--cni-bin-dir", str(tmp_path / "bin"), "--no-verify", "--shim", "", "--allow-shared-interpreter"]
    )
    assert inst.main_install(args, out, err) == 0
    assert (tmp_path / "bin" / "loxi-cni").exists()


def test_the_images_runtime_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/make-runtime.py marks its prefix with RUNTIME_ID; loxi-node.sh runs install with that interpreter."""
    runtime = tmp_path / "runtime-0.1.0-py3112-abc"
    runtime.mkdir()
    (runtime / private.RUNTIME_MARKER).write_text("0.1.0-py3112-abc\n")
    _shared(monkeypatch, runtime)
    assert private.private_environment() == "loxi runtime"
    changes = inst.install(str(tmp_path / "bin"), str(tmp_path / "net.d"), verify=False, shim="")
    assert [c.action for c in changes] == ["created"]


def test_the_marker_is_the_one_make_runtime_writes() -> None:
    make_runtime = (Path(__file__).resolve().parents[2] / "deploy" / "make-runtime.py").read_text()
    assert f'(dest / "{private.RUNTIME_MARKER}").write_text' in make_runtime
    assert '"site-packages", "dist-packages"' in make_runtime  # the base's packages are not copied
