"""loxi.engine.pipeline: what each command asks for compiles to the graph the compiler makes for it, and the
engine package stays cheap where it must (the agent's phase timer, one command's cold import)."""

from __future__ import annotations

import ipaddress
import json

from compiler.graph import compile_desired, compile_teardown, host_veth_name
from compiler.model import AddressLease, Attachment, HostVeth, Masquerade, RouteIntent
from intent.config import load_netconf
from intent.env import CniRequest
from loxi.engine.pipeline import Wanted
from tests.unit.test_lean_import import run_fresh

DOC = {
    "cniVersion": "1.1.0",
    "name": "n",
    "type": "loxi-cni",
    "bridge": "br0",
    "isGateway": True,
    "ipMasq": True,
    "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"},
}
REQUEST = CniRequest(command="ADD", container_id="c0ffee", netns="/run/netns/p", ifname="eth0")
LEASE = AddressLease(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1"))
ROUTE = RouteIntent(ipaddress.ip_network("10.96.0.0/12"))


def conf():
    return load_netconf(json.dumps(DOC).encode(), REQUEST)


def test_a_setup_compiles_what_the_compiler_makes_for_add():
    wanted = Wanted.setup(conf(), REQUEST, [LEASE], [ROUTE])
    expected = compile_desired(conf(), Attachment("n", "c0ffee", "eth0", "/run/netns/p"), [LEASE], [ROUTE])
    assert [obj.key for obj in wanted.compile().order()] == [obj.key for obj in expected.order()]


def test_a_removal_compiles_del_s_teardown_with_the_attachment_s_rules():
    attachment = Attachment("n", "c0ffee", "eth0", "")
    desired = Wanted.removal(conf(), attachment).compile()
    assert desired.absent == compile_teardown(conf(), attachment).absent
    assert any(isinstance(obj, Masquerade) for obj in desired.absent)
    assert desired.objects() == []


def test_a_port_known_only_by_a_cut_alias_is_torn_down_alone():
    attachment = Attachment("n", "c" * 40 + "~", "eth0", "")
    desired = Wanted.removal(conf(), attachment, port="loxi0123456789a").compile()
    assert desired.absent == [HostVeth(host_name="loxi0123456789a", peer_name="eth0", bridge="br0")]
    assert host_veth_name(attachment) != "loxi0123456789a"


def test_the_phase_timer_imports_nothing_of_the_engine():
    out = run_fresh(
        """
        before = set(sys.modules)
        from loxi.engine.phases import phase
        with phase("plan"):
            pass
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    assert set(out) <= {"loxi", "loxi.engine", "loxi.engine.phases", "contextvars", "_contextvars"}, out


def test_a_cold_add_imports_only_add_s_modules():
    out = run_fresh(
        """
        import loxi.engine.add
        print(json.dumps(sorted(m for m in sys.modules if m.startswith(("loxi.", "applier.features")))))
        """
    )
    assert "loxi.engine.add" in out
    for other in ("loxi.engine.gc", "loxi.engine.status", "loxi.engine.check", "loxi.engine.delete"):
        assert other not in out, other
    assert "applier.features" not in out
