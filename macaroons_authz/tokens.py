"""Recipes: the tokens services actually mint, in one readable call each.

Every recipe mints with a root key and returns a :class:`~macaroons_authz.Macaroon`
(turn it into a header with :func:`~macaroons_authz.to_header`). :func:`restrict`
applies the same restrictions to a token you already hold, without any key:
recipes are :func:`mint` followed by :func:`restrict`.

>>> from macaroons_authz import Action, FlyAccess, Macaroon
>>> key = bytes(range(32))
>>> token = app_token(key, 1234, [42], actions=Action.READ, expires_in=3600, now=1700000000)
>>> caveats = Macaroon.decode(token.encode()).verify(key)
>>> caveats.validate(FlyAccess(org_id=1234, app_id=42, action=Action.READ, at=1700000001))
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Iterable, Mapping, Sequence

from . import crypto
from .caveats._base import Caveat
from .caveats.core import ValidityWindow
from .caveats.flyio import (
    AllowedRoles,
    Apps,
    Command,
    Commands,
    FeatureSet,
    FromMachineSource,
    Machines,
    Organization,
    Role,
)
from .caveats.resset import Action, ActionCaveat, IfPresent, ResourceSet
from .errors import AttenuationError
from .macaroon import Macaroon
from .stores.keyring import SigningKey
from .verifier import FLY_PERMISSION_LOCATION

__all__ = [
    "app_token",
    "deploy_token",
    "machine_exec_caveat",
    "mint",
    "org_token",
    "read_only_token",
    "restrict",
]

Seconds = float | datetime.timedelta
Instant = float | datetime.datetime
RoleLike = Role | str
CommandLike = Command | Sequence[str]

#: Features a deploy token may use besides its app: remote builders and WireGuard.
DEPLOY_FEATURES = ("builder", "wg")


def mint(
    key: bytes | SigningKey, *, kid: bytes | None = None, location: str = FLY_PERMISSION_LOCATION
) -> Macaroon:
    """A token with no caveats, minted with *key* (bytes, or a keyring's current key).

    The KID is *kid*, the key's own KID for a :class:`~macaroons_authz.SigningKey`,
    or :func:`~macaroons_authz.kid_for_key` of the key.
    """
    if isinstance(key, SigningKey):
        return Macaroon.new(kid or key.kid, location, key.key)
    return Macaroon.new(kid or crypto.kid_for_key(key), location, key)


def org_token(
    key: bytes | SigningKey,
    org_id: int,
    *,
    role: RoleLike = Role.ADMIN,
    actions: int = Action.ALL,
    expires_in: Seconds | None = None,
    not_after: Instant | None = None,
    now: Instant | None = None,
    kid: bytes | None = None,
    location: str = FLY_PERMISSION_LOCATION,
) -> Macaroon:
    """A token for organization *org_id*, for a role and an action mask.

    ``role`` is ``"member"``, ``"billing_manager"`` or ``"admin"`` (or a
    :class:`~macaroons_authz.Role`); members may not use admin-only
    features. Expiry: see :func:`restrict`.
    """
    token = mint(key, kid=kid, location=location)
    token.add(Organization(org_id, actions))
    return restrict(token, role=role, expires_in=expires_in, not_after=not_after, now=now)


def app_token(
    key: bytes | SigningKey,
    org_id: int,
    app_ids: int | Iterable[int],
    *,
    actions: int = Action.ALL,
    role: RoleLike = Role.ADMIN,
    expires_in: Seconds | None = None,
    not_after: Instant | None = None,
    now: Instant | None = None,
    kid: bytes | None = None,
    location: str = FLY_PERMISSION_LOCATION,
) -> Macaroon:
    """A token for one or several apps of organization *org_id*, with *actions* on them."""
    token = org_token(key, org_id, role=role, kid=kid, location=location)
    return restrict(
        token, apps=app_ids, actions=actions, expires_in=expires_in, not_after=not_after, now=now
    )


def deploy_token(
    key: bytes | SigningKey,
    org_id: int,
    app_id: int,
    *,
    expires_in: Seconds | None = None,
    not_after: Instant | None = None,
    now: Instant | None = None,
    kid: bytes | None = None,
    location: str = FLY_PERMISSION_LOCATION,
) -> Macaroon:
    """A token to deploy app *app_id*.

    It allows every action on the app and its Machines and on the remote
    builder and WireGuard features. An access naming another app or another
    organization feature is denied; one naming neither (the organization
    itself) may only read.
    """
    token = mint(key, kid=kid, location=location)
    token.add(
        Organization(org_id, Action.ALL),
        IfPresent(
            (
                Apps(ResourceSet({app_id: Action.ALL})),
                FeatureSet(ResourceSet(dict.fromkeys(DEPLOY_FEATURES, Action.ALL))),
            ),
            Action.READ,
        ),
    )
    return restrict(token, expires_in=expires_in, not_after=not_after, now=now)


def read_only_token(
    key: bytes | SigningKey,
    org_id: int,
    *,
    app_ids: int | Iterable[int] | None = None,
    expires_in: Seconds | None = None,
    not_after: Instant | None = None,
    now: Instant | None = None,
    kid: bytes | None = None,
    location: str = FLY_PERMISSION_LOCATION,
) -> Macaroon:
    """A token that may only read, in the organization or in the given apps."""
    token = mint(key, kid=kid, location=location)
    token.add(Organization(org_id, Action.READ))
    return restrict(token, apps=app_ids, expires_in=expires_in, not_after=not_after, now=now)


def restrict(
    token: Macaroon,
    *,
    actions: int | None = None,
    apps: int | Iterable[int] | None = None,
    machines: Iterable[str] | Mapping[str, int] | None = None,
    commands: Iterable[CommandLike] | None = None,
    source_machine: str | None = None,
    role: RoleLike | None = None,
    expires_in: Seconds | None = None,
    not_after: Instant | None = None,
    now: Instant | None = None,
) -> Macaroon:
    """Attenuate *token* in place (no key needed) and return it.

    Args:
        token: the token to restrict.
        actions: allow only these actions, everywhere.
        apps: allow only these apps (with *actions*, or every action).
        machines: allow only these Machines: ids (with *actions*, or every
            action) or a mapping of id to actions.
        commands: allow running only these commands (each an argv prefix,
            or a :class:`~macaroons_authz.Command` for exact matches; none
            at all allows any command) and make every other operation
            read-only: the caveat flyctl's ``tokens create machine-exec``
            adds (see :func:`machine_exec_caveat`).
        source_machine: requests must come from this Machine.
        role: ``"member"``, ``"billing_manager"`` (which includes member) or
            ``"admin"``; admin adds nothing, being the widest.
        expires_in: valid from *now* for this long (seconds or a timedelta).
        not_after: valid from *now* until this instant (unix seconds or an
            aware datetime).
        now: the current time; the wall clock if ``None``.

    Raises:
        AttenuationError: a window in the past, empty or inverted, both
            *expires_in* and *not_after*, or an unknown role; nothing is added.
    """
    caveats: list[Caveat] = []
    mask = Action.ALL if actions is None else actions
    if actions is not None:
        caveats.append(ActionCaveat(actions))
    if apps is not None:
        ids = [apps] if isinstance(apps, int) else list(apps)
        caveats.append(Apps(ResourceSet(dict.fromkeys(ids, mask))))
    if machines is not None:
        per_machine = (
            dict(machines) if isinstance(machines, Mapping) else dict.fromkeys(machines, mask)
        )
        caveats.append(Machines(ResourceSet(per_machine)))
    if commands is not None:
        caveats.append(machine_exec_caveat(commands))
    if source_machine is not None:
        caveats.append(FromMachineSource(source_machine))
    if role is not None:
        mask_role = _role(role)
        if mask_role != Role.ADMIN:
            caveats.append(AllowedRoles(mask_role))
    window = _window(expires_in, not_after, now)
    if window is not None:
        caveats.append(window)
    token.add(*caveats)
    return token


def machine_exec_caveat(commands: Iterable[CommandLike] = ()) -> IfPresent:
    """The caveat of flyctl's machine-exec tokens: these commands only, everything else read-only.

    It is ``IfPresent(Commands(...), else=read)``, as flyctl's
    ``getCommandCaveat`` builds it (``internal/command/tokens/create.go``):
    an access that runs a command must match an entry; any other access may
    only read. Each entry is an argv prefix, or a
    :class:`~macaroons_authz.Command` (``exact=True`` for whole-argv
    matches). No entries at all allows any command, as flyctl does.

    Raises:
        TypeError: an entry is a bare string (give an argv: ``["ls", "-l"]``).
    """
    entries: list[Command] = []
    for c in commands:
        if isinstance(c, str):
            raise TypeError(f"a command is an argv (a list of strings), not the string {c!r}")
        entries.append(c if isinstance(c, Command) else Command(tuple(c)))
    if not entries:
        # flyctl: an empty, non-exact entry matches every argv.
        entries.append(Command((), exact=False))
    return IfPresent((Commands(entries),), Action.READ)


def _role(role: RoleLike) -> int:
    if isinstance(role, Role):
        return int(role)
    if role == "billing_manager":
        return int(Role.BILLING_MANAGER | Role.MEMBER)
    try:
        return int(Role.from_label(role))
    except ValueError:
        raise AttenuationError(
            f"unknown role {role!r}: use member, billing_manager or admin"
        ) from None


def _seconds(value: Instant) -> float:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise AttenuationError("datetimes must be timezone-aware")
        return value.timestamp()
    return float(value)


def _window(
    expires_in: Seconds | None, not_after: Instant | None, now: Instant | None
) -> ValidityWindow | None:
    if expires_in is None and not_after is None:
        return None
    if expires_in is not None and not_after is not None:
        raise AttenuationError("give expires_in or not_after, not both")
    start = time.time() if now is None else _seconds(now)
    if expires_in is not None:
        span = (
            expires_in.total_seconds()
            if isinstance(expires_in, datetime.timedelta)
            else float(expires_in)
        )
        if span <= 0:
            raise AttenuationError(f"expires_in must be positive, not {span:g}s")
        end = start + span
    else:
        assert not_after is not None
        end = _seconds(not_after)
        if end <= start:
            raise AttenuationError("not_after is not after now: the window is in the past")
    # Whole seconds on the wire; never extend the window by rounding.
    return ValidityWindow(math.floor(start), math.floor(end))
