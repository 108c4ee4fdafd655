"""The kinds of token a :class:`~macaroons_authz.Bundle` holds, and filters over them.

A header's pieces are classified once (:class:`NonMacaroon`,
:class:`MalformedMacaroon`, :class:`UnverifiedMacaroon`, and after
verification :class:`VerifiedMacaroon` or :class:`FailedMacaroon`);
:class:`Predicate` and the functions below select among them, and may be
combined with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from ..caveats._base import Caveat
from ..caveats.caveat_set import CaveatSet
from ..caveats.core import ValidityWindow
from ..caveats.registry import CaveatRegistry
from ..errors import (
    DecodeError,
    MacaroonError,
    UnauthorizedError,
)
from ..header import (
    MACAROON_LABELS,
    _decode_payload,
    split_header,
    trim_space,
)
from ..macaroon import Macaroon
from ..nonce import Nonce

if TYPE_CHECKING:
    from ..access import Access

__all__ = [
    "BundleToken",
    "FailedMacaroon",
    "Filter",
    "MacaroonToken",
    "MalformedMacaroon",
    "NonMacaroon",
    "Predicate",
    "UnverifiedMacaroon",
    "VerifiedMacaroon",
    "allows_access",
    "at_location",
    "has_caveat",
    "is_kind",
]


# -- tokens ------------------------------------------------------------------


@attrs.frozen(repr=False)
class BundleToken:
    """Base of the token kinds of a bundle: one token string of a header.

    Tokens are values: two are equal when they are of one kind with the same
    string (and, once verified, the same trusted caveats).

    Attributes:
        text: the token string as it appeared in the header (trimmed). It is
            a bearer credential: neither ``str`` nor ``repr`` shows it.
    """

    text: str

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@attrs.frozen(repr=False)
class NonMacaroon(BundleToken):
    """A token that is not a macaroon (e.g. an ``fo1_`` OAuth token), kept verbatim."""

    def __repr__(self) -> str:
        label, sep, _ = self.text.partition("_")
        return f"<NonMacaroon label={label!r}>" if sep else "<NonMacaroon>"


@attrs.frozen(repr=False)
class MalformedMacaroon(BundleToken):
    """A token with a macaroon label that does not decode.

    Attributes:
        error: why it does not decode (the message never holds the token).
    """

    error: DecodeError = attrs.field(eq=False)

    def __repr__(self) -> str:
        return f"<MalformedMacaroon error={str(self.error)!r}>"


@attrs.frozen(repr=False)
class MacaroonToken(BundleToken):
    """Base of the kinds that hold a decoded macaroon.

    Attributes:
        macaroon: the decoded token. Never attenuate it in place (the token
            string would no longer match it); use :meth:`Bundle.attenuate`.
    """

    macaroon: Macaroon = attrs.field(eq=False)

    @property
    def location(self) -> str:
        """The macaroon's location."""
        return self.macaroon.location

    @property
    def nonce(self) -> Nonce:
        """The macaroon's nonce (its KID, or the ticket for a discharge)."""
        return self.macaroon.nonce

    @property
    def unsafe_caveats(self) -> CaveatSet:
        """The caveats as decoded, *not verified*."""
        return self.macaroon.unsafe_caveats

    def third_party_tickets(self) -> dict[str, list[bytes]]:
        """The tickets of the macaroon's third-party caveats, by location."""
        return self.macaroon.third_party_tickets()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} location={self.location!r} id={self.nonce.uuid}>"


@attrs.frozen(repr=False)
class UnverifiedMacaroon(MacaroonToken):
    """A decoded macaroon that has not been verified (discharges stay so)."""


@attrs.frozen(repr=False)
class VerifiedMacaroon(MacaroonToken):
    """A permission token that verified, with the caveats it may be trusted for.

    Attributes:
        caveats: the trusted caveats (the token's and its discharges').
    """

    caveats: CaveatSet

    @property
    def expires_at(self) -> int | None:
        """The earliest ``not_after`` of its validity windows; ``None`` if none."""
        windows = self.caveats.of_type(ValidityWindow)
        return min((w.not_after for w in windows), default=None)

    def expiration(self) -> datetime.datetime | None:
        """:attr:`expires_at` as an aware UTC datetime, or ``None``."""
        at = self.expires_at
        return None if at is None else datetime.datetime.fromtimestamp(at, datetime.UTC)


@attrs.frozen(repr=False)
class FailedMacaroon(MacaroonToken):
    """A permission token that failed verification.

    Attributes:
        error: why (unknown KID, bad signature, missing discharge, ...).
    """

    error: MacaroonError = attrs.field(eq=False)

    def __repr__(self) -> str:
        return (
            f"<FailedMacaroon location={self.location!r} id={self.nonce.uuid} "
            f"error={str(self.error)!r}>"
        )


def _classify(piece: str, registry: CaveatRegistry | None) -> BundleToken:
    label, sep, payload = piece.partition("_")
    if not sep or label not in MACAROON_LABELS:
        return NonMacaroon(piece)
    try:
        data = _decode_payload(label, sep, payload)
        return UnverifiedMacaroon(piece, Macaroon.decode(data, registry))
    except DecodeError as exc:
        return MalformedMacaroon(piece, exc)


def _parse_tokens(header: str, registry: CaveatRegistry | None) -> list[BundleToken]:
    return [_classify(trim_space(piece), registry) for piece in split_header(header)]


# -- filters -----------------------------------------------------------------


class Filter(Protocol):
    """Anything that selects tokens from a list, keeping their order."""

    def apply(self, tokens: Sequence[BundleToken]) -> list[BundleToken]:
        """The tokens to keep, in their original order."""
        ...


FilterLike = Filter | Callable[[BundleToken], bool]


@attrs.frozen
class Predicate:
    """A filter that decides for each token alone; combine with ``&``, ``|``, ``~``.

    >>> keep_fo1 = Predicate(lambda t: t.text.startswith("fo1_"))
    >>> Bundle.parse("fo1_a,zz", "loc").select(~keep_fo1).header(scheme=False)
    'zz'
    """

    test: Callable[[BundleToken], bool]

    def __call__(self, token: BundleToken) -> bool:
        return bool(self.test(token))

    def apply(self, tokens: Sequence[BundleToken]) -> list[BundleToken]:
        """The tokens for which the predicate holds."""
        return [t for t in tokens if self.test(t)]

    def __and__(self, other: Callable[[BundleToken], bool]) -> Predicate:
        return Predicate(lambda t: self(t) and bool(other(t)))

    def __or__(self, other: Callable[[BundleToken], bool]) -> Predicate:
        return Predicate(lambda t: self(t) or bool(other(t)))

    def __invert__(self) -> Predicate:
        return Predicate(lambda t: not self(t))


@attrs.frozen
class _FilterFunction:
    fn: Callable[[Sequence[BundleToken]], list[BundleToken]]

    def apply(self, tokens: Sequence[BundleToken]) -> list[BundleToken]:
        return self.fn(tokens)


def _apply(f: FilterLike, tokens: Sequence[BundleToken]) -> list[BundleToken]:
    apply = getattr(f, "apply", None)
    if apply is not None:
        return list(apply(tokens))
    if not callable(f):
        raise TypeError(f"not a filter: {type(f).__name__}")
    return [t for t in tokens if f(t)]


def is_kind(*kinds: type[BundleToken]) -> Predicate:
    """Tokens of these kinds, e.g. ``is_kind(NonMacaroon)`` or ``is_kind(MacaroonToken)``."""
    return Predicate(lambda t: isinstance(t, kinds))


def at_location(location: str) -> Predicate:
    """Macaroons whose location is *location*."""
    return Predicate(lambda t: isinstance(t, MacaroonToken) and t.location == location)


def has_caveat(cls: type[Caveat]) -> Predicate:
    """Macaroons with a caveat of type *cls* (unverified caveats; ``IfPresent`` included)."""
    return Predicate(lambda t: isinstance(t, MacaroonToken) and bool(t.unsafe_caveats.of_type(cls)))


def allows_access(*accesses: Access) -> Predicate:
    """Verified macaroons whose trusted caveats allow every access."""

    def test(t: BundleToken) -> bool:
        if not isinstance(t, VerifiedMacaroon):
            return False
        try:
            t.caveats.validate(*accesses)
        except UnauthorizedError:
            return False
        return True

    return Predicate(test)


def _discharges_by_ticket(
    tokens: Sequence[BundleToken], location: str
) -> dict[bytes, list[MacaroonToken]]:
    out: dict[bytes, list[MacaroonToken]] = {}
    for t in tokens:
        if isinstance(t, MacaroonToken) and t.location != location:
            out.setdefault(t.nonce.kid or b"", []).append(t)
    return out


def _permission_tokens(tokens: Sequence[BundleToken], location: str) -> list[MacaroonToken]:
    return [t for t in tokens if isinstance(t, MacaroonToken) and t.location == location]


def _tickets(token: MacaroonToken) -> list[bytes]:
    return [ticket for tickets in token.third_party_tickets().values() for ticket in tickets]


def _default_filter(location: str) -> Filter:
    return _with_discharges(is_kind(NonMacaroon) | at_location(location), location)


def _with_discharges(f: FilterLike, location: str) -> Filter:
    def apply(tokens: Sequence[BundleToken]) -> list[BundleToken]:
        kept = {id(t) for t in _apply(f, tokens)}
        tickets = {
            ticket
            for p in _permission_tokens(tokens, location)
            if id(p) in kept
            for ticket in _tickets(p)
        }
        return [
            t
            for t in tokens
            if id(t) in kept
            or (isinstance(t, MacaroonToken) and t.location != location and t.nonce.kid in tickets)
        ]

    return _FilterFunction(apply)
