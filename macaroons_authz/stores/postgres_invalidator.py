"""Push invalidation: a verification cache kept in step with PostgreSQL.

It needs the ``postgres`` extra (``pip install 'macaroons_authz[postgres]'``)::

    from macaroons_authz.stores.postgres_invalidator import PostgresInvalidator

A revocation, and a key addition, retirement or removal, sends ``NOTIFY`` on
a channel named after the schema. A :class:`PostgresInvalidator` runs a
daemon thread with its own connection that ``LISTEN`` s there; a
notification makes it read the revocation feed from its cursor and drop the
cached verifications of the revoked tokens. Notifications are only a
wake-up: the feed is the record, so a lost notification costs latency,
never a revocation. The thread also reads the feed every *heartbeat* (a
second by default), which proves the connection alive, and each successful
read renews the cache's *lease* for *max_outage* seconds. If the connection
is lost, or hangs, the lease lapses and the cache fails closed: it serves no
hit and stores nothing, so every header is verified afresh against the
database. Once reconnected, the thread listens again, catches up through
``revoked_since(cursor)`` and only then renews the lease (forgetting every
entry if it had lapsed). A key removal has no feed; the thread compares the
keyring's (count, newest sequence) on every read and forgets every entry
when it changes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from ..verifier import VerificationCache
from ._postgres import _Conn, _first_line, _one, psycopg, sql
from .postgres_keyring import PostgresKeyring
from .postgres_revocation import PostgresRevocationStore
from .revocation import Revocation

__all__ = ["PostgresInvalidator"]

logger = logging.getLogger(__name__)


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
