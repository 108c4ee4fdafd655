"""The decision log: one record per authorization decision, nothing secret in it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from ..access import Access

__all__ = ["LOGGER_NAME", "DecisionLog", "DecisionRecord", "log_decision"]

#: The logger :func:`log_decision` writes to, at INFO.
LOGGER_NAME = "macaroons_authz.web"

_logger = logging.getLogger(LOGGER_NAME)


@attrs.frozen
class DecisionRecord:
    """What the decision log records about one decision.

    Only identifiers: the token itself (a bearer credential) and key
    material never reach a record.

    Attributes:
        allowed: whether the request may proceed.
        status: 200 when allowed, else the denial's status (401, 403, 503).
        token_id: the permission token's id (its nonce UUID), or ``None``
            when the header held no decodable permission token. For a 401
            it is the id the token claims, unproven.
        kid: the permission token's key id, in hex, or ``None`` likewise.
        access: the access the request needed.
        failed: for a 403, the caveat kinds that refused it.
        latency: seconds the decision took.
    """

    allowed: bool
    status: int
    token_id: str | None
    kid: str | None
    access: Access
    failed: tuple[str, ...]
    latency: float

    def access_json(self) -> str:
        """The access as JSON (its ``to_json()``), or its ``repr`` if it has no JSON form."""
        to_json = getattr(self.access, "to_json", None)
        return str(to_json()) if callable(to_json) else repr(self.access)


#: A decision log hook: called once per decision, after it is made.
DecisionLog = Callable[[DecisionRecord], None]


def log_decision(record: DecisionRecord) -> None:
    """The default hook: one INFO line on the ``macaroons_authz.web`` logger.

    The record itself rides along as the log record's ``decision``
    attribute, for structured handlers.
    """
    if _logger.isEnabledFor(logging.INFO):
        _logger.info(
            "%s status=%d token_id=%s kid=%s access=%s failed=%s latency_ms=%.3f",
            "allowed" if record.allowed else "denied",
            record.status,
            record.token_id or "-",
            record.kid or "-",
            record.access_json(),
            ",".join(record.failed) or "-",
            record.latency * 1000,
            extra={"decision": record},
        )
