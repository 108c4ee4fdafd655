"""Revocations in PostgreSQL, shared by a fleet of verifiers, with a gapless feed.

It needs the ``postgres`` extra (``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.stores.postgres_revocation import PostgresRevocationStore

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
on disk (and on synchronous replicas, if configured). The revoking
transaction also sends ``NOTIFY`` on a channel named after the schema, which
a :class:`~macaroons_authz.stores.PostgresInvalidator`
listens to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._postgres import ConnectionPool, SchemaError, _Conn, _Database, _one, _Schema, _Store, sql
from .revocation import Revocation, _check_id

__all__ = ["PostgresRevocationStore", "SchemaError"]


def _revocation_queries(db: _Schema) -> tuple[bytes, bytes, bytes]:
    """The revoke, is-revoked and feed queries: both PostgreSQL revocation stores run them."""
    revocations = db.table("macaroons_authz_revocations")
    return (
        db.query("SELECT {revoke}(%s, %s, %s)", revoke=db.table("macaroons_authz_revoke")),
        db.query("SELECT 1 FROM {revocations} WHERE token_id = %s", revocations=revocations),
        db.query(
            "SELECT token_id, reason, revoked_at, seq FROM {revocations} "
            "WHERE seq > %s ORDER BY seq",
            revocations=revocations,
        ),
    )


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
        self._q_revoke, self._q_is_revoked, self._q_since = _revocation_queries(db)
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
