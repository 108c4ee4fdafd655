"""What the two sides of the discharge protocol share (spec section 11).

The endpoint paths, the decisions a service's *authorize* callback returns,
what that callback is told, and the errors a client raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..caveats._base import Caveat
from ..caveats.auth import DischargeRequest
from ..caveats.caveat_set import CaveatSet
from ..errors import MacaroonError
from .sso import _as_float

__all__ = [
    "INIT_PATH",
    "POLL_PATH",
    "USER_PATH",
    "Approve",
    "Decision",
    "Defer",
    "DischargeError",
    "DischargeTimeoutError",
    "FlowNotFoundError",
    "Refuse",
    "TicketRequest",
    "UserInteractionRequiredError",
]

#: Path of the init endpoint, under the third party's location.
INIT_PATH = "/.well-known/macfly/3p"
#: Path prefix of poll URLs.
POLL_PATH = INIT_PATH + "/poll/"
#: Path prefix of the user URLs the service serves itself.
USER_PATH = INIT_PATH + "/user/"


def _seconds(value: float, name: str) -> float:
    number = _as_float(value)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return number


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def _init_url(location: str) -> str:
    return location + (INIT_PATH[1:] if location.endswith("/") else INIT_PATH)


# -- decisions ---------------------------------------------------------------


@attrs.frozen
class TicketRequest:
    """What the *authorize* callback is told about a discharge request.

    Attributes:
        caveats: the ticket's caveats: the first party's conditions, which
            the callback must check before approving.
        headers: the HTTP request headers, lower-case names (``authorization``,
            ``cookie``, ...); hidden from ``repr``.
        remote_addr: the client's address, as the server saw it.
        ticket_id: hex BLAKE2b-256 of the ticket, for logs.
    """

    caveats: CaveatSet
    headers: Mapping[str, str] = attrs.field(repr=False, factory=dict)
    remote_addr: str = ""
    ticket_id: str = ""

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, if any."""
        return self.headers.get("authorization")


@attrs.frozen
class Approve:
    """Discharge now, adding *caveats*.

    Use this only after checking the ticket's caveats yourself; return a
    :class:`~macaroons_authz.DischargeRequest` instead to have them checked
    against verified identities. A ``ValidityWindow`` of *validity* seconds
    is added too, unless *validity* is ``None``.
    """

    caveats: tuple[Caveat, ...] = attrs.field(default=(), converter=tuple)
    validity: float | None = attrs.field(default=300)

    @validity.validator
    def _check_validity(self, _: object, value: float | None) -> None:
        if value is not None:
            _seconds(value, "validity")


@attrs.frozen
class Defer:
    """Answer later: a poll flow, or a user-interactive one if *interactive*."""

    interactive: bool = False


def _error_status(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not int or not 400 <= value <= 599:
        raise ValueError("Refuse status must be a 4xx or 5xx HTTP status")


@attrs.frozen
class Refuse:
    """Refuse with *message* (sent to the client as is) and HTTP *status*.

    Any status from 400 to 599 is sent, known to :mod:`http` or not (nginx's
    499, say); anything else raises :class:`ValueError`.
    """

    message: str = attrs.field(default="unauthorized", validator=attrs.validators.instance_of(str))
    status: int = attrs.field(default=403, validator=_error_status)


#: What the *authorize* callback returns. A
#: :class:`~macaroons_authz.DischargeRequest` means "this is who the caller
#: is": the ticket's caveats are checked against it and the discharge
#: carries its attestations.
Decision = Approve | Defer | Refuse | DischargeRequest


# -- errors ------------------------------------------------------------------


class DischargeError(MacaroonError):
    """A third party did not give a discharge.

    Attributes:
        status: the HTTP status of the failing answer, if there was one.
        message: what went wrong (the third party's ``error``, or ours).
        errors: for a combined error, the error of each ticket.
    """

    def __init__(
        self, message: str, *, status: int | None = None, errors: Iterable[DischargeError] = ()
    ) -> None:
        self.message = message
        self.status = status
        self.errors: tuple[DischargeError, ...] = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"tp error ({self.status}): {self.message}"

    def contains(self, cls: type[BaseException]) -> bool:
        """Whether this error, or one it combines, is an instance of *cls*."""
        return isinstance(self, cls) or any(e.contains(cls) for e in self.errors)


class UserInteractionRequiredError(DischargeError):
    """The third party wants the user to visit a URL, but there is no callback to open it."""


class DischargeTimeoutError(DischargeError):
    """The discharge was not ready before the client's timeout."""


class FlowNotFoundError(MacaroonError, LookupError):
    """No pending flow has this secret (unknown, expired, or already finished)."""
