"""PostgreSQL specifics: migrations, keys sealed at rest, the feed, and fleets of verifiers.

The behaviour shared with the other stores is in test_store_contract.py. These
tests need a server (see the ``pg_url`` fixture in conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PgDatabase

from macaroons_authz import (
    StoreError,
    VerificationCache,
    VerificationError,
    Verifier,
    new_signing_key,
    org_token,
    to_header,
    token_id,
)

# Without psycopg the pg fixture skips these tests (or fails them under CI), saying why.
with contextlib.suppress(ImportError):
    from macaroons_authz.stores import (
        KeyEncryptionError,
        PostgresInvalidator,
        PostgresKeyring,
        PostgresRevocationStore,
        SchemaError,
    )

ORG = 1234
HERE = Path(__file__).resolve().parent


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def app_url(pg: PgDatabase, name: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(pg.url, application_name=name)


def terminate(pg: PgDatabase, application_name: str) -> int:
    rows = pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    )
    return len(rows)


# -- import and construction -------------------------------------------------------


def test_the_package_imports_without_psycopg() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['psycopg_pool'] = None\n"
        "import macaroons_authz, macaroons_authz.stores\n"
        "print('imported', macaroons_authz.__version__)\n"
        "for module in ('postgres_keyring', 'postgres_revocation', 'postgres_invalidator'):\n"
        "    try:\n"
        "        __import__('macaroons_authz.stores.' + module)\n"
        "    except ImportError as exc:\n"
        "        print(module, exc)\n"
        "try:\n"
        "    from macaroons_authz.stores import PostgresKeyring\n"
        "except ImportError as exc:\n"
        "    print('stores', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    assert out[0].startswith("imported ")
    assert [line.split(" ", 1)[0] for line in out[1:]] == [
        "postgres_keyring",
        "postgres_revocation",
        "postgres_invalidator",
        "stores",
    ]
    assert all(line.endswith("pip install 'macaroons_authz[postgres]'") for line in out[1:])
    plain = subprocess.run(
        [sys.executable, "-c", "import sys, macaroons_authz; print('psycopg' in sys.modules)"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert plain.strip() == "False"


def test_arguments_are_checked_before_any_connection(pg: PgDatabase) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PostgresKeyring(pg.url, kek=bytes(16))
    with pytest.raises(TypeError):
        PostgresKeyring(pg.url, kek="not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        PostgresKeyring(pg.url, kek=bytes(32), old_keks=[bytes(31)])
    with pytest.raises(ValueError, match="schema"):
        PostgresRevocationStore(pg.url, schema='x"; DROP TABLE y; --')
    with pytest.raises(TypeError, match="conninfo"):
        PostgresRevocationStore(42)  # type: ignore[arg-type]


def test_nothing_touches_the_database_until_migrate(pg: PgDatabase) -> None:
    ring = pg.keyring(migrate=False)
    store = pg.revocations(migrate=False)
    exists = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s"
    assert pg.execute(exists, (pg.schema,)) == [(0,)]
    for use in (
        lambda: store.is_revoked("x"),
        lambda: store.revoke("x"),
        lambda: store.revoked_since(0),
        lambda: ring.key_for(b"kid"),
        ring.generate,
        ring.current,
    ):
        with pytest.raises(SchemaError, match=r"not migrated: call migrate\(\)"):
            use()
    assert pg.execute(exists, (pg.schema,)) == [(0,)]
    assert store.schema_version() == ring.schema_version() == 0
    assert store.migrate() == 1
    assert store.is_revoked("x") is False
    with pytest.raises(SchemaError):  # the keyring has its own version
        ring.current()
    assert ring.migrate() == 1
    assert ring.key_for(ring.generate()) is not None


def test_migrations_are_versioned_idempotent_and_refuse_a_newer_schema(pg: PgDatabase) -> None:
    store = pg.revocations()
    ring = pg.keyring()
    assert store.migrate() == 1  # again: nothing to do
    store.revoke("kept")
    assert ring.migrate() == 1
    rows = pg.execute(
        f'SELECT component, version FROM "{pg.schema}".macaroons_authz_schema ORDER BY 1'
    )
    assert rows == [("keyring", 1), ("revocations", 1)]
    assert store.is_revoked("kept")
    pg.execute(
        f'UPDATE "{pg.schema}".macaroons_authz_schema SET version = 99 '
        "WHERE component = 'revocations'"
    )
    newer = pg.revocations(migrate=False)
    with pytest.raises(SchemaError, match="newer"):
        newer.is_revoked("kept")
    with pytest.raises(SchemaError, match="newer"):
        newer.migrate()
    assert newer.schema_version() == 99


def test_concurrent_migrations_are_serialized(pg: PgDatabase) -> None:
    stores = [pg.revocations(migrate=False) for _ in range(4)]
    rings = [pg.keyring(migrate=False) for _ in range(4)]
    results: list[int] = []
    errors: list[BaseException] = []

    def migrate(obj: Any) -> None:
        try:
            results.append(obj.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(o,)) for o in (*stores, *rings)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [1] * 8
    assert stores[0].revoke("x") and rings[0].generate()


def test_an_unreachable_database_is_a_store_error_that_keeps_secrets(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")  # no server needed, only the driver
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://someone:hunter2-password@127.0.0.1:{port}/nowhere"
    store = PostgresRevocationStore(url, timeout=1)
    ring = PostgresKeyring(url, kek=bytes(32), timeout=1)
    try:
        start = time.monotonic()
        for use in (lambda: store.is_revoked("x"), ring.migrate, ring.generate):
            with pytest.raises(StoreError) as info:
                use()
            assert "hunter2" not in str(info.value)
        assert time.monotonic() - start < 10
        assert "hunter2" not in repr(store) + repr(ring)
    finally:
        store.close()
        ring.close()
    with pytest.raises(StoreError):  # closed for good
        store.is_revoked("x")


# -- keys at rest ----------------------------------------------------------------------


def test_keys_are_sealed_at_rest(pg: PgDatabase) -> None:
    ring = pg.keyring()
    keys = [new_signing_key() for _ in range(3)]
    kids = [ring.add(k) for k in keys]
    table = f'"{pg.schema}".macaroons_authz_keys'
    rows = pg.execute(f"SELECT kid, kek_id, nonce, sealed FROM {table} ORDER BY seq")
    as_text = str(pg.execute(f"SELECT t::text FROM {table} t"))
    for key in keys:
        assert key.hex() not in as_text
        for row in rows:
            for column in row:
                assert key not in bytes(column)
                assert pg.kek not in bytes(column)
    assert [bytes(r[0]) for r in rows] == kids
    assert all(len(bytes(r[3])) == 32 + 16 for r in rows)  # AES-GCM: key and tag
    assert len({bytes(r[2]) for r in rows}) == 3  # a fresh nonce for each key
    assert [ring.key_for(kid) for kid in kids] == keys


def test_a_wrong_kek_is_a_typed_error_without_secrets(pg: PgDatabase) -> None:
    ring = pg.keyring()
    key = new_signing_key()
    kid = ring.add(key)
    wrong = pg.keyring(migrate=False, kek=os.urandom(32))
    for use in (lambda: wrong.key_for(kid), wrong.current, wrong.kids, lambda: wrong.add(key)):
        with pytest.raises(KeyEncryptionError, match="key-encryption key") as info:
            use()
        assert isinstance(info.value, StoreError)
        assert key.hex() not in str(info.value)
        assert pg.kek.hex() not in str(info.value)
    assert ring.key_for(kid) == key


def test_a_sealed_key_is_bound_to_its_kid(pg: PgDatabase) -> None:
    ring = pg.keyring()
    first, second = ring.generate(), ring.generate()
    table = f'"{pg.schema}".macaroons_authz_keys'
    pg.execute(
        f"UPDATE {table} AS a SET nonce = b.nonce, sealed = b.sealed FROM {table} AS b "
        "WHERE a.kid = %s AND b.kid = %s",
        (first, second),
    )
    with pytest.raises(KeyEncryptionError, match="altered"):
        ring.key_for(first)
    assert ring.key_for(second) is not None


def test_the_kek_rotates_with_rewrap(pg: PgDatabase) -> None:
    old, new = os.urandom(32), os.urandom(32)
    ring = pg.keyring(kek=old)
    kid = ring.generate()
    key = ring.key_for(kid)
    both = pg.keyring(migrate=False, kek=new, old_keks=[old])
    assert both.key_for(kid) == key
    newer = both.generate()
    assert both.rewrap() == 1
    assert both.rewrap() == 0
    only_new = pg.keyring(migrate=False, kek=new)
    assert only_new.key_for(kid) == key
    assert only_new.current().kid == newer
    with pytest.raises(KeyEncryptionError):
        ring.key_for(kid)


# -- the revocation feed ------------------------------------------------------------------


def test_revoke_has_committed_when_it_returns(pg: PgDatabase) -> None:
    from psycopg_pool import ConnectionPool

    # A caller's pool whose connections are not in autocommit mode.
    pool: ConnectionPool[Any] = ConnectionPool(
        pg.url, min_size=1, max_size=2, open=True, kwargs={"autocommit": False}
    )
    pg.later(pool.close)
    store = PostgresRevocationStore(pool, schema=pg.schema)
    ring = PostgresKeyring(pool, kek=pg.kek, schema=pg.schema)
    assert store.migrate() == ring.migrate() == 1
    for view in (store, pg.revocations(migrate=False)):  # shared pool, and autocommit
        name = f"tok-{id(view)}"
        assert view.revoke(name) is True
        seen = pg.execute(
            f'SELECT token_id FROM "{pg.schema}".macaroons_authz_revocations WHERE token_id = %s',
            (name,),
        )
        assert seen == [(name,)]
    kid = ring.generate()
    assert pg.execute(
        f'SELECT count(*) FROM "{pg.schema}".macaroons_authz_keys WHERE kid = %s', (kid,)
    ) == [(1,)]
    store.close()
    ring.close()
    assert not pool.closed  # the caller's pool stays the caller's


def test_a_reader_never_passes_an_uncommitted_revocation(pg: PgDatabase) -> None:
    import psycopg

    store = pg.revocations()
    results: list[bool] = []
    with psycopg.connect(pg.url) as conn:  # a transaction, left open
        conn.execute(f'SELECT "{pg.schema}".macaroons_authz_revoke(%s, %s, %s)', ("slow", "", 1.0))
        later = threading.Thread(target=lambda: results.append(store.revoke("fast")))
        later.start()
        time.sleep(0.3)
        assert later.is_alive()  # it waits for number 1 to commit or roll back
        assert store.revoked_since(0) == ([], 0)
        conn.commit()
    later.join(10)
    entries, cursor = store.revoked_since(0)
    assert [(e.token_id, e.seq) for e in entries] == [("slow", 1), ("fast", 2)]
    assert results == [True] and cursor == 2


def test_the_feed_is_gapless_under_concurrent_revokers(pg: PgDatabase) -> None:
    pg.revocations()
    writers = [pg.revocations(migrate=False, pool_size=1) for _ in range(4)]
    per_writer = 40
    done = threading.Event()
    seen: list[Any] = []
    failures: list[BaseException] = []

    def follow() -> None:
        cursor = 0
        view = pg.revocations(migrate=False, pool_size=1)
        reads = 0
        while True:
            finished = done.is_set()
            entries, cursor = view.revoked_since(cursor)
            seen.extend(entries)
            reads += 1
            if reads % 5 == 0:
                view.close()
                view = pg.revocations(migrate=False, pool_size=1)
            if finished and not entries:
                return
            time.sleep(0.002)

    def write(i: int) -> None:
        try:
            for n in range(per_writer):
                if i == 0 and n == per_writer // 2:
                    with pytest.raises(StoreError):  # a failed revocation takes no number
                        writers[i].revoke("bad\x00id")
                writers[i].revoke(f"w{i}-{n}")
        except BaseException as exc:
            failures.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(30)
    assert failures == []
    total = per_writer * len(writers)
    assert [e.seq for e in seen] == list(range(1, total + 1))
    assert len({e.token_id for e in seen}) == total
    assert writers[0].head() == total


# -- one process: the invalidator ------------------------------------------------------------


@pytest.fixture
def fleet(pg: PgDatabase) -> dict[str, Any]:
    """A keyring with a key, a verifier with a cache that never polls, and its invalidator."""
    app = f"inv-{pg.schema}"
    ring = pg.keyring()
    ring.generate()
    store = pg.revocations(url=app_url(pg, app))
    cache = VerificationCache(poll_interval=float("inf"))
    verifier = Verifier(ring, revocations=store, cache=cache)
    invalidator = PostgresInvalidator(
        store, cache, keyring=ring, max_outage=0.6, heartbeat=0.2, reconnect_delay=2.0
    )
    pg.later(invalidator.stop)
    return {
        "ring": ring,
        "store": store,
        "cache": cache,
        "verifier": verifier,
        "invalidator": invalidator,
        "app": app,
        "writer": pg.revocations(migrate=False),
    }


def test_the_invalidator_drops_a_revocation_made_elsewhere_at_once(
    fleet: dict[str, Any],
) -> None:
    cache, verifier, invalidator = fleet["cache"], fleet["verifier"], fleet["invalidator"]
    token = org_token(fleet["ring"].current(), ORG)
    header = to_header(token)
    invalidator.start()
    assert cache.held  # fail closed until caught up
    assert invalidator.wait_until_healthy(10)
    assert not cache.held and invalidator.healthy
    verifier.verify(header)
    verifier.verify(header)
    assert cache.hits == 1
    start = time.monotonic()
    fleet["writer"].revoke(token_id(token))
    wait_for(lambda: len(cache) == 0, 1.0, "the listener to drop the revoked entry")
    assert time.monotonic() - start < 1.0
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(header)
    assert invalidator.cursor == fleet["writer"].head()
    mine = org_token(fleet["ring"].current(), ORG)
    verifier.verify(to_header(mine))
    assert len(cache) == 1
    fleet["store"].revoke(token_id(mine))  # through this process's own store
    assert len(cache) == 0  # dropped at once, before the NOTIFY comes back
    invalidator.stop()
    assert cache.held  # stopped: no more vouching for entries


def test_the_invalidator_purges_the_cache_when_a_key_is_removed(
    fleet: dict[str, Any], pg: PgDatabase
) -> None:
    cache, verifier, invalidator = fleet["cache"], fleet["verifier"], fleet["invalidator"]
    ring = fleet["ring"]
    token = org_token(ring.current(), ORG)
    invalidator.start()
    assert invalidator.wait_until_healthy(10)
    verifier.verify(to_header(token))
    pg.keyring(migrate=False).retire(token.nonce.kid)  # retiring does not invalidate
    time.sleep(0.3)
    assert len(cache) == 1
    pg.keyring(migrate=False).remove(token.nonce.kid)
    wait_for(lambda: len(cache) == 0, 1.0, "the key removal to purge the cache")
    with pytest.raises(VerificationError, match="unknown KID"):
        verifier.verify(to_header(token))


def test_a_lost_listener_fails_closed_then_catches_up(
    fleet: dict[str, Any], pg: PgDatabase
) -> None:
    cache, verifier, invalidator = fleet["cache"], fleet["verifier"], fleet["invalidator"]
    ring = fleet["ring"]
    revoked, kept = org_token(ring.current(), ORG), org_token(ring.current(), ORG)
    invalidator.start()
    assert invalidator.wait_until_healthy(10)
    for token in (revoked, kept, revoked, kept):
        verifier.verify(to_header(token))
    assert cache.hits == 2
    assert terminate(pg, fleet["app"]) >= 1  # the listener's connection, and the pool's
    fleet["writer"].revoke(token_id(revoked))  # while nobody listens
    wait_for(lambda: invalidator.disconnects >= 1, 5, "the listener to notice")
    wait_for(lambda: not invalidator.healthy, 2, "the outage bound to pass")
    assert cache.held and invalidator.last_error
    hits = cache.hits
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(to_header(revoked))
    verifier.verify(to_header(kept))
    verifier.verify(to_header(kept))
    assert cache.hits == hits and len(cache) == 0  # verified afresh, nothing stored
    assert invalidator.wait_until_healthy(10)  # reconnected after its delay, caught up
    assert invalidator.cursor == fleet["writer"].head()
    with pytest.raises(VerificationError, match="revoked"):
        verifier.verify(to_header(revoked))
    verifier.verify(to_header(kept))
    verifier.verify(to_header(kept))
    assert cache.hits == hits + 1


def test_invalidator_bounds_are_checked(fleet: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        PostgresInvalidator(fleet["store"], fleet["cache"], heartbeat=5, max_outage=5)
    with pytest.raises(ValueError, match="reconnect_delay"):
        PostgresInvalidator(fleet["store"], fleet["cache"], reconnect_delay=0)


# -- several processes ----------------------------------------------------------------------


class VerifierProcess:
    """A verifier in a process of its own (tests/pg_verifier_process.py)."""

    def __init__(self, pg: PgDatabase, url: str, **settings: float) -> None:
        env = dict(os.environ)
        env.update(PG_URL=url, PG_SCHEMA=pg.schema, PG_KEK=pg.kek.hex())
        env.update({name.upper(): str(value) for name, value in settings.items()})
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "pg_verifier_process.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.answer(30) == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def answer(self, timeout: float = 15) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail("the verifier process did not answer")

    def ask(self, command: str, timeout: float = 15) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def spawn(pg: PgDatabase) -> Iterator[Callable[..., VerifierProcess]]:
    procs: list[VerifierProcess] = []

    def start(url: str | None = None, **settings: float) -> VerifierProcess:
        proc = VerifierProcess(pg, url or pg.url, **settings)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


def test_a_revocation_through_one_verifier_is_refused_by_another_within_a_second(
    pg: PgDatabase, spawn: Callable[..., VerifierProcess]
) -> None:
    ring = pg.keyring()
    pg.revocations()
    ring.generate()
    token = org_token(ring.current(), ORG)
    header = to_header(token)
    a, b = spawn(), spawn()
    for proc in (a, b):
        assert proc.ask(f"verify {header}") == "ok miss"
        assert proc.ask(f"verify {header}") == "ok hit"
    start = time.monotonic()
    assert a.ask(f"revoke {token_id(token)}") == "revoked True"
    answer = b.ask(f"until-refused {header} 3")
    elapsed = time.monotonic() - start
    assert answer.startswith("refused"), answer
    assert elapsed < 1.0, f"refused {elapsed:.3f}s after the revocation"
    assert a.ask(f"verify {header}").startswith("refused")


def test_killing_a_verifiers_connections_does_not_let_a_revocation_through(
    pg: PgDatabase, spawn: Callable[..., VerifierProcess]
) -> None:
    ring = pg.keyring()
    writer = pg.revocations()
    ring.generate()
    revoked, kept = org_token(ring.current(), ORG), org_token(ring.current(), ORG)
    app = f"b-{pg.schema}"
    b = spawn(app_url(pg, app), max_outage=1.0, heartbeat=0.25, reconnect_delay=3.0)
    for token in (revoked, kept):
        assert b.ask(f"verify {to_header(token)}") == "ok miss"
        assert b.ask(f"verify {to_header(token)}") == "ok hit"
    assert terminate(pg, app) >= 2  # its listener and its pool
    writer.revoke(token_id(revoked))  # while its listener is down
    wait_for(lambda: "disconnects=0" not in b.ask("status"), 5, "the listener to notice")
    time.sleep(1.2)  # past max_outage, and before the reconnection (3 s)
    assert b.ask("status").startswith("healthy=False held=True")
    assert b.ask(f"verify {to_header(revoked)}").startswith("refused")
    assert b.ask(f"verify {to_header(kept)}") == "ok miss"  # failed closed: verified afresh
    assert b.ask("wait-healthy 15", timeout=20) == "healthy True"
    assert b.ask(f"verify {to_header(revoked)}").startswith("refused")
    assert b.ask(f"verify {to_header(kept)}") == "ok miss"
    assert b.ask(f"verify {to_header(kept)}") == "ok hit"  # and the cache serves again
