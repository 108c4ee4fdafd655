"""FlyAccess: the structural rules of spec 9.5 and the JSON form of Go's ``flyio.Access``."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from authz_helpers import T0, Unspec

from macaroons_authz import (
    MEMBER_FEATURES,
    Access,
    Action,
    DecodeError,
    FlyAccess,
    InvalidAccessError,
    ResourcesMutuallyExclusiveError,
    Role,
    UnauthorizedError,
)

Mutex = ResourcesMutuallyExclusiveError


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # 1. OrgID is required.
        pytest.param({}, Unspec, id="nothing"),
        pytest.param({"app_id": 1}, Unspec, id="app-without-org"),
        pytest.param({"app_id": 1, "feature": "x"}, Unspec, id="rule-1-before-rule-2"),
        pytest.param({"mutation": "m"}, Unspec, id="mutation-without-org"),
        pytest.param({"org_id": 1}, None, id="org"),
        pytest.param({"org_id": 0}, None, id="org-zero"),
        # 2. At most one of app, feature, storage object.
        pytest.param({"org_id": 1, "app_id": 1}, None, id="app"),
        pytest.param({"org_id": 1, "app_id": 0}, None, id="app-zero"),
        pytest.param({"org_id": 1, "feature": "x"}, None, id="feature"),
        pytest.param({"org_id": 1, "storage_object": "s"}, None, id="storage"),
        pytest.param({"org_id": 1, "app_id": 1, "feature": "x"}, Mutex, id="app+feature"),
        pytest.param({"org_id": 1, "app_id": 1, "storage_object": "s"}, Mutex, id="app+storage"),
        pytest.param({"org_id": 1, "feature": "", "storage_object": "s"}, Mutex, id="feat+storage"),
        pytest.param(
            {"org_id": 1, "app_id": 1, "feature": "x", "machine": "m"}, Mutex, id="rule-2-first"
        ),
        # 3. Machine, volume and app feature need an app and exclude each other.
        pytest.param({"org_id": 1, "machine": "m"}, Unspec, id="machine-without-app"),
        pytest.param({"org_id": 1, "volume": "v"}, Unspec, id="volume-without-app"),
        pytest.param({"org_id": 1, "app_feature": "f"}, Unspec, id="app-feature-without-app"),
        pytest.param({"org_id": 1, "feature": "x", "volume": "v"}, Unspec, id="volume-feature"),
        pytest.param({"org_id": 1, "machine": "m", "volume": "v"}, Unspec, id="needs-app-first"),
        pytest.param({"org_id": 1, "app_id": 1, "machine": "m"}, None, id="machine"),
        pytest.param({"org_id": 1, "app_id": 1, "volume": "v"}, None, id="volume"),
        pytest.param({"org_id": 1, "app_id": 1, "app_feature": "f"}, None, id="app-feature"),
        pytest.param({"org_id": 1, "app_id": 1, "machine": "m", "volume": "v"}, Mutex, id="m+v"),
        pytest.param(
            {"org_id": 1, "app_id": 1, "machine": "m", "app_feature": "f"}, Mutex, id="m+af"
        ),
        pytest.param(
            {"org_id": 1, "app_id": 1, "volume": "v", "app_feature": ""}, Mutex, id="v+af"
        ),
        # 4. A cluster needs the litefs-cloud feature.
        pytest.param({"org_id": 1, "cluster": "c"}, Unspec, id="cluster-without-feature"),
        pytest.param({"org_id": 1, "app_id": 1, "cluster": "c"}, Unspec, id="cluster-with-app"),
        pytest.param(
            {"org_id": 1, "feature": "x", "cluster": "c"}, InvalidAccessError, id="cluster-wrong"
        ),
        pytest.param(
            {"org_id": 1, "feature": "", "cluster": "c"}, InvalidAccessError, id="cluster-empty"
        ),
        pytest.param({"org_id": 1, "feature": "litefs-cloud", "cluster": "c"}, None, id="cluster"),
        pytest.param(
            {"org_id": 1, "feature": "x", "cluster": "c", "machine": "m"}, Unspec, id="rule-3-first"
        ),
        # 5. Command and machine feature need a machine and exclude each other.
        pytest.param({"org_id": 1, "app_id": 1, "command": ["ls"]}, Unspec, id="cmd-no-machine"),
        pytest.param({"org_id": 1, "command": ["ls"]}, Unspec, id="cmd-no-app"),
        pytest.param(
            {"org_id": 1, "app_id": 1, "machine_feature": "mf"}, Unspec, id="mfeat-no-machine"
        ),
        pytest.param(
            {"org_id": 1, "feature": "x", "cluster": "c", "command": ["ls"]},
            InvalidAccessError,
            id="rule-4-first",
        ),
        pytest.param({"org_id": 1, "app_id": 1, "machine": "m", "command": []}, None, id="cmd"),
        pytest.param(
            {"org_id": 1, "app_id": 1, "machine": "m", "machine_feature": "mf"}, None, id="mfeat"
        ),
        pytest.param(
            {"org_id": 1, "app_id": 1, "machine": "m", "command": ["ls"], "machine_feature": "mf"},
            Mutex,
            id="cmd+mfeat",
        ),
        # Mutations and request sources are not resources of the tree.
        pytest.param(
            {
                "org_id": 1,
                "app_id": 1,
                "mutation": "x",
                "source_machine": "s",
                "source_app": "a",
                "source_organization": "o",
            },
            None,
            id="extras",
        ),
    ],
)
def test_validate_rules(fields: dict[str, Any], expected: type[UnauthorizedError] | None) -> None:
    access = FlyAccess(at=T0, **fields)
    if expected is None:
        access.validate()
        return
    with pytest.raises(UnauthorizedError) as info:
        access.validate()
    assert type(info.value) is expected


def test_fly_access_is_an_access() -> None:
    access = FlyAccess(org_id=1, at=T0)
    assert isinstance(access, Access)
    assert access.now() == T0


def test_default_time_is_the_wall_clock() -> None:
    before = time.time()
    access = FlyAccess(org_id=1)
    assert before <= access.now() <= time.time()


def test_permitted_roles_follow_member_features() -> None:
    assert FlyAccess(org_id=1, at=T0).permitted_roles() == [Role.MEMBER]
    for feature, allowed in MEMBER_FEATURES.items():
        ok = FlyAccess(org_id=1, feature=feature, action=allowed, at=T0)
        assert ok.permitted_roles() == [Role.MEMBER]
        more = FlyAccess(org_id=1, feature=feature, action=Action.ALL, at=T0)
        expected = [Role.MEMBER] if allowed == Action.ALL else [Role.ADMIN]
        assert more.permitted_roles() == expected


# -- JSON --------------------------------------------------------------------

FULL = FlyAccess(
    action=Action.ALL,
    org_id=1,
    app_id=2,
    app_feature="af",
    feature="f",
    volume="v",
    machine="m",
    machine_feature="mf",
    mutation="mu",
    source_machine="sm",
    source_app="sa",
    source_organization="so",
    cluster="c",
    command=["ls", "-l"],
    storage_object="s3://x",
    at=T0,
)
FULL_JSON = (
    '{"action":"rwcdC","orgid":1,"appid":2,"app_feature":"af","feature":"f","volume":"v",'
    '"machine":"m","machine_feature":"mf","mutation":"mu","sourceMachine":"sm",'
    '"sourceApp":"sa","sourceOrganization":"so","cluster":"c","command":["ls","-l"],'
    '"storage_object":"s3://x"}'
)


def test_to_json_uses_go_keys() -> None:
    assert FULL.to_json() == FULL_JSON


@pytest.mark.parametrize(
    ("access", "text"),
    [
        (FlyAccess(at=T0), "{}"),
        (FlyAccess(org_id=0, at=T0), '{"orgid":0}'),
        (
            FlyAccess(org_id=5, action=Action.READ | Action.CONTROL, at=T0),
            '{"action":"rC","orgid":5}',
        ),
        (FlyAccess(org_id=5, action=0xFFFF, at=T0), '{"action":"rwcdC","orgid":5}'),
        (FlyAccess(org_id=5, action=0x20, at=T0), '{"action":"","orgid":5}'),
        (FlyAccess(org_id=5, feature="", at=T0), '{"orgid":5,"feature":""}'),
        (FlyAccess(org_id=5, command=[], at=T0), '{"orgid":5,"command":[]}'),
        (FlyAccess(org_id=2**64 - 1, at=T0), '{"orgid":18446744073709551615}'),
    ],
)
def test_to_json_omits_unset_fields(access: FlyAccess, text: str) -> None:
    assert access.to_json() == text


def test_from_json_reads_every_key() -> None:
    assert FlyAccess.from_json(FULL_JSON, now=T0) == FULL
    assert FlyAccess.from_json(FULL_JSON.encode(), now=T0) == FULL
    assert FlyAccess.from_json(json.loads(FULL_JSON), now=T0) == FULL


@pytest.mark.parametrize(
    "access",
    [
        FULL,
        FlyAccess(at=T0),
        FlyAccess(org_id=1, app_id=0, action=Action.CREATE, at=T0),
        FlyAccess(org_id=1, app_id=1, machine="m", command=[], at=T0),
    ],
)
def test_json_round_trip(access: FlyAccess) -> None:
    assert FlyAccess.from_json(access.to_json(), now=access.at) == access


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ('{"action":"*","orgid":1}', {"action": 0xFFFF, "org_id": 1}),
        ('{"action":"rC","orgid":1}', {"action": Action.READ | Action.CONTROL, "org_id": 1}),
        ('{"action":"","orgid":1}', {"org_id": 1}),
        ('{"action":null,"orgid":1}', {"org_id": 1}),
        ('{"orgid":1,"appid":null,"command":null}', {"org_id": 1}),
        ('{"command":["a","b"]}', {"command": ("a", "b")}),
        ('{"orgid":18446744073709551615}', {"org_id": 2**64 - 1}),
    ],
)
def test_from_json_values(text: str, fields: dict[str, Any]) -> None:
    assert FlyAccess.from_json(text, now=T0) == FlyAccess(at=T0, **fields)


@pytest.mark.parametrize(
    "text",
    [
        # unknown keys, including Python's names and a stray time
        '{"org_id":1}',
        '{"orgid":1,"app_id":2}',
        '{"orgid":1,"source_machine":"m"}',
        '{"orgid":1,"at":5}',
        '{"orgid":1,"extra":null}',
        # wrong types
        '{"orgid":"1"}',
        '{"orgid":-1}',
        '{"orgid":1.5}',
        '{"orgid":1.0}',
        '{"orgid":true}',
        '{"orgid":18446744073709551616}',
        '{"orgid":1,"appid":"x"}',
        '{"orgid":1,"feature":1}',
        '{"orgid":1,"feature":["wg"]}',
        '{"orgid":1,"command":"ls"}',
        '{"orgid":1,"command":[1]}',
        '{"orgid":1,"command":[null]}',
        '{"orgid":1,"action":1}',
        '{"orgid":1,"action":["r"]}',
        # not an object, not JSON
        "[]",
        '"orgid"',
        "null",
        "{",
        "",
    ],
)
def test_from_json_rejects(text: str) -> None:
    with pytest.raises(DecodeError):
        FlyAccess.from_json(text, now=T0)


def test_from_json_now_injection() -> None:
    access = FlyAccess.from_json('{"orgid":1}', now=123.5)
    assert access.now() == 123.5
    before = time.time()
    later = FlyAccess.from_json('{"orgid":1}')
    assert before <= later.now() <= time.time()
