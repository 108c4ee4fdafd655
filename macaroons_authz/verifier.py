"""``Verifier``: "may this header do this?" in one call.

The verifier parses an ``Authorization`` header, picks the permission token
for its location, refuses revoked tokens, finds the root key by the token's
KID, verifies the token with the header's discharges, and validates accesses
against the caveats it can then trust. Decisions never read the wall clock:
time comes from the access. (The cache's entry age uses a monotonic clock,
which only ever makes the verifier verify afresh.)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import attrs

from .access import Access
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .errors import VerificationError
from .header import _split_by_location, split_header
from .keyring import Keyring
from .macaroon import Macaroon
from .revocation import RevocationStore

__all__ = ["FLY_PERMISSION_LOCATION", "VerificationCache", "Verifier"]

#: The location of Fly.io's permission tokens.
FLY_PERMISSION_LOCATION = "https://api.fly.io/v1"


class Verifier:
    """Verifies headers of tokens minted for one location.

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
        self._keyring = keyring
        self.location = location
        self._trusted_3ps = {loc: tuple(keys) for loc, keys in (trusted_3ps or {}).items()}
        self._registry = registry
        self._revocations = revocations
        if cache is not None:
            cache.claim(self)
        self.cache = cache

    def __repr__(self) -> str:
        return f"<Verifier location={self.location!r} trusted_3ps={sorted(self._trusted_3ps)}>"

    def split(self, header: str) -> tuple[Macaroon, list[Macaroon]]:
        """The permission token of *header* for this location, and the other tokens.

        Tokens that do not decode are dropped, as Go does.

        Raises:
            DecodeError: the header is malformed, or holds no or several
                permission tokens for this location.
        """
        (_, token), others = _split_by_location(header, self.location, self._registry)
        return token, [m for _, m in others]

    def verify(self, header: str) -> CaveatSet:
        """Verify the header's permission token and its discharges.

        Returns:
            The trusted caveats, to validate accesses against.

        Raises:
            DecodeError: the header is malformed.
            VerificationError: unknown KID, bad signature, missing or bad
                discharge, or a revoked token.
        """
        cache = self.cache
        stamp: int | None = None
        if cache is not None:
            if self._revocations is not None:
                cache.follow(self._revocations)
            key = cache._key_of(header)
            hit = cache.get(key)
            if hit is not None:
                return hit
            stamp = cache.stamp()
        token, discharges = self.split(header)
        ids: list[str] = []
        if self._revocations is not None or cache is not None:
            ids = [str(t.nonce.uuid) for t in (token, *discharges)]
        if self._revocations is not None and any(map(self._revocations.is_revoked, ids)):
            raise VerificationError("token revoked")
        kid = token._kid or b""
        root_key = self._keyring.key_for(kid)
        if root_key is None:
            raise VerificationError(f"unknown KID {kid.hex()}")
        caveats = token.verify(root_key, discharges, self._trusted_3ps)
        if cache is not None:
            cache.put(key, caveats, ids, stamp=stamp)
        return caveats

    def authorize(self, header: str, access: Access) -> CaveatSet:
        """Verify the header, then allow *access* or raise why not.

        Returns:
            The trusted caveats that allowed the access.

        Raises:
            DecodeError: the header is malformed.
            VerificationError: the header is not authentic.
            UnauthorizedError: it is authentic but does not allow *access*;
                ask the error which kinds of failure it holds with
                :meth:`~macaroons_authz.UnauthorizedError.contains`.
        """
        caveats = self.verify(header)
        caveats.validate(access)
        return caveats


@attrs.frozen
class _Entry:
    caveats: CaveatSet
    token_ids: tuple[str, ...]
    stored_at: float


class VerificationCache:
    """A bounded LRU of successful verifications, safe across threads.

    Entries are keyed by the exact token strings of a header, expire
    *max_age* seconds after they were stored, and are dropped when a token
    of theirs is revoked (the verifier follows its revocation store's feed
    at most every *poll_interval* seconds). Only verification is cached:
    validation of the access, and so expiry, always runs. Failures are never
    cached.

    A push invalidator (such as
    :class:`~macaroons_authz.postgres.PostgresInvalidator`) can put the cache
    on a *lease*: :meth:`hold` makes it fail closed (no hits, nothing stored)
    until :meth:`renew` is called, and each renewal lasts a bounded time, so
    an invalidator that stops hearing from its database stops the cache from
    serving entries it can no longer vouch for.

    Args:
        max_entries: how many verifications to keep.
        max_age: seconds an entry lives.
        poll_interval: seconds between reads of the revocation feed; a
            revocation made elsewhere reaches cached entries within it.
        clock: a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_age: float = 300.0,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age <= 0 or poll_interval < 0:
            raise ValueError("max_entries and max_age must be positive")
        self.max_entries = max_entries
        self.max_age = max_age
        self.poll_interval = poll_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._cursor = 0
        self._polled_at: float | None = None
        # Bumped whenever entries are dropped: a verification that began
        # before a drop must not store its result after it (see put).
        self._epoch = 0
        # None: no lease needed. Otherwise hits are served until this time.
        self._lease_until: float | None = None
        # key() of recently seen headers: a pure function, remembered
        # because computing it costs a fifth of a cache hit.
        self._header_keys: dict[str, str] = {}
        self.hits = 0
        self.misses = 0
        self._owner: object = None

    def __repr__(self) -> str:
        return (
            f"<VerificationCache entries={len(self._entries)}/{self.max_entries} "
            f"hits={self.hits} misses={self.misses}>"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, owner: object) -> None:
        """Bind the cache to the verifier that fills it.

        An entry is what one verifier's keys, registry and trusted third
        parties made of a header; another verifier must not be served it.

        Raises:
            ValueError: the cache already belongs to another verifier.
        """
        with self._lock:
            if self._owner is not None and self._owner is not owner:
                raise ValueError("this cache already belongs to another verifier")
            self._owner = owner

    @staticmethod
    def key(header: str) -> str:
        """The cache key of a header: its token strings, exactly as written, sorted."""
        pieces = split_header(header)
        return pieces[0] if len(pieces) == 1 else ",".join(sorted(pieces))

    def _key_of(self, header: str) -> str:
        """:meth:`key`, remembered for up to *max_entries* headers."""
        if type(header) is not str:
            return self.key(header)
        keys = self._header_keys
        key = keys.get(header)
        if key is None:
            key = self.key(header)
            if len(keys) >= self.max_entries:
                keys.clear()
            keys[header] = key
        return key

    def get(self, key: str) -> CaveatSet | None:
        """The cached caveats for *key*, or ``None`` if absent, expired or held."""
        now = self._clock()  # one read serves the lease and the age
        # acquire/release rather than `with`: on this path the context
        # manager's calls cost 1.1k instructions, a sixth of a hit.
        self._lock.acquire()
        try:
            if self._lapsed(now):
                self._clear()
                self.misses += 1
                return None
            entry = self._entries.get(key)
            if entry is None or now - entry.stored_at > self.max_age:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.caveats
        finally:
            self._lock.release()

    def stamp(self) -> int:
        """A mark to take before checking revocations, for :meth:`put`."""
        return self._epoch

    def put(
        self, key: str, caveats: CaveatSet, token_ids: Sequence[str], *, stamp: int | None = None
    ) -> None:
        """Remember a successful verification.

        Nothing is stored while the cache is held, nor if *stamp* (from
        :meth:`stamp`, taken before the revocation checks) shows that entries
        were dropped since: the revocation that dropped them may have been
        committed after this verification looked.
        """
        now = self._clock()
        with self._lock:
            if self._lapsed(now) or (stamp is not None and stamp != self._epoch):
                return
            self._entries[key] = _Entry(caveats, tuple(token_ids), now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def follow(self, store: RevocationStore) -> None:
        """Drop the entries of tokens revoked in *store* since the last look.

        Reads the feed at most once every poll interval.
        """
        now = self._clock()
        with self._lock:
            if self._polled_at is not None and now - self._polled_at < self.poll_interval:
                return
            self._polled_at = now
            cursor = self._cursor
        revoked, cursor = store.revoked_since(cursor)
        self.drop({r.token_id for r in revoked}, cursor)

    def drop(self, token_ids: set[str], cursor: int | None = None) -> None:
        """Forget every entry holding one of *token_ids*; advance the feed cursor to *cursor*."""
        with self._lock:
            if token_ids:
                self._epoch += 1
                stale = [k for k, e in self._entries.items() if token_ids.intersection(e.token_ids)]
                for k in stale:
                    del self._entries[k]
            if cursor is not None:
                self._cursor = max(self._cursor, cursor)

    def purge(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._clear()

    def hold(self) -> None:
        """Fail closed: forget every entry, and serve and store none until :meth:`renew`."""
        with self._lock:
            self._clear()
            self._lease_until = float("-inf")

    def renew(self, seconds: float) -> None:
        """Serve entries for *seconds* more; called by an invalidator that has caught up.

        If the previous lease had already lapsed, every entry is forgotten
        first: what happened while nobody was listening is unknown.
        """
        now = self._clock()
        with self._lock:
            if self._lapsed(now):
                self._clear()
            self._lease_until = now + seconds

    def release(self) -> None:
        """Stop requiring a lease (the default): serve entries until they expire."""
        with self._lock:
            self._lease_until = None

    @property
    def held(self) -> bool:
        """Whether the cache is refusing hits because its lease lapsed."""
        now = self._clock()
        with self._lock:
            return self._lapsed(now)

    def _lapsed(self, now: float) -> bool:
        return self._lease_until is not None and now > self._lease_until

    def _clear(self) -> None:
        self._entries.clear()
        self._epoch += 1
