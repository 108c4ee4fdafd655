"""``CaveatSet.validate``: AND across caveats, every access, every failure (spec 9.1)."""

from __future__ import annotations

from typing import Any

import pytest
from authz_helpers import (
    T0,
    ForAct,
    ForRes,
    R,
    Unspec,
    W,
    assert_denied,
    fly,
    leaf_types,
    validate_outcome,
)

from macaroons_authz import (
    Action,
    Apps,
    BadCaveatError,
    BindToParentToken,
    Caveat,
    Caveat3P,
    CaveatSet,
    FlyioUserID,
    IfPresent,
    InvalidAccessError,
    Machines,
    Organization,
    UnauthorizedError,
    UnregisteredCaveat,
    ValidityWindow,
)

ORG_APP = [Organization(1, R), Apps({2: R | W})]


class Recorder(Caveat):
    """A caveat that notes every access it is asked about and allows it."""

    type_number = 2**48 + 999
    name = "Recorder"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def prohibits(self, access: Any) -> UnauthorizedError | None:
        self.seen.append(access)
        return None


class BrokenAccess:
    """An access whose self-check fails."""

    def now(self) -> float:
        return T0

    def validate(self) -> None:
        raise InvalidAccessError("unauthorized: bad data for token verification: broken")


@pytest.mark.parametrize(
    ("access", "causes"),
    [
        (fly(org_id=1, app_id=2, action=R), []),
        (fly(org_id=1, app_id=2, action=W), [ForAct]),
        (fly(org_id=1, app_id=3, action=R), [ForRes]),
        (fly(org_id=9, app_id=3, action=W), [ForRes, ForRes]),
        (fly(org_id=1, app_id=3, action=W), [ForAct, ForRes]),
        (fly(org_id=1, action=R), [Unspec]),
    ],
)
def test_and_across_caveats(access: Any, causes: list[type[UnauthorizedError]]) -> None:
    assert validate_outcome(ORG_APP, access) == causes


def test_each_caveat_alone_and_together() -> None:
    # A set allows an access exactly when each of its caveats does.
    accesses = [fly(org_id=o, app_id=a, action=x) for o in (1, 2) for a in (2, 3) for x in (R, W)]
    for access in accesses:
        each = all(validate_outcome([c], access) == [] for c in ORG_APP)
        assert (validate_outcome(ORG_APP, access) == []) is each


def test_zero_accesses_pass() -> None:
    CaveatSet([UnregisteredCaveat(2**48 + 5, b"\xc0"), Organization(1, 0)]).validate()
    CaveatSet([]).validate()


def test_no_caveats_allow_any_well_formed_access() -> None:
    assert validate_outcome([], fly(org_id=5, app_id=6, action=0xFFFF)) == []
    assert validate_outcome([], fly(org_id=None)) == [Unspec]


def test_multiple_accesses_all_checked() -> None:
    ok1 = fly(org_id=1, app_id=2, action=R)
    ok2 = fly(org_id=1, app_id=2, action=Action.NONE)
    bad1 = fly(org_id=1, app_id=3, action=R)
    bad2 = fly(org_id=1, app_id=2, action=W)
    assert validate_outcome(ORG_APP, ok1, ok2) == []
    assert validate_outcome(ORG_APP, ok1, bad1) == [ForRes]
    assert validate_outcome(ORG_APP, bad1, ok1, bad2) == [ForRes, ForAct]


def test_all_failures_collected_and_joined() -> None:
    cs = [Organization(1, R), Apps({2: R}), Machines({"m": R}), ValidityWindow(0, 10)]
    err = assert_denied(
        cs,
        fly(org_id=9, app_id=3, machine="x", action=R),
        causes=[ForRes, ForRes, ForRes, UnauthorizedError],
    )
    parts = [leaf.message for leaf in err.leaves()]
    assert err.message == "; ".join(parts)
    assert str(err) == err.message
    assert [leaf.caveat for leaf in err.leaves()] == cs
    assert err.contains(UnauthorizedError)
    assert not err.contains(ForAct)
    assert not err.contains(InvalidAccessError)


def test_a_single_failure_is_raised_as_itself() -> None:
    with pytest.raises(ForAct) as info:
        CaveatSet(ORG_APP).validate(fly(org_id=1, app_id=2, action=W))
    assert info.value.causes == ()
    assert info.value.caveat is ORG_APP[0]


def test_contains_sees_superclasses_of_each_member() -> None:
    with pytest.raises(UnauthorizedError) as info:
        CaveatSet(ORG_APP).validate(fly(org_id=1, action=W))
    assert leaf_types(info.value) == [ForAct, Unspec]
    assert info.value.contains(InvalidAccessError)  # ResourceUnspecified is-an InvalidAccess
    assert info.value.contains(ForAct)
    assert not info.value.contains(BadCaveatError)


def test_access_failing_its_own_check_is_reported_and_not_checked_further() -> None:
    rec = Recorder()
    cs = CaveatSet([rec, Organization(1, R)])
    good = fly(org_id=1, action=R)
    malformed = fly(org_id=None, app_id=1)
    with pytest.raises(UnauthorizedError) as info:
        cs.validate(malformed, good, BrokenAccess())
    assert leaf_types(info.value) == [Unspec, InvalidAccessError]
    assert rec.seen == [good]


def test_if_present_errors_are_flattened() -> None:
    cs = [IfPresent([Apps({1: R}), Organization(2, R)], R), Organization(3, R)]
    assert validate_outcome(cs, fly(org_id=1, app_id=5, action=W)) == [ForRes, ForRes, ForRes]


@pytest.mark.parametrize(
    "caveat",
    [
        Caveat3P("https://auth.example", b"k" * 16, b"t" * 16),
        BindToParentToken(b"\x01" * 16),
        UnregisteredCaveat(2**48 + 5, b"\xc0"),
        UnregisteredCaveat(77, json_body={"x": 1}),
    ],
)
def test_verification_only_and_unknown_caveats_fail_validation(caveat: Caveat) -> None:
    assert_denied([caveat], fly(), causes=[BadCaveatError])
    assert validate_outcome([Organization(1, R), caveat], fly(action=R)) == [BadCaveatError]


def test_attestations_skipped_but_reported_inside_if_present() -> None:
    assert validate_outcome([FlyioUserID(1)], fly()) == []
    assert validate_outcome([IfPresent([FlyioUserID(1)], R)], fly()) == [BadCaveatError]
