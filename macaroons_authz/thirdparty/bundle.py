"""``Bundle``: every token of one ``Authorization`` header (spec section 10).

A bundle keeps the tokens of a header in order, each with its original token
string, classified by kind:

* :class:`NonMacaroon`: not a macaroon (``fo1_`` OAuth tokens, anything
  without a macaroon label), kept verbatim;
* :class:`MalformedMacaroon`: a macaroon label whose payload does not decode;
* :class:`UnverifiedMacaroon`: a decoded macaroon, not verified yet
  (discharges always stay unverified);
* :class:`VerifiedMacaroon` / :class:`FailedMacaroon`: a permission token
  after :meth:`Bundle.verify`, with its trusted caveats or with why it failed.

Permission tokens are the macaroons whose location is the bundle's
location; every other macaroon is a discharge candidate, matched to the
third-party caveats of permission tokens by ticket.

>>> from macaroons_authz import MemoryKeyring, org_token, to_header
>>> ring = MemoryKeyring()
>>> _ = ring.generate()
>>> bundle = Bundle.parse(to_header(org_token(ring.current(), 1234)), "https://api.fly.io/v1")
>>> [type(t).__name__ for t in bundle.verify(ring)]
['VerifiedMacaroon']
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeGuard

import attrs

from ..caveats._base import Caveat
from ..caveats.caveat_set import CaveatSet
from ..caveats.core import Caveat3P, ValidityWindow
from ..caveats.registry import CaveatRegistry
from ..errors import (
    DecodeError,
    MacaroonError,
    UnauthorizedError,
    VerificationCostError,
    VerificationError,
)
from ..header import (
    MACAROON_LABELS,
    MAX_HEADER_LENGTH,
    _decode_payload,
    encode_token,
    split_header,
    trim_space,
)
from ..macaroon import Macaroon, TrustedThirdParties, discharge_ticket, verification_run
from ..nonce import Nonce
from ..stores.keyring import Keyring
from ..verifier import Verifier

if TYPE_CHECKING:
    from ..access import Access

__all__ = [
    "Bundle",
    "BundleToken",
    "FailedMacaroon",
    "Filter",
    "MacaroonToken",
    "MalformedMacaroon",
    "MalformedTokensError",
    "NoAuthorizedTokensError",
    "NoVerifiedTokensError",
    "NonMacaroon",
    "Predicate",
    "UnverifiedMacaroon",
    "VerifiedMacaroon",
    "allows_access",
    "at_location",
    "has_caveat",
    "is_kind",
]

_SCHEME = "FlyV1"
#: How many characters of headers :meth:`Bundle.verify` hands a
#: :class:`~macaroons_authz.Verifier`, all permission tokens together (each
#: goes with its discharges, which the verifier decodes afresh): four
#: headers' worth, however the bundle's tokens share their discharges.
VERIFIER_HEADERS_BUDGET = 4 * MAX_HEADER_LENGTH


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


# -- errors ------------------------------------------------------------------


class MalformedTokensError(DecodeError):
    """A header holds tokens with a macaroon label that do not decode.

    Attributes:
        tokens: the malformed tokens, each with its own error.
    """

    def __init__(self, tokens: Sequence[MalformedMacaroon]) -> None:
        self.tokens = tuple(tokens)
        reasons = "; ".join(str(t.error) for t in self.tokens)
        super().__init__(f"{len(self.tokens)} malformed token(s): {reasons}")


class NoVerifiedTokensError(VerificationError):
    """No permission token of a bundle verified.

    Attributes:
        failures: the permission tokens that failed, each with its error
            (empty when the bundle holds no permission token).
    """

    def __init__(self, failures: Sequence[FailedMacaroon]) -> None:
        self.failures = tuple(failures)
        parts = ["no verified tokens"]
        parts += [f"token {f.nonce.uuid}: {f.error}" for f in self.failures]
        super().__init__("; ".join(parts))


class NoAuthorizedTokensError(UnauthorizedError):
    """No verified token of a bundle allows the accesses.

    :meth:`contains` answers for the causes of every token.

    Attributes:
        reasons: each verified token with the error its caveats gave.
    """

    default_message = "no authorized tokens"

    def __init__(self, reasons: Sequence[tuple[VerifiedMacaroon, UnauthorizedError]] = ()) -> None:
        self.reasons = tuple(reasons)
        parts = [self.default_message]
        parts += [f"token {t.nonce.uuid}: {e}" for t, e in self.reasons]
        super().__init__("; ".join(parts), causes=[e for _, e in self.reasons])


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


# -- the bundle --------------------------------------------------------------


class Bundle:
    """The tokens of one header, in order, for permission tokens of one location.

    Make one with :meth:`parse`. A bundle is safe to use from several
    threads; its tokens are immutable values, replaced (never changed) by
    :meth:`verify` and :meth:`attenuate`.

    Attributes:
        location: the location of its permission tokens.
        malformed: the malformed tokens :meth:`parse` met, with their errors,
            before filtering dropped them.
    """

    __slots__ = ("_lock", "_registry", "_tokens", "location", "malformed")

    def __init__(
        self,
        location: str,
        tokens: Iterable[BundleToken] = (),
        *,
        registry: CaveatRegistry | None = None,
    ) -> None:
        """A bundle of *tokens*, as they are; :meth:`parse` is the usual way in."""
        if not isinstance(location, str):
            raise TypeError("location must be a str")
        self.location = location
        self._tokens: list[BundleToken] = list(tokens)
        self._registry = registry
        self._lock = threading.RLock()
        self.malformed: tuple[MalformedMacaroon, ...] = ()

    @classmethod
    def parse(
        cls,
        header: str,
        location: str,
        *,
        filter: FilterLike | None = None,
        strict: bool = False,
        registry: CaveatRegistry | None = None,
    ) -> Bundle:
        """Parse a header (``FlyV1``/``Bearer`` scheme optional) into a bundle.

        Pieces between commas are trimmed, then classified. Malformed tokens
        are listed in :attr:`malformed` (before filtering). The default
        filter keeps, in order, non-macaroons, permission tokens and the
        discharges that match a ticket of some permission token; it drops
        malformed tokens, macaroons of other locations and extraneous
        discharges. A *filter* replaces the default one.

        An empty header gives one empty :class:`NonMacaroon`, as Go does.

        Raises:
            DecodeError: the header is over the size limits.
            MalformedTokensError: *strict* is set and some token is malformed.
        """
        tokens = _parse_tokens(header, registry)
        malformed = tuple(t for t in tokens if isinstance(t, MalformedMacaroon))
        if strict and malformed:
            raise MalformedTokensError(malformed)
        kept = _apply(_default_filter(location) if filter is None else filter, tokens)
        bundle = cls(location, kept, registry=registry)
        bundle.malformed = malformed
        return bundle

    # -- reading ---------------------------------------------------------

    @property
    def tokens(self) -> tuple[BundleToken, ...]:
        """A snapshot of the tokens, in order."""
        with self._lock:
            return tuple(self._tokens)

    def __iter__(self) -> Iterator[BundleToken]:
        return iter(self.tokens)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)

    def __str__(self) -> str:
        """The same as ``repr``: never the tokens, so logging a bundle leaks none.

        The tokens are credentials; ask for them by name with :meth:`header`.
        """
        return repr(self)

    def header(self, *, scheme: bool = True) -> str:
        """The ``Authorization`` header value: ``FlyV1 <tokens>``, or ``""`` if empty.

        With ``scheme=False``, only the token strings joined by commas. Either
        is a bearer credential: never log it.
        """
        tokens = self.tokens
        text = ",".join(t.text for t in tokens)
        return f"{_SCHEME} {text}" if scheme and tokens else text

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for t in self.tokens:
            kinds[type(t).__name__] = kinds.get(type(t).__name__, 0) + 1
        counts = ", ".join(f"{k}={v}" for k, v in kinds.items())
        return f"<Bundle location={self.location!r} {counts}>"

    def is_permission(self, token: BundleToken) -> TypeGuard[MacaroonToken]:
        """Whether *token* is a permission token (a macaroon for :attr:`location`)."""
        return isinstance(token, MacaroonToken) and token.location == self.location

    def permission_tokens(self) -> list[MacaroonToken]:
        """The permission tokens, in order."""
        return _permission_tokens(self.tokens, self.location)

    @property
    def failed(self) -> list[FailedMacaroon]:
        """The permission tokens that failed :meth:`verify`, each with its error."""
        return [t for t in self.tokens if isinstance(t, FailedMacaroon)]

    def undischarged_tickets(self) -> dict[str, list[bytes]]:
        """Tickets of permission tokens with no discharge in the bundle, by 3P location.

        A ticket shared by several permission tokens (one ``Caveat3P``
        added to all) is listed once: one discharge serves them all.
        """
        tokens = self.tokens
        discharged = _discharges_by_ticket(tokens, self.location)
        out: dict[str, list[bytes]] = {}
        for perm in _permission_tokens(tokens, self.location):
            for loc, tickets in perm.third_party_tickets().items():
                for ticket in tickets:
                    seen = out.setdefault(loc, [])
                    if ticket not in discharged and ticket not in seen:
                        seen.append(ticket)
        return {loc: tickets for loc, tickets in out.items() if tickets}

    # -- selecting -------------------------------------------------------

    def select(self, f: FilterLike) -> Bundle:
        """A new bundle of the tokens *f* keeps; this one is unchanged."""
        with self._lock:
            out = Bundle(self.location, _apply(f, tuple(self._tokens)), registry=self._registry)
            out.malformed = self.malformed
        return out

    def filter(self, f: FilterLike) -> None:
        """Keep only the tokens *f* keeps, in place."""
        with self._lock:
            self._tokens = _apply(f, tuple(self._tokens))

    def copy(self) -> Bundle:
        """An independent bundle of the same tokens."""
        return self.select(Predicate(lambda _: True))

    def missing_discharge(self, tp_location: str) -> Filter:
        """A filter of the permission tokens lacking a discharge for *tp_location*."""
        location = self.location

        def apply(tokens: Sequence[BundleToken]) -> list[BundleToken]:
            discharged = _discharges_by_ticket(tokens, location)
            return [
                t
                for t in _permission_tokens(tokens, location)
                if any(x not in discharged for x in t.third_party_tickets().get(tp_location, ()))
            ]

        return _FilterFunction(apply)

    def with_discharges(self, f: FilterLike) -> Filter:
        """A filter of the tokens *f* keeps, plus the discharges of kept permission tokens."""
        return _with_discharges(f, self.location)

    # -- adding ----------------------------------------------------------

    def add_tokens(self, header: str) -> list[BundleToken]:
        """Append the tokens of *header* (unfiltered); return them.

        All or nothing: if any token is malformed, none is added.

        Raises:
            MalformedTokensError: some token is malformed.
            DecodeError: the header is over the size limits.
        """
        tokens = _parse_tokens(header, self._registry)
        malformed = [t for t in tokens if isinstance(t, MalformedMacaroon)]
        if malformed:
            raise MalformedTokensError(malformed)
        with self._lock:
            self._tokens.extend(tokens)
        return tokens

    def add_discharges(self, *discharges: Macaroon | bytes | str) -> list[UnverifiedMacaroon]:
        """Append discharge tokens: macaroons, their bytes, or token strings; return them.

        A :class:`~macaroons_authz.Macaroon` is encoded (which finalizes a
        proof). All or nothing.

        Raises:
            DecodeError: something is not a macaroon or does not decode.
        """
        added: list[UnverifiedMacaroon] = []
        for d in discharges:
            text = trim_space(d) if isinstance(d, str) else encode_token(d)
            token = _classify(text, self._registry)
            if isinstance(token, MalformedMacaroon):
                raise MalformedTokensError([token])
            if not isinstance(token, UnverifiedMacaroon):
                raise DecodeError("bad token: not a macaroon")
            added.append(token)
        with self._lock:
            self._tokens.extend(added)
        return added

    # -- verifying and validating ----------------------------------------

    def verify(
        self,
        keys: Keyring | Verifier,
        *,
        trusted_3ps: TrustedThirdParties | None = None,
    ) -> list[VerifiedMacaroon]:
        """Verify every permission token with its discharges; return those that verify.

        Each permission token is replaced by a :class:`VerifiedMacaroon` or
        a :class:`FailedMacaroon` (see :attr:`failed` for why). Discharges
        are matched to a permission token by the tickets of its third-party
        caveats.

        Args:
            keys: where root keys come from. A keyring (anything with
                ``key_for(kid)``) verifies with *trusted_3ps*. A
                :class:`~macaroons_authz.Verifier` for this bundle's location
                verifies each permission token with its discharges through
                :meth:`Verifier.verify <macaroons_authz.Verifier.verify>`,
                so its trusted third parties, revocations and cache apply.
            trusted_3ps: with a keyring, the keys shared with third parties,
                by location (see :meth:`Macaroon.verify
                <macaroons_authz.Macaroon.verify>`).

        All the permission tokens together spend at most
        :data:`~macaroons_authz.MAX_VERIFY_MACS` HMAC operations and, with
        a verifier, hand it at most :data:`VERIFIER_HEADERS_BUDGET`
        characters of headers; those past either fail with
        :class:`~macaroons_authz.VerificationCostError`.

        Raises:
            NoVerifiedTokensError: none verified (or there is none), with
                every failure.
            ValueError: a verifier for another location.
            TypeError: *trusted_3ps* with a verifier (it has its own).
        """
        if isinstance(keys, Verifier):
            if keys.location != self.location:
                raise ValueError("the verifier is for another location than the bundle")
            if trusted_3ps is not None:
                raise TypeError("a Verifier brings its own trusted third parties")
        # One header, one run: MAX_VERIFY_MACS holds for all its permission
        # tokens together, and a discharge they share is checked once.
        with self._lock, verification_run():
            tokens = self._tokens
            discharged = _discharges_by_ticket(tokens, self.location)
            verified: list[VerifiedMacaroon] = []
            failures: list[FailedMacaroon] = []
            left = VERIFIER_HEADERS_BUDGET
            for i, t in enumerate(tokens):
                if not self.is_permission(t):
                    continue
                # Each ticket once: a token may list one ticket many times.
                tickets = dict.fromkeys(_tickets(t))
                discharges = [d for x in tickets for d in discharged.get(x, ())]
                if isinstance(keys, Verifier):
                    # The verifier decodes each token's header afresh: all of
                    # them together are bounded, or many permission tokens
                    # sharing large discharges would cost tokens x discharges.
                    texts = dict.fromkeys([t.text, *(d.text for d in discharges)])
                    header = f"{_SCHEME} {','.join(texts)}"
                    left -= len(header)
                    result = (
                        _verify_with(t, keys, header)
                        if left >= 0
                        else FailedMacaroon(t.text, t.macaroon, _over_budget())
                    )
                else:
                    result = _verify_one(t, keys, discharges, trusted_3ps or {})
                tokens[i] = result
                if isinstance(result, VerifiedMacaroon):
                    verified.append(result)
                else:
                    failures.append(result)
        if not verified:
            raise NoVerifiedTokensError(failures)
        return verified

    def validate(self, *accesses: Access) -> VerifiedMacaroon:
        """Return the first verified token whose caveats allow every access.

        Tokens are alternatives (any one may allow); within one token every
        caveat must allow every access.

        Raises:
            NoAuthorizedTokensError: none allows them, with each token's reasons.
        """
        reasons: list[tuple[VerifiedMacaroon, UnauthorizedError]] = []
        for t in self.tokens:
            if not isinstance(t, VerifiedMacaroon):
                continue
            try:
                t.caveats.validate(*accesses)
            except UnauthorizedError as exc:
                reasons.append((t, exc))
                continue
            return t
        raise NoAuthorizedTokensError(reasons)

    # -- changing tokens -------------------------------------------------

    def attenuate(self, *caveats: Caveat) -> None:
        """Add *caveats* to every permission token (discharges are untouched).

        All or nothing. A verified token keeps its status, its trusted
        caveats extended by those actually added (duplicates are dropped);
        one that gains a third-party caveat goes back to unverified, since
        it now needs a discharge. One :class:`~macaroons_authz.Caveat3P`
        added this way gives every token the same ticket (and its own
        verifier key), so one discharge serves them all.

        Raises:
            AttenuationError: a caveat cannot be added (nothing is changed).
        """
        with self._lock:
            staged: list[tuple[int, BundleToken]] = []
            for i, t in enumerate(self._tokens):
                if self.is_permission(t):
                    staged.append((i, _attenuated(t, caveats)))
            for i, replacement in staged:
                self._tokens[i] = replacement

    def discharge(
        self,
        location: str,
        key: bytes,
        callback: Callable[[CaveatSet], Iterable[Caveat]],
    ) -> list[UnverifiedMacaroon]:
        """Discharge every undischarged ticket as third party *location*; return the discharges.

        As Go does, this takes the tickets of *every* third-party location
        and opens each with *key*. For each, *callback* gets the ticket's
        caveats, checks them, and returns the caveats to add to the
        discharge (or raises to refuse). Discharges are proofs, not bound,
        appended as ``fm2_`` strings.

        All or nothing: any failure (a ticket that does not open, a callback
        that raises) aborts the call and adds nothing.

        Raises:
            VerificationError: a ticket was not sealed with *key*.
            Exception: whatever *callback* raises.
        """
        with self._lock:
            added: list[UnverifiedMacaroon] = []
            for tickets in self.undischarged_tickets().values():
                for ticket in tickets:
                    ticket_caveats, dm = discharge_ticket(key, location, ticket, self._registry)
                    dm.add(*callback(ticket_caveats))
                    added.append(UnverifiedMacaroon(encode_token(dm), dm))
            self._tokens.extend(added)
        return added


def _verify_one(
    token: MacaroonToken,
    keys: Keyring,
    discharges: Sequence[MacaroonToken],
    trusted_3ps: TrustedThirdParties,
) -> VerifiedMacaroon | FailedMacaroon:
    try:
        kid = token.nonce.kid or b""
        key = keys.key_for(kid)
        if key is None:
            raise VerificationError(f"unknown KID {kid.hex()}")
        caveats = token.macaroon.verify(key, [d.macaroon for d in discharges], trusted_3ps)
    except MacaroonError as exc:
        return FailedMacaroon(token.text, token.macaroon, exc)
    return VerifiedMacaroon(token.text, token.macaroon, caveats)


def _verify_with(
    token: MacaroonToken, verifier: Verifier, header: str
) -> VerifiedMacaroon | FailedMacaroon:
    try:
        caveats = verifier.verify(header)
    except MacaroonError as exc:
        return FailedMacaroon(token.text, token.macaroon, exc)
    return VerifiedMacaroon(token.text, token.macaroon, caveats)


def _over_budget() -> VerificationCostError:
    return VerificationCostError(
        f"the bundle's tokens need more than {VERIFIER_HEADERS_BUDGET} characters of headers"
    )


def _attenuated(token: MacaroonToken, caveats: Sequence[Caveat]) -> MacaroonToken:
    m = token.macaroon.copy()
    before = len(m.unsafe_caveats)
    m.add(*caveats)
    added = list(m.unsafe_caveats)[before:]
    text = encode_token(m)
    if isinstance(token, VerifiedMacaroon):
        if CaveatSet(added).of_type(Caveat3P):
            return UnverifiedMacaroon(text, m)
        return VerifiedMacaroon(text, m, CaveatSet([*token.caveats, *added]))
    if isinstance(token, FailedMacaroon):
        return FailedMacaroon(text, m, token.error)
    return UnverifiedMacaroon(text, m)
