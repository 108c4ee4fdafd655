"""Where a discharge service keeps its deferred flows: in memory, in SQLite, in PostgreSQL.

A :class:`~macaroons_authz.DischargeService` that defers a ticket (a poll or
a user-interactive flow) must find the flow again when the application
finishes it and when the client polls. With one process, memory will do
(:class:`MemoryFlowStore`, the default); with several workers behind one
address (``gunicorn -w 4``), any worker may get the poll, so the flows go
where every worker sees them: :class:`SQLiteFlowStore` for the processes of
one machine, ``PostgresFlowStore`` (in
:mod:`macaroons_authz.stores.postgres_flows`) for a fleet.

A store never sees a secret: the service hands it the BLAKE2b-256 digests
of the poll and user secrets (:class:`FlowRecord`), and the ticket, which
only the third party's key opens. Every store keeps the same promises,
tested against all three by one suite:

* a flow is pending until :meth:`~FlowStore.finish`; finishing spends the
  user secret, so a flow is finished once;
* :meth:`~FlowStore.take` hands the result over once, atomically: of two
  workers polling at the same instant, exactly one gets it;
* a flow (or its result) expires at the time the service sets, and an
  expired flow is never returned;
* at most *limit* live flows: expired ones are dropped first, and when all
  are live a new one is refused (:class:`FlowStoreFullError`), never made
  room for, since evicting a live flow would let anyone who can start flows
  end a user's login.

Time is the caller's: every method takes *now* (unix seconds).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

import attrs

from ..errors import MacaroonError
from ._sqlite import SQLiteDatabase, SQLiteStore, StoreError

__all__ = [
    "NOT_READY",
    "FlowRecord",
    "FlowResult",
    "FlowStore",
    "FlowStoreFullError",
    "MemoryFlowStore",
    "SQLiteFlowStore",
]


@attrs.frozen
class FlowRecord:
    """A deferred flow as a store keeps it: nothing in it is a secret.

    Attributes:
        user_key: hex BLAKE2b-256 of the user secret.
        poll_key: hex BLAKE2b-256 of the poll secret.
        ticket: the ticket, opened again with the third party's key when
            the flow is finished. Hidden from ``repr``.
        remote_addr: the address of the client that started the flow.
        interactive: whether it is a user-interactive flow.
        expires_at: when it is forgotten (unix seconds).
    """

    user_key: str
    poll_key: str
    ticket: bytes = attrs.field(repr=False)
    remote_addr: str
    interactive: bool
    expires_at: float


@attrs.frozen
class FlowResult:
    """What the poll URL answers: an HTTP status and a JSON object.

    ``body`` holds the discharge (``{"discharge": "fm2_..."}``) or an error;
    hidden from ``repr``.
    """

    status: int
    body: dict[str, Any] = attrs.field(repr=False)


#: What :meth:`FlowStore.take` returns while the flow is pending.
NOT_READY = FlowResult(202, {"error": "not ready"})


class FlowStoreFullError(MacaroonError):
    """The store holds its limit of live flows; *retry_after*: seconds until the oldest expires."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many pending flows")
        self.retry_after = retry_after


@runtime_checkable
class FlowStore(Protocol):
    """Where a discharge service keeps its deferred flows (see the module documentation)."""

    def create(self, record: FlowRecord, *, now: float, limit: int) -> None:
        """Keep a new pending flow.

        Raises:
            FlowStoreFullError: *limit* live flows are kept.
        """
        ...

    def pending(self, user_key: str, *, now: float) -> FlowRecord | None:
        """The live, unfinished flow of *user_key*, or ``None``."""
        ...

    def finish(self, user_key: str, result: FlowResult, *, now: float, expires_at: float) -> bool:
        """Give the pending flow of *user_key* its result, kept until *expires_at*.

        The user key is spent. ``False`` if no live flow was pending under it.
        """
        ...

    def take(self, poll_key: str, *, now: float) -> FlowResult | None:
        """The result, deleting the flow; :data:`NOT_READY` while pending; ``None`` if unknown."""
        ...


def _retry_after(oldest: float, now: float) -> int:
    return max(1, math.ceil(oldest - now))


@attrs.define
class _Flow:
    record: FlowRecord
    expires_at: float
    result: FlowResult | None = None


class MemoryFlowStore:
    """Flows in this process's memory (thread-safe): for a service run as one process.

    Flows are kept in the order they expire (a finished flow moves to the
    end, as its lifetime restarts), so expired ones are dropped from the
    front.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: OrderedDict[str, _Flow] = OrderedDict()  # by poll key
        self._by_user: dict[str, str] = {}  # user key -> poll key, while pending

    def __repr__(self) -> str:
        return f"<MemoryFlowStore flows={len(self)}>"

    def __len__(self) -> int:
        with self._lock:
            return len(self._flows)

    def _drop(self, flow: _Flow) -> None:
        self._flows.pop(flow.record.poll_key, None)
        self._by_user.pop(flow.record.user_key, None)

    def _live(self, flow: _Flow | None, now: float) -> _Flow | None:
        if flow is not None and now > flow.expires_at:
            self._drop(flow)
            return None
        return flow

    def create(self, record: FlowRecord, *, now: float, limit: int) -> None:
        with self._lock:
            while self._flows:
                oldest = next(iter(self._flows.values()))
                if now <= oldest.expires_at:
                    break
                self._drop(oldest)
            if len(self._flows) >= limit:
                oldest = next(iter(self._flows.values()))
                raise FlowStoreFullError(_retry_after(oldest.expires_at, now))
            self._flows[record.poll_key] = _Flow(record, record.expires_at)
            self._by_user[record.user_key] = record.poll_key

    def _pending(self, user_key: str, now: float) -> _Flow | None:
        flow = self._live(self._flows.get(self._by_user.get(user_key, "")), now)
        return flow if flow is not None and flow.result is None else None

    def pending(self, user_key: str, *, now: float) -> FlowRecord | None:
        with self._lock:
            flow = self._pending(user_key, now)
            return None if flow is None else flow.record

    def finish(self, user_key: str, result: FlowResult, *, now: float, expires_at: float) -> bool:
        with self._lock:
            flow = self._pending(user_key, now)
            if flow is None:
                return False
            flow.result = result
            flow.expires_at = expires_at
            self._flows.move_to_end(flow.record.poll_key)
            # The user key is spent: only the poll secret reaches the result.
            self._by_user.pop(user_key, None)
            return True

    def take(self, poll_key: str, *, now: float) -> FlowResult | None:
        with self._lock:
            flow = self._live(self._flows.get(poll_key), now)
            if flow is None:
                return None
            if flow.result is None:
                return NOT_READY
            self._drop(flow)
            return flow.result


_FLOW_SCHEMA = (
    """
    CREATE TABLE flows (
        poll_key TEXT PRIMARY KEY,
        user_key TEXT UNIQUE,
        ticket BLOB NOT NULL,
        remote_addr TEXT NOT NULL,
        interactive INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        status INTEGER,
        body TEXT
    );
    CREATE INDEX flows_by_expiry ON flows (expires_at)
    """,
)


def _record(row: tuple[Any, ...]) -> FlowRecord:
    user_key, poll_key, ticket, remote_addr, interactive, expires_at = row
    return FlowRecord(user_key, poll_key, bytes(ticket), remote_addr, bool(interactive), expires_at)


def _result(status: int, body: str) -> FlowResult:
    return FlowResult(int(status), json.loads(body))


class SQLiteFlowStore(SQLiteStore):
    """Flows in a SQLite file, shared by the processes of one machine (workers of one server).

    The file is owner-only (0600) and in WAL mode. Each operation is one
    transaction; a result is taken with one ``DELETE ... RETURNING``, so two
    processes polling at once cannot both get it. Expired flows are deleted
    when a flow is created. Each thread gets a connection of its own;
    :meth:`close` (or leaving a ``with`` block) closes them all.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating and migrating as needed) the store at *path*."""
        self._db = SQLiteDatabase(path, "flow store", _FLOW_SCHEMA)

    def __repr__(self) -> str:
        return f"<SQLiteFlowStore {str(self._db.path)!r}>"

    def create(self, record: FlowRecord, *, now: float, limit: int) -> None:
        conn = self._db.connection()
        try:
            # IMMEDIATE: the count and the insert in one write transaction,
            # so that concurrent creators cannot both take the last place.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM flows WHERE expires_at < ?", (now,))
                count, oldest = conn.execute(
                    "SELECT count(*), min(expires_at) FROM flows"
                ).fetchone()
                if count >= limit:
                    conn.execute("COMMIT")
                    raise FlowStoreFullError(_retry_after(oldest, now))
                conn.execute(
                    "INSERT INTO flows (poll_key, user_key, ticket, remote_addr, interactive,"
                    " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.poll_key,
                        record.user_key,
                        record.ticket,
                        record.remote_addr,
                        int(record.interactive),
                        record.expires_at,
                    ),
                )
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the flow: {exc}") from None

    def pending(self, user_key: str, *, now: float) -> FlowRecord | None:
        try:
            row = (
                self._db.connection()
                .execute(
                    "SELECT user_key, poll_key, ticket, remote_addr, interactive, expires_at"
                    " FROM flows WHERE user_key = ? AND status IS NULL AND expires_at >= ?",
                    (user_key, now),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flows: {exc}") from None
        return None if row is None else _record(row)

    def finish(self, user_key: str, result: FlowResult, *, now: float, expires_at: float) -> bool:
        body = json.dumps(result.body, separators=(",", ":"))
        try:
            cur = self._db.connection().execute(
                "UPDATE flows SET status = ?, body = ?, expires_at = ?, user_key = NULL"
                " WHERE user_key = ? AND status IS NULL AND expires_at >= ?",
                (result.status, body, expires_at, user_key, now),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the flow's result: {exc}") from None
        return cur.rowcount == 1

    def take(self, poll_key: str, *, now: float) -> FlowResult | None:
        try:
            conn = self._db.connection()
            # fetchall: the statement (and its write lock) ends with its last row.
            rows = conn.execute(
                "DELETE FROM flows WHERE poll_key = ? AND status IS NOT NULL AND expires_at >= ?"
                " RETURNING status, body",
                (poll_key, now),
            ).fetchall()
            if rows:
                return _result(*rows[0])
            waiting = conn.execute(
                "SELECT 1 FROM flows WHERE poll_key = ? AND status IS NULL AND expires_at >= ?",
                (poll_key, now),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read flows: {exc}") from None
        return NOT_READY if waiting is not None else None
