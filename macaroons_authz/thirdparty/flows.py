"""The discharge service's deferred flows: their secrets and what the application sees.

The flows themselves are kept by a flow store
(:mod:`macaroons_authz.stores.flows`: in memory by default, or in SQLite or
PostgreSQL for a service run by several workers). The service hands a store
only the BLAKE2b-256 digests of a flow's secrets, made here.
"""

from __future__ import annotations

import re

import attrs

from .. import crypto
from .protocol import TicketRequest, _digest

__all__ = ["PendingFlow"]

_SECRET = re.compile(r"[0-9a-f]{32}")
_SECRET_BYTES = 16


@attrs.frozen
class PendingFlow:
    """A deferred flow, as the application sees it.

    Attributes:
        user_secret: the application's handle on the flow: pass it to
            :meth:`DischargeService.complete`. Hidden from ``repr``.
        user_url: the URL the client is told to open (user-interactive
            flows); it holds the user secret. Hidden from ``repr``.
        request: the request that started the flow. The flow given to
            ``on_deferred`` has its headers; a flow looked up later (a user
            page, :meth:`DischargeService.flow`) has none: headers carry
            credentials and cookies, which flow stores do not keep.
        interactive: whether it is a user-interactive flow.
        expires_at: when it is forgotten (the service's clock).
    """

    user_secret: str = attrs.field(repr=False)
    user_url: str = attrs.field(repr=False)
    request: TicketRequest
    interactive: bool
    expires_at: float


def _new_secret() -> str:
    return crypto.random_bytes(_SECRET_BYTES).hex()


def _key(secret: str) -> str | None:
    """The digest a store knows a secret by; ``None`` for what no secret looks like."""
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        return None
    return _digest(secret.encode("ascii"))
