"""What a verified caveat set lets its holder reach (spec section 9.5, Go's ``flyio`` helpers).

These helpers answer "which organization, which apps, which clusters?" for
a caveat set, so that a service can scope its database queries before it
checks a concrete access. They read the **verified** set that
:meth:`Macaroon.verify <macaroons_authz.Macaroon.verify>` returns; fed the
unverified caveats of a token, they answer for a forger.

Like Go's ``macaroon.GetCaveats``, they collect caveats from inside
``IfPresent`` too and treat those as unconditional, which can only narrow
the answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .access import FlyAccess
from .caveats._base import Caveat
from .caveats.auth import FlyioUserID
from .caveats.caveat_set import CaveatSet
from .caveats.flyio import Apps, Clusters, IsUser, Organization
from .caveats.resset import Action, action_letters
from .errors import (
    MacaroonError,
    UnauthorizedError,
    UnauthorizedForActionError,
    UnauthorizedForResourceError,
)

__all__ = [
    "app_scope",
    "apps_allowing",
    "cluster_scope",
    "dangerous_user_id",
    "organization_scope",
]

# Scope checks validate only Apps or Clusters caveats, which never look at
# the organization; an access still needs one to be well formed.
_ANY_ORG = 0
_LITEFS_CLOUD = "litefs-cloud"


def _as_set(caveats: Iterable[Caveat]) -> CaveatSet:
    return caveats if isinstance(caveats, CaveatSet) else CaveatSet(tuple(caveats))


def _allows(caveats: CaveatSet, access: FlyAccess) -> bool:
    try:
        caveats.validate(access)
    except UnauthorizedError:
        return False
    return True


def organization_scope(caveats: Iterable[Caveat]) -> int:
    """The organization the caveats confine a token to.

    This is the id of the first ``Organization`` caveat (searching inside
    ``IfPresent`` too), after checking that every ``Organization`` caveat
    accepts that organization with no action at all. It implies no access to
    the organization: caveats on child resources and the action masks are
    not considered. An ``Organization`` id of ``0`` (any organization) is
    returned as ``0``.

    Raises:
        UnauthorizedError: there is no ``Organization`` caveat. This is the
            plain class, as Go wraps the plain ``ErrUnauthorized``: the token,
            not the access, lacks the organization, so
            :class:`~macaroons_authz.ResourceUnspecifiedError` would mislead.
        UnauthorizedForResourceError: two ``Organization`` caveats name
            different organizations.
    """
    orgs = _as_set(caveats).of_type(Organization)
    if not orgs:
        raise UnauthorizedError("unauthorized: token must be constrained to org")
    org_id = orgs[0].id
    CaveatSet(orgs).validate(FlyAccess(org_id=org_id, action=Action.NONE))
    return org_id


def app_scope(caveats: Iterable[Caveat]) -> list[int] | None:
    """The app ids the caveats confine a token to, sorted; ``None`` if unconstrained.

    ``None`` means no ``Apps`` caveat limits the apps (or every one is the
    wildcard ``{0: ...}``). Otherwise the result holds each app id named by
    some ``Apps`` caveat (searching inside ``IfPresent`` too) that every
    ``Apps`` caveat accepts with no action; it may be empty, meaning no app
    at all. Like :func:`organization_scope`, it implies no access.
    """
    found = _as_set(caveats).of_type(Apps)
    if not found:
        return None
    candidates = {app_id for cav in found if cav.apps is not None for app_id, _ in cav.apps.entries}
    apps = CaveatSet(found)
    kept = {
        app_id
        for app_id in candidates
        if _allows(apps, FlyAccess(org_id=_ANY_ORG, app_id=app_id, action=Action.NONE))
    }
    if 0 in kept:
        return None
    return sorted(kept)


def cluster_scope(caveats: Iterable[Caveat]) -> list[str] | None:
    """The LiteFS Cloud clusters the caveats confine a token to, sorted; ``None`` if unconstrained.

    As :func:`app_scope`, for ``Clusters`` caveats. A wildcard (the empty
    cluster name) accepted by every ``Clusters`` caveat means unconstrained;
    Go's ``ClusterScope`` returns ``[""]`` then, which no real cluster
    matches.
    """
    found = _as_set(caveats).of_type(Clusters)
    if not found:
        return None
    candidates = {
        name for cav in found if cav.clusters is not None for name, _ in cav.clusters.entries
    }
    clusters = CaveatSet(found)
    kept = {
        name
        for name in candidates
        if _allows(
            clusters,
            FlyAccess(org_id=_ANY_ORG, feature=_LITEFS_CLOUD, cluster=name, action=Action.NONE),
        )
    }
    if "" in kept:
        return None
    return sorted(kept)


def apps_allowing(
    caveats: Iterable[Caveat], action: int, *, now: float | None = None
) -> tuple[int, list[int] | None]:
    """The organization, and the apps in it on which *action* is allowed.

    Returns ``(org_id, None)`` when *action* is allowed on any app of the
    organization, and ``(org_id, app_ids)`` (sorted, never empty) when only
    on those apps. The whole caveat set is checked, with the access's time
    *now* (unix seconds; the wall clock by default).

    Warning: the caller must still check that the apps belong to the
    organization before acting on them.

    Raises:
        UnauthorizedError: from :func:`organization_scope`; or, when no app
            is named, why *action* on a new app (id ``0``) is denied.
        UnauthorizedForResourceError: the caveats allow no app at all.
        UnauthorizedForActionError: no allowed app allows *action*.
    """
    cs = _as_set(caveats)
    org_id = organization_scope(cs)
    scope = app_scope(cs)
    at = time.time() if now is None else now

    if scope is None:
        cs.validate(FlyAccess(org_id=org_id, app_id=0, action=action, at=at))
        return org_id, None

    what = action_letters(action) or "no action"
    if not scope:
        raise UnauthorizedForResourceError(f"unauthorized for {what}: not allowed for any apps")
    allowed = [
        app_id
        for app_id in scope
        if _allows(cs, FlyAccess(org_id=org_id, app_id=app_id, action=action, at=at))
    ]
    if not allowed:
        raise UnauthorizedForActionError(f"unauthorized for {what}: not allowed for any apps")
    return org_id, allowed


def dangerous_user_id(caveats: Iterable[Caveat]) -> int | None:
    """The Fly.io user a token names, for **logging and auditing only**.

    The id comes from ``IsUser`` caveats and ``FlyioUserID`` attestations
    (searching inside ``IfPresent`` too); ``None`` if there are none. Never
    base an authorization decision on it: anyone holding a token may add an
    ``IsUser`` caveat to it. (Go's ``DangerousUserID`` returns an error
    instead of ``None``.)

    Raises:
        MacaroonError: the caveats name different users. It is the base
            class, not an :class:`~macaroons_authz.UnauthorizedError`, as Go's
            error is not ``ErrUnauthorized``.
    """
    cs = _as_set(caveats)
    ids = [c.id for c in cs.of_type(IsUser)] + [c.id for c in cs.of_type(FlyioUserID)]
    if len(set(ids)) > 1:
        raise MacaroonError("multiple user IDs specified")
    return ids[0] if ids else None
