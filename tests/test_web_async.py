"""One uvicorn worker, twenty concurrent requests, a store that takes 200 ms a look-up.

The proof issue 17 asks for: behind :class:`ASGIMiddleware` with an
:class:`AsyncVerifier`, requests waiting on the keyring do not wait for
each other. A real uvicorn server (one worker, one event loop, in a thread
of this process) listens on 127.0.0.1; twenty client threads send one
request each at the same instant, each with its own token (so each misses
the cache and looks its key up). The keyring counts the look-ups in flight:
all twenty are, at once. The wall time of the twenty requests is then
about one look-up's, not twenty's: the bound asserted (more than one
look-up, fewer than five) is about concurrency, not speed; a worker that
decided one request at a time would take twenty look-ups.

Three keyrings take the 200 ms: an async one (``asyncio.sleep``), a
blocking one (``time.sleep``) that the verifier hands to worker threads,
and the real PostgreSQL async keyring, whose look-up query also sleeps in
the server (``pg_sleep``).

The middleware and the gate with an ``AsyncVerifier`` are also driven
directly: every kind of request gets the blocking verifier's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from web_app import AT, NOW, ORG, asgi_access, asgi_endpoint
from web_helpers import broken_revocations, memory_tokens

from macaroons_authz import (
    Action,
    AsyncVerifier,
    FlyAccess,
    Macaroon,
    MemoryKeyring,
    MemoryRevocationStore,
    VerificationCache,
    Verifier,
    app_token,
    to_header,
    token_id,
)
from macaroons_authz.web import ASGIMiddleware, Authorized, DecisionRecord, Gate
from macaroons_authz.web._frameworks import decide_async
from macaroons_authz.web.asgi import ASGIApp, Message, Receive, Scope, Send

LOOKUP = 0.2  # seconds each key look-up takes
READ_42 = FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT)
CLIENTS = 20


class InFlight:
    """Counts the look-ups in flight, and the most at once (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls = 0

    def enter(self) -> None:
        with self._lock:
            self.calls += 1
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


class SleepingKeyring:
    """An async keyring: each look-up awaits LOOKUP seconds."""

    def __init__(self, ring: MemoryKeyring) -> None:
        self.ring = ring
        self.flight = InFlight()

    async def key_for(self, kid: bytes) -> bytes | None:
        self.flight.enter()
        try:
            await asyncio.sleep(LOOKUP)
        finally:
            self.flight.leave()
        return self.ring.key_for(kid)


class BlockingKeyring:
    """A blocking keyring: each look-up sleeps LOOKUP seconds in its thread."""

    def __init__(self, ring: MemoryKeyring) -> None:
        self.ring = ring
        self.flight = InFlight()

    def key_for(self, kid: bytes) -> bytes | None:
        self.flight.enter()
        try:
            time.sleep(LOOKUP)
        finally:
            self.flight.leave()
        return self.ring.key_for(kid)


def serving(
    app: ASGIApp, threads: int, on_shutdown: Callable[[], Awaitable[None]] | None
) -> ASGIApp:
    """*app*, its loop given a default executor of *threads* at startup, *on_shutdown* awaited.

    The thread hand-off (:func:`asyncio.to_thread`) uses the loop's default
    executor, of ``min(32, CPUs + 4)`` threads: a server whose blocking
    stores should serve more requests at once sets a bigger one. Stores
    holding async pools close them in the loop that used them.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and on_shutdown is not None:
                await on_shutdown()
            return message

        await app(scope, receiving, send)

    return wrapped


@contextlib.contextmanager
def uvicorn_on_localhost(app: ASGIApp) -> Iterator[int]:
    """Serve *app* with one uvicorn worker on a free port of 127.0.0.1; yield the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited at startup"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.01)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def concurrent_requests(port: int, tokens: list[Macaroon]) -> tuple[float, list[Any]]:
    """One request per token, all sent at once from threads; the wall time and the bodies."""
    start = threading.Barrier(len(tokens))
    results: list[Any] = [None] * len(tokens)
    began: list[float] = [0.0] * len(tokens)
    ended: list[float] = [0.0] * len(tokens)

    def one(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()  # connected before the clock starts
            start.wait()
            began[i] = time.monotonic()
            conn.request("GET", "/apps/42", headers={"Authorization": to_header(tokens[i])})
            resp = conn.getresponse()
            results[i] = (resp.status, json.loads(resp.read()))
            ended[i] = time.monotonic()
        except BaseException as exc:
            results[i] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return max(ended) - min(began), results


def mint_readers(ring: MemoryKeyring, n: int) -> list[Macaroon]:
    key = ring.current()
    return [
        app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW) for _ in range(n)
    ]


def prove_concurrency(
    verifier: AsyncVerifier,
    ring: MemoryKeyring,
    flight: InFlight,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Twenty concurrent requests on one worker take about one look-up's time."""
    protected = ASGIMiddleware(asgi_endpoint, verifier, asgi_access)
    app = serving(protected, 64, on_shutdown)
    with uvicorn_on_localhost(app) as port:
        # A first round opens what is opened lazily (threads, pooled connections).
        warm_up = mint_readers(ring, CLIENTS)
        _, results = concurrent_requests(port, warm_up)
        assert [r[0] for r in results] == [200] * CLIENTS, results
        flight.most = 0
        tokens = mint_readers(ring, CLIENTS)
        elapsed, results = concurrent_requests(port, tokens)
    assert [r[0] for r in results] == [200] * CLIENTS, results
    assert [r[1]["token_id"] for r in results] == [token_id(t) for t in tokens]
    assert flight.calls == 2 * CLIENTS  # every token missed the cache once
    assert flight.most == CLIENTS  # every look-up of the round in flight at once
    assert LOOKUP < elapsed < 5 * LOOKUP, f"{CLIENTS} requests took {elapsed:.3f} s"


def test_an_async_store_serves_twenty_requests_at_once() -> None:
    ring = MemoryKeyring()
    ring.generate()
    keyring = SleepingKeyring(ring)
    verifier = AsyncVerifier(
        keyring, revocations=MemoryRevocationStore(), cache=VerificationCache()
    )
    prove_concurrency(verifier, ring, keyring.flight)


def test_a_blocking_store_handed_to_threads_serves_twenty_requests_at_once() -> None:
    ring = MemoryKeyring()
    ring.generate()
    keyring = BlockingKeyring(ring)
    verifier = AsyncVerifier(
        keyring, revocations=MemoryRevocationStore(), cache=VerificationCache()
    )
    prove_concurrency(verifier, ring, keyring.flight)


def test_the_postgres_async_keyring_serves_twenty_requests_at_once(pg: Any) -> None:
    from macaroons_authz.stores.postgres_async import AsyncPostgresKeyring

    blocking = pg.keyring()
    blocking.generate()
    ring = MemoryKeyring()  # the same key, to mint with
    ring.add(blocking.current().key)
    flight = InFlight()

    class Sleeping(AsyncPostgresKeyring):
        """The real keyring, its look-up query made to take LOOKUP seconds in the server."""

        async def key_for(self, kid: bytes) -> bytes | None:
            flight.enter()
            try:
                return await super().key_for(kid)
            finally:
                flight.leave()

    # One connection per request at once: the pool bounds the concurrency.
    keyring = Sleeping(pg.url, kek=pg.kek, schema=pg.schema, pool_size=CLIENTS, timeout=10)
    keyring._q_key_for = keyring._db.query(
        f"SELECT k.kek_id, k.nonce, k.sealed FROM {{keys}} AS k CROSS JOIN pg_sleep({LOOKUP}) "
        "WHERE k.kid = %s",
        keys=keyring._db.table("macaroons_authz_keys"),
    )
    verifier = AsyncVerifier(keyring, cache=VerificationCache())
    prove_concurrency(verifier, ring, flight, keyring.close)


# -- the middleware and gate with an AsyncVerifier, driven directly -------------------


def call(app: ASGIApp, scope: Scope) -> list[Message]:
    """Send one connection through *app*; every message it sent."""
    sent: list[Message] = []
    first = "http.request" if scope["type"] == "http" else "websocket.connect"

    async def receive() -> Message:
        return {"type": first}

    async def send(message: Message) -> None:
        sent.append(message)

    async def connection() -> None:
        await app(scope, receive, send)

    asyncio.run(connection())
    return sent


def scope_for(kind: str, method: str, path: str, *authorization: str) -> Scope:
    headers = [(b"authorization", a.encode()) for a in authorization]
    scope: Scope = {"type": kind, "path": path, "headers": headers, "extensions": {}}
    if kind == "http":
        scope["method"] = method
    else:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


def test_the_async_middleware_answers_as_the_blocking_one() -> None:
    ring, tokens = memory_tokens()
    store = MemoryRevocationStore()
    store.revoke(token_id(tokens.tokens[3]))
    blocking = Verifier(ring, revocations=store, cache=VerificationCache())
    face = AsyncVerifier.of(blocking)
    records: list[DecisionRecord] = []
    by_async = ASGIMiddleware(asgi_endpoint, face, asgi_access, log=records.append)
    by_blocking = ASGIMiddleware(asgi_endpoint, blocking, asgi_access, log=None)
    assert (by_async.offload, by_blocking.offload) == (False, False)
    both = f"{tokens.forged},{tokens.reader.removeprefix('FlyV1 ')}"
    cases = [
        (kind, method, path, auth)
        for kind in ("http", "websocket")
        for method, path in [("GET", "/apps/42"), ("DELETE", "/apps/42"), ("GET", "/health")]
        for auth in [
            (tokens.reader,),
            (tokens.admin,),
            (tokens.expired,),
            (tokens.revoked,),
            (tokens.forged,),
            (both,),
            (),
            (tokens.reader, tokens.reader),
        ]
    ]
    statuses = set()
    for case in cases:
        answer = call(by_async, scope_for(*case[:3], *case[3]))
        assert answer == call(by_blocking, scope_for(*case[:3], *case[3])), case
        statuses.add(answer[0].get("status"))
    assert statuses == {200, 401, 403, None}  # None: an accepted websocket
    allowed = [r for r in records if r.allowed]
    assert {r.token_id for r in allowed} == {token_id(t) for t in tokens.tokens[:2]}


def test_a_store_outage_behind_the_async_verifier_is_a_503(tmp_path: Path) -> None:
    ring, tokens = memory_tokens()
    face = AsyncVerifier(ring, revocations=broken_revocations(tmp_path))
    app = ASGIMiddleware(asgi_endpoint, face, asgi_access, log=None)
    start, body = call(app, scope_for("http", "GET", "/apps/42", tokens.admin))
    assert (start["status"], dict(start["headers"])[b"retry-after"]) == (503, b"5")
    assert json.loads(body["body"])["title"] == "Service Unavailable"


def test_each_face_decides_with_its_own_method() -> None:
    ring, tokens = memory_tokens()
    face = AsyncVerifier(ring)
    with pytest.raises(ValueError, match="nothing to offload"):
        ASGIMiddleware(asgi_endpoint, face, asgi_access, offload=True)
    with pytest.raises(TypeError, match="adecide"):
        Gate(face).decide([tokens.admin], READ_42)
    with pytest.raises(TypeError, match="decide"):
        asyncio.run(Gate(Verifier(ring)).adecide([tokens.admin], READ_42))
    # The framework adapters' hand-off awaits an async verifier's gate.
    result = asyncio.run(decide_async(Gate(face, log=None), [tokens.admin], READ_42, False))
    assert isinstance(result, Authorized) and result.token_id == token_id(tokens.tokens[1])
