"""The verification cache under attack (issue 15, items 2 and 3).

Item 2: rejected headers must leave the cache and its header memo empty (a
thousand junk 1 MiB headers once grew the process by gigabytes), headers
padded with what verification ignores must share one entry, and the cache
is bounded in bytes. Item 3: while the revocation feed cannot be read, no
cached header is served.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Callable

import pytest

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Action,
    Apps,
    Caveat,
    ConfineOrganization,
    IfPresent,
    Macaroon,
    MemoryKeyring,
    MemoryRevocationStore,
    Organization,
    ResourceSet,
    Revocation,
    StoreError,
    ValidityWindow,
    VerificationCache,
    VerificationError,
    Verifier,
    discharge_ticket,
    encode_token,
    new_encryption_key,
    org_token,
    to_header,
    token_id,
)
from macaroons_authz.decision import _VERIFIED_IDS
from macaroons_authz.verifier import MAX_HEADERS_PER_ENTRY

NOW = 1_700_000_000
ORG = 1234
AUTH = "https://auth.example"
LOCATION = "https://api.fly.io/v1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def check_books(cache: VerificationCache) -> None:
    """The cache's accounting agrees with what it holds."""
    entries = cache._entries
    assert cache.nbytes == sum(e.size for e in entries.values())
    assert cache._header_keys == {h: k for k, e in entries.items() for h in e.headers}
    assert all(len(e.headers) <= MAX_HEADERS_PER_ENTRY for e in entries.values())
    assert len(entries) <= cache.max_entries
    assert cache.nbytes <= cache.max_bytes


# -- item 2: memory ------------------------------------------------------------------

# Verifies N rejected headers of MAX_HEADER_LENGTH characters, each new, of
# four kinds: only an fo1_ token; a forged token (right KID, wrong key)
# padded with an fo1_ token; an fm2_ token that does not decode; a revoked
# token, padded. Prints the growth of the resident set, stopping early once
# it passes the bound (before the fix, each header cost 2 MiB).
_FLOOD = textwrap.dedent(
    """
    import json, os, sys
    from macaroons_authz import *

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    n, bound = int(sys.argv[1]), int(sys.argv[2])
    ring = MemoryKeyring()
    ring.generate()
    store = MemoryRevocationStore()
    cache = VerificationCache()
    verifier = Verifier(ring, revocations=store, cache=cache)
    valid = to_header(org_token(ring.current(), 1234))
    verifier.verify(valid)
    forged = Macaroon.new(ring.current().kid, "https://api.fly.io/v1", bytes(32))
    forged.add(Organization(1234, Action.ALL))
    revoked = org_token(ring.current(), 1234)
    store.revoke(token_id(revoked))
    prefixes = ["FlyV1 fo1_", to_header(forged) + ",fo1_", "FlyV1 fm2_"]
    prefixes.append(to_header(revoked) + ",fo1_")

    def junk(i):
        head = prefixes[i % 4] + f"{i:08d}"
        return head + "A" * (MAX_HEADER_LENGTH - len(head))

    def flood(count, offset):
        for i in range(offset, offset + count):
            try:
                verifier.verify(junk(i))
            except MacaroonError:
                pass
            else:
                raise SystemExit("a junk header was accepted")
            if i % 64 == 63 and rss() - start > bound:
                return i + 1 - offset
        return count

    start = rss()
    flood(64, 0)  # warm up: first-use allocations are not the attack's
    start = rss()
    done = flood(n, 64)
    print(json.dumps({
        "headers": done, "growth": rss() - start, "entries": len(cache),
        "remembered": sorted(cache._header_keys) == [valid], "nbytes": cache.nbytes,
    }))
    """
)


def test_rejected_maximum_size_headers_leave_memory_flat() -> None:
    bound = 16 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", _FLOOD, "2000", str(bound)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(done.stdout)
    assert result["headers"] == 2000, result  # stopped early: RSS grew past the bound
    assert result["growth"] < bound
    # Nothing of them is kept: only the one valid header and its entry.
    assert result["entries"] == 1
    assert result["remembered"] is True


def mint_with_discharge(
    ring: MemoryKeyring, tp_key: bytes, *extra: Caveat
) -> tuple[Macaroon, Macaroon]:
    token = org_token(ring.current(), ORG)
    token.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = token.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    discharge.add(ValidityWindow(NOW, NOW + 300), *extra)
    return token, discharge


def test_padded_and_junk_varied_headers_of_one_token_hit_one_entry() -> None:
    ring = MemoryKeyring()
    ring.generate()
    tp_key = new_encryption_key()
    token, discharge = mint_with_discharge(ring, tp_key)
    cache = VerificationCache(clock=FakeClock())
    verifier = Verifier(ring, trusted_3ps={AUTH: [tp_key]}, cache=cache)
    first = verifier.verify(to_header(token, discharge))
    # From here on a fresh verification fails: only the cache can answer.
    ring.remove(ring.current().kid)
    stranger = org_token(MemoryKeyring([bytes(32)]).current(), ORG, location="https://elsewhere")
    padded = [
        to_header(token, discharge, f"fo1_{'x' * 1000}{i}")
        for i in range(3 * MAX_HEADERS_PER_ENTRY)
    ]
    variants = [
        *padded,
        to_header("fo1_junk", discharge, token),  # pieces in another order
        to_header(token, discharge, "fm2_AAAA"),  # a piece that does not decode
        to_header(encode_token(token.encode() + b"junk"), discharge),  # bytes after the token
        to_header(token, stranger, discharge),  # a token that matches no ticket
        "Bearer " + to_header(token, discharge),
    ]
    for header in variants * 2:
        assert verifier.verify(header) is first
    assert (len(cache), cache.misses, cache.hits) == (1, 1, 2 * len(variants))
    # Each entry remembers a few header strings, the latest ones, and only
    # those whose tokens it holds (the stranger's id was never recorded).
    (entry,) = cache._entries.values()
    assert len(entry.headers) == MAX_HEADERS_PER_ENTRY
    assert to_header(token, stranger, discharge) not in cache._header_keys
    check_books(cache)


def test_headers_whose_matched_discharges_differ_have_their_own_entries() -> None:
    ring = MemoryKeyring()
    ring.generate()
    tp_key = new_encryption_key()
    token, short = mint_with_discharge(ring, tp_key)
    (ticket,) = token.third_party_tickets()[AUTH]
    _, long = discharge_ticket(tp_key, AUTH, ticket)
    long.add(ValidityWindow(NOW, NOW + 3600))
    cache = VerificationCache()
    verifier = Verifier(ring, cache=cache)
    windows = [
        [c for c in verifier.verify(to_header(token, d)) if isinstance(c, ValidityWindow)]
        for d in (short, long, short, long)
    ]
    assert windows == [[ValidityWindow(NOW, NOW + 300)], [ValidityWindow(NOW, NOW + 3600)]] * 2
    assert (len(cache), cache.hits) == (2, 2)


def test_the_cache_is_bounded_in_bytes() -> None:
    assert VerificationCache().max_bytes == 128 * 1024 * 1024  # the documented default
    ring = MemoryKeyring()
    ring.generate()
    cache = VerificationCache(max_bytes=20_000, clock=FakeClock())
    verifier = Verifier(ring, cache=cache)
    headers = [to_header(org_token(ring.current(), ORG)) for _ in range(30)]
    for header in headers:
        verifier.verify(header)
        check_books(cache)
    assert 1 < len(cache) < 30
    # The least recently used went first.
    assert all(cache.lookup(h) is not None for h in headers[-len(cache) :])
    assert cache.lookup(headers[0]) is None
    # An entry charged more than max_bytes is not stored, and evicts nothing.
    held = len(cache)
    big = org_token(ring.current(), ORG)
    big.add(Apps(ResourceSet(dict.fromkeys(range(1000, 2000), Action.READ))))
    verifier.verify(to_header(big))
    assert len(cache) == held
    assert cache.lookup(to_header(big)) is None
    check_books(cache)


# The shapes that take the most memory per encoded byte: many IfPresent
# caveats of one-id resource sets (77 bytes a byte), resource sets whose
# dicts were just resized (5,462 ids, 38), many tiny caveats, and ordinary ones.
def _nested_one_id_sets(j: int) -> list[Caveat]:
    def inner(i: int) -> Caveat:
        return Apps(ResourceSet({i % 120: Action(1 + (i // 120) % 31)}))

    return [IfPresent(tuple(inner(i * 8 + k) for k in range(8)), Action(1 + j)) for i in range(400)]


def _many_ids(j: int) -> list[Caveat]:
    ids = range(128 + 5462 * j, 128 + 5462 * (j + 1))
    return [Apps(ResourceSet(dict.fromkeys(ids, Action.READ)))]


def _many_windows(j: int) -> list[Caveat]:
    return [ValidityWindow((j << 20) + i, 2) for i in range(4000)]


def _ordinary(j: int) -> list[Caveat]:
    return [Organization(ORG + j, Action.ALL), ValidityWindow(NOW, NOW + 3600 + j)]


def _none(j: int) -> list[Caveat]:
    return []


@pytest.mark.parametrize("shape", [_nested_one_id_sets, _many_ids, _many_windows, _ordinary, _none])
def test_bytes_charged_cover_what_entries_hold(shape: Callable[[int], list[Caveat]]) -> None:
    ring = MemoryKeyring()
    ring.generate()
    cache = VerificationCache(max_bytes=1 << 40)
    verifier = Verifier(ring, cache=cache)
    tokens = []
    for j in range(4):  # caveats of their own, so none is shared with another entry
        token = Macaroon.new(ring.current().kid, LOCATION, ring.current().key)
        token.add(*shape(j))
        tokens.append(token.encode())
    DEFAULT_REGISTRY.memo.clear()
    _VERIFIED_IDS.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in tokens:
            verifier.verify(to_header(data))
        # What stays is what the cache holds, not the process-wide memos.
        DEFAULT_REGISTRY.memo.clear()
        _VERIFIED_IDS.clear()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == 4
    # Only the upper bound is the guarantee: for tiny entries, what other
    # tests left in the process's caches can free more than the entries take.
    assert held <= cache.nbytes


# -- item 3: an unreadable feed ----------------------------------------------------


class FlakyStore:
    """A memory revocation store whose reads fail on demand, as a database would."""

    def __init__(self, error: Exception) -> None:
        self.inner = MemoryRevocationStore()
        self.error = error
        self.down = False
        self.reads = 0

    def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        return self.inner.revoke(token_id, reason=reason, at=at)

    def is_revoked(self, token_id: str) -> bool:
        if self.down:
            raise self.error
        return self.inner.is_revoked(token_id)

    def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        self.reads += 1
        if self.down:
            raise self.error
        return self.inner.revoked_since(cursor)


@pytest.mark.parametrize(
    "error", [ConnectionError("server closed the connection"), StoreError("unreachable")]
)
def test_no_cached_header_is_served_while_the_feed_is_unreadable(error: Exception) -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = FlakyStore(error)
    clock = FakeClock()
    cache = VerificationCache(poll_interval=1, clock=clock)
    verifier = Verifier(ring, revocations=store, cache=cache)
    token = org_token(ring.current(), ORG)
    header = to_header(token)
    verifier.verify(header)
    verifier.verify(header)
    assert cache.hits == 1
    store.down = True
    store.revoke(token_id(token), reason="leaked during the outage")
    clock.now += 1.5  # the poll is due
    for _ in range(50):  # five seconds of requests, across five poll intervals
        with pytest.raises(
            StoreError,
            match=r"^(unreachable|cannot read the revocation store \(ConnectionError\))$",
        ):
            verifier.verify(header)
        clock.now += 0.1
    assert cache.hits == 1  # not one hit served meanwhile
    assert store.reads == 1 + 50  # every request tried the feed again
    # A header that is not cached fails closed too.
    with pytest.raises(StoreError):
        verifier.verify(to_header(org_token(ring.current(), ORG)))
    store.down = False
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(header)
    assert len(cache) == 0


def test_a_store_error_keeps_its_cause_but_not_its_message() -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = FlakyStore(ConnectionError("postgresql://app:s3cret@db/authz refused"))
    verifier = Verifier(ring, revocations=store, cache=VerificationCache())
    store.down = True
    with pytest.raises(StoreError) as info:
        verifier.verify(to_header(org_token(ring.current(), ORG)))
    assert str(info.value) == "cannot read the revocation store (ConnectionError)"
    assert info.value.__cause__ is store.error


def test_within_the_poll_interval_hits_are_served_and_the_feed_is_not_read() -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = FlakyStore(StoreError("unreachable"))
    clock = FakeClock()
    cache = VerificationCache(poll_interval=1, clock=clock)
    verifier = Verifier(ring, revocations=store, cache=cache)
    header = to_header(org_token(ring.current(), ORG))
    verifier.verify(header)
    store.down = True  # unnoticed until the next poll: the documented staleness
    clock.now += 0.9
    verifier.verify(header)
    assert (cache.hits, store.reads) == (1, 1)


# -- threads ---------------------------------------------------------------------


def test_concurrent_verifications_keep_the_books() -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = MemoryRevocationStore()
    cache = VerificationCache(max_entries=6, max_bytes=50_000, poll_interval=0)
    verifier = Verifier(ring, revocations=store, cache=cache)
    tokens = [org_token(ring.current(), ORG) for _ in range(10)]
    revoked = tokens[:3]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for r in range(150):
                token = tokens[(worker + r) % len(tokens)]
                header = to_header(token, f"fo1_{worker}x{r % 7}")
                if worker == 0 and r % 50 == 0:
                    store.revoke(token_id(revoked[r // 50]))
                try:
                    verifier.verify(header)
                except VerificationError:
                    assert token in revoked
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    check_books(cache)
    for token in revoked:
        with pytest.raises(VerificationError, match="revoked"):
            verifier.verify(to_header(token))
