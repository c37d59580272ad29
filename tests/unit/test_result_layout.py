"""intent.result.dumps_indented prints exactly what json.dumps(doc, indent=4) prints (hypothesis).

Results of every version built from generated models, CNI error objects, the
version document, and arbitrary JSON-shaped data (nested objects and arrays,
empty ones, non-ASCII and escaped strings, NaN and infinities, tuples, keys
json coerces or refuses) are each printed both ways and compared byte for byte;
anything json.dumps refuses must be refused the same way.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intent.errors import CniError
from intent.result import (
    Result,
    ResultInterface,
    ResultIP,
    ResultRoute,
    dumps_indented,
    format_result,
    result_to_dict,
)
from intent.versions import SUPPORTED_VERSIONS, version_info_json
from tests.result_schemas import RESULT_VERSIONS

PROFILE = settings(
    max_examples=400, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

TEXT = st.text(max_size=12) | st.sampled_from(["", "eth0", "cni0", 'a"b\\c', "é\u2028\x00", "/var/run/netns/p"])
SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSONISH = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)
ADDRESS = st.sampled_from(["10.244.1.2/24", "fd00::2/64", "192.168.0.9/16", "10.0.0.1/32"])
GATEWAY = st.sampled_from(["", "10.244.1.1", "fd00::1"])
INTERFACE = st.builds(
    ResultInterface, name=TEXT, mac=st.sampled_from(["", "aa:bb:cc:00:00:01"]), sandbox=TEXT, mtu=st.integers(0, 9000)
)
IP = st.builds(ResultIP, address=ADDRESS, gateway=GATEWAY, interface=st.none() | st.integers(0, 3))
ROUTE = st.builds(
    ResultRoute,
    dst=st.sampled_from(["0.0.0.0/0", "::/0", "10.96.0.0/12"]),
    gw=GATEWAY,
    extra=st.dictionaries(st.sampled_from(["mtu", "advmss", "priority", "table", "scope"]), SCALAR, max_size=3),
)
DNS = st.fixed_dictionaries(
    {},
    optional={
        "nameservers": st.lists(TEXT, max_size=3),
        "domain": TEXT,
        "search": st.lists(TEXT, max_size=3),
        "options": st.lists(TEXT, max_size=3),
    },
)
RESULT = st.builds(
    Result,
    interfaces=st.lists(INTERFACE, max_size=3).map(tuple),
    ips=st.lists(IP, min_size=1, max_size=3).map(tuple),
    routes=st.lists(ROUTE, max_size=3).map(tuple),
    dns=DNS,
)


def same_as_json(doc: object) -> None:
    try:
        want = json.dumps(doc, indent=4)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            dumps_indented(doc)
        return
    assert dumps_indented(doc) == want


@PROFILE
@given(RESULT, st.sampled_from(RESULT_VERSIONS))
def test_results_print_as_json_dumps(result, version):
    assert format_result(result, version) == json.dumps(result_to_dict(result, version), indent=4)


@PROFILE
@given(JSONISH)
def test_json_shaped_data_prints_as_json_dumps(doc):
    same_as_json(doc)


@PROFILE
@given(st.integers(0, 999), TEXT, TEXT)
def test_error_objects_print_as_json_dumps(code, msg, details):
    err = CniError(code, msg, details)
    assert dumps_indented(err.to_dict()) == err.to_json()


def test_version_document_prints_as_json_dumps():
    doc = json.loads(version_info_json())
    assert doc["supportedVersions"] == list(SUPPORTED_VERSIONS)
    same_as_json(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {1: "a", "b": [1]},  # a key json coerces to a string
        {"a": {2.5: None, True: 1}},
        {(1, 2): [3]},  # a key json refuses
        {"a": [object()]},
        [float("nan"), float("inf"), -float("inf")],
        [{"a": []}, {}, [[]]],
    ],
)
def test_what_json_coerces_or_refuses_is_left_to_json(doc):
    same_as_json(doc)


def test_a_cycle_is_refused_as_json_refuses_it():
    doc: dict = {"a": []}
    doc["a"].append(doc)
    same_as_json(doc)
