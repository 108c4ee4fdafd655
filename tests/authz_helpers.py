"""Helpers shared by the authorization tests: exact error classes, made easy to assert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from macaroons_authz import (
    Action,
    Caveat,
    CaveatSet,
    FlyAccess,
    ResourceUnspecifiedError,
    UnauthorizedError,
    UnauthorizedForActionError,
    UnauthorizedForResourceError,
    UnauthorizedForRoleError,
)

# Short names for the semantic tables.
R, W, C, D, X = Action.READ, Action.WRITE, Action.CREATE, Action.DELETE, Action.CONTROL
ALL, NONE = Action.ALL, Action.NONE
Unspec = ResourceUnspecifiedError
ForRes = UnauthorizedForResourceError
ForAct = UnauthorizedForActionError
ForRole = UnauthorizedForRoleError

#: A fixed instant for accesses, so no test reads the wall clock by accident.
T0 = 1_700_000_000.0


def fly(**fields: Any) -> FlyAccess:
    """A :class:`FlyAccess` at :data:`T0` (org 1 unless given)."""
    fields.setdefault("org_id", 1)
    fields.setdefault("at", T0)
    return FlyAccess(**fields)


def leaf_types(err: UnauthorizedError) -> list[type[UnauthorizedError]]:
    """The exact classes of the individual errors *err* combines, in order."""
    return [type(leaf) for leaf in err.leaves()]


def assert_prohibits(
    caveat: Caveat, access: Any, expected: type[UnauthorizedError] | None
) -> UnauthorizedError | None:
    """*caveat* answers exactly *expected* (an error of exactly that class, or ``None``)."""
    err = caveat.prohibits(access)
    if expected is None:
        assert err is None, f"{caveat!r} denied: {err}"
    else:
        assert err is not None, f"{caveat!r} allowed {access!r}"
        assert type(err) is expected, f"{type(err).__name__}: {err}"
    return err


def validate_outcome(
    caveats: Sequence[Caveat] | CaveatSet, *accesses: Any
) -> list[type[UnauthorizedError]]:
    """The exact classes of every error ``CaveatSet.validate`` reports; ``[]`` if allowed."""
    cs = caveats if isinstance(caveats, CaveatSet) else CaveatSet(list(caveats))
    try:
        cs.validate(*accesses)
    except UnauthorizedError as exc:
        types = leaf_types(exc)
        assert types, "a raised error always has at least one leaf"
        return types
    return []


def assert_denied(
    caveats: Sequence[Caveat] | CaveatSet,
    *accesses: Any,
    causes: Sequence[type[UnauthorizedError]],
) -> UnauthorizedError:
    """Validation raises, with exactly *causes* (in order) as its individual errors."""
    cs = caveats if isinstance(caveats, CaveatSet) else CaveatSet(list(caveats))
    with pytest.raises(UnauthorizedError) as info:
        cs.validate(*accesses)
    assert leaf_types(info.value) == list(causes)
    for cls in causes:
        assert info.value.contains(cls)
    return info.value


def unique_caveats(caveats: Sequence[Caveat]) -> list[Caveat]:
    """The caveats a token keeps when they are added: later copies of an encoding are dropped."""
    seen: set[bytes] = set()
    out = []
    for cav in caveats:
        if cav.packed() not in seen:
            seen.add(cav.packed())
            out.append(cav)
    return out
