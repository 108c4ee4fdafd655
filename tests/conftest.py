"""Shared fixtures: the vectors in ../shared and a deterministic random source."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from macaroons_authz import crypto

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SPEC_VECTORS = SHARED / "spec" / "fly-macaroon-vectors.json"
OFFICIAL_VECTORS = SHARED / "vectors" / "superfly-macaroon-vectors.json"


def _load(path: Path) -> Any:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing; under CI the shared vectors must be present")
        pytest.skip(f"{path} not found: the shared vectors live beside the project checkout")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def spec_vectors() -> Any:
    """``../shared/spec/fly-macaroon-vectors.json``."""
    return _load(SPEC_VECTORS)


@pytest.fixture(scope="session")
def official_vectors() -> Any:
    """``../shared/vectors/superfly-macaroon-vectors.json``."""
    return _load(OFFICIAL_VECTORS)


class CounterRandom:
    """Go's deterministic test RNG: a byte counter starting at a given value."""

    def __init__(self, start: int) -> None:
        self.next = start

    def __call__(self, n: int) -> bytes:
        out = bytes((self.next + i) & 0xFF for i in range(n))
        self.next += n
        return out


@pytest.fixture
def counter_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], CounterRandom]]:
    """Replace :func:`crypto.random_bytes` with a counter starting where asked."""

    def install(start: int) -> CounterRandom:
        rng = CounterRandom(start)
        monkeypatch.setattr(crypto, "random_bytes", rng)
        return rng

    return install


# -- PostgreSQL -------------------------------------------------------------------
#
# The PostgreSQL tests run against the server named by MACAROONS_AUTHZ_TEST_PG
# (.ci/run starts a throw-away one). Without it they skip, saying why; under
# CI=true they fail instead, so a broken set-up cannot pass silently.

PG_ENV = "MACAROONS_AUTHZ_TEST_PG"


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI the PostgreSQL tests must run (.ci/run starts a server)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A reachable PostgreSQL server's URL, or a skip (a failure under CI) saying why not."""
    url = os.environ.get(PG_ENV, "")
    try:
        import psycopg
    except ImportError:
        _pg_unavailable("psycopg is not installed: pip install '.[postgres]'")
    if not url:
        _pg_unavailable(
            f"no PostgreSQL server to test against: set {PG_ENV}="
            "postgresql://USER:PASSWORD@127.0.0.1:PORT/DB (.ci/run starts one)"
        )
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _pg_unavailable(f"the PostgreSQL server in {PG_ENV} is unreachable: {first}")
    return url


class PgDatabase:
    """One throw-away PostgreSQL schema, and the stores opened on it (closed at the end)."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self.kek = bytes(range(100, 132))
        self._closers: list[Callable[[], None]] = []

    def keyring(self, *, migrate: bool = True, **kw: Any) -> Any:
        from macaroons_authz.stores.postgres_keyring import PostgresKeyring

        kw.setdefault("kek", self.kek)
        kw.setdefault("schema", self.schema)
        kw.setdefault("timeout", 5.0)
        ring = PostgresKeyring(kw.pop("url", self.url), **kw)
        self._closers.append(ring.close)
        if migrate:
            ring.migrate()
        return ring

    def revocations(self, *, migrate: bool = True, **kw: Any) -> Any:
        from macaroons_authz.stores.postgres_revocation import PostgresRevocationStore

        kw.setdefault("schema", self.schema)
        kw.setdefault("timeout", 5.0)
        store = PostgresRevocationStore(kw.pop("url", self.url), **kw)
        self._closers.append(store.close)
        if migrate:
            store.migrate()
        return store

    def later(self, fn: Callable[[], None]) -> None:
        """Run *fn* at teardown, before the stores close."""
        self._closers.insert(0, fn)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own; its rows (if any)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for close in self._closers:
            close()
        self.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


@pytest.fixture
def pg(pg_url: str) -> Iterator[PgDatabase]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import uuid

    db = PgDatabase(pg_url, f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        db.close()
