"""The HTTP discharge protocol of third parties (spec section 11).

:class:`DischargeService` is a WSGI application (standard library only) that
a third party runs at its location::

    POST <location>/.well-known/macfly/3p            {"ticket": "<base64>"}
    GET  <location>/.well-known/macfly/3p/poll/<poll secret>
    any  <location>/.well-known/macfly/3p/user/<user secret>   (optional page)

For each ticket it asks the application's *authorize* callback what to do,
and answers with a discharge at once (201 ``{"discharge": "fm2_..."}``), a
poll URL (201 ``{"poll_url": ...}``), a user-interactive flow (201
``{"user_interactive": {"poll_url": ..., "user_url": ...}}``) or an error
(``{"error": ...}``). A deferred flow is finished later with
:meth:`DischargeService.complete`; its poll URL then answers 200 once and is
gone (404). Poll and user secrets are 16 random bytes in hex and expire.
Flows are looked up by the BLAKE2b-256 digests of their secrets; the poll
secret is kept only as its digest, while the user secret (and the user URL
holding it) stays in memory with the pending flow, for the application to
show the user.

:class:`DischargeClient` fetches the discharges a bundle lacks from the third
parties it trusts, following the poll and user-interactive flows.

The modules: :mod:`~macaroons_authz.thirdparty.protocol` (what both sides
share: paths, decisions, errors), :mod:`~macaroons_authz.thirdparty.flows`
(the service's deferred flows), :mod:`~macaroons_authz.thirdparty.service`,
:mod:`~macaroons_authz.thirdparty.client`,
:mod:`~macaroons_authz.thirdparty.bundle` (a header's permission tokens and
their discharges, matched by ticket),
:mod:`~macaroons_authz.thirdparty.sso` (the identities an authentication
third party discharges with), :mod:`~macaroons_authz.thirdparty.jwks`
(an OpenID Connect issuer's signing keys, fetched and cached) and
:mod:`~macaroons_authz.thirdparty.asgi_service` (the service over ASGI).
"""

from .asgi_service import FLOW_STATE_KEY, ASGIDischargeService
from .client import DischargeClient
from .flows import PendingFlow
from .jwks import (
    DiscoveryError,
    JWKSProvider,
    KeyFetchError,
    KeySetError,
    KeySource,
    StaleKeySetError,
)
from .protocol import (
    INIT_PATH,
    POLL_PATH,
    USER_PATH,
    Approve,
    Decision,
    Defer,
    DischargeError,
    DischargeTimeoutError,
    FlowNotFoundError,
    Refuse,
    TicketRequest,
    UserInteractionRequiredError,
)
from .service import FLOW_ENVIRON_KEY, DischargeService

__all__ = [
    "FLOW_ENVIRON_KEY",
    "FLOW_STATE_KEY",
    "INIT_PATH",
    "POLL_PATH",
    "USER_PATH",
    "ASGIDischargeService",
    "Approve",
    "Decision",
    "Defer",
    "DischargeClient",
    "DischargeError",
    "DischargeService",
    "DischargeTimeoutError",
    "DiscoveryError",
    "FlowNotFoundError",
    "JWKSProvider",
    "KeyFetchError",
    "KeySetError",
    "KeySource",
    "PendingFlow",
    "Refuse",
    "StaleKeySetError",
    "TicketRequest",
    "UserInteractionRequiredError",
]
