"""The PostgreSQL keyring and revocation store, async: psycopg's async connections.

They need the ``postgres`` extra (``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.stores.postgres_async import (
        AsyncPostgresKeyring,
        AsyncPostgresRevocationStore,
    )

They read and write the very tables of
:class:`~macaroons_authz.stores.PostgresKeyring` and
:class:`~macaroons_authz.stores.PostgresRevocationStore` (same schema, same
sealed keys, same gapless feed and ``NOTIFY``), so blocking and async
processes of one fleet share them. They never create or migrate a schema:
run the blocking store's ``migrate()`` once, as a deployment step; until
then every call raises :class:`~macaroons_authz.stores.SchemaError`.

Each store holds a :class:`psycopg_pool.AsyncConnectionPool`, which belongs
to the event loop that first uses it: make the stores in the process (and
loop) that serves requests, such as a uvicorn worker's lifespan, and
``await store.close()`` when it ends. Every database failure becomes a
:class:`~macaroons_authz.StoreError` that names the error's type and first
line, never the connection string.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

try:
    from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "the async PostgreSQL stores (macaroons_authz.stores.postgres_async) need psycopg 3 "
        "and psycopg-pool: pip install 'macaroons_authz[postgres]'"
    ) from exc

from ._postgres import SchemaError, TupleRow, _first_line, _Schema, psycopg, sql
from ._sqlite import StoreError
from .postgres_keyring import _keyring_migrations, _Sealer
from .postgres_revocation import _revocation_migrations, _revocation_queries
from .revocation import Revocation, _check_id

__all__ = ["AsyncPostgresKeyring", "AsyncPostgresRevocationStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[TupleRow]


class _AsyncDatabase(_Schema):
    """An async pool on one schema, checked once to be at this library's version."""

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any],
        *,
        schema: str,
        component: str,
        migrations: Callable[[Any], Sequence[sql.Composed]],
        pool_size: int,
        timeout: float,
    ) -> None:
        super().__init__(schema, component, pool_size, timeout)
        # The migrations are only counted: the blocking stores apply them.
        self._version = len(migrations(self))
        self._ready = False
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        if isinstance(database, AsyncConnectionPool):
            self.pool: AsyncConnectionPool[Any] = database
            self._owned = False
        elif isinstance(database, str):
            self.pool = AsyncConnectionPool(
                database,
                kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout))},
                min_size=1,
                max_size=pool_size,
                open=False,
                timeout=timeout,
                name=f"macaroons_authz.{schema}.{component}.async",
            )
            self._owned = True
        else:
            raise TypeError(
                "database must be a conninfo string or a psycopg_pool.AsyncConnectionPool"
            )

    async def _open(self) -> None:
        if self._opened or not self._owned:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.pool.open(wait=False)
                self._opened = True

    async def _check_schema(self, conn: _Conn) -> None:
        query = self.query(
            "SELECT version FROM {meta} WHERE component = %s",
            meta=self.table("macaroons_authz_schema"),
        )
        row = await (await conn.execute(query, (self.component,))).fetchone()
        version = 0 if row is None else int(row[0])
        if version != self._version:
            raise SchemaError(
                f"the {self.component} schema in {self.schema!r} is at version {version}, "
                f"this library needs {self._version}: run the blocking store's migrate()"
            )
        self._ready = True

    async def run(self, fn: Callable[[_Conn], Awaitable[_T]], *, retry: bool = False) -> _T:
        """Await *fn* on a pooled connection; every database error becomes a StoreError.

        With *retry* (for reads), a connection found broken is replaced once.
        """
        await self._open()
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                async with self.pool.connection() as conn:
                    if not self._ready:
                        await self._check_schema(conn)
                    return await fn(conn)
            except (PoolTimeout, PoolClosed) as exc:
                raise StoreError(
                    f"{self.component}: no database connection: {_first_line(exc)}"
                ) from None
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
                raise SchemaError(
                    f"the {self.component} schema in {self.schema!r} is not migrated: "
                    "run the blocking store's migrate() once (a deployment step)"
                ) from None
            except psycopg.OperationalError as exc:
                if attempt + 1 < attempts:
                    logger.info(
                        "%s: retrying on a fresh connection: %s", self.component, _first_line(exc)
                    )
                    await self.pool.check()
                    continue
                raise StoreError(f"{self.component}: {_first_line(exc)}") from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.component}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._owned and self._opened:
            await self.pool.close()
        self._opened = False


class _AsyncStore:
    _db: _AsyncDatabase

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (if this store opened it)."""
        await self._db.close()


class AsyncPostgresKeyring(_AsyncStore):
    """The root keys of a :class:`~macaroons_authz.stores.PostgresKeyring`, read asynchronously.

    Implements :class:`~macaroons_authz.stores.async_.AsyncKeyring` for an
    :class:`~macaroons_authz.AsyncVerifier`. Keys are added, retired and
    rotated with the blocking keyring (a deployment's tooling); this one
    reads them.

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.AsyncConnectionPool`` to share (which then stays
            the caller's to open and close).
        kek: the 32-byte key-encryption key the keys are sealed under.
        old_keks: earlier KEKs that keys may still be sealed under.
        schema: the PostgreSQL schema holding the tables.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any],
        *,
        kek: bytes,
        old_keks: Sequence[bytes] = (),
        schema: str = "public",
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self._sealer = _Sealer(kek, old_keks)
        db = self._db = _AsyncDatabase(
            database,
            schema=schema,
            component="keyring",
            migrations=_keyring_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        self._q_key_for = db.query(
            "SELECT kek_id, nonce, sealed FROM {keys} WHERE kid = %s",
            keys=db.table("macaroons_authz_keys"),
        )

    def __repr__(self) -> str:
        return f"<AsyncPostgresKeyring schema={self._db.schema!r}>"

    async def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``.

        Raises:
            KeyEncryptionError: the key is sealed under another KEK, or altered.
            StoreError: the database cannot be read.
        """

        async def read(conn: _Conn) -> Any:
            return await (await conn.execute(self._q_key_for, (kid,), prepare=True)).fetchone()

        row = await self._db.run(read, retry=True)
        if row is None:
            return None
        kek_id, nonce, sealed = row
        return self._sealer.open(kid, bytes(kek_id), bytes(nonce), bytes(sealed))


class AsyncPostgresRevocationStore(_AsyncStore):
    """A :class:`~macaroons_authz.stores.PostgresRevocationStore`, asynchronously.

    Implements :class:`~macaroons_authz.stores.async_.AsyncRevocationStore`:
    the same tables, the same gapless feed (a revocation commits through the
    same server-side function, before :meth:`revoke` returns).

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.AsyncConnectionPool`` to share.
        schema: the PostgreSQL schema holding the tables.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | AsyncConnectionPool[Any],
        *,
        schema: str = "public",
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        db = self._db = _AsyncDatabase(
            database,
            schema=schema,
            component="revocations",
            migrations=_revocation_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        self._q_revoke, self._q_is_revoked, self._q_since = _revocation_queries(db)

    def __repr__(self) -> str:
        return f"<AsyncPostgresRevocationStore schema={self._db.schema!r}>"

    async def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id*; ``True`` if it was not revoked before.

        Returns only once the revocation has committed.
        """
        _check_id(token_id)
        args = (token_id, reason, time.time() if at is None else float(at))

        async def write(conn: _Conn) -> bool:
            row = await (await conn.execute(self._q_revoke, args, prepare=True)).fetchone()
            if not conn.autocommit:
                await conn.commit()
            return row is not None and row[0] is not None

        return await self._db.run(write)

    async def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""

        async def read(conn: _Conn) -> bool:
            cur = await conn.execute(self._q_is_revoked, (token_id,), prepare=True)
            return await cur.fetchone() is not None

        return await self._db.run(read, retry=True)

    async def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor*, oldest first, and the new cursor."""

        async def read(conn: _Conn) -> tuple[list[Revocation], int]:
            cur = await conn.execute(self._q_since, (max(int(cursor), 0),), prepare=True)
            rows = await cur.fetchall()
            entries = [Revocation(t, r, float(at), int(seq)) for t, r, at, seq in rows]
            return entries, (entries[-1].seq if entries else cursor)

        return await self._db.run(read, retry=True)
