"""AsyncVerifier: the blocking verifier's decisions, with the stores awaited (issue 17).

The two faces run one decision (``macaroons_authz.decision``), so the tests
compare them on every kind of header, with the in-memory, SQLite and
PostgreSQL stores, and check what only the async face does: await stores
(inline, in a worker thread, or on psycopg's async connections) without
ever holding the cache's lock across an ``await``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from web_app import AT, NOW, ORG
from web_helpers import Tokens, mint

from macaroons_authz import (
    Action,
    AsyncVerifier,
    FlyAccess,
    MacaroonError,
    MemoryKeyring,
    MemoryRevocationStore,
    Revocation,
    SQLiteKeyring,
    SQLiteRevocationStore,
    StoreError,
    VerificationCache,
    VerificationError,
    VerifiedToken,
    Verifier,
    org_token,
    to_header,
    token_id,
)
from macaroons_authz.stores import async_keyring, async_revocations
from macaroons_authz.stores.async_ import (
    InlineKeyring,
    InlineRevocationStore,
    ThreadedKeyring,
    ThreadedRevocationStore,
)

ACCESSES = [
    FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT),
    FlyAccess(org_id=ORG, app_id=42, action=Action.DELETE, at=AT),
    FlyAccess(org_id=ORG, app_id=43, action=Action.READ, at=AT),
]


def headers(t: Tokens) -> list[str]:
    """Every kind of header: allowed, denied, expired, revoked, forged, unknown, several, junk."""
    raw = [h.removeprefix("FlyV1 ") for h in (t.reader, t.admin, t.forged, t.revoked)]
    return [
        t.reader,
        t.admin,
        t.expired,
        t.revoked,
        t.forged,
        t.unknown_kid,
        "Bearer " + raw[0],
        f"FlyV1 {raw[2]},{raw[0]}",  # forged beside a reader
        f"FlyV1 {raw[3]},{raw[1]}",  # revoked beside an admin
        f"FlyV1 {raw[2]},{raw[3]}",  # nothing authentic
        "FlyV1 fm2_!!!",
        "FlyV1 fo1_only",
        "",
    ]


def outcome(call: Callable[[], Any]) -> object:
    """What a call gives: its result, or its error's class and message."""
    try:
        return call()
    except MacaroonError as exc:
        return (type(exc), str(exc))


async def aoutcome(call: Callable[[], Awaitable[Any]]) -> object:
    try:
        return await call()
    except MacaroonError as exc:
        return (type(exc), str(exc))


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any, Tokens]]:
    """A keyring and a revocation store of the kind, and tokens minted on it (one revoked)."""
    if request.param == "memory":
        ring: Any = MemoryKeyring()
        revocations: Any = MemoryRevocationStore()
    else:
        ring = SQLiteKeyring(tmp_path / "keys.db")
        revocations = SQLiteRevocationStore(tmp_path / "revocations.db")
    ring.generate()
    tokens = mint(ring.current())
    revocations.revoke(token_id(tokens.tokens[3]))
    yield ring, revocations, tokens
    if request.param == "sqlite":
        ring.close()
        revocations.close()


@pytest.mark.parametrize("cached", [False, True])
def test_async_decides_exactly_as_the_blocking_verifier(
    stores: tuple[Any, Any, Tokens], cached: bool
) -> None:
    ring, revocations, tokens = stores

    def cache() -> VerificationCache | None:
        return VerificationCache(poll_interval=0) if cached else None

    blocking = Verifier(ring, revocations=revocations, cache=cache())
    face = AsyncVerifier(ring, revocations=revocations, cache=cache())
    calls = [
        (name, (h,) if a is None else (h, a))
        for h in headers(tokens)
        for name, a in [("verify", None), ("verify_all", None)]
        + [("authorize_token", a) for a in ACCESSES]
    ]
    expected = [outcome(partial(getattr(blocking, n), *args)) for n, args in calls]
    kinds = {type(e) if not isinstance(e, tuple) else e[0] for e in expected}
    assert {VerifiedToken, list}.issubset({*kinds, *(type(e) for e in expected)})
    assert len(kinds) >= 6  # results and several kinds of errors

    async def run() -> list[object]:
        out = []
        for _ in range(2):  # the second round from the cache, when there is one
            out = [await aoutcome(partial(getattr(face, n), *args)) for n, args in calls]
        return out

    assert asyncio.run(run()) == expected


def test_of_shares_the_policy_and_the_cache(stores: tuple[Any, Any, Tokens]) -> None:
    ring, revocations, tokens = stores
    cache = VerificationCache()
    blocking = Verifier(ring, revocations=revocations, cache=cache)
    face = AsyncVerifier.of(blocking)
    assert face.cache is cache and face.location == blocking.location
    blocking.authorize(tokens.reader, ACCESSES[0])
    assert (cache.hits, cache.misses) == (0, 1)
    result = asyncio.run(face.authorize_token(tokens.reader, ACCESSES[0]))
    assert result.token_id == token_id(tokens.tokens[0])
    assert (cache.hits, cache.misses) == (1, 1)
    # Another verifier may not be served what this one's keys made of a header.
    with pytest.raises(ValueError, match="another verifier"):
        AsyncVerifier(ring, cache=cache)


def test_stores_are_awaited_inline_from_memory_and_in_a_thread_otherwise(tmp_path: Path) -> None:
    memory, memory_revs = MemoryKeyring(), MemoryRevocationStore()
    assert type(async_keyring(memory)) is InlineKeyring
    assert type(async_revocations(memory_revs)) is InlineRevocationStore
    with SQLiteKeyring(tmp_path / "k.db") as ring, SQLiteRevocationStore(tmp_path / "r.db") as revs:
        assert type(async_keyring(ring)) is ThreadedKeyring
        assert type(async_revocations(revs)) is ThreadedRevocationStore
    slow = SlowKeyring(MemoryKeyring(), 0)
    assert async_keyring(slow) is slow  # already async: as it is

    threads: dict[str, int] = {}

    class Recording(MemoryKeyring):
        """A blocking keyring (not exactly MemoryKeyring): goes to a thread."""

        def key_for(self, kid: bytes) -> bytes | None:
            threads["threaded"] = threading.get_ident()
            return super().key_for(kid)

    class Inline(MemoryKeyring):
        def key_for(self, kid: bytes) -> bytes | None:
            threads["inline"] = threading.get_ident()
            return super().key_for(kid)

    async def run() -> int:
        recording = Recording()
        recording.generate()
        await AsyncVerifier(recording).verify(to_header(org_token(recording.current(), ORG)))
        inline = InlineKeyring(Inline())
        await inline.key_for(b"x")
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert threads["inline"] == loop_thread != threads["threaded"]


class SlowKeyring:
    """An async keyring that takes *delay* seconds a look-up, and counts those in flight."""

    def __init__(self, ring: MemoryKeyring, delay: float, cache: VerificationCache | None = None):
        self.ring = ring
        self.delay = delay
        self.cache = cache
        self.in_flight = 0
        self.most = 0
        self.calls = 0

    async def key_for(self, kid: bytes) -> bytes | None:
        if self.cache is not None:
            assert not self.cache._lock.locked()
        self.calls += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return self.ring.key_for(kid)


class LockCheckingRevocations:
    """An async revocation store that yields to the loop and checks the cache is not locked."""

    def __init__(self, cache: VerificationCache) -> None:
        self.store = MemoryRevocationStore()
        self.cache = cache
        self.feed_reads = 0

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        return self.store.revoke(token_id, reason=reason, at=at)

    async def is_revoked(self, token_id: str) -> bool:
        await asyncio.sleep(0)
        assert not self.cache._lock.locked()
        return self.store.is_revoked(token_id)

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        await asyncio.sleep(0)
        assert not self.cache._lock.locked()
        self.feed_reads += 1
        return self.store.revoked_since(cursor)


def test_concurrent_decisions_overlap_their_lookups_and_never_hold_the_cache_lock() -> None:
    ring = MemoryKeyring()
    ring.generate()
    cache = VerificationCache(poll_interval=0)
    slow = SlowKeyring(ring, 0.05, cache)
    revocations = LockCheckingRevocations(cache)
    face = AsyncVerifier(slow, revocations=revocations, cache=cache)
    tokens = [org_token(ring.current(), ORG, expires_in=3600, now=NOW) for _ in range(20)]
    revocations.store.revoke(token_id(tokens[0]))

    async def run() -> list[object]:
        return await asyncio.gather(
            *(aoutcome(partial(face.authorize_token, to_header(t), ACCESSES[0])) for t in tokens)
        )

    results = asyncio.run(run())
    assert results[0] == (VerificationError, "token revoked")
    assert [getattr(r, "token_id", r) for r in results[1:]] == [token_id(t) for t in tokens[1:]]
    assert (slow.calls, slow.most) == (19, 19)  # every look-up at once
    assert revocations.feed_reads >= 20
    # Twenty concurrent reads of the feed applied its one revocation once:
    # no verification that began after it had its result refused.
    assert len(cache) == 19


class Failing:
    """Stores whose look-ups raise what a broken driver raises."""

    async def key_for(self, kid: bytes) -> bytes | None:
        raise ConnectionResetError("postgresql://user:secret@db/x went away")

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        raise ConnectionResetError

    async def is_revoked(self, token_id: str) -> bool:
        raise ConnectionResetError("postgresql://user:secret@db/x went away")

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        raise ConnectionResetError("postgresql://user:secret@db/x went away")


def test_store_failures_are_store_errors_naming_only_the_type() -> None:
    ring = MemoryKeyring()
    ring.generate()
    header = to_header(org_token(ring.current(), ORG))

    async def run() -> list[object]:
        return [
            await aoutcome(lambda: AsyncVerifier(Failing()).verify(header)),
            await aoutcome(lambda: AsyncVerifier(ring, revocations=Failing()).verify(header)),
            await aoutcome(
                lambda: AsyncVerifier(
                    ring, revocations=Failing(), cache=VerificationCache()
                ).verify(header)
            ),
        ]

    assert asyncio.run(run()) == [
        (StoreError, "cannot read the keyring (ConnectionResetError)"),
        (StoreError, "cannot read the revocation store (ConnectionResetError)"),
        (StoreError, "cannot read the revocation store (ConnectionResetError)"),
    ]

    class Broken(MemoryKeyring):
        def key_for(self, kid: bytes) -> bytes | None:
            raise OSError("disk on fire")

    # The blocking face too: a keyring's failure is a StoreError (a 503), not a crash.
    with pytest.raises(StoreError, match=r"^cannot read the keyring \(OSError\)$"):
        Verifier(Broken()).verify(header)


def test_a_cancelled_decision_leaves_the_verifier_usable() -> None:
    ring = MemoryKeyring()
    ring.generate()
    cache = VerificationCache()
    slow = SlowKeyring(ring, 10.0)
    face = AsyncVerifier(slow, cache=cache)
    header = to_header(org_token(ring.current(), ORG))

    async def run() -> int:
        task = asyncio.create_task(face.verify(header))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slow.in_flight == 0 and len(cache) == 0
        slow.delay = 0
        return len(await face.verify(header))

    assert asyncio.run(run()) == 1
    assert len(cache) == 1


# -- PostgreSQL ---------------------------------------------------------------------


def test_async_postgres_stores_share_the_blocking_ones_tables(pg: Any) -> None:
    from macaroons_authz.stores import KeyEncryptionError, SchemaError
    from macaroons_authz.stores.postgres_async import (
        AsyncPostgresKeyring,
        AsyncPostgresRevocationStore,
    )

    ring = pg.keyring()
    kid = ring.generate()
    revs = pg.revocations()
    tokens = mint(ring.current())
    revs.revoke(token_id(tokens.tokens[3]))
    blocking = Verifier(ring, revocations=revs)

    async def run() -> None:
        async with (
            AsyncPostgresKeyring(pg.url, kek=pg.kek, schema=pg.schema, timeout=5) as aring,
            AsyncPostgresRevocationStore(pg.url, schema=pg.schema, timeout=5) as arevs,
        ):
            assert await aring.key_for(kid) == ring.current().key
            assert await aring.key_for(b"nope") is None
            assert await arevs.is_revoked(token_id(tokens.tokens[3]))
            assert await arevs.revoke("abc", reason="test", at=5.0) is True
            assert await arevs.revoke("abc") is False
            assert revs.is_revoked("abc")  # the blocking store sees it
            since, cursor = await arevs.revoked_since(0)
            assert (since, cursor) == revs.revoked_since(0)
            assert [r.token_id for r in since] == [token_id(tokens.tokens[3]), "abc"]
            face = AsyncVerifier(aring, revocations=arevs, cache=VerificationCache())
            for h in headers(tokens):
                for a in ACCESSES:
                    assert await aoutcome(partial(face.authorize_token, h, a)) == outcome(
                        partial(blocking.authorize_token, h, a)
                    )
        async with AsyncPostgresKeyring(
            pg.url, kek=bytes(32), schema=pg.schema, timeout=5
        ) as wrong:
            with pytest.raises(KeyEncryptionError):
                await wrong.key_for(kid)
        async with AsyncPostgresKeyring(pg.url, kek=pg.kek, schema="t_never_migrated") as bare:
            with pytest.raises(SchemaError, match="migrate"):
                await bare.key_for(kid)
        async with AsyncPostgresRevocationStore(
            "postgresql://nobody:wrong@127.0.0.1:1/none", timeout=1
        ) as unreachable:
            with pytest.raises(StoreError) as info:
                await unreachable.is_revoked("abc")
            assert "wrong" not in str(info.value)

    asyncio.run(run())


def test_the_store_adapters_answer_as_their_stores(tmp_path: Path) -> None:
    with SQLiteRevocationStore(tmp_path / "r.db") as sqlite_store:
        for store in (MemoryRevocationStore(), sqlite_store):
            face = async_revocations(store)

            async def run(face: Any = face) -> list[object]:
                return [
                    await face.revoke("a", reason="leaked", at=1.0),
                    await face.revoke("a"),
                    await face.is_revoked("a"),
                    await face.is_revoked("b"),
                    await face.revoked_since(0),
                ]

            assert asyncio.run(run()) == [
                True,
                False,
                True,
                False,
                ([Revocation("a", "leaked", 1.0, 1)], 1),
            ]
            assert store.is_revoked("a")
