"""A running attachment keeps its address, whatever a later ADD or DEL is given.

* A retried ADD of a running attachment that fails (another subnet, a second
  range set, a bridge name that is a non-bridge link) releases only what that
  ADD reserved: the running pod's lease stays in the store.
* An ADD for an attachment (container id, ifname) that exists with another conf
  (bridge, subnet, range sets) is refused (code 101) and changes nothing; the same
  conf again stays idempotent.
* DEL removes CNI_IFNAME inside CNI_NETNS whatever happened to the host end
  (renamed, moved to another namespace, detached), and releases an address only
  when no interface in the pod still carries it.
* A hypothesis strategy re-ADDs a running pod with a mutated conf: either the
  same attachment comes back unchanged, or the ADD is refused and nothing moved.

Run in both modes (in-process, and through loxi-agent with LOXI_TEST_MODE=agent).
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Node, make_conf
from tests.snapshots import kernel_state, lease_files, tree

NETWORK = "loxilight_cni"
CONFLICT = 101


def running(node: Node, conf: dict, cid: str = "resident"):
    pod = node.pod()
    add = node.cni("ADD", conf, container_id=cid, netns=pod.path)
    assert add.rc == 0, add
    return pod, add.json


def state(node: Node, pod) -> tuple:
    """Everything a refused ADD must leave alone: the store (lease files and cursors), node and pod kernel state."""
    return (
        {k: v for k, v in tree(node.data_dir).items()},
        kernel_state(node.ns),
        kernel_state(pod),
    )


def assert_still_attached(node: Node, conf: dict, pod, result: dict, cid: str = "resident") -> None:
    address = result["ips"][0]["address"]
    assert pod.addresses("eth0")[0] == address
    assert lease_files(node, NETWORK).get(address.split("/")[0]) == f"{cid}\r\neth0", lease_files(node, NETWORK)
    check = node.cni("CHECK", {**conf, "prevResult": result}, container_id=cid, netns=pod.path)
    assert check.rc == 0, check


def refused_readd(node: Node, conf: dict, pod, result: dict, mutated: dict, cid: str = "resident") -> dict:
    before = state(node, pod)
    add = node.cni("ADD", mutated, container_id=cid, netns=pod.path)
    assert add.rc == 1, add
    doc = add.json
    after = state(node, pod)
    assert after == before, "a refused re-ADD changed the store or the kernel"
    assert_still_attached(node, conf, pod, result, cid)
    return doc


# -- 1 and 2: a re-ADD with another conf ---------------------------------------------------------


def test_readd_with_another_subnet_is_refused_and_keeps_the_lease(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    mutated = copy.deepcopy(conf)
    mutated["ipam"]["subnet"] = "10.244.2.0/24"
    doc = refused_readd(node, conf, pod, result, mutated)
    assert doc["code"] == CONFLICT and "10.244.1.2" in doc["msg"] and "DEL" in doc["msg"], doc


def test_readd_with_a_second_ipv4_range_set_is_refused_and_keeps_the_lease(node):
    conf = make_conf(node.data_dir)
    conf["ipam"].pop("subnet")
    conf["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24"}]]
    pod, result = running(node, conf)
    mutated = copy.deepcopy(conf)
    mutated["ipam"]["ranges"].append([{"subnet": "10.244.7.0/24"}])
    doc = refused_readd(node, conf, pod, result, mutated)
    assert doc["code"] == CONFLICT and "range set 1" in doc["msg"], doc


def test_readd_with_a_second_ipv6_range_set_is_refused_and_adds_nothing(node):
    """Today's ADD would succeed here and give the running pod a second address: a conf change in place."""
    conf = make_conf(node.data_dir, isGateway=False)
    conf["ipam"].pop("subnet")
    conf["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24"}]]
    pod, result = running(node, conf)
    mutated = copy.deepcopy(conf)
    mutated["ipam"]["ranges"].append([{"subnet": "fd00:10:244::/64"}])
    doc = refused_readd(node, conf, pod, result, mutated)
    assert doc["code"] == CONFLICT, doc


def test_readd_with_a_bridge_that_is_a_non_bridge_link_keeps_the_lease(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    node.ns.ip_run("link", "add", "notabridge", "type", "veth", "peer", "name", "notabridge1")
    doc = refused_readd(node, conf, pod, result, {**conf, "bridge": "notabridge"})
    assert doc["code"] == CONFLICT, doc


def test_readd_with_another_bridge_is_refused_and_creates_nothing(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    doc = refused_readd(node, conf, pod, result, {**conf, "bridge": "otherbr"})
    assert doc["code"] == CONFLICT and "hsvlan100" in doc["msg"] and "otherbr" in doc["msg"], doc
    assert "otherbr" not in node.ns.links()


def test_readd_with_the_same_conf_stays_idempotent(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    before = state(node, pod)
    again = node.cni("ADD", conf, container_id="resident", netns=pod.path)
    assert again.rc == 0, again
    assert again.json["ips"] == result["ips"] and again.json["interfaces"][1:] == result["interfaces"][1:]
    assert state(node, pod)[1:] == before[1:]
    assert lease_files(node, NETWORK) == {"10.244.1.2": "resident\r\neth0"}


def test_a_failed_add_releases_what_it_reserved_and_keeps_what_it_found(node):
    """No pod runs, but the store holds the attachment's lease of range set 0 (an ADD killed after IPAM).
    A retried ADD with a second range set that then fails gives back its new lease, not the one it found."""
    conf = make_conf(node.data_dir)
    conf["ipam"].pop("subnet")
    conf["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24"}]]
    pod = node.pod()
    killed = node.cni("ADD", conf, container_id="victim", netns=pod.path, env={"LOXI_TEST_KILL_BEFORE_STEP": "1"})
    assert killed.rc != 0 and lease_files(node, NETWORK) == {"10.244.1.2": "victim\r\neth0"}, killed
    node.ns.ip_run("link", "add", "notabridge", "type", "veth", "peer", "name", "notabridge1")
    mutated = copy.deepcopy(conf)
    mutated["ipam"]["ranges"].append([{"subnet": "10.244.7.0/24"}])
    mutated["bridge"] = "notabridge"
    add = node.cni("ADD", mutated, container_id="victim", netns=pod.path)
    assert add.rc == 1 and add.json["code"] == CONFLICT, add
    assert lease_files(node, NETWORK) == {"10.244.1.2": "victim\r\neth0"}, "the found lease stays, the new one goes"
    assert node.cni("DEL", conf, container_id="victim", netns=pod.path).rc == 0
    assert lease_files(node, NETWORK) == {}


# -- 3: DEL whatever happened to the host end -----------------------------------------------------


def host_end(result: dict) -> str:
    return result["interfaces"][1]["name"]


def assert_detached(node: Node, pod) -> None:
    assert "eth0" not in pod.links(), "the pod is still attached after a successful DEL"
    assert lease_files(node, NETWORK) == {}


def test_del_after_the_host_end_was_renamed_detaches_the_pod(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    node.ns.ip_run("link", "set", host_end(result), "down")
    node.ns.ip_run("link", "set", host_end(result), "name", "renamed0")
    delete = node.cni("DEL", conf, container_id="resident", netns=pod.path)
    assert delete.rc == 0 and delete.stdout == "", delete
    assert_detached(node, pod)
    assert "renamed0" not in node.ns.links(), "the pod end takes its peer with it"


def test_del_after_the_host_end_was_moved_to_another_namespace_detaches_the_pod(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    elsewhere = node.factory("elsewhere")
    node.ns.ip_run("link", "set", host_end(result), "netns", elsewhere.name)
    delete = node.cni("DEL", conf, container_id="resident", netns=pod.path)
    assert delete.rc == 0 and delete.stdout == "", delete
    assert_detached(node, pod)
    assert host_end(result) not in elsewhere.links()


def test_del_after_the_host_end_was_detached_from_the_bridge_detaches_the_pod(node):
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    node.ns.ip_run("link", "set", host_end(result), "nomaster")
    assert node.cni("DEL", conf, container_id="resident", netns=pod.path).rc == 0
    assert_detached(node, pod)
    assert host_end(result) not in node.ns.links()


def test_del_keeps_the_lease_while_an_interface_in_the_pod_still_carries_it(node):
    """Both ends renamed: CNI_IFNAME is gone, but the pod still answers on its address; the store must not
    hand it out again. A second DEL, once the address is gone from the pod, releases it."""
    conf = make_conf(node.data_dir)
    pod, result = running(node, conf)
    node.ns.ip_run("link", "set", host_end(result), "down")
    node.ns.ip_run("link", "set", host_end(result), "name", "renamed0")
    pod.ip_run("link", "set", "eth0", "down")
    pod.ip_run("link", "set", "eth0", "name", "moved0")
    pod.ip_run("link", "set", "moved0", "up")
    delete = node.cni("DEL", conf, container_id="resident", netns=pod.path)
    assert delete.rc == 0, delete
    assert lease_files(node, NETWORK) == {"10.244.1.2": "resident\r\neth0"}, "moved0 still carries 10.244.1.2"
    other = node.cni("ADD", conf, container_id="newcomer", netns=node.pod().path)
    assert other.rc == 0 and other.json["ips"][0]["address"] != "10.244.1.2/24", other
    pod.ip_run("link", "del", "moved0")
    assert node.cni("DEL", conf, container_id="resident", netns=pod.path).rc == 0
    assert "10.244.1.2" not in lease_files(node, NETWORK)


def test_del_with_cni_netns_of_the_node_itself_removes_nothing_of_the_node(node):
    """A CNI_NETNS that is the plugin's own namespace is not a pod: DEL must not delete the node's CNI_IFNAME."""
    conf = make_conf(node.data_dir)
    node.ns.ip_run("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")  # no dummy module here
    for path in (node.ns.path, "/proc/self/ns/net"):
        delete = node.cni("DEL", conf, container_id="resident", netns=path)
        assert delete.rc == 0, delete
        assert "eth0" in node.ns.links(), path


# -- hypothesis: re-ADD with a mutated conf ------------------------------------------------------


@st.composite
def mutated_confs(draw, conf: dict) -> tuple[dict, bool]:
    """(a mutation of `conf`, whether it changes the attachment's identity: bridge, subnet or range sets)."""
    out = copy.deepcopy(conf)
    kind = draw(st.sampled_from(["same", "mtu", "routes", "bridge", "subnet", "range", "ranges+v6", "hairpin"]))
    if kind == "mtu":
        out["mtu"] = draw(st.sampled_from([1500, 1400]))  # an existing bridge keeps its MTU; the veth follows
        return out, False
    if kind == "hairpin":
        out["hairpinMode"] = draw(st.booleans())
        return out, False
    if kind == "routes":
        out["ipam"]["routes"] = draw(
            st.lists(st.sampled_from([{"dst": "10.96.0.0/12"}, {"dst": "192.168.7.0/24"}]), max_size=2, unique_by=str)
        )
        return out, False
    if kind == "bridge":
        out["bridge"] = draw(st.sampled_from(["hsvlan200", "br-other", "cni0"]))
        return out, True
    if kind == "subnet":
        # /25 and /16 still hold 10.244.1.2, with another prefix: another subnet all the same
        out["ipam"]["subnet"] = draw(st.sampled_from(["10.244.2.0/24", "10.244.0.0/16", "10.244.1.0/25"]))
        return out, True
    if kind == "range":
        out["ipam"]["rangeStart"] = draw(st.sampled_from(["10.244.1.100", "10.244.1.2"]))
        return out, out["ipam"]["rangeStart"] != "10.244.1.2"
    if kind == "ranges+v6":
        subnet = out["ipam"].pop("subnet")
        out["ipam"]["ranges"] = [[{"subnet": subnet}], [{"subnet": "fd00:10:244::/64"}]]
        out["isGateway"] = False
        return out, True
    return out, False


@settings(max_examples=24, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_readd_with_a_mutated_conf_is_the_same_attachment_or_refused(data, netns, tmp_path_factory, agent_socket):
    tmp = tmp_path_factory.mktemp("readd")
    node = Node(netns("node"), tmp / "ipam", netns, agent_socket)
    pod = node.pod()
    try:
        conf = make_conf(node.data_dir)
        add = node.cni("ADD", conf, container_id="resident", netns=pod.path)
        assert add.rc == 0, add
        mutated, changes_identity = data.draw(mutated_confs(conf))
        before = state(node, pod)
        again = node.cni("ADD", mutated, container_id="resident", netns=pod.path)
        if changes_identity:
            assert again.rc == 1 and again.json["code"] == CONFLICT, (mutated, again)
            assert state(node, pod) == before, mutated
        else:
            assert again.rc == 0, (mutated, again)
            assert again.json["ips"] == add.json["ips"]
        assert lease_files(node, NETWORK) == {"10.244.1.2": "resident\r\neth0"}
        assert node.cni("DEL", conf, container_id="resident", netns=pod.path).rc == 0
        assert lease_files(node, NETWORK) == {} and node.ns.loxi_links() == []
    finally:
        netns.delete(pod)
        netns.delete(node.ns)
