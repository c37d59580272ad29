"""intent.schema_verdicts: a cold process skips jsonschema for a config this node has already passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from intent import schema_verdicts
from intent.config import load_netconf
from intent.env import CniRequest
from intent.errors import INVALID_NETWORK_CONFIG, CniError

REPO = Path(__file__).resolve().parents[2]
CONF = {
    "cniVersion": "1.0.0",
    "name": "verdicts",
    "type": "loxi-cni",
    "bridge": "cni0",
    "ipam": {"type": "host-local", "subnet": "10.244.9.0/24"},
}
SCHEMA = b'{"type": "object"}'


@pytest.fixture
def verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "schema-ok"
    monkeypatch.setenv("LOXI_SCHEMA_CACHE_DIR", str(directory))
    return directory


def test_a_remembered_config_is_known_and_only_that_one(verdicts: Path) -> None:
    key = schema_verdicts.verdict_key(CONF, SCHEMA)
    assert key is not None and not schema_verdicts.known_valid(key)
    schema_verdicts.remember_valid(key)
    assert schema_verdicts.known_valid(key)
    assert [p.name for p in verdicts.iterdir()] == [key]
    assert (verdicts.stat().st_mode & 0o777) == 0o700
    assert (verdicts / key).stat().st_size == 0
    other = schema_verdicts.verdict_key({**CONF, "mtu": 1400}, SCHEMA)
    assert other != key and not schema_verdicts.known_valid(other)


def test_the_key_depends_on_the_config_and_the_schema_not_on_key_order(verdicts: Path) -> None:
    key = schema_verdicts.verdict_key(CONF, SCHEMA)
    assert schema_verdicts.verdict_key(dict(reversed(list(CONF.items()))), SCHEMA) == key
    assert schema_verdicts.verdict_key(CONF, b'{"type": "array"}') != key
    assert schema_verdicts.verdict_key({**CONF, "mtu": 1500.0}, SCHEMA) != schema_verdicts.verdict_key(
        {**CONF, "mtu": 1500}, SCHEMA
    )


def test_a_prev_result_shares_the_key_only_when_the_schema_checks_nothing_inside_it(verdicts: Path) -> None:
    loose = b'{"type": "object", "properties": {"prevResult": {"type": "object"}, "mtu": {"type": "integer"}}}'
    first = schema_verdicts.verdict_key({**CONF, "prevResult": {"ips": [{"address": "10.0.0.2/24"}]}}, loose)
    second = schema_verdicts.verdict_key({**CONF, "prevResult": {"ips": [{"address": "10.0.0.3/24"}]}}, loose)
    assert first is not None and first == second
    assert first != schema_verdicts.verdict_key(CONF, loose)  # an object is not the same as no prevResult
    assert schema_verdicts.verdict_key({**CONF, "prevResult": []}, loose) is None  # the schema refuses it
    strict = b'{"type": "object", "properties": {"prevResult": {"type": "object", "required": ["ips"]}}}'
    assert schema_verdicts.verdict_key({**CONF, "prevResult": {}}, strict) is None
    coupled = b'{"type": "object", "properties": {"prevResult": {"type": "object"}}, "maxProperties": 6}'
    assert schema_verdicts.verdict_key({**CONF, "prevResult": {}}, coupled) is None


def test_the_shipped_schema_lets_check_and_del_share_a_key() -> None:
    """If the conf schema ever checks inside prevResult, CHECK and DEL lose the cache (and this says so)."""
    from schemas import schema_bytes

    shipped = schema_bytes("loxi-cni.conf.schema.json")
    assert schema_verdicts._without_prev_result({**CONF, "prevResult": {"ips": []}}, shipped) == {
        **CONF,
        "prevResult": {},
    }


def test_an_empty_setting_turns_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOXI_SCHEMA_CACHE_DIR", "")
    assert schema_verdicts.verdict_key(CONF, SCHEMA) is None


@pytest.mark.parametrize("unsafe", ["group-writable", "symlink", "file"])
def test_an_unsafe_directory_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unsafe: str) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    path = tmp_path / "schema-ok"
    if unsafe == "group-writable":
        path.mkdir()
        path.chmod(0o770)
    elif unsafe == "symlink":
        path.symlink_to(real)
    else:
        path.write_text("")
    monkeypatch.setenv("LOXI_SCHEMA_CACHE_DIR", str(path))
    assert schema_verdicts.verdict_key(CONF, SCHEMA) is None


def test_a_full_directory_is_emptied_before_the_next_verdict(verdicts: Path) -> None:
    verdicts.mkdir(mode=0o700)
    for i in range(schema_verdicts.MAX_ENTRIES):
        (verdicts / f"{i:064x}").touch()
    key = schema_verdicts.verdict_key(CONF, SCHEMA)
    schema_verdicts.remember_valid(key)
    assert [p.name for p in verdicts.iterdir()] == [key]


def test_a_bad_config_is_refused_every_time_and_never_remembered(verdicts: Path) -> None:
    bad = json.dumps({**CONF, "mtu": "big"}).encode()
    for _ in range(2):
        with pytest.raises(CniError) as exc:
            load_netconf(bad, CniRequest(command="ADD"))
        assert exc.value.code == INVALID_NETWORK_CONFIG
    assert not verdicts.exists() or not any(verdicts.iterdir())


def run_cold(directory: Path, doc: dict) -> dict:
    """load_netconf in a new interpreter, as a cold loxi-cni runs it; says whether jsonschema was imported."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from intent.config import load_netconf\n"
        "from intent.env import CniRequest\n"
        "from intent.errors import CniError\n"
        "try:\n"
        f"    load_netconf({json.dumps(doc).encode()!r}, CniRequest(command='ADD'))\n"
        "    outcome = 'ok'\n"
        "except CniError as exc:\n"
        "    outcome = exc.code\n"
        "print(json.dumps({'outcome': outcome, 'jsonschema': 'jsonschema' in sys.modules}))\n"
    )
    env = {**os.environ, "LOXI_SCHEMA_CACHE_DIR": str(directory)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_second_cold_process_with_the_same_config_does_not_import_jsonschema(verdicts: Path) -> None:
    assert run_cold(verdicts, CONF) == {"outcome": "ok", "jsonschema": True}
    assert len(list(verdicts.iterdir())) == 1
    assert run_cold(verdicts, CONF) == {"outcome": "ok", "jsonschema": False}
    assert run_cold(verdicts, {**CONF, "mtu": 1400}) == {"outcome": "ok", "jsonschema": True}
    check = {**CONF, "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.9.5/24"}]}}
    assert run_cold(verdicts, check) == {"outcome": "ok", "jsonschema": True}
    other_pod = {**check, "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.9.6/24"}]}}
    assert run_cold(verdicts, other_pod) == {"outcome": "ok", "jsonschema": False}
    assert run_cold(verdicts, {**CONF, "prevResult": "not an object"})["jsonschema"] is True
    bad = {**CONF, "hairpinMode": "yes"}
    assert run_cold(verdicts, bad) == {"outcome": INVALID_NETWORK_CONFIG, "jsonschema": True}
    assert run_cold(verdicts, bad) == {"outcome": INVALID_NETWORK_CONFIG, "jsonschema": True}
    assert len(list(verdicts.iterdir())) == 3


def test_a_warm_process_validates_a_config_once_and_a_bad_one_every_time(monkeypatch):
    import intent.config as config

    config._validator()  # warm: the validator is built
    checked = []
    real = config.validate_schema
    monkeypatch.setattr(config, "validate_schema", lambda doc: checked.append(1) or real(doc))
    monkeypatch.setattr(config, "_valid_docs", set())
    doc = {"cniVersion": "1.0.0", "name": "memo", "type": "loxi-cni", "bridge": "br-memo"}
    config.validate_schema_once(doc)
    config.validate_schema_once(dict(doc))
    assert len(checked) == 1
    config.validate_schema_once({**doc, "prevResult": {"ips": [1]}})
    config.validate_schema_once({**doc, "prevResult": {"ips": [2]}})
    assert len(checked) == 2
    for _ in range(2):
        with pytest.raises(CniError):
            config.validate_schema_once({**doc, "mtu": "big"})
    assert len(checked) == 4
