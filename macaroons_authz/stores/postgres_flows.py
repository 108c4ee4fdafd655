"""A discharge service's deferred flows in PostgreSQL, shared by every worker of a fleet.

It needs the ``postgres`` extra (``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.stores.postgres_flows import PostgresFlowStore

    flows = PostgresFlowStore("postgresql://...", schema="auth")
    flows.migrate()                 # once, as a deployment step
    service = DischargeService(location, key, authorize, flows=flows)

Each operation is one statement, or (creating a flow) one transaction:

* a result is taken with ``DELETE ... RETURNING``: of two workers polling at
  once, the second waits for the first's row lock, finds the row gone, and
  answers 404, so a discharge is handed over exactly once;
* a flow is finished with an ``UPDATE`` whose condition (pending, live,
  under this user key) is checked again after any concurrent finish, so a
  flow is finished once;
* a flow is created under a transaction-scoped advisory lock, so the count
  of live flows and the insert are serialized across the fleet and the
  bound holds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ._postgres import ConnectionPool, SchemaError, _committed, _Conn, _Database, _one, _Store, sql
from .flows import NOT_READY, FlowRecord, FlowResult, FlowStoreFullError, _retry_after

__all__ = ["PostgresFlowStore", "SchemaError"]


def _flow_migrations(db: _Database) -> list[sql.Composed]:
    return [
        sql.SQL(
            """
            CREATE TABLE {flows} (
                poll_key text PRIMARY KEY,
                user_key text UNIQUE,
                ticket bytea NOT NULL,
                remote_addr text NOT NULL,
                interactive boolean NOT NULL,
                expires_at double precision NOT NULL,
                status integer,
                body text
            );
            CREATE INDEX {index} ON {flows} (expires_at);
            """
        ).format(
            flows=db.table("macaroons_authz_flows"),
            index=sql.Identifier("macaroons_authz_flows_by_expiry"),
        ),
    ]


class PostgresFlowStore(_Store):
    """Deferred flows in PostgreSQL: every worker of every machine sees every flow.

    Implements :class:`~macaroons_authz.stores.flows.FlowStore` (see the
    module documentation for how each promise is kept).

    Args:
        database: a libpq connection string or URL, or a
            ``psycopg_pool.ConnectionPool`` to share (which then stays the
            caller's to close).
        schema: the PostgreSQL schema holding the table.
        pool_size: the most connections the pool opens (when it is ours).
        timeout: seconds to wait for a connection before
            :class:`~macaroons_authz.StoreError`.
    """

    def __init__(
        self,
        database: str | ConnectionPool[Any],
        *,
        schema: str = "public",
        pool_size: int = 4,
        timeout: float = 10.0,
    ) -> None:
        db = self._db = _Database(
            database,
            schema=schema,
            component="flows",
            migrations=_flow_migrations,
            pool_size=pool_size,
            timeout=timeout,
        )
        flows = db.table("macaroons_authz_flows")
        # One lock per schema: two services on one database do not wait on each other.
        digest = hashlib.blake2b(f"macaroons_authz flows {schema}".encode(), digest_size=8)
        self._lock_key = int.from_bytes(digest.digest(), "big", signed=True)
        self._q_expire = db.query("DELETE FROM {flows} WHERE expires_at < %s", flows=flows)
        self._q_count = db.query("SELECT count(*), min(expires_at) FROM {flows}", flows=flows)
        self._q_insert = db.query(
            "INSERT INTO {flows} (poll_key, user_key, ticket, remote_addr, interactive, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            flows=flows,
        )
        self._q_pending = db.query(
            "SELECT user_key, poll_key, ticket, remote_addr, interactive, expires_at FROM {flows}"
            " WHERE user_key = %s AND status IS NULL AND expires_at >= %s",
            flows=flows,
        )
        self._q_finish = db.query(
            "UPDATE {flows} SET status = %s, body = %s, expires_at = %s, user_key = NULL"
            " WHERE user_key = %s AND status IS NULL AND expires_at >= %s",
            flows=flows,
        )
        self._q_take = db.query(
            "DELETE FROM {flows} WHERE poll_key = %s AND status IS NOT NULL AND expires_at >= %s"
            " RETURNING status, body",
            flows=flows,
        )
        self._q_waiting = db.query(
            "SELECT 1 FROM {flows} WHERE poll_key = %s AND status IS NULL AND expires_at >= %s",
            flows=flows,
        )

    def __repr__(self) -> str:
        return f"<PostgresFlowStore schema={self._db.schema!r}>"

    def create(self, record: FlowRecord, *, now: float, limit: int) -> None:
        """Keep a new pending flow (see :meth:`FlowStore.create`)."""
        args = (
            record.poll_key,
            record.user_key,
            record.ticket,
            record.remote_addr,
            record.interactive,
            record.expires_at,
        )

        def write(conn: _Conn) -> int | None:
            with _committed(conn):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                conn.execute(self._q_expire, (now,), prepare=True)
                count, oldest = _one(conn.execute(self._q_count, prepare=True))
                if count >= limit:
                    return _retry_after(oldest, now)
                conn.execute(self._q_insert, args, prepare=True)
            return None

        retry_after = self._db.run(write)
        if retry_after is not None:
            raise FlowStoreFullError(retry_after)

    def pending(self, user_key: str, *, now: float) -> FlowRecord | None:
        """The live, unfinished flow of *user_key*, or ``None``."""
        row = self._db.run(
            lambda c: c.execute(self._q_pending, (user_key, now), prepare=True).fetchone(),
            retry=True,
        )
        if row is None:
            return None
        user, poll, ticket, remote_addr, interactive, expires_at = row
        return FlowRecord(user, poll, bytes(ticket), remote_addr, interactive, expires_at)

    def finish(self, user_key: str, result: FlowResult, *, now: float, expires_at: float) -> bool:
        """Give the pending flow of *user_key* its result (see :meth:`FlowStore.finish`)."""
        args = (result.status, json.dumps(result.body), expires_at, user_key, now)

        def write(conn: _Conn) -> bool:
            with _committed(conn):
                return conn.execute(self._q_finish, args, prepare=True).rowcount == 1

        return self._db.run(write)

    def take(self, poll_key: str, *, now: float) -> FlowResult | None:
        """The result, deleting the flow (see :meth:`FlowStore.take`)."""

        def take(conn: _Conn) -> FlowResult | None:
            with _committed(conn):
                row = conn.execute(self._q_take, (poll_key, now), prepare=True).fetchone()
            if row is not None:
                return FlowResult(int(row[0]), json.loads(row[1]))
            waiting = conn.execute(self._q_waiting, (poll_key, now), prepare=True).fetchone()
            return NOT_READY if waiting is not None else None

        return self._db.run(take)
