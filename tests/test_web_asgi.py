"""ASGIMiddleware driven directly: HTTP, websocket and lifespan scopes, the thread hand-off."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_app import asgi_access, asgi_endpoint
from web_helpers import (
    UNAUTHENTICATED_BODY,
    Tokens,
    broken_revocations,
    forbidden_body,
    memory_tokens,
    mint,
)

from macaroons_authz import (
    MemoryRevocationStore,
    SQLiteKeyring,
    SQLiteRevocationStore,
    VerificationCache,
    Verifier,
)
from macaroons_authz.web import STATE_KEY, ASGIMiddleware, Authorized, DecisionRecord
from macaroons_authz.web.asgi import Message, Receive, Scope, Send


def http_scope(method: str, path: str, *authorization: str, **extra: Any) -> Scope:
    headers = [(b"host", b"test"), *((b"authorization", a.encode()) for a in authorization)]
    return {"type": "http", "method": method, "path": path, "headers": headers, **extra}


def ws_scope(path: str, *authorization: str, extension: bool) -> Scope:
    scope = http_scope("GET", path, *authorization)
    scope["type"] = "websocket"
    del scope["method"]
    if extension:
        scope["extensions"] = {"websocket.http.response": {}}
    return scope


def run(app: Any, scope: Scope, incoming: list[Message] | None = None) -> list[Message]:
    """Call *app* once; return every message it sent."""
    if incoming is None:
        first = "http.request" if scope["type"] == "http" else "websocket.connect"
        incoming = [{"type": first}]
    queue = list(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def response(sent: list[Message]) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    start, body = sent
    assert start["type"].endswith("response.start") and body["type"].endswith("response.body")
    return start["status"], dict(start["headers"]), json.loads(body["body"])


class World:
    def __init__(self) -> None:
        ring, self.tokens = memory_tokens()
        store = MemoryRevocationStore()
        store.revoke(str(self.tokens.tokens[3].nonce.uuid))
        self.records: list[DecisionRecord] = []
        self.verifier = Verifier(ring, revocations=store, cache=VerificationCache())
        self.app = ASGIMiddleware(
            asgi_endpoint, self.verifier, asgi_access, log=self.records.append
        )

    def token_id(self, index: int) -> str:
        return str(self.tokens.tokens[index].nonce.uuid)


@pytest.fixture
def world() -> World:
    return World()


PROBLEM_HEADERS = {b"content-type": b"application/problem+json"}


def test_allowed_http_request_reaches_the_app_with_state(world: World) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await asgi_endpoint(scope, receive, send)

    mw = ASGIMiddleware(app, world.verifier, asgi_access, log=None)
    status, _, body = response(run(mw, http_scope("GET", "/apps/42", world.tokens.reader)))
    assert (status, body["token_id"], body["caveats"]) == (200, world.token_id(0), 4)
    assert seen[0]["state"] == {
        STATE_KEY: Authorized(world.verifier.verify(world.tokens.reader), world.token_id(0))
    }


def test_existing_state_is_kept(world: World) -> None:
    scope = http_scope("GET", "/health", state={"db": "pool"})
    assert response(run(world.app, scope))[0] == 200
    assert scope["state"] == {"db": "pool", STATE_KEY: None}
    assert world.records == []


@pytest.mark.parametrize(
    "authorization",
    [(), ("FlyV1 fm2_bm90IGEgdG9rZW4=",), ("forged",), ("unknown_kid",), ("revoked",)],
    ids=["none", "malformed", "forged", "unknown KID", "revoked"],
)
def test_unauthenticated_http_request_gets_401(
    world: World, authorization: tuple[str, ...]
) -> None:
    values = [getattr(world.tokens, a, a) for a in authorization]
    status, headers, body = response(run(world.app, http_scope("GET", "/apps/42", *values)))
    assert (status, body) == (401, UNAUTHENTICATED_BODY)
    assert headers == {
        **PROBLEM_HEADERS,
        b"content-length": str(len(json.dumps(body, separators=(",", ":")))).encode(),
        b"www-authenticate": b"FlyV1",
    }


def test_several_authorization_headers_get_401_whatever_their_case(world: World) -> None:
    scope = http_scope("GET", "/apps/42", world.tokens.reader)
    scope["headers"].append((b"Authorization", world.tokens.admin.encode()))
    assert response(run(world.app, scope))[0] == 401
    assert [r.status for r in world.records] == [401]


def test_forbidden_http_request_gets_403(world: World) -> None:
    sent = run(world.app, http_scope("DELETE", "/apps/42", world.tokens.reader))
    status, headers, body = response(sent)
    assert (status, body) == (403, forbidden_body("Action", "Apps"))
    assert b"www-authenticate" not in headers


def test_store_outage_gets_503_and_the_app_never_runs(tmp_path: Path) -> None:
    ring, tokens = memory_tokens()
    verifier = Verifier(ring, revocations=broken_revocations(tmp_path))
    mw = ASGIMiddleware(asgi_endpoint, verifier, asgi_access, log=None)
    assert mw.offload  # SQLite: decided in a thread
    status, headers, body = response(run(mw, http_scope("GET", "/apps/42", tokens.admin)))
    assert (status, headers[b"retry-after"], body["title"]) == (503, b"5", "Service Unavailable")


# -- websockets ----------------------------------------------------------------------


def test_allowed_websocket_is_accepted(world: World) -> None:
    sent = run(world.app, ws_scope("/ws/apps/42", world.tokens.reader, extension=True))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert json.loads(sent[1]["text"])["token_id"] == world.token_id(0)


def test_denied_websocket_gets_the_http_denial_when_the_server_offers_it(world: World) -> None:
    sent = run(world.app, ws_scope("/ws/apps/42", world.tokens.forged, extension=True))
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    status, headers, body = response(sent)
    assert (status, headers[b"www-authenticate"], body) == (401, b"FlyV1", UNAUTHENTICATED_BODY)


def test_denied_websocket_is_closed_with_1008_before_accept_otherwise(world: World) -> None:
    sent = run(world.app, ws_scope("/ws/apps/43", world.tokens.reader, extension=False))
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert [(r.status, r.failed) for r in world.records] == [(403, ("Apps",))]


def test_denied_websocket_whose_client_left_gets_nothing(world: World) -> None:
    scope = ws_scope("/ws/apps/42", extension=True)
    assert run(world.app, scope, [{"type": "websocket.disconnect", "code": 1001}]) == []


# -- lifespan ----------------------------------------------------------------------


def test_lifespan_passes_through_untouched(world: World) -> None:
    seen: list[tuple[Scope, Message]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, await receive()))
        await send({"type": "lifespan.startup.complete"})

    def no_access(scope: Scope) -> None:
        raise AssertionError("lifespan has no access")

    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent = run(
        ASGIMiddleware(app, world.verifier, no_access), scope, [{"type": "lifespan.startup"}]
    )
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert seen == [
        (
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
            {"type": "lifespan.startup"},
        )
    ]


# -- the thread hand-off -------------------------------------------------------------


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[tuple[Verifier, Tokens]]:
    with (
        SQLiteKeyring(tmp_path / "keys.db") as ring,
        SQLiteRevocationStore(tmp_path / "rev.db") as store,
    ):
        ring.generate()
        yield Verifier(ring, revocations=store), mint(ring.current())


def test_offload_is_chosen_by_the_stores(
    world: World, sqlite_world: tuple[Verifier, Tokens]
) -> None:
    assert ASGIMiddleware(asgi_endpoint, world.verifier, asgi_access).offload is False
    assert ASGIMiddleware(asgi_endpoint, sqlite_world[0], asgi_access).offload is True
    forced = ASGIMiddleware(asgi_endpoint, world.verifier, asgi_access, offload=True)
    assert forced.offload is True


def test_offloaded_decision_leaves_the_event_loop_free(
    sqlite_world: tuple[Verifier, Tokens],
) -> None:
    verifier, tokens = sqlite_world
    threads: list[int] = []

    def slow_log(record: DecisionRecord) -> None:
        # Stands for a store that takes its time: it runs inside the decision.
        threads.append(threading.get_ident())
        threading.Event().wait(0.2)

    mw = ASGIMiddleware(asgi_endpoint, verifier, asgi_access, log=slow_log)
    sent: list[Message] = []
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        loop_thread = threading.get_ident()

        async def receive() -> Message:
            return {"type": "http.request"}

        async def send(message: Message) -> None:
            sent.append(message)

        request = asyncio.create_task(
            mw(http_scope("GET", "/apps/42", tokens.reader), receive, send)
        )
        while not request.done():
            ticks += 1
            await asyncio.sleep(0.01)
        assert threads and threads[0] != loop_thread

    asyncio.run(main())
    assert response(sent)[0] == 200
    assert ticks >= 10  # the loop ran on for the 0.2 s the decision took


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def test_offloaded_decision_sees_the_request_context(
    sqlite_world: tuple[Verifier, Tokens],
) -> None:
    # A log hook correlating by context variables (as structlog does) must
    # see the request's values in the thread too.
    verifier, tokens = sqlite_world
    seen: list[str] = []
    mw = ASGIMiddleware(
        asgi_endpoint, verifier, asgi_access, log=lambda r: seen.append(REQUEST_ID.get("unset"))
    )

    sent: list[Message] = []

    async def request() -> None:
        REQUEST_ID.set("req-1")

        async def receive() -> Message:
            return {"type": "http.request"}

        async def send(message: Message) -> None:
            sent.append(message)

        await mw(http_scope("GET", "/apps/42", tokens.reader), receive, send)

    asyncio.run(request())
    assert mw.offload
    assert response(sent)[0] == 200
    assert seen == ["req-1"]
