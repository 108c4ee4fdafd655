"""Shared plumbing of the PostgreSQL stores: the pool, schemas and their migrations.

The keyring (:mod:`.postgres_keyring`), the revocation store
(:mod:`.postgres_revocation`) and the invalidator
(:mod:`.postgres_invalidator`) import psycopg through this module, so a
missing ``postgres`` extra is reported once, with the command that installs
it. Nothing here touches the database on import or construction: a schema is
created, and later upgraded, only by an explicit ``migrate()`` (a deployment
step); a store used before it raises :class:`SchemaError`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar

try:
    import psycopg as psycopg
    from psycopg import sql as sql
    from psycopg.rows import TupleRow as TupleRow
    from psycopg_pool import ConnectionPool as ConnectionPool
    from psycopg_pool import PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "the PostgreSQL stores (macaroons_authz.stores.postgres_*) need psycopg 3 and "
        "psycopg-pool: pip install 'macaroons_authz[postgres]'"
    ) from exc

from ._sqlite import StoreError

__all__ = ["SchemaError"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = psycopg.Connection[TupleRow]

#: Schema names are restricted so that they, and the NOTIFY channel named
#: after them, stay well inside PostgreSQL's 63-byte identifiers.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
#: A constant key for the advisory lock that serializes migrations.
_MIGRATION_LOCK = 0x6D61_6361_726F_6F6E  # "macaroon"


class SchemaError(StoreError):
    """The database schema is missing, older or newer than this library: run ``migrate()``."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}"


class _Schema:
    """One component's place in a schema: its names, and how its queries name tables.

    Shared by the blocking pool (:class:`_Database`) and the async one.
    """

    def __init__(self, schema: str, component: str, pool_size: int, timeout: float) -> None:
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("schema must match [a-z_][a-z0-9_]{0,39}")
        if pool_size < 1 or timeout <= 0:
            raise ValueError("pool_size and timeout must be positive")
        self.schema = schema
        self.component = component
        self.channel = f"macaroons_authz.{schema}"

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def query(self, template: str, **parts: sql.Composable) -> bytes:
        """A query with this schema's identifiers in it, as bytes (prepared once per connection)."""
        return sql.SQL(template).format(**parts).as_bytes(None)


class _Database(_Schema):
    """A pool, a schema, and one component's migrations within it."""

    def __init__(
        self,
        database: str | ConnectionPool[Any],
        *,
        schema: str,
        component: str,
        migrations: Callable[[_Database], Sequence[sql.Composed]],
        pool_size: int,
        timeout: float,
    ) -> None:
        super().__init__(schema, component, pool_size, timeout)
        self._migrations = tuple(migrations(self))
        self._lock = threading.Lock()
        self._ready = False
        if isinstance(database, ConnectionPool):
            self.pool: ConnectionPool[Any] = database
            self._owned = False
            self._conninfo: Any = database.conninfo
            self._kwargs: Any = database.kwargs
        elif isinstance(database, str):
            self._conninfo = database
            self._kwargs = {"autocommit": True, "connect_timeout": max(1, round(timeout))}
            self.pool = ConnectionPool(
                database,
                kwargs=self._kwargs,
                min_size=1,
                max_size=pool_size,
                open=False,
                timeout=timeout,
                name=f"macaroons_authz.{schema}.{component}",
            )
            self._owned = True
        else:
            raise TypeError("database must be a conninfo string or a psycopg_pool.ConnectionPool")
        self._opened = not self._owned
        self._closed = False

    def connect_args(self) -> tuple[str, dict[str, Any]]:
        """The pool's conninfo and connection arguments, for a connection of one's own."""
        conninfo = self._conninfo() if callable(self._conninfo) else self._conninfo
        kwargs = self._kwargs() if callable(self._kwargs) else self._kwargs
        return str(conninfo), dict(kwargs or {})

    # ---- running work on a pooled connection

    def _open(self) -> None:
        with self._lock:
            if not self._opened and not self._closed:
                self.pool.open(wait=False)
                self._opened = True

    def run(self, fn: Callable[[_Conn], _T], *, retry: bool = False) -> _T:
        """Run *fn* on a pooled connection; every database error becomes a StoreError.

        With *retry* (for reads), a connection found broken (the server
        restarted, or the backend was terminated) is replaced once.
        """
        self._open()
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                with self.pool.connection() as conn:
                    if not self._ready:
                        self.check_schema(conn)
                    return fn(conn)
            except (PoolTimeout, PoolClosed) as exc:
                raise StoreError(
                    f"{self.component}: no database connection: {_first_line(exc)}"
                ) from None
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
                raise SchemaError(self._unmigrated()) from None
            except psycopg.OperationalError as exc:
                if attempt + 1 < attempts:
                    logger.info(
                        "%s: retrying on a fresh connection: %s", self.component, _first_line(exc)
                    )
                    self._check_pool()
                    continue
                raise StoreError(f"{self.component}: {_first_line(exc)}") from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.component}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_pool(self) -> None:
        try:
            self.pool.check()
        except Exception as exc:  # the retry reports the failure that matters
            logger.info("%s: pool check failed: %s", self.component, _first_line(exc))

    def close(self) -> None:
        with self._lock:
            if self._owned and self._opened and not self._closed:
                self.pool.close()
            self._closed = True

    # ---- schema versions

    def _meta(self) -> sql.Identifier:
        return self.table("macaroons_authz_schema")

    def _unmigrated(self) -> str:
        return (
            f"the {self.component} schema in {self.schema!r} is not migrated: "
            "call migrate() once (a deployment step) before using the store"
        )

    def check_schema(self, conn: _Conn) -> None:
        """Raise SchemaError unless the schema is exactly at this library's version."""
        version = self._read_version(conn, prepare=True)
        self._check_not_newer(version)
        if version < len(self._migrations):  # the meta table missing included
            raise SchemaError(self._unmigrated())
        self._ready = True

    def version(self) -> int:
        """The schema version in the database (0 if not migrated)."""
        return self._run_unchecked(self._read_version)

    def _read_version(self, conn: _Conn, prepare: bool = False) -> int:
        """The recorded version of this component's schema; 0 if none (or no meta table)."""
        try:
            row = conn.execute(
                self.query("SELECT version FROM {meta} WHERE component = %s", meta=self._meta()),
                (self.component,),
                prepare=prepare,
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            if not conn.autocommit:
                conn.rollback()
            return 0
        return 0 if row is None else int(row[0])

    def _check_not_newer(self, version: int) -> None:
        latest = len(self._migrations)
        if version > latest:
            raise SchemaError(
                f"the {self.component} schema in {self.schema!r} is at version {version}, "
                f"newer than this library knows ({latest})"
            )

    def migrate(self) -> int:
        """Bring the schema to this library's version; return it."""

        def upgrade(conn: _Conn) -> int:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {meta} ("
                        " component text PRIMARY KEY, version integer NOT NULL)"
                    ).format(meta=self._meta())
                )
                # The meta table exists now, so the read cannot fall back to a rollback.
                version = self._read_version(conn)
                self._check_not_newer(version)
                latest = len(self._migrations)
                for step in self._migrations[version:]:
                    conn.execute(step)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {meta} (component, version) VALUES (%s, %s) "
                        "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version"
                    ).format(meta=self._meta()),
                    (self.component, latest),
                )
            self._ready = True
            return latest

        return self._run_unchecked(upgrade)

    def _run_unchecked(self, fn: Callable[[_Conn], _T]) -> _T:
        self._open()
        try:
            with self.pool.connection() as conn:
                return fn(conn)
        except (PoolTimeout, PoolClosed) as exc:
            raise StoreError(
                f"{self.component}: no database connection: {_first_line(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.component}: {_first_line(exc)}") from None


@contextmanager
def _committed(conn: _Conn) -> Iterator[None]:
    """A transaction that has committed when the block exits (autocommit or not)."""
    with conn.transaction():
        yield
    if not conn.autocommit:
        conn.commit()


def _one(cur: psycopg.Cursor[TupleRow]) -> TupleRow:
    row = cur.fetchone()
    if row is None:  # pragma: no cover - the queries always return a row
        raise StoreError("the database returned no row")
    return row


class _Store:
    """What the PostgreSQL keyring and revocation store share."""

    _db: _Database

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channel(self) -> str:
        """The ``NOTIFY`` channel on which this store's changes are announced."""
        return self._db.channel

    def migrate(self) -> int:
        """Create or upgrade this store's tables; return the schema version.

        Safe to run from several machines at once (an advisory lock
        serializes migrations); never run implicitly.

        Raises:
            SchemaError: the database holds a newer schema.
        """
        return self._db.migrate()

    def schema_version(self) -> int:
        """The schema version in the database (0 before :meth:`migrate`)."""
        return self._db.version()

    def close(self) -> None:
        """Close the connection pool (if this store opened it)."""
        self._db.close()
