"""SQLite specifics, and the verifier's revocation checks and cache.

The behaviour every store shares is tested in test_store_contract.py.
"""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from macaroons_authz import (
    MAX_HEADER_LENGTH,
    Action,
    ConfineOrganization,
    DecodeError,
    FlyAccess,
    MemoryKeyring,
    MemoryRevocationStore,
    RevocationStore,
    SQLiteKeyring,
    SQLiteRevocationStore,
    StoreError,
    UnauthorizedError,
    VerificationCache,
    VerificationError,
    Verifier,
    discharge_ticket,
    new_encryption_key,
    org_token,
    restrict,
    to_header,
    token_id,
)

NOW = 1_700_000_000
ORG = 1234
AUTH = "https://auth.example"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RevocationStore]:
    if request.param == "memory":
        yield MemoryRevocationStore()
        return
    with SQLiteRevocationStore(tmp_path / "revoked.db") as sqlite_store:
        yield sqlite_store


def read_access(**kw: object) -> FlyAccess:
    fields: dict[str, object] = {"org_id": ORG, "action": Action.READ, "at": NOW}
    fields.update(kw)
    return FlyAccess(**fields)  # type: ignore[arg-type]


# -- stores ------------------------------------------------------------------


def test_token_id_is_shared_by_attenuations() -> None:
    key = bytes(32)
    token = org_token(key, ORG)
    before = token_id(token)
    restrict(token, apps=[1])
    assert token_id(token) == before == token_id(token.encode())
    assert token_id(org_token(key, ORG)) != before


def test_sqlite_files_are_owner_only(tmp_path: Path) -> None:
    with SQLiteRevocationStore(tmp_path / "r.db") as store:
        store.revoke("x")
    with SQLiteKeyring(tmp_path / "k.db") as ring:
        ring.generate()
    for name in ("r.db", "k.db", "r.db-wal", "k.db-wal"):
        path = tmp_path / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_sqlite_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    SQLiteRevocationStore(path).close()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    with pytest.raises(StoreError, match="newer"):
        SQLiteRevocationStore(path)


def test_sqlite_store_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        SQLiteRevocationStore(path)


def test_two_processes_share_one_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    script = textwrap.dedent(
        f"""
        from macaroons_authz import SQLiteRevocationStore
        with SQLiteRevocationStore({str(path)!r}) as store:
            assert store.is_revoked("from-parent")
            store.revoke("from-child", reason="child")
        """
    )
    with SQLiteRevocationStore(path) as local:
        local.revoke("from-parent")
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        assert local.is_revoked("from-child")
        assert [e.token_id for e in local.revoked_since(0)[0]] == ["from-parent", "from-child"]


def test_killing_a_writer_mid_revocation_leaves_a_sound_store(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    SQLiteRevocationStore(path).close()
    script = textwrap.dedent(
        f"""
        import sys
        from macaroons_authz import SQLiteRevocationStore
        store = SQLiteRevocationStore({str(path)!r})
        i = 0
        while True:
            store.revoke(f"tok-{{i}}", reason="r" * 200)
            i += 1
            if i == 50:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with SQLiteRevocationStore(path) as store:
        entries, _ = store.revoked_since(0)
    assert len(entries) >= 50
    # Every recorded revocation is whole, and they form an unbroken sequence.
    assert [e.token_id for e in entries] == [f"tok-{i}" for i in range(len(entries))]
    assert all(e.reason == "r" * 200 for e in entries)


# -- the verifier -------------------------------------------------------------------


def test_verifier_refuses_revoked_tokens_and_their_attenuations(store: RevocationStore) -> None:
    ring = MemoryKeyring()
    ring.generate()
    verifier = Verifier(ring, revocations=store)
    leaked = org_token(ring.current(), ORG)
    attenuated = restrict(org_token(ring.current(), ORG), apps=[1])
    child = restrict(leaked.copy(), apps=[2])
    unrelated = org_token(ring.current(), ORG)
    verifier.authorize(to_header(leaked), read_access())
    store.revoke(token_id(leaked), reason="leaked")
    for token in (leaked, child):
        with pytest.raises(VerificationError, match="revoked"):
            verifier.verify(to_header(token))
    verifier.authorize(to_header(unrelated), read_access())
    verifier.authorize(to_header(attenuated), read_access(app_id=1))


def test_verifier_refuses_a_revoked_discharge() -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = MemoryRevocationStore()
    tp_key = new_encryption_key()
    token = org_token(ring.current(), ORG)
    token.add_3p(tp_key, AUTH, ConfineOrganization(ORG))
    (ticket,) = token.third_party_tickets()[AUTH]
    _, discharge = discharge_ticket(tp_key, AUTH, ticket)
    header = to_header(token, discharge)
    verifier = Verifier(ring, revocations=store)
    verifier.verify(header)
    store.revoke(token_id(discharge))
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(header)


def make_cached(
    store: RevocationStore | None = None,
) -> tuple[Verifier, MemoryKeyring, FakeClock, VerificationCache]:
    ring = MemoryKeyring()
    ring.generate()
    clock = FakeClock()
    cache = VerificationCache(max_entries=2, max_age=60, poll_interval=1, clock=clock)
    return Verifier(ring, revocations=store, cache=cache), ring, clock, cache


def cache_key(verifier: Verifier, header: str) -> bytes:
    """The cache key of *header*'s tokens."""
    assert verifier.cache is not None
    return verifier.cache._key(*verifier.split(header))[0]


def test_cache_serves_repeats_but_always_validates() -> None:
    verifier, ring, _, cache = make_cached()
    header = to_header(org_token(ring.current(), ORG, expires_in=10, now=NOW))
    first = verifier.authorize(header, read_access())
    second = verifier.authorize(header, read_access())
    assert first is second
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(UnauthorizedError, match="expired"):
        verifier.authorize(header, read_access(at=NOW + 11))
    with pytest.raises(UnauthorizedError):
        verifier.authorize(header, read_access(action=Action.READ, org_id=ORG + 1))


def test_cache_never_stores_failures() -> None:
    verifier, _, _, cache = make_cached()
    forged = to_header(org_token(bytes(32), ORG))
    for _ in range(2):
        with pytest.raises(VerificationError):
            verifier.verify(forged)
    assert len(cache) == 0


def test_cache_is_bounded_in_entries_and_age() -> None:
    verifier, ring, clock, cache = make_cached()
    headers = [to_header(org_token(ring.current(), ORG)) for _ in range(3)]
    for h in headers:
        verifier.verify(h)
    assert len(cache) == 2
    assert cache.get(cache_key(verifier, headers[0])) is None  # the oldest was evicted
    clock.now += 61
    assert cache.get(cache_key(verifier, headers[2])) is None
    cache.purge()
    assert len(cache) == 0


def test_cache_drops_entries_of_revoked_tokens_through_the_feed(store: RevocationStore) -> None:
    verifier, ring, clock, cache = make_cached(store)
    token = org_token(ring.current(), ORG)
    header = to_header(token)
    verifier.verify(header)
    verifier.verify(header)
    assert cache.hits == 1
    store.revoke(token_id(token))
    clock.now += 1.5  # past the poll interval
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(header)
    assert len(cache) == 0


def test_every_way_of_writing_a_header_shares_one_entry() -> None:
    verifier, ring, _, cache = make_cached()
    header = to_header(org_token(ring.current(), ORG))
    headers = [header, "Bearer " + header, " " + header, header.replace("FlyV1 ", "FlyV1  ")]
    for h in headers:
        verifier.verify(h)
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 1)
    # Each header that verified is remembered with its tokens' key, so a
    # repeat is found without decoding.
    assert cache._header_keys == dict.fromkeys(headers, cache_key(verifier, header))
    for h in headers:
        verifier.verify(h)
    assert (cache.hits, cache.misses) == (7, 1)
    with pytest.raises(DecodeError, match="bad token"):
        verifier.verify(header + ", fm2_AAAA")
    with pytest.raises(TypeError, match="must be a str"):
        verifier.verify(b"FlyV1 fm2_AAAA")  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="longer than"):
        verifier.verify("x" * (MAX_HEADER_LENGTH + 1))
    assert len(cache._header_keys) == 4


def test_cache_rejects_nonsense_bounds() -> None:
    for bad in ({"max_entries": 0}, {"max_age": 0}, {"max_bytes": 0}, {"poll_interval": -1}):
        with pytest.raises(ValueError, match="positive"):
            VerificationCache(**bad)  # type: ignore[arg-type]


def test_store_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SQLiteRevocationStore(tmp_path / "missing-dir" / "r.db")


def test_a_held_cache_fails_closed_until_renewed() -> None:
    verifier, ring, clock, cache = make_cached()
    header = to_header(org_token(ring.current(), ORG))
    verifier.verify(header)
    cache.hold()
    assert cache.held and len(cache) == 0
    verifier.verify(header)
    verifier.verify(header)
    assert (cache.hits, len(cache)) == (0, 0)  # nothing served, nothing stored
    cache.renew(5)
    verifier.verify(header)
    verifier.verify(header)
    assert (cache.hits, len(cache)) == (1, 1)
    clock.now += 4
    verifier.verify(header)
    assert cache.hits == 2
    clock.now += 2  # the lease lapsed: the entries go, and no hit is served
    verifier.verify(header)
    assert cache.held and cache.hits == 2 and len(cache) == 0
    cache.release()
    verifier.verify(header)
    verifier.verify(header)
    assert not cache.held and cache.hits == 3


def test_renewing_a_lapsed_lease_forgets_what_was_cached() -> None:
    _, ring, clock, cache = make_cached()
    cache.renew(1)
    cache.put("k", ring, ["t"])  # type: ignore[arg-type]
    clock.now += 2
    cache.renew(1)
    assert len(cache) == 0


def test_a_verification_overtaken_by_a_drop_is_not_cached() -> None:
    _, ring, _, cache = make_cached()
    caveats = ring  # any object: the cache stores it as is
    stamp = cache.stamp()
    cache.drop({"revoked-meanwhile"})
    cache.put("k", caveats, ["t"], stamp=stamp)  # type: ignore[arg-type]
    assert len(cache) == 0
    cache.put("k", caveats, ["t"], stamp=cache.stamp())  # type: ignore[arg-type]
    assert len(cache) == 1
    stamp = cache.stamp()
    cache.drop(set(), cursor=5)  # advancing the cursor alone drops nothing
    cache.put("j", caveats, ["u"], stamp=stamp)  # type: ignore[arg-type]
    assert len(cache) == 2
