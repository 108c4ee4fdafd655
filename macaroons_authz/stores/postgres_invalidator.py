"""Keyrings and revocation stores on PostgreSQL, with push invalidation.

For a fleet of verifiers: every machine sees the same keys and the same
revocations, and a revocation made on one machine reaches the caches of all
the others within a second. Import it explicitly (it needs the ``postgres``
extra, ``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.postgres import (
        PostgresInvalidator,
        PostgresKeyring,
        PostgresRevocationStore,
    )

Nothing here touches the database on import or construction. The schema is
created, and later upgraded, only by an explicit :meth:`PostgresKeyring.migrate`
/ :meth:`PostgresRevocationStore.migrate` (a deployment step); a store used
before it raises :class:`SchemaError`.

**The revocation feed.** Each revocation gets a sequence number, and
:meth:`PostgresRevocationStore.revoked_since` returns those after a cursor.
With an ordinary sequence that would be unsafe: two transactions can take
numbers 7 and 8 and commit 8 first, so a reader that sees 8 and moves its
cursor there would never see 7. Rather than compute a "safe horizon" from
transaction ids on every read, revocations are serialized: a revocation
locks the single row of a counter table (``SELECT ... FOR UPDATE``), takes
the next number, inserts, advances the counter and commits, all in one
server-side function and so one round trip. The row lock is held until the
commit is visible, so numbers are committed in order and without gaps: any
snapshot sees exactly the revocations ``1..n``. A reader can never pass a
number that will commit later, and can resume from its cursor on any
connection, so the feed neither skips nor repeats, across reconnects too.
The price is one revocation committing at a time, a few hundred to
thousands a second depending on the disk's flush latency; revocations are
rare. A revocation of a token already revoked changes nothing (and does not
consume a number). :meth:`~PostgresRevocationStore.revoke` returns after
the commit; with ``synchronous_commit`` at its default the revocation is then
on disk (and on synchronous replicas, if configured).

**Push invalidation.** The revoking transaction also sends ``NOTIFY`` on a
channel named after the schema, as do key additions, retirements and
removals. A :class:`PostgresInvalidator` runs a daemon thread with its own
connection that ``LISTEN`` s there; a notification makes it read the feed
from its cursor and drop the cached verifications of the revoked tokens.
Notifications are only a wake-up: the feed is the record, so a lost
notification costs latency, never a revocation. The thread also reads the
feed every *heartbeat* (a second by default), which proves the connection
alive, and each successful read renews the cache's *lease* for
*max_outage* seconds. If the connection is lost, or hangs, the lease lapses
and the cache fails closed: it serves no hit and stores nothing, so every
header is verified afresh against the database. Once reconnected, the
thread listens again, catches up through ``revoked_since(cursor)`` and only
then renews the lease (forgetting every entry if it had lapsed). A key
removal has no feed; the thread compares the keyring's (count, newest
sequence) on every read and forgets every entry when it changes.

Keys are stored sealed with AES-256-GCM under a key-encryption key (KEK) the
application supplies, with the KID as associated data, so a sealed key
cannot be moved to another KID. The database never sees a key in clear.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar

try:
    import psycopg
    from psycopg import sql
    from psycopg.rows import TupleRow
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "macaroons_authz.postgres needs psycopg 3 and psycopg-pool: "
        "pip install 'macaroons_authz[postgres]'"
    ) from exc

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import crypto
from ._sqlite import StoreError
from .keyring import KeyringError, SigningKey, UnknownKeyError, _kid_of
from .revocation import Revocation, _check_id
from .verifier import VerificationCache

__all__ = [
    "KeyEncryptionError",
    "PostgresInvalidator",
    "PostgresKeyring",
    "PostgresRevocationStore",
    "SchemaError",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = psycopg.Connection[TupleRow]

#: Schema names are restricted so that they, and the NOTIFY channel named
#: after them, stay well inside PostgreSQL's 63-byte identifiers.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
#: A constant key for the advisory lock that serializes migrations.
_MIGRATION_LOCK = 0x6D61_6361_726F_6F6E  # "macaroon"
_KEK_SIZE = 32
_NONCE_SIZE = 12
_AAD_PREFIX = b"macaroons_authz keyring v1\x00"


class SchemaError(StoreError):
    """The database schema is missing, older or newer than this library: run ``migrate()``."""


class KeyEncryptionError(StoreError):
    """A stored key cannot be unsealed: the wrong key-encryption key, or an altered row."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}"


# -- connections and schemas -----------------------------------------------------


class _Database:
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
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError("schema must match [a-z_][a-z0-9_]{0,39}")
        if pool_size < 1 or timeout <= 0:
            raise ValueError("pool_size and timeout must be positive")
        self.schema = schema
        self.component = component
        self.channel = f"macaroons_authz.{schema}"
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

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def query(self, template: str, **parts: sql.Composable) -> bytes:
        """A query with this schema's identifiers in it, as bytes (prepared once per connection)."""
        return sql.SQL(template).format(**parts).as_bytes(None)

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


# -- the keyring ------------------------------------------------------------------------


def _kek_id(kek: bytes) -> bytes:
    # Identifies a KEK without revealing anything about it, so a row says
    # which KEK sealed it and a wrong KEK is reported as such.
    return hmac.new(kek, b"macaroons_authz key-encryption key id", hashlib.sha256).digest()[:8]


class _Sealer:
    """AES-256-GCM under the current KEK, opening with the current or an old one."""

    def __init__(self, kek: bytes, old_keks: Sequence[bytes]) -> None:
        self._aeads: dict[bytes, AESGCM] = {}
        for k in (kek, *old_keks):
            crypto.check_key(k, "key-encryption key", _KEK_SIZE)
            self._aeads.setdefault(_kek_id(k), AESGCM(k))
        self.current = _kek_id(kek)

    def seal(self, kid: bytes, key: bytes) -> tuple[bytes, bytes, bytes]:
        nonce = crypto.random_bytes(_NONCE_SIZE)
        return self.current, nonce, self._aeads[self.current].encrypt(nonce, key, _AAD_PREFIX + kid)

    def open(self, kid: bytes, kek_id: bytes, nonce: bytes, sealed: bytes) -> bytes:
        aead = self._aeads.get(kek_id)
        if aead is None:
            raise KeyEncryptionError(
                f"the key of KID {kid.hex()} is sealed under a key-encryption key "
                f"(id {kek_id.hex()}) this keyring was not given"
            )
        try:
            return aead.decrypt(nonce, sealed, _AAD_PREFIX + kid)
        except InvalidTag:
            raise KeyEncryptionError(
                f"the key of KID {kid.hex()} does not unseal: its row was altered"
            ) from None


def _keyring_migrations(db: _Database) -> list[sql.Composed]:
    return [
        sql.SQL(
            """
            CREATE TABLE {keys} (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kid bytea NOT NULL UNIQUE,
                kek_id bytea NOT NULL,
                nonce bytea NOT NULL,
                sealed bytea NOT NULL,
                retired boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """
        ).format(keys=db.table("macaroons_authz_keys")),
    ]


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


class PostgresKeyring(_Store):
    """A keyring in PostgreSQL, shared by a fleet; keys sealed under a KEK.

    Its methods are those of :class:`~macaroons_authz.MemoryKeyring`. Keys
    are stored sealed with AES-256-GCM under *kek* (the KID is the
    associated data); a key that does not unseal raises
    :class:`KeyEncryptionError`. To rotate the KEK, construct the keyring
    with the new one as *kek* and the old one in *old_keks*, call
    :meth:`rewrap`, then drop the old one.

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.ConnectionPool`` to share (which then stays the
            caller's to close).
        kek: the 32-byte key-encryption key. Keep it out of the database:
            in a secret manager, or the environment of the verifiers.
        old_keks: earlier KEKs that keys may still be sealed under.
        schema: the PostgreSQL schema holding the tables.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | ConnectionPool[Any],
        *,
        kek: bytes,
        old_keks: Sequence[bytes] = (),
        schema: str = "public",
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self._sealer = _Sealer(kek, old_keks)
        db = self._db = _Database(
            database,
            schema=schema,
            component="keyring",
            migrations=_keyring_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        keys = db.table("macaroons_authz_keys")
        self._q_key_for = db.query(
            "SELECT kek_id, nonce, sealed FROM {keys} WHERE kid = %s", keys=keys
        )
        self._q_current = db.query(
            "SELECT kid, kek_id, nonce, sealed FROM {keys} WHERE NOT retired "
            "ORDER BY seq DESC LIMIT 1",
            keys=keys,
        )
        self._q_all = db.query(
            "SELECT kid, kek_id, nonce, sealed, retired FROM {keys} ORDER BY seq", keys=keys
        )
        self._q_lock = db.query("LOCK TABLE {keys} IN SHARE ROW EXCLUSIVE MODE", keys=keys)
        self._q_insert = db.query(
            "INSERT INTO {keys} (kid, kek_id, nonce, sealed) VALUES (%s, %s, %s, %s)", keys=keys
        )
        self._q_delete = db.query("DELETE FROM {keys} WHERE kid = %s RETURNING seq", keys=keys)
        self._q_retire = db.query(
            "UPDATE {keys} SET retired = true WHERE kid = %s RETURNING seq", keys=keys
        )
        self._q_reseal = db.query(
            "UPDATE {keys} SET kek_id = %s, nonce = %s, sealed = %s WHERE kid = %s", keys=keys
        )
        self._q_fingerprint = db.query(
            "SELECT count(*), coalesce(max(seq), 0) FROM {keys}", keys=keys
        )

    def __repr__(self) -> str:
        return f"<PostgresKeyring schema={self._db.schema!r}>"

    def __len__(self) -> int:
        return self._db.run(lambda c: int(_one(c.execute(self._q_fingerprint))[0]), retry=True)

    def _notify(self, conn: _Conn, event: str, kid: bytes) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (self._db.channel, f"key {event} {kid.hex()}"))

    def add(self, key: bytes, kid: bytes | None = None) -> bytes:
        """Add *key* as the current key; return its KID.

        Raises:
            KeyringError: another key already has this KID.
        """
        kid = _kid_of(key, kid)
        kek_id, nonce, sealed = self._sealer.seal(kid, key)

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                row = conn.execute(self._q_key_for, (kid,)).fetchone()
                if row is not None and not crypto.equal(self._open(kid, row), key):
                    raise KeyringError(f"KID {kid.hex()} is already used by another key")
                # Re-inserting gives the key the newest sequence number: it is current.
                conn.execute(self._q_delete, (kid,))
                conn.execute(self._q_insert, (kid, kek_id, nonce, sealed))
                self._notify(conn, "add", kid)

        self._db.run(write)
        return kid

    def generate(self) -> bytes:
        """Add a new random key as the current key (a rotation); return its KID."""
        return self.add(crypto.new_signing_key())

    def _open(self, kid: bytes, row: tuple[Any, ...]) -> bytes:
        kek_id, nonce, sealed = row
        return self._sealer.open(kid, bytes(kek_id), bytes(nonce), bytes(sealed))

    def key_for(self, kid: bytes) -> bytes | None:
        """The root key for *kid*, retired or not, or ``None``.

        Raises:
            KeyEncryptionError: the key is sealed under another KEK, or altered.
        """
        row = self._db.run(
            lambda c: c.execute(self._q_key_for, (kid,), prepare=True).fetchone(), retry=True
        )
        return None if row is None else self._open(kid, row)

    def current(self) -> SigningKey:
        """The newest key that is not retired: the one to mint with.

        Raises:
            KeyringError: every key is retired, or there is none.
        """
        row = self._db.run(
            lambda c: c.execute(self._q_current, prepare=True).fetchone(), retry=True
        )
        if row is None:
            raise KeyringError("the keyring has no key to mint with")
        kid = bytes(row[0])
        return SigningKey(kid, self._open(kid, row[1:]))

    def retire(self, kid: bytes) -> None:
        """Stop minting with *kid*; tokens it minted still verify until :meth:`remove`.

        Raises:
            UnknownKeyError: no key has this KID.
        """

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                if conn.execute(self._q_retire, (kid,)).fetchone() is None:
                    raise UnknownKeyError(f"unknown KID {kid.hex()}")
                self._notify(conn, "retire", kid)

        self._db.run(write)

    def remove(self, kid: bytes) -> None:
        """Forget *kid*: every token minted with it stops verifying."""

        def write(conn: _Conn) -> None:
            with _committed(conn):
                conn.execute(self._q_lock)
                if conn.execute(self._q_delete, (kid,)).fetchone() is not None:
                    self._notify(conn, "remove", kid)

        self._db.run(write)

    def kids(self) -> list[SigningKey]:
        """Every key, oldest first (keys are hidden from ``repr``)."""
        rows = self._db.run(lambda c: c.execute(self._q_all).fetchall(), retry=True)
        return [
            SigningKey(bytes(kid), self._open(bytes(kid), (k, n, s)), bool(r))
            for kid, k, n, s, r in rows
        ]

    def rewrap(self) -> int:
        """Reseal every key not sealed under the current KEK; return how many.

        Raises:
            KeyEncryptionError: a key is sealed under a KEK this keyring was
                not given.
        """

        def write(conn: _Conn) -> int:
            done = 0
            with _committed(conn):
                conn.execute(self._q_lock)
                for kid, kek_id, nonce, sealed, _ in conn.execute(self._q_all).fetchall():
                    if bytes(kek_id) == self._sealer.current:
                        continue
                    key = self._open(bytes(kid), (kek_id, nonce, sealed))
                    conn.execute(self._q_reseal, (*self._sealer.seal(bytes(kid), key), kid))
                    done += 1
            return done

        return self._db.run(write)


# -- revocations ---------------------------------------------------------------------


def _revocation_migrations(db: _Database) -> list[sql.Composed]:
    revocations = db.table("macaroons_authz_revocations")
    feed = db.table("macaroons_authz_feed")
    return [
        sql.SQL(
            """
            CREATE TABLE {revocations} (
                seq bigint PRIMARY KEY,
                token_id text NOT NULL UNIQUE,
                reason text NOT NULL,
                revoked_at double precision NOT NULL,
                recorded_at timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE {feed} (
                id integer PRIMARY KEY CHECK (id = 1),
                last_seq bigint NOT NULL
            );
            INSERT INTO {feed} (id, last_seq) VALUES (1, 0);
            -- The counter row's lock is held until commit, so revocations
            -- commit one at a time, in the order of their numbers, without gaps.
            CREATE FUNCTION {revoke}(p_token_id text, p_reason text, p_at double precision)
            RETURNS bigint LANGUAGE plpgsql AS $fn$
            DECLARE
                next_seq bigint;
            BEGIN
                SELECT last_seq + 1 INTO next_seq FROM {feed} WHERE id = 1 FOR UPDATE;
                INSERT INTO {revocations} (seq, token_id, reason, revoked_at)
                    VALUES (next_seq, p_token_id, p_reason, p_at)
                    ON CONFLICT (token_id) DO NOTHING;
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                UPDATE {feed} SET last_seq = next_seq WHERE id = 1;
                PERFORM pg_notify({channel}, 'revoke ' || next_seq);
                RETURN next_seq;
            END
            $fn$;
            """
        ).format(
            revocations=revocations,
            feed=feed,
            revoke=db.table("macaroons_authz_revoke"),
            channel=sql.Literal(db.channel),
        ),
    ]


class PostgresRevocationStore(_Store):
    """Revocations in PostgreSQL, shared by a fleet, with a gapless change feed.

    Implements :class:`~macaroons_authz.RevocationStore`. :meth:`revoke`
    returns after its transaction has committed; revoking twice is
    harmless; :meth:`revoked_since` never skips or repeats an entry (see the
    module documentation for why).

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.ConnectionPool`` to share (which then stays the
            caller's to close).
        schema: the PostgreSQL schema holding the tables.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | ConnectionPool[Any],
        *,
        schema: str = "public",
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        db = self._db = _Database(
            database,
            schema=schema,
            component="revocations",
            migrations=_revocation_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        revocations = db.table("macaroons_authz_revocations")
        self._q_revoke = db.query(
            "SELECT {revoke}(%s, %s, %s)", revoke=db.table("macaroons_authz_revoke")
        )
        self._q_is_revoked = db.query(
            "SELECT 1 FROM {revocations} WHERE token_id = %s", revocations=revocations
        )
        self._q_since = db.query(
            "SELECT token_id, reason, revoked_at, seq FROM {revocations} "
            "WHERE seq > %s ORDER BY seq",
            revocations=revocations,
        )
        self._q_head = db.query(
            "SELECT last_seq FROM {feed} WHERE id = 1", feed=db.table("macaroons_authz_feed")
        )
        # Invalidators of this process, told of its own revocations at once
        # (the NOTIFY reaches them too, a few milliseconds later).
        self._local: list[Callable[[str], None]] = []

    def __repr__(self) -> str:
        return f"<PostgresRevocationStore schema={self._db.schema!r}>"

    def revoke(self, token_id: str, *, reason: str = "", at: float | None = None) -> bool:
        """Revoke *token_id*; ``True`` if it was not revoked before.

        Returns only once the revocation has committed.
        """
        _check_id(token_id)
        args = (token_id, reason, time.time() if at is None else float(at))

        def write(conn: _Conn) -> bool:
            # In autocommit mode the call is its own transaction, committed
            # before the server answers: one round trip.
            (seq,) = _one(conn.execute(self._q_revoke, args, prepare=True))
            if not conn.autocommit:
                conn.commit()
            return seq is not None

        new = self._db.run(write)
        for tell in tuple(self._local):
            tell(token_id)
        return new

    def is_revoked(self, token_id: str) -> bool:
        """Whether *token_id* is revoked."""
        return self._db.run(
            lambda c: (
                c.execute(self._q_is_revoked, (token_id,), prepare=True).fetchone() is not None
            ),
            retry=True,
        )

    def revoked_since(self, cursor: int) -> tuple[list[Revocation], int]:
        """Revocations after *cursor*, oldest first, and the new cursor."""
        return self._db.run(lambda c: self._read_feed(c, cursor), retry=True)

    def head(self) -> int:
        """The number of the latest revocation (a cursor past every one so far)."""
        return self._db.run(lambda c: self._read_head(c), retry=True)

    def _read_feed(self, conn: _Conn, cursor: int) -> tuple[list[Revocation], int]:
        rows = conn.execute(self._q_since, (max(int(cursor), 0),), prepare=True).fetchall()
        entries = [Revocation(t, r, float(at), int(seq)) for t, r, at, seq in rows]
        return entries, (entries[-1].seq if entries else cursor)

    def _read_head(self, conn: _Conn) -> int:
        return int(_one(conn.execute(self._q_head, prepare=True))[0])


def _one(cur: psycopg.Cursor[TupleRow]) -> TupleRow:
    row = cur.fetchone()
    if row is None:  # pragma: no cover - the queries always return a row
        raise StoreError("the database returned no row")
    return row


# -- push invalidation -------------------------------------------------------------


class PostgresInvalidator:
    """Keeps a :class:`~macaroons_authz.VerificationCache` in step with PostgreSQL.

    A daemon thread with its own connection listens for revocations and key
    changes, drops the cached verifications they invalidate within
    milliseconds, and keeps the cache on a lease: if it cannot reach the
    database for *max_outage* seconds the cache fails closed (verifies every
    header afresh) until the thread has reconnected and caught up through
    the revocation feed. See the module documentation.

    Use it beside the verifier that owns the cache::

        cache = VerificationCache()
        verifier = Verifier(keyring, revocations=store, cache=cache)
        invalidator = PostgresInvalidator(store, cache, keyring=keyring)
        invalidator.start()

    Args:
        revocations: the store whose feed to follow.
        cache: the cache to invalidate.
        keyring: a keyring (in the same database) whose key removals also
            invalidate the cache.
        max_outage: seconds the cache keeps serving entries after the last
            successful contact with the database.
        heartbeat: seconds between feed reads when nothing is announced;
            must be shorter than *max_outage*.
        reconnect_delay: seconds before the first reconnection attempt
            (doubling up to 5 s while the database stays away).
    """

    def __init__(
        self,
        revocations: PostgresRevocationStore,
        cache: VerificationCache,
        *,
        keyring: PostgresKeyring | None = None,
        max_outage: float = 5.0,
        heartbeat: float = 1.0,
        reconnect_delay: float = 0.5,
    ) -> None:
        if not 0 < heartbeat < max_outage or reconnect_delay <= 0:
            raise ValueError("need 0 < heartbeat < max_outage and a positive reconnect_delay")
        self._store = revocations
        self._keyring = keyring
        self.cache = cache
        self.max_outage = max_outage
        self.heartbeat = heartbeat
        self.reconnect_delay = reconnect_delay
        channels = [revocations.channel]
        if keyring is not None and keyring.channel not in channels:
            channels.append(keyring.channel)
        self._channels = tuple(channels)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor: int | None = None
        self._fingerprint: tuple[int, int] | None = None
        self._last_ok: float | None = None
        #: How many times the connection was lost (or could not be made).
        self.disconnects = 0
        #: The last connection error, without secrets; ``None`` if none yet.
        self.last_error: str | None = None

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else "unhealthy"
        return f"<PostgresInvalidator {state} cursor={self._cursor} channels={self._channels}>"

    def __enter__(self) -> PostgresInvalidator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def cursor(self) -> int | None:
        """The feed cursor the cache has caught up to (``None`` before the first read)."""
        return self._cursor

    @property
    def healthy(self) -> bool:
        """Whether the database was reached within the last *max_outage* seconds."""
        last = self._last_ok
        return last is not None and time.monotonic() - last <= self.max_outage

    def wait_until_healthy(self, timeout: float | None = None) -> bool:
        """Block until the thread is connected and caught up; ``False`` on timeout."""
        return self._caught_up.wait(timeout)

    def start(self) -> None:
        """Hold the cache (fail closed) and start listening; it resumes once caught up."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._caught_up.clear()
            self.cache.hold()
            if self._revoked_here not in self._store._local:
                self._store._local.append(self._revoked_here)
            self._thread = threading.Thread(
                target=self._run, name="macaroons_authz-invalidator", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; the cache stays held (call ``cache.release()`` to poll instead)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
            with contextlib.suppress(ValueError):
                self._store._local.remove(self._revoked_here)
        if thread is not None:
            thread.join(timeout)
        self._caught_up.clear()
        self._last_ok = None
        self.cache.hold()

    def _revoked_here(self, token_id: str) -> None:
        self.cache.drop({token_id})

    # ---- the thread

    def _run(self) -> None:
        delay = self.reconnect_delay
        while not self._stopping.is_set():
            try:
                self._listen()
                return
            except Exception as exc:  # any failure: count it, back off, reconnect
                caught_up = self._caught_up.is_set()
                self._caught_up.clear()
                self.disconnects += 1
                self.last_error = _first_line(exc)
                logger.warning(
                    "invalidator on %s lost its database connection (%s); "
                    "the cache fails closed after %.1fs without it",
                    ", ".join(self._channels),
                    self.last_error,
                    self.max_outage,
                )
            if caught_up:  # the connection had worked: start the back-off afresh
                delay = self.reconnect_delay
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, max(5.0, self.reconnect_delay))

    def _connect(self) -> _Conn:
        conninfo, kwargs = self._store._db.connect_args()
        kwargs.update(
            autocommit=True,
            connect_timeout=max(1, round(self.max_outage)),
            keepalives=1,
            keepalives_idle=max(1, round(self.heartbeat)),
            keepalives_interval=1,
            keepalives_count=3,
            tcp_user_timeout=round(self.max_outage * 1000),
        )
        return psycopg.connect(conninfo, **kwargs)

    def _listen(self) -> None:
        with self._connect() as conn:
            for channel in self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._store._db.check_schema(conn)
            if self._keyring is not None:
                self._keyring._db.check_schema(conn)
            self._poll(conn)  # catch up, renew the lease
            next_poll = time.monotonic() + self.heartbeat
            while not self._stopping.is_set():
                wait = max(0.0, min(0.1, next_poll - time.monotonic()))
                # psycopg >= 3.2.4 queues notifications that arrive during the
                # feed queries, so none is lost between two waits.
                events = [n.payload for n in conn.notifies(timeout=wait, stop_after=1)]
                if events:
                    events += [n.payload for n in conn.notifies(timeout=0)]
                for payload in events:
                    if payload.startswith("key remove "):
                        self.cache.purge()
                if events or time.monotonic() >= next_poll:
                    self._poll(conn)
                    next_poll = time.monotonic() + self.heartbeat

    def _poll(self, conn: _Conn) -> None:
        """Read the feed (and the keyring's fingerprint), drop what it says, renew the lease."""
        store = self._store
        if self._cursor is None:
            # A fresh start: the cache was held (emptied), so only what comes
            # after the current head matters.
            entries: list[Revocation] = []
            cursor = store._read_head(conn)
        else:
            entries, cursor = store._read_feed(conn, self._cursor)
        self.cache.drop({e.token_id for e in entries}, cursor)
        self._cursor = cursor
        if self._keyring is not None:
            row = _one(conn.execute(self._keyring._q_fingerprint, prepare=True))
            fingerprint = (int(row[0]), int(row[1]))
            if self._fingerprint is not None and fingerprint != self._fingerprint:
                self.cache.purge()
            self._fingerprint = fingerprint
        if self._stopping.is_set():
            return  # stop() has held the cache; do not vouch for it again
        self._last_ok = time.monotonic()
        self.cache.renew(self.max_outage)
        self._caught_up.set()
