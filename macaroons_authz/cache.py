"""``VerificationCache``: successful verifications, shared by the threads and tasks of a process.

Both faces of the verifier (:class:`~macaroons_authz.Verifier` and
:class:`~macaroons_authz.AsyncVerifier`) fill and read it. Its lock guards
dictionary operations only: it is never held while a store is read, nor
across an ``await``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from .caveats.caveat_set import CaveatSet
from .decision import VerifiedToken, store_error
from .errors import MacaroonError
from .macaroon import Macaroon
from .stores.revocation import Revocation, RevocationStore

if TYPE_CHECKING:
    from .stores.async_ import AsyncRevocationStore

__all__ = ["MAX_HEADERS_PER_ENTRY", "VerificationCache"]


#: Bytes of memory charged per byte of the caveats behind an entry, as
#: encoded: above the most any shape was measured to take once decoded
#: (77, for IfPresent caveats holding one-id resource sets; 38 for resource
#: sets of thousands of ids; ordinary caveats take 5 to 15).
_BYTES_PER_CAVEAT_BYTE = 96
#: Bytes charged for an entry's own objects, and for each token id it holds.
_ENTRY_BYTES = 1024
_ID_BYTES = 128
#: Bytes charged for a remembered header, besides its characters.
_HEADER_BYTES = 128
#: How many header strings one entry remembers (the latest ones).
MAX_HEADERS_PER_ENTRY = 4


def _header_bytes(header: str) -> int:
    """The memory charged for a remembered header (a non-ASCII str takes 4 bytes a character)."""
    return _HEADER_BYTES + (len(header) if header.isascii() else 4 * len(header))


@attrs.frozen
class _Entry:
    caveats: CaveatSet
    token_ids: frozenset[str]
    stored_at: float
    size: int  # bytes charged for it, its remembered headers included
    headers: tuple[str, ...] = ()  # the header strings remembered as leading to it
    token: VerifiedToken | None = None  # the permission token it verified


class VerificationCache:
    """A bounded LRU of successful verifications, safe across threads and tasks.

    An entry is keyed by what its verification read: a SHA-256 digest of
    the canonical encodings of the permission token and of the discharges
    whose KID is one of its tickets, in header order. What verification
    ignores (``fo1_`` tokens, tokens that do not decode or match no ticket,
    bytes after a token, the scheme and spacing) makes no new entry. The
    exact header strings that verified are remembered too (the latest
    :data:`MAX_HEADERS_PER_ENTRY` of each entry), so that a repeated header
    costs two dictionary look-ups; a header that did not verify is never
    remembered.

    Entries expire *max_age* seconds after they were stored, and are
    dropped when a token of theirs is revoked: the verifier follows its
    revocation store's feed at most every *poll_interval* seconds, and
    serves no entry unless the feed was read successfully within that
    interval (a failed read raises :class:`~macaroons_authz.StoreError`, and
    the next request reads again). Only verification is cached: validation
    of the access, and so expiry, always runs. Failures are never cached.

    In a header with several permission tokens, each token is an entry of
    its own, keyed by it and the discharges matching its tickets; such a
    header is never remembered, since which of its tokens allows a request
    depends on the access.

    One cache may be shared by any number of threads and asyncio tasks:
    its lock is held for dictionary operations only, never while a store
    is read and never across an ``await``.

    A push invalidator (such as
    :class:`~macaroons_authz.stores.PostgresInvalidator`) can put the cache
    on a *lease*: :meth:`hold` makes it fail closed (no hits, nothing stored)
    until :meth:`renew` is called, and each renewal lasts a bounded time, so
    an invalidator that stops hearing from its database stops the cache from
    serving entries it can no longer vouch for.

    Args:
        max_entries: how many verifications to keep.
        max_age: seconds an entry lives.
        max_bytes: the memory the entries and remembered headers may take,
            as charged: 96 bytes per byte of the encoded caveats behind an
            entry (more than any caveat shape takes once decoded), plus
            the characters of its remembered headers and a fixed overhead.
            An entry charged above *max_bytes* is not stored.
        poll_interval: seconds between reads of the revocation feed; a
            revocation made elsewhere reaches cached entries within it.
        clock: a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        max_age: float = 300.0,
        *,
        max_bytes: int = 128 * 1024 * 1024,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age <= 0 or max_bytes < 1 or poll_interval < 0:
            raise ValueError(
                "max_entries, max_age and max_bytes must be positive, poll_interval not negative"
            )
        self.max_entries = max_entries
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.poll_interval = poll_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        # The key of each header string an entry remembers (see _remember):
        # a hit by the header itself skips decoding and hashing.
        self._header_keys: dict[str, bytes] = {}
        self._bytes = 0
        self._cursor = 0
        # When the feed was last read successfully (None: never).
        self._polled_at: float | None = None
        # Bumped whenever entries are dropped: a verification that began
        # before a drop must not store its result after it (see put).
        self._epoch = 0
        # None: no lease needed. Otherwise hits are served until this time.
        self._lease_until: float | None = None
        self.hits = 0
        self.misses = 0
        self._owner: object = None

    def __repr__(self) -> str:
        return (
            f"<VerificationCache entries={len(self._entries)}/{self.max_entries} "
            f"bytes={self._bytes}/{self.max_bytes} hits={self.hits} misses={self.misses}>"
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """The memory the cache is charged for now, as estimated (see *max_bytes*)."""
        return self._bytes

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
    def _key(token: Macaroon, discharges: Sequence[Macaroon]) -> tuple[bytes, int]:
        """The key of verifying *token* with *discharges*, and the size of their caveats.

        Verification reads the permission token and the discharges whose KID
        is one of its tickets, in order, and nothing else: the key is a
        digest of their canonical encodings, each preceded by its length.
        The size is that of the encoded caveats, which the entry's memory
        grows with.
        """
        tickets = {t for ts in token.third_party_tickets().values() for t in ts}
        digest = hashlib.sha256()
        size = 0
        for used in (token, *(d for d in discharges if d._kid in tickets)):
            data = used.encode()
            digest.update(len(data).to_bytes(4, "big"))
            digest.update(data)
            size += sum(map(len, used._packs()))
        return digest.digest(), size

    def lookup(self, header: str) -> CaveatSet | None:
        """The cached caveats of *header* if it is a remembered header, else ``None``.

        A hit is counted; a header that is not remembered is not counted as
        a miss (the verifier then looks its tokens up with :meth:`get`).
        """
        entry = self._find(header)
        return None if entry is None else entry.caveats

    def _find(self, header: str) -> _Entry | None:
        """:meth:`lookup`, giving the entry."""
        now = self._clock()  # one read serves the lease and the age
        # acquire/release rather than `with`: on this path the context
        # manager's calls cost 1.1k instructions, a sixth of a hit.
        self._lock.acquire()
        try:
            if self._lapsed(now):
                self._clear()
                return None
            key = self._header_keys.get(header) if type(header) is str else None
            if key is None:
                return None
            entry = self._entries[key]  # a remembered header's entry is present
            if now - entry.stored_at > self.max_age:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        finally:
            self._lock.release()

    def get(
        self,
        key: bytes,
        *,
        header: str | None = None,
        token_ids: Sequence[str] = (),
        stamp: int | None = None,
    ) -> CaveatSet | None:
        """The cached caveats for *key*, or ``None`` if absent, expired or held.

        On a hit, *header* is remembered as leading to the entry if its
        tokens (*token_ids*, just checked against the revocation store) are
        all among the entry's and no entry was dropped since *stamp* (see
        :meth:`put`).
        """
        entry = self._get(key, header=header, token_ids=token_ids, stamp=stamp)
        return None if entry is None else entry.caveats

    def _get(
        self,
        key: bytes,
        *,
        header: str | None = None,
        token_ids: Sequence[str] = (),
        stamp: int | None = None,
    ) -> _Entry | None:
        """:meth:`get`, giving the entry."""
        now = self._clock()
        with self._lock:
            if self._lapsed(now):
                self._clear()
                self.misses += 1
                return None
            entry = self._entries.get(key)
            if entry is None or now - entry.stored_at > self.max_age:
                if entry is not None:
                    self._remove(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            if (
                header is not None
                and (stamp is None or stamp == self._epoch)
                and entry.token_ids.issuperset(token_ids)
            ):
                self._remember(key, entry, header)
            return entry

    def stamp(self) -> int:
        """A mark to take before checking revocations, for :meth:`put`."""
        return self._epoch

    def put(
        self,
        key: bytes,
        caveats: CaveatSet,
        token_ids: Sequence[str],
        *,
        stamp: int | None = None,
        header: str | None = None,
        size: int = 0,
        token: VerifiedToken | None = None,
    ) -> None:
        """Remember a successful verification.

        *size* is the encoded size of the caveats behind it (from the key),
        which the memory it is charged grows with; *header*, the header that
        verified, is remembered as leading to it; *token* is the permission
        token's verified result, which the verifier serves on a hit. Nothing is stored while
        the cache is held, nor if *stamp* (from :meth:`stamp`, taken before
        the revocation checks) shows that entries were dropped since: the
        revocation that dropped them may have been committed after this
        verification looked.
        """
        now = self._clock()
        ids = frozenset(token_ids)
        charge = _ENTRY_BYTES + _BYTES_PER_CAVEAT_BYTE * size + _ID_BYTES * len(ids)
        entry = _Entry(caveats, ids, now, charge, token=token)
        with self._lock:
            if self._lapsed(now) or (stamp is not None and stamp != self._epoch):
                return
            if key in self._entries:
                self._remove(key)
            if entry.size > self.max_bytes:
                return
            self._entries[key] = entry
            self._bytes += entry.size
            if header is not None:
                self._remember(key, entry, header)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def follow(self, store: RevocationStore) -> None:
        """Drop the entries of tokens revoked in *store* since the last look.

        Reads the feed when the last successful read is *poll_interval*
        seconds old or more (or there was none). The time of a read is
        recorded only once it succeeded, so after a failed read every call
        reads again, and none returns until one succeeds: the verifier,
        which follows before each look-up, serves no entry meanwhile.

        Raises:
            StoreError: the feed cannot be read.
        """
        due = self._feed_due()
        if due is None:
            return
        try:
            revoked, cursor = store.revoked_since(due[1])
        except MacaroonError:
            raise
        except Exception as exc:
            raise store_error("revocation store", exc) from exc
        self._feed_read(due[0], revoked, cursor)

    async def afollow(self, store: AsyncRevocationStore) -> None:
        """:meth:`follow` for an async store: the read is awaited, without the lock held.

        Raises:
            StoreError: the feed cannot be read.
        """
        due = self._feed_due()
        if due is None:
            return
        try:
            revoked, cursor = await store.revoked_since(due[1])
        except MacaroonError:
            raise
        except Exception as exc:
            raise store_error("revocation store", exc) from exc
        self._feed_read(due[0], revoked, cursor)

    def _feed_due(self) -> tuple[float, int] | None:
        """``(now, cursor)`` if the feed should be read now, else ``None``."""
        now = self._clock()
        with self._lock:
            polled = self._polled_at
            if polled is not None and now - polled < self.poll_interval:
                return None
            return now, self._cursor

    def _feed_read(self, now: float, revoked: Sequence[Revocation], cursor: int) -> None:
        """Apply a successful read of the feed, begun at *now*.

        Revocations at or before the cursor were applied by an earlier read
        (concurrent reads return the same ones): dropping them again would
        only refuse the results of verifications that began after them.
        """
        with self._lock:
            applied = self._cursor
            self._drop({r.token_id for r in revoked if r.seq > applied}, cursor)
            if self._polled_at is None or now > self._polled_at:
                self._polled_at = now

    def drop(self, token_ids: set[str], cursor: int | None = None) -> None:
        """Forget every entry holding one of *token_ids*; advance the feed cursor to *cursor*."""
        with self._lock:
            self._drop(token_ids, cursor)

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

    # The helpers below run under the lock.

    def _lapsed(self, now: float) -> bool:
        return self._lease_until is not None and now > self._lease_until

    def _remember(self, key: bytes, entry: _Entry, header: str) -> None:
        """Remember *header* as leading to *entry* (stored under *key*), forgetting its oldest."""
        if type(header) is not str or header in self._header_keys:
            return
        headers = entry.headers
        size = entry.size + _header_bytes(header)
        if len(headers) >= MAX_HEADERS_PER_ENTRY:
            del self._header_keys[headers[0]]
            size -= _header_bytes(headers[0])
            headers = headers[1:]
        self._entries[key] = attrs.evolve(entry, headers=(*headers, header), size=size)
        self._header_keys[header] = key
        self._bytes += size - entry.size

    def _remove(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        for header in entry.headers:
            del self._header_keys[header]
        self._bytes -= entry.size

    def _drop(self, token_ids: set[str], cursor: int | None) -> None:
        if token_ids:
            self._epoch += 1
            stale = [k for k, e in self._entries.items() if not e.token_ids.isdisjoint(token_ids)]
            for key in stale:
                self._remove(key)
        if cursor is not None:
            self._cursor = max(self._cursor, cursor)

    def _clear(self) -> None:
        self._entries.clear()
        self._header_keys.clear()
        self._bytes = 0
        self._epoch += 1
