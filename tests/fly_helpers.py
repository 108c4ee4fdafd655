"""Fly.io-shaped tokens for the tests of macaroons_authz.fly, minted on throw-away keys.

A Fly.io session token is a permission token for https://api.fly.io/v1 with
a third-party caveat for the authentication service, plus that service's
discharge, often with an fo1_ OAuth token beside them.
"""

from __future__ import annotations

import attrs

from macaroons_authz import (
    Caveat,
    Macaroon,
    ValidityWindow,
    deploy_token,
    discharge_ticket,
    to_header,
)
from macaroons_authz.fly import LOCATION_NEW_AUTHENTICATION

KEY = bytes(range(32))
AUTH_KEY = bytes(range(32, 64))
ORG = 1234
APP = 42
NOW = 1_700_000_000
OAUTH = "fo1_oauth-secret-do-not-log"
TRUSTED = {LOCATION_NEW_AUTHENTICATION: [AUTH_KEY]}


@attrs.frozen
class FlyTokens:
    permission: Macaroon
    discharge: Macaroon
    header: str


def fly_tokens(
    *,
    org: int = ORG,
    auth_location: str = LOCATION_NEW_AUTHENTICATION,
    discharge_until: int = NOW + 3600,
    extra: tuple[Caveat, ...] = (),
    oauth: bool = True,
) -> FlyTokens:
    """A deploy token for APP and a discharge from *auth_location* until *discharge_until*."""
    perm = deploy_token(KEY, org, APP)
    perm.add(*extra)
    perm.add_3p(AUTH_KEY, auth_location)
    (ticket,) = perm.third_party_tickets()[auth_location]
    _, discharge = discharge_ticket(AUTH_KEY, auth_location, ticket)
    discharge.add(ValidityWindow(NOW - 60, discharge_until))
    parts: list[Macaroon | str] = [perm, discharge]
    if oauth:
        parts.append(OAUTH)
    return FlyTokens(
        Macaroon.decode(perm.encode()), Macaroon.decode(discharge.encode()), to_header(*parts)
    )
