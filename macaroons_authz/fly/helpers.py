"""Small Fly.io helpers that Go's ``flyio`` and ``auth`` packages have.

Bundle predicates for the well-known locations and for an organization,
the ids Fly.io logs tokens by (nonce UUIDs and "nonce emails"), the
longest discharge validity a ticket allows, and the ids a
:class:`~macaroons_authz.DischargeRequest` holds (Go's
``auth.DischargeRequest`` methods).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..access import FlyAccess
from ..caveats._base import Caveat
from ..caveats.auth import DischargeRequest, MaxValidity
from ..caveats.caveat_set import CaveatSet
from ..caveats.resset import Action
from ..errors import UnauthorizedError
from ..nonce import Nonce
from ..scopes import organization_scope
from ..thirdparty.bundle import (
    Bundle,
    BundleToken,
    MacaroonToken,
    Predicate,
    allows_access,
    at_location,
)
from .locations import (
    LOCATION_AUTHENTICATION,
    LOCATION_NEW_AUTHENTICATION,
    LOCATION_PERMISSION,
    LOCATION_SECRETS,
)

__all__ = [
    "flyio_organization_ids",
    "flyio_user_ids",
    "get_max_validity",
    "github_org_ids",
    "google_hds",
    "is_auth_token",
    "is_for_org",
    "is_for_org_unverified",
    "is_new_auth_token",
    "is_permission_token",
    "is_secrets_token",
    "nonce_email",
    "nonce_emails",
    "token_uuids",
]

#: Macaroons for Fly.io's API (Go's ``flyio.IsPermissionToken``).
is_permission_token = at_location(LOCATION_PERMISSION)
#: Discharges of the authentication service's older location (``IsAuthToken``).
is_auth_token = at_location(LOCATION_AUTHENTICATION)
#: Discharges of the authentication service's newer location (``IsNewAuthToken``).
is_new_auth_token = at_location(LOCATION_NEW_AUTHENTICATION)
#: Macaroons for Fly.io's secrets service (``IsSecretsToken``).
is_secrets_token = at_location(LOCATION_SECRETS)


def is_for_org(org_id: int, *, now: float) -> Predicate:
    """Verified tokens that reach organization *org_id* with no particular action (``IsForOrg``).

    It implies no level of access to the organization. *now* is the time
    the tokens' validity windows are checked at.
    """
    return allows_access(FlyAccess(org_id=org_id, action=Action.NONE, at=now))


def is_for_org_unverified(org_id: int) -> Predicate:
    """Permission tokens whose *unverified* caveats scope them to *org_id* (``IsForOrgUnverified``).

    Read from the tokens' own caveats, not verified: good for choosing which
    token to send, never for deciding what a token allows.
    """

    def test(t: BundleToken) -> bool:
        if not (isinstance(t, MacaroonToken) and is_permission_token(t)):
            return False
        try:
            return organization_scope(t.unsafe_caveats) == org_id
        except UnauthorizedError:
            return False

    return Predicate(test)


def nonce_email(nonce: Nonce) -> str:
    """The pseudo email address Fly.io files a token under: ``<nonce UUID>@tokens.fly.io``."""
    return nonce.email


def token_uuids(bundle: Bundle) -> list[str]:
    """The nonce UUIDs of the bundle's Fly.io permission tokens, in order (Go's ``flyio.UUIDs``)."""
    return [str(t.nonce.uuid) for t in _permission_tokens(bundle)]


def nonce_emails(bundle: Bundle) -> list[str]:
    """The :func:`nonce_email` of each Fly.io permission token of *bundle* (``NonceEmails``)."""
    return [t.nonce.email for t in _permission_tokens(bundle)]


def _permission_tokens(bundle: Bundle) -> list[MacaroonToken]:
    # Go selects flyio.IsPermissionToken, whatever the bundle's own location.
    return [t for t in bundle if isinstance(t, MacaroonToken) and is_permission_token(t)]


def get_max_validity(caveats: Iterable[Caveat]) -> int | None:
    """The shortest :class:`~macaroons_authz.MaxValidity` among *caveats*, in seconds.

    ``None`` when there is none (Go's ``auth.GetMaxValidity`` returns
    ``false``). Those inside ``IfPresent`` count too, as Go's
    ``GetCaveats`` finds them. A third party reads it from a ticket's
    caveats to bound the discharge it issues.
    """
    found = CaveatSet(list(caveats)).of_type(MaxValidity)
    return min((c.seconds for c in found), default=None)


def flyio_user_ids(request: DischargeRequest) -> tuple[int, ...]:
    """The Fly.io user ids of *request*'s identities, once each, ascending (``FlyioUserIDs``)."""
    return tuple(sorted({f.user_id for f in request.flyio}))


def flyio_organization_ids(request: DischargeRequest) -> tuple[int, ...]:
    """The organizations of *request*'s Fly.io users, once each, ascending.

    Go's ``FlyioOrganizationIDs``.
    """
    return tuple(sorted({o for f in request.flyio for o in f.organization_ids}))


def google_hds(request: DischargeRequest) -> tuple[str, ...]:
    """The Google hosted domains of *request*, once each, sorted (``GoogleHDs``).

    A Google identity without a hosted domain counts as ``""``, as in Go.
    """
    return tuple(sorted({g.hd for g in request.google}))


def github_org_ids(request: DischargeRequest) -> tuple[int, ...]:
    """The GitHub organizations of *request*'s GitHub users, once each, ascending.

    Go's ``GitHubOrgIDs``.
    """
    return tuple(sorted({o for g in request.github for o in g.org_ids}))
