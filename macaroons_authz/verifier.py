"""``Verifier``: "may this header do this?" in one call.

The verifier parses an ``Authorization`` header, picks the permission
token(s) for its location, refuses revoked tokens, finds the root key by the
token's KID, verifies the token with the header's discharges, and validates
accesses against the caveats it can then trust. Decisions never read the
wall clock: time comes from the access. (The cache's entry age uses a
monotonic clock, which only ever makes the verifier verify afresh.)

The decision itself is in :mod:`macaroons_authz.decision`, shared with
:class:`~macaroons_authz.AsyncVerifier`; this module answers its look-ups
by calling the stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .access import Access
from .cache import MAX_HEADERS_PER_ENTRY, VerificationCache
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .decision import (
    Policy,
    VerifiedToken,
    _Result,
    _Steps,
    decide,
    store_error,
    verify_all,
)
from .errors import MacaroonError
from .header import _split_by_location
from .macaroon import Macaroon
from .stores.keyring import Keyring, MemoryKeyring
from .stores.revocation import MemoryRevocationStore, RevocationStore

__all__ = ["FLY_PERMISSION_LOCATION", "MAX_HEADERS_PER_ENTRY", "VerificationCache", "Verifier"]

#: The location of Fly.io's permission tokens.
FLY_PERMISSION_LOCATION = "https://api.fly.io/v1"


def _new_policy(
    location: str,
    trusted_3ps: Mapping[str, Sequence[bytes]] | None,
    registry: CaveatRegistry | None,
    cache: VerificationCache | None,
    revocations: bool,
) -> Policy:
    """A verifier's policy; *cache*, if any, becomes its own."""
    trusted = {loc: tuple(keys) for loc, keys in (trusted_3ps or {}).items()}
    policy = Policy(location, trusted, registry, cache, revocations)
    if cache is not None:
        # Entries are what this policy's keys and trust made of a header:
        # both faces of one policy may share them, no other verifier.
        cache.claim(policy)
    return policy


class _BaseVerifier:
    """What both faces share: the policy (with the cache) and parsing."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.location = policy.location
        self.cache = policy.cache

    def __repr__(self) -> str:
        trusted = sorted(self._policy.trusted_3ps)
        return f"<{type(self).__name__} location={self.location!r} trusted_3ps={trusted}>"

    def split(self, header: str) -> tuple[Macaroon, list[Macaroon]]:
        """The permission token of *header* for this location, and the other tokens.

        Tokens that do not decode are dropped, as Go does.

        Raises:
            DecodeError: the header is malformed, or holds no or several
                permission tokens for this location.
        """
        (_, token), others = _split_by_location(header, self.location, self._policy.registry)
        return token, [m for _, m in others]


class Verifier(_BaseVerifier):
    """Verifies headers of tokens minted for one location.

    One verifier, with its cache and stores, may be shared by any number of
    threads: it keeps no state of its own between calls; the cache is
    thread-safe; the in-memory stores are thread-safe, and the SQLite and
    PostgreSQL stores give each thread its own connection.

    Args:
        keyring: root keys by KID (see :class:`~macaroons_authz.MemoryKeyring`).
        location: the location of the permission tokens this verifier
            accepts; other tokens in a header are discharge candidates.
        trusted_3ps: for each third-party location, the keys shared with it;
            only discharges proven genuine by one of them contribute
            attestations (identities).
        registry: the caveat registry to decode with (the default one if
            ``None``).
        revocations: where revoked tokens are kept; a header whose
            permission token or a discharge is revoked is refused.
        cache: a :class:`VerificationCache` of successful verifications, or
            ``None`` to verify every header afresh.
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        location: str = FLY_PERMISSION_LOCATION,
        trusted_3ps: Mapping[str, Sequence[bytes]] | None = None,
        registry: CaveatRegistry | None = None,
        revocations: RevocationStore | None = None,
        cache: VerificationCache | None = None,
    ) -> None:
        super().__init__(
            _new_policy(location, trusted_3ps, registry, cache, revocations is not None)
        )
        self._keyring = keyring
        self._revocations = revocations

    @property
    def keyring(self) -> Keyring:
        """The keyring root keys are found in."""
        return self._keyring

    @property
    def revocations(self) -> RevocationStore | None:
        """The revocation store, if any."""
        return self._revocations

    @property
    def may_block(self) -> bool:
        """Whether a decision may wait on I/O: any store but the in-memory ones.

        The ASGI middleware decides in a thread when it may.
        """
        in_memory = (MemoryKeyring, MemoryRevocationStore, type(None))
        return not all(type(s) in in_memory for s in (self._keyring, self._revocations))

    def verify(self, header: str) -> CaveatSet:
        """Verify the header's permission token and its discharges.

        Returns:
            The trusted caveats, to validate accesses against.

        Raises:
            DecodeError: the header is malformed, or holds several permission
                tokens (:meth:`verify_all` verifies each; :meth:`authorize`
                accepts such a header if one of them allows the access).
            VerificationError: unknown KID, bad signature, missing or bad
                discharge, or a revoked token.
            StoreError: a store cannot be read (the request must fail:
                nothing is served from the cache meanwhile).
        """
        hit = self._hit(header)
        if hit is not None:
            return hit.caveats
        caveats: CaveatSet = self._run(decide(self._policy, header, None, identify=False))[0]
        return caveats

    def verify_all(self, header: str) -> list[VerifiedToken]:
        """Verify every permission token of the header, each with the discharges of its tickets.

        A header of one token gives a list of one. (Go's ``Bundle.Verify``.)

        Returns:
            The tokens that verified, in header order.

        Raises:
            DecodeError: the header is malformed.
            NoTokenVerifiedError: none verified; it holds each one's reason.
            StoreError: a store cannot be read.
        """
        self._follow()
        verified: list[VerifiedToken] = self._run(verify_all(self._policy, header))
        return verified

    def authorize(self, header: str, access: Access) -> CaveatSet:
        """Verify the header, then allow *access* or raise why not.

        A header may hold several permission tokens: the access is allowed
        if any of them verifies and allows it (the first in header order
        decides).

        Returns:
            The trusted caveats that allowed the access.

        Raises:
            DecodeError: the header is malformed.
            VerificationError: the header is not authentic
                (:class:`~macaroons_authz.NoTokenVerifiedError` for several
                permission tokens, with each one's reason).
            UnauthorizedError: it is authentic but does not allow *access*;
                ask the error which kinds of failure it holds with
                :meth:`~macaroons_authz.UnauthorizedError.contains`
                (:class:`~macaroons_authz.NoTokenAllowedError` for several
                permission tokens, with each one's reason).
            StoreError: a store cannot be read.
        """
        if self.cache is not None:
            hit = self._hit(header)
            if hit is not None:
                hit.caveats.validate(access)
                return hit.caveats
        result = self._run(decide(self._policy, header, access, identify=False))
        caveats: CaveatSet = result[0]
        return caveats

    def authorize_token(self, header: str, access: Access) -> VerifiedToken:
        """:meth:`authorize`, also saying which permission token allowed the access."""
        hit = self._hit(header)
        if hit is not None:
            hit.caveats.validate(access)
            return hit
        result: _Result = self._run(decide(self._policy, header, access, identify=True))
        verified = result[1]
        assert verified is not None  # identify=True
        return verified

    def _follow(self) -> None:
        cache, revocations = self.cache, self._revocations
        if cache is not None and revocations is not None:
            cache.follow(revocations)

    def _hit(self, header: str) -> VerifiedToken | None:
        """The cached result of a remembered header, after following the feed."""
        cache = self.cache
        if cache is None:
            return None
        if self._revocations is not None:
            cache.follow(self._revocations)
        entry = cache._find(header)
        return None if entry is None else entry.token

    def _run(self, steps: _Steps) -> Any:
        """Run the decision *steps*, answering their look-ups from the stores."""
        try:
            request = next(steps)
            while True:
                try:
                    if isinstance(request, bytes):
                        answer: object = self._keyring.key_for(request)
                    else:
                        assert self._revocations is not None
                        answer = any(map(self._revocations.is_revoked, request))
                except MacaroonError as exc:
                    request = steps.throw(exc)
                except Exception as exc:
                    store = "keyring" if isinstance(request, bytes) else "revocation store"
                    request = steps.throw(store_error(store, exc))
                else:
                    request = steps.send(answer)
        except StopIteration as done:
            return done.value
