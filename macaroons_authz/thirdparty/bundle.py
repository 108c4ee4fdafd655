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

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeGuard

from ..caveats._base import Caveat
from ..caveats.caveat_set import CaveatSet
from ..caveats.core import Caveat3P
from ..caveats.registry import CaveatRegistry
from ..errors import (
    DecodeError,
    MacaroonError,
    UnauthorizedError,
    VerificationCostError,
    VerificationError,
)
from ..header import (
    MAX_HEADER_LENGTH,
    encode_token,
    trim_space,
)
from ..macaroon import Macaroon, TrustedThirdParties, discharge_ticket, verification_run
from ..stores.keyring import Keyring
from ..verifier import Verifier
from .bundle_tokens import (
    BundleToken,
    FailedMacaroon,
    Filter,
    FilterLike,
    MacaroonToken,
    MalformedMacaroon,
    NonMacaroon,
    Predicate,
    UnverifiedMacaroon,
    VerifiedMacaroon,
    _apply,
    _classify,
    _default_filter,
    _discharges_by_ticket,
    _FilterFunction,
    _parse_tokens,
    _permission_tokens,
    _tickets,
    _with_discharges,
    allows_access,
    at_location,
    has_caveat,
    is_kind,
)

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
