"""One behavioural suite for every keyring and revocation store: memory, SQLite, PostgreSQL.

Each fixture gives a way to open a *view* on one store: for memory the same
object, for SQLite another handle on the same file, for PostgreSQL another
pool on the same schema, so sharing is tested where a store can share.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import (
    Keyring,
    KeyringError,
    MemoryKeyring,
    MemoryRevocationStore,
    RevocationStore,
    SQLiteKeyring,
    SQLiteRevocationStore,
    StoreError,
    UnknownKeyError,
    VerificationCache,
    VerificationError,
    Verifier,
    new_signing_key,
    org_token,
    restrict,
    to_header,
    token_id,
)

KINDS = ["memory", "sqlite", "postgres"]
ORG = 1234

Opener = Callable[[], Any]


@pytest.fixture(params=KINDS)
def open_keyring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens views on one keyring of the parametrized kind."""
    opened: list[Any] = []
    if request.param == "memory":
        ring = MemoryKeyring()

        def opener() -> Any:
            return ring

    elif request.param == "sqlite":

        def opener() -> Any:
            view = SQLiteKeyring(tmp_path / "keys.db")
            opened.append(view)
            return view

    else:
        pg = request.getfixturevalue("pg")
        pg.keyring().close()  # migrate once, as a deployment would

        def opener() -> Any:
            return pg.keyring(migrate=False)

    yield opener
    for view in opened:
        view.close()


@pytest.fixture(params=KINDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens views on one revocation store of the parametrized kind."""
    opened: list[Any] = []
    if request.param == "memory":
        store = MemoryRevocationStore()

        def opener() -> Any:
            return store

    elif request.param == "sqlite":

        def opener() -> Any:
            view = SQLiteRevocationStore(tmp_path / "revoked.db")
            opened.append(view)
            return view

    else:
        pg = request.getfixturevalue("pg")
        pg.revocations().close()

        def opener() -> Any:
            return pg.revocations(migrate=False)

    yield opener
    for view in opened:
        view.close()


def in_threads(fn: Callable[[int], None], n: int) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# -- keyrings ------------------------------------------------------------------------


def test_an_empty_keyring_has_nothing_to_mint_with(open_keyring: Opener) -> None:
    ring = open_keyring()
    assert isinstance(ring, Keyring)
    assert len(ring) == 0
    assert ring.kids() == []
    assert ring.key_for(b"\x00" * 16) is None
    with pytest.raises(KeyringError, match="no key"):
        ring.current()


def test_keyring_rotation_retirement_and_sharing(open_keyring: Opener) -> None:
    ring = open_keyring()
    first = ring.generate()
    second = ring.generate()
    assert ring.current().kid == second
    ring.retire(second)
    assert ring.current().kid == first
    assert ring.key_for(second) is not None  # retired keys still verify
    with pytest.raises(UnknownKeyError):
        ring.retire(b"nope")
    other_view = open_keyring()
    assert [k.kid for k in other_view.kids()] == [first, second]
    assert [k.retired for k in other_view.kids()] == [False, True]
    assert other_view.key_for(first) == ring.key_for(first)
    ring.retire(first)
    with pytest.raises(KeyringError, match="no key"):
        other_view.current()
    ring.remove(first)
    assert other_view.key_for(first) is None
    assert len(other_view) == 1
    ring.remove(first)  # removing what is gone is not an error
    assert len(ring) == 1


def test_keyring_add_is_idempotent_and_refuses_a_kid_clash(open_keyring: Opener) -> None:
    ring = open_keyring()
    key = new_signing_key()
    kid = ring.add(key)
    newer = ring.generate()
    assert ring.current().kid == newer
    assert ring.add(key) == kid  # the same key again: it becomes current
    assert ring.current().kid == kid
    assert ring.current().key == key
    assert len(ring) == 2
    with pytest.raises(KeyringError, match="already used"):
        ring.add(new_signing_key(), kid=kid)
    assert ring.key_for(kid) == key
    explicit = ring.add(new_signing_key(), kid=b"my-kid")
    assert explicit == b"my-kid"
    assert [k.kid for k in ring.kids()] == [newer, kid, b"my-kid"]
    with pytest.raises(TypeError):
        ring.add("not bytes")


def test_keyring_keeps_keys_out_of_reprs(open_keyring: Opener) -> None:
    ring = open_keyring()
    ring.generate()
    (entry,) = ring.kids()
    for text in (repr(ring), repr(entry), repr(ring.current()), str(ring.kids())):
        assert entry.key.hex() not in text
        assert repr(entry.key) not in text


def test_a_verifier_finds_keys_in_every_keyring(open_keyring: Opener) -> None:
    ring = open_keyring()
    ring.generate()
    token = org_token(ring.current(), ORG)
    verifier = Verifier(open_keyring())
    verifier.verify(to_header(token))
    ring.remove(token.nonce.kid)
    with pytest.raises(VerificationError, match="unknown KID"):
        verifier.verify(to_header(token))


def test_keyring_rotations_from_many_threads(open_keyring: Opener) -> None:
    views = [open_keyring() for _ in range(4)]
    made: list[list[bytes]] = [[] for _ in views]

    def rotate(i: int) -> None:
        for _ in range(5):
            made[i].append(views[i].generate())

    in_threads(rotate, len(views))
    kids = [k.kid for k in views[0].kids()]
    assert sorted(kids) == sorted(kid for per in made for kid in per)
    assert len(set(kids)) == 20
    assert views[0].current().kid in {per[-1] for per in made}


def test_a_key_never_looks_absent_while_the_ring_changes(open_keyring: Opener) -> None:
    # Verifications read keys while an operator re-adds and rotates them: a
    # key that stays in the ring must be found by every read.
    ring = open_keyring()
    key = new_signing_key()
    kid = ring.add(key)
    done = threading.Event()
    wrong: list[bytes | None] = []

    def work(i: int) -> None:
        if i == 0:
            for _ in range(2000):
                ring.add(key)  # re-adding moves it to the end
                ring.generate()
            done.set()
            return
        while not done.is_set():
            found = ring.key_for(kid)
            if found != key:
                wrong.append(found)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        in_threads(work, 3)
    finally:
        sys.setswitchinterval(interval)
    assert wrong == []


# -- revocation stores ------------------------------------------------------------------


def test_store_revokes_idempotently_and_feeds_each_revocation_once(open_store: Opener) -> None:
    store = open_store()
    assert isinstance(store, RevocationStore)
    assert store.revoked_since(0) == ([], 0)
    assert store.revoke("a", reason="leaked", at=5.0) is True
    assert store.revoke("a", reason="again") is False
    assert store.revoke("b", at=6.0) is True
    assert store.is_revoked("a")
    assert not store.is_revoked("c")
    entries, cursor = store.revoked_since(0)
    assert [(e.token_id, e.reason, e.revoked_at) for e in entries] == [
        ("a", "leaked", 5.0),
        ("b", "", 6.0),
    ]
    assert entries[0].seq < entries[1].seq == cursor
    assert store.revoked_since(cursor) == ([], cursor)
    store.revoke("c", at=7.0)
    more, later = store.revoked_since(cursor)
    assert [e.token_id for e in more] == ["c"]
    assert later > cursor
    with pytest.raises(TypeError):
        store.revoke("")


def test_a_feed_resumes_from_its_cursor_on_another_view(open_store: Opener) -> None:
    writer = open_store()
    for i in range(5):
        writer.revoke(f"t{i}", at=float(i))
    first, cursor = open_store().revoked_since(0)
    assert [e.token_id for e in first] == [f"t{i}" for i in range(5)]
    writer.revoke("t5", at=5.0)
    rest, end = open_store().revoked_since(cursor)  # a "reconnect": a new view
    assert [e.token_id for e in rest] == ["t5"]
    assert open_store().is_revoked("t5")
    assert open_store().revoked_since(end) == ([], end)


def test_the_feed_never_skips_or_repeats_with_concurrent_revokers(open_store: Opener) -> None:
    writers = [open_store() for _ in range(4)]
    per_writer = 25
    done = threading.Event()
    seen: list[Any] = []

    def follow() -> None:
        cursor = 0
        reads = 0
        view = open_store()
        while True:
            finished = done.is_set()
            entries, cursor = view.revoked_since(cursor)
            seen.extend(entries)
            reads += 1
            if reads % 7 == 0 and view is not writers[0]:
                close = getattr(view, "close", None)
                if close is not None:
                    close()
                view = open_store()  # resume on a fresh view, as after a reconnect
            if finished and not entries:
                return
            time.sleep(0.002)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        in_threads(
            lambda i: [writers[i].revoke(f"w{i}-{n}") for n in range(per_writer)], len(writers)
        )
    finally:
        done.set()
        follower.join()
    expected = {f"w{i}-{n}" for i in range(len(writers)) for n in range(per_writer)}
    ids = [e.token_id for e in seen]
    assert len(ids) == len(expected) == len(set(ids))
    assert set(ids) == expected
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs)
    assert [e.token_id for e in open_store().revoked_since(0)[0]] == ids


def test_concurrent_revocations_of_one_token_count_once(open_store: Opener) -> None:
    views = [open_store() for _ in range(6)]
    results: list[bool] = []
    in_threads(lambda i: results.append(views[i].revoke("same", reason=f"r{i}")), len(views))
    assert sorted(results) == [False] * 5 + [True]
    entries, _ = views[0].revoked_since(0)
    assert [e.token_id for e in entries] == ["same"]


def test_a_cached_verifier_follows_every_store(open_store: Opener) -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = open_store()
    cache = VerificationCache(poll_interval=0)
    verifier = Verifier(ring, revocations=store, cache=cache)
    token = org_token(ring.current(), ORG)
    child = restrict(token.copy(), apps=[1])
    other = org_token(ring.current(), ORG)
    for t in (token, child, other):
        verifier.verify(to_header(t))
        verifier.verify(to_header(t))
    assert cache.hits == 3
    open_store().revoke(token_id(token))
    for t in (token, child):
        with pytest.raises(VerificationError, match="revoked"):
            verifier.verify(to_header(t))
    verifier.verify(to_header(other))
    assert len(cache) == 1


# -- SQLite connections -------------------------------------------------------------
# A SQLite store opens one connection per thread. close() must close all of them,
# whichever thread opened them (a server's worker threads outlive the store).

PROC_FDS = Path("/proc/self/fd")


def open_connections(path: Path) -> int:
    """How many descriptors of this process have *path* open (one per SQLite connection)."""
    count = 0
    for fd in PROC_FDS.iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed while listing
            if fd.readlink() == path:
                count += 1
    return count


def open_sqlite(kind: str, path: Path) -> SQLiteKeyring | SQLiteRevocationStore:
    return SQLiteKeyring(path) if kind == "keyring" else SQLiteRevocationStore(path)


def use(store: SQLiteKeyring | SQLiteRevocationStore) -> None:
    if isinstance(store, SQLiteKeyring):
        store.key_for(b"kid")
    else:
        store.is_revoked("token")


needs_proc = pytest.mark.skipif(
    not PROC_FDS.is_dir(), reason="counts open files through /proc/self/fd (Linux)"
)


@needs_proc
@pytest.mark.parametrize("kind", ["keyring", "revocations"])
def test_closing_a_sqlite_store_closes_the_connection_of_every_thread(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    store = open_sqlite(kind, path)
    used = threading.Barrier(4)
    release = threading.Event()

    def worker() -> None:
        use(store)
        used.wait(timeout=30)
        release.wait(timeout=30)  # the thread lives on, as a server's workers do

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            used.wait(timeout=30)
            assert open_connections(path) == 4  # the opening thread's and the workers'
            store.close()
            assert open_connections(path) == 0
        finally:
            release.set()
            for t in threads:
                t.join()
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    with pytest.raises(StoreError, match="closed"):
        use(store)


@needs_proc
@pytest.mark.parametrize("kind", ["keyring", "revocations"])
def test_a_sqlite_store_is_a_context_manager(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with open_sqlite(kind, path) as store:
        use(store)
        assert open_connections(path) == 1
    assert open_connections(path) == 0
    with pytest.raises(StoreError, match="closed"):
        use(store)


@needs_proc
def test_connections_of_ended_threads_are_closed_when_the_next_opens(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteRevocationStore(path) as store:
        for i in range(10):
            t = threading.Thread(target=store.revoke, args=(f"t{i}",))
            t.start()
            t.join()
            # the opening thread's, and at most the last ended thread's
            assert open_connections(path) <= 2
        assert len(store.revoked_since(0)[0]) == 10


@needs_proc
def test_a_file_that_is_not_a_store_leaves_no_connection_open(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as caught:
        SQLiteRevocationStore(path)
    # The failed store is still referenced from the traceback, and yet closed.
    assert caught.value.__traceback__ is not None
    assert open_connections(path) == 0
