"""Scope helpers over verified caveat sets (spec 9.5; Go's flyio/caveat_set_test.go)."""

from __future__ import annotations

from typing import Any

import pytest
from authz_helpers import ALL, NONE, T0, R, W

import macaroons_authz
from macaroons_authz import (
    Apps,
    Caveat,
    CaveatSet,
    Clusters,
    FeatureSet,
    FlyioUserID,
    IfPresent,
    IsUser,
    Macaroon,
    MacaroonError,
    Machines,
    Organization,
    ResourceUnspecifiedError,
    UnauthorizedError,
    UnauthorizedForActionError,
    UnauthorizedForResourceError,
    ValidityWindow,
    app_scope,
    apps_allowing,
    cluster_scope,
    dangerous_user_id,
    kid_for_key,
    organization_scope,
    scopes,
)

# -- organization_scope ------------------------------------------------------


def test_organization_scope_needs_an_organization_caveat() -> None:
    with pytest.raises(UnauthorizedError) as info:
        organization_scope([Apps({123: ALL})])
    # Exactly the plain class, as Go wraps the plain ErrUnauthorized.
    assert type(info.value) is UnauthorizedError
    with pytest.raises(UnauthorizedError):
        organization_scope([])


@pytest.mark.parametrize(
    "caveats",
    [
        pytest.param([Organization(123, ALL), Organization(234, ALL)], id="two-orgs"),
        pytest.param(
            [Organization(123, ALL), IfPresent([Organization(234, ALL)], NONE)], id="if-present"
        ),
        pytest.param([Organization(0, ALL), Organization(5, ALL)], id="wildcard-first"),
    ],
)
def test_organization_scope_conflicting_orgs(caveats: list[Caveat]) -> None:
    with pytest.raises(UnauthorizedError) as info:
        organization_scope(caveats)
    assert type(info.value) is UnauthorizedForResourceError


@pytest.mark.parametrize(
    ("caveats", "org_id"),
    [
        pytest.param([Organization(123, ALL)], 123, id="basic"),
        pytest.param([Organization(123, NONE)], 123, id="no-permission"),
        pytest.param(
            [Organization(123, ALL), IfPresent([Apps({123: ALL})], NONE)], 123, id="if-present-none"
        ),
        pytest.param([Organization(123, ALL), Apps({234: ALL})], 123, id="child-required"),
        pytest.param([Organization(123, R), Organization(123, W)], 123, id="same-org-twice"),
        pytest.param([IfPresent([Organization(44, R)], ALL)], 44, id="only-in-if-present"),
        pytest.param([Organization(0, R)], 0, id="wildcard"),
        pytest.param([Organization(5, R), Organization(0, R)], 5, id="wildcard-second"),
        pytest.param([ValidityWindow(0, 1), Organization(5, R)], 5, id="expired-ignored"),
    ],
)
def test_organization_scope(caveats: list[Caveat], org_id: int) -> None:
    assert organization_scope(caveats) == org_id
    assert organization_scope(CaveatSet(caveats)) == org_id


# -- app_scope ---------------------------------------------------------------

EMPTY: list[int] = []
UNCONSTRAINED = None
CONSTRAINED = [1]

# Each case again on top of an id=* caveat, which must not change the scope.
BASES = [
    pytest.param([], id="no-base"),
    pytest.param([Apps({0: ALL})], id="wildcard-all"),
    pytest.param([Apps({0: NONE})], id="wildcard-none"),
]

APP_CASES = [
    pytest.param([Apps({})], EMPTY, id="empty-apps"),
    pytest.param([Apps(None)], EMPTY, id="nil-apps"),
    pytest.param([IfPresent([Apps({})], NONE)], EMPTY, id="empty-if-present"),
    pytest.param([Apps({1: R}), Apps({2: R})], EMPTY, id="disjoint"),
    pytest.param([Apps({1: R}), IfPresent([Apps({2: R})], NONE)], EMPTY, id="disjoint-if-present"),
    pytest.param(
        [IfPresent([Apps({1: R})], NONE), IfPresent([Apps({2: R})], NONE)],
        EMPTY,
        id="disjoint-if-presents",
    ),
    pytest.param([Apps({0: R, 1: R})], EMPTY, id="malformed"),
    pytest.param([], UNCONSTRAINED, id="unconstrained"),
    pytest.param(
        [IfPresent([FeatureSet({"wg": ALL})], R)], UNCONSTRAINED, id="unconstrained-unrelated"
    ),
    pytest.param([Organization(5, ALL), Machines({"m": R})], UNCONSTRAINED, id="other-kinds"),
    pytest.param([Apps({1: R})], CONSTRAINED, id="constrained"),
    pytest.param([Apps({1: NONE})], CONSTRAINED, id="no-permission"),
    pytest.param([Apps({1: R}), Apps({1: W})], CONSTRAINED, id="disjoint-permissions"),
    pytest.param([IfPresent([Apps({1: R})], R)], CONSTRAINED, id="if-present"),
    pytest.param(
        [Apps({1: ALL}), IfPresent([FeatureSet({"wg": ALL})], NONE)],
        CONSTRAINED,
        id="constrained-and-other-if-present",
    ),
    pytest.param([Apps({3: R, 1: R, 2: R})], [1, 2, 3], id="sorted"),
    pytest.param([Apps({1: R, 2: R, 3: R}), Apps({2: R, 3: R, 4: R})], [2, 3], id="intersection"),
]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("caveats", "expected"), APP_CASES)
def test_app_scope(base: list[Caveat], caveats: list[Caveat], expected: list[int] | None) -> None:
    got = app_scope([*base, *caveats])
    assert got == expected
    assert (got is None) is (expected is None)  # empty and unconstrained differ


def test_app_scope_wildcard_alone_is_unconstrained() -> None:
    assert app_scope([Apps({0: R})]) is None
    assert app_scope([Apps({0: R}), Apps({0: W})]) is None


# -- cluster_scope -----------------------------------------------------------

CLUSTER_CASES = [
    pytest.param([Clusters({})], [], id="empty"),
    pytest.param([Clusters(None)], [], id="nil"),
    pytest.param([IfPresent([Clusters({})], NONE)], [], id="empty-if-present"),
    pytest.param([Clusters({"1": R}), Clusters({"2": R})], [], id="disjoint"),
    pytest.param(
        [Clusters({"1": R}), IfPresent([Clusters({"2": R})], NONE)], [], id="disjoint-if-present"
    ),
    pytest.param(
        [IfPresent([Clusters({"1": R})], NONE), IfPresent([Clusters({"2": R})], NONE)],
        [],
        id="disjoint-if-presents",
    ),
    pytest.param([Clusters({"1": R})], ["1"], id="constrained"),
    pytest.param([Clusters({"1": NONE})], ["1"], id="no-permission"),
    pytest.param([Clusters({"1": R}), Clusters({"1": W})], ["1"], id="disjoint-permissions"),
    pytest.param([IfPresent([Clusters({"1": R})], R)], ["1"], id="if-present"),
    pytest.param(
        [Clusters({"1": ALL}), IfPresent([FeatureSet({"wg": ALL})], NONE)],
        ["1"],
        id="constrained-and-other-if-present",
    ),
    pytest.param([Clusters({"b": R, "a": R, "B": R})], ["B", "a", "b"], id="sorted"),
    pytest.param([], None, id="unconstrained"),
    pytest.param([Apps({1: R})], None, id="other-kinds"),
    # Deliberately unlike Go, which returns [""]: a wildcard is no constraint.
    pytest.param([Clusters({"": R})], None, id="wildcard"),
    pytest.param([Clusters({"": R}), Clusters({"b": R, "a": R})], ["a", "b"], id="wildcard-base"),
    pytest.param([Clusters({"": R, "a": R})], [], id="malformed"),
]


@pytest.mark.parametrize(("caveats", "expected"), CLUSTER_CASES)
def test_cluster_scope(caveats: list[Caveat], expected: list[str] | None) -> None:
    got = cluster_scope(caveats)
    assert got == expected
    assert (got is None) is (expected is None)


# -- apps_allowing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("caveats", "action", "error"),
    [
        pytest.param([Apps({123: ALL})], NONE, UnauthorizedError, id="no-org"),
        pytest.param(
            [Organization(987, ALL), Apps({})], NONE, UnauthorizedForResourceError, id="no-apps"
        ),
        pytest.param(
            [Organization(987, ALL), Apps(None)], R, UnauthorizedForResourceError, id="nil"
        ),
        pytest.param([Organization(987, R)], W, UnauthorizedForActionError, id="org-denies"),
        pytest.param(
            [Organization(987, ALL), Apps({123: R})], W, UnauthorizedForActionError, id="apps-deny"
        ),
        pytest.param(
            [Organization(1, ALL), Organization(2, ALL)], R, UnauthorizedForResourceError, id="orgs"
        ),
        pytest.param(
            # No app named: the whole set is checked for a new app (id 0).
            [Organization(987, ALL), Machines({"m": ALL})],
            R,
            ResourceUnspecifiedError,
            id="unconstrained-but-other-caveat",
        ),
    ],
)
def test_apps_allowing_errors(caveats: list[Caveat], action: int, error: type[Exception]) -> None:
    with pytest.raises(UnauthorizedError) as info:
        apps_allowing(caveats, action, now=T0)
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("caveats", "action", "expected"),
    [
        pytest.param([Organization(987, ALL)], W, (987, None), id="org-allows"),
        pytest.param(
            [Organization(987, ALL), Apps({123: ALL, 234: W, 345: R})],
            W,
            (987, [123, 234]),
            id="some-apps",
        ),
        pytest.param(
            [Organization(987, ALL), Apps({345: R, 123: ALL})], NONE, (987, [123, 345]), id="none"
        ),
        pytest.param(
            [Organization(1, ALL), IfPresent([Apps({5: R | W, 6: R})], R)],
            W,
            (1, [5]),
            id="if-present",
        ),
        pytest.param([Organization(1, ALL), Apps({0: R})], R, (1, None), id="wildcard-apps"),
        pytest.param([Organization(0, ALL)], R, (0, None), id="wildcard-org"),
    ],
)
def test_apps_allowing(
    caveats: list[Caveat], action: int, expected: tuple[int, list[int] | None]
) -> None:
    assert apps_allowing(caveats, action, now=T0) == expected


def test_apps_allowing_judges_time_at_now() -> None:
    cs = [Organization(7, ALL), ValidityWindow(100, 200)]
    assert apps_allowing(cs, R, now=150) == (7, None)
    with pytest.raises(UnauthorizedError) as info:
        apps_allowing(cs, R, now=250)
    assert type(info.value) is UnauthorizedError
    # With an app list, an expired token allows none of them.
    cs = [*cs, Apps({3: R})]
    assert apps_allowing(cs, R, now=150) == (7, [3])
    with pytest.raises(UnauthorizedForActionError):
        apps_allowing(cs, R, now=250)


def test_apps_allowing_defaults_to_the_wall_clock() -> None:
    cs = [Organization(7, ALL), ValidityWindow(0, 1)]  # expired in 1970
    with pytest.raises(UnauthorizedError):
        apps_allowing(cs, R)
    assert apps_allowing([Organization(7, ALL)], R) == (7, None)


# -- dangerous_user_id -------------------------------------------------------


@pytest.mark.parametrize(
    ("caveats", "expected"),
    [
        pytest.param([], None, id="none"),
        pytest.param([Organization(1, R)], None, id="unrelated"),
        pytest.param([IsUser(123)], 123, id="is-user"),
        pytest.param([IsUser(123), IsUser(123)], 123, id="is-user-twice"),
        pytest.param([FlyioUserID(123)], 123, id="attestation"),
        pytest.param([FlyioUserID(123), FlyioUserID(123)], 123, id="attestation-twice"),
        pytest.param([IsUser(123), FlyioUserID(123)], 123, id="both"),
        pytest.param([FlyioUserID(123), IsUser(123)], 123, id="both-reversed"),
        pytest.param([IfPresent([IsUser(9)], R)], 9, id="inside-if-present"),
        pytest.param([IsUser(0)], 0, id="zero"),
    ],
)
def test_dangerous_user_id(caveats: list[Caveat], expected: int | None) -> None:
    assert dangerous_user_id(caveats) == expected


@pytest.mark.parametrize(
    "caveats",
    [
        pytest.param([IsUser(123), IsUser(234)], id="is-user"),
        pytest.param([FlyioUserID(123), FlyioUserID(234)], id="attestation"),
        pytest.param([IsUser(123), FlyioUserID(234)], id="mixed"),
        pytest.param([FlyioUserID(234), IsUser(123)], id="mixed-reversed"),
        pytest.param([IsUser(1), IfPresent([IsUser(2)], R)], id="inside-if-present"),
    ],
)
def test_dangerous_user_id_conflict(caveats: list[Caveat]) -> None:
    with pytest.raises(MacaroonError, match="multiple user IDs") as info:
        dangerous_user_id(caveats)
    assert not isinstance(info.value, UnauthorizedError)


# -- on real tokens, and the public API ---------------------------------------


def test_scopes_of_a_verified_token() -> None:
    key = bytes(range(32))
    token = Macaroon.new(kid_for_key(key), "https://api.fly.io/v1", key)
    token.add(
        Organization(5, ALL),
        Apps({7: R | W, 8: R}),
        IfPresent([Clusters({"c": R})], ALL),
        IsUser(42),
    )
    verified = Macaroon.decode(token.encode()).verify(key)
    assert organization_scope(verified) == 5
    assert app_scope(verified) == [7, 8]
    assert cluster_scope(verified) == ["c"]
    assert apps_allowing(verified, W, now=T0) == (5, [7])
    assert dangerous_user_id(verified) == 42
    # Attenuating narrows the scopes.
    token.add(Apps({8: R}))
    verified = Macaroon.decode(token.encode()).verify(key)
    assert app_scope(verified) == [8]
    with pytest.raises(UnauthorizedForActionError):
        apps_allowing(verified, W, now=T0)


@pytest.mark.parametrize(
    "name",
    ["organization_scope", "app_scope", "cluster_scope", "apps_allowing", "dangerous_user_id"],
)
def test_exported(name: str) -> None:
    assert name in macaroons_authz.__all__
    assert getattr(macaroons_authz, name) is getattr(scopes, name)
    assert getattr(scopes, name).__doc__


def test_scope_helpers_accept_any_iterable() -> None:
    caveats: Any = (c for c in [Organization(3, R), Apps({4: R})])
    assert organization_scope(caveats) == 3
    assert app_scope(iter([Apps({4: R})])) == [4]
