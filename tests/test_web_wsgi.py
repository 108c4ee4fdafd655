"""WSGIMiddleware under wsgiref's server, driven by http.client."""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
from web_app import wsgi_access, wsgi_endpoint
from web_helpers import (
    UNAUTHENTICATED_BODY,
    Tokens,
    broken_revocations,
    forbidden_body,
    memory_tokens,
)

from macaroons_authz import MemoryRevocationStore, Verifier
from macaroons_authz.web import ENVIRON_KEY, Authorized, DecisionRecord, WSGIMiddleware


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Served:
    def __init__(self, app: WSGIMiddleware, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens
        self.server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()

    def request(
        self, method: str, path: str, *authorization: str
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.server_port, timeout=10)
        try:
            conn.putrequest(method, path)
            for value in authorization:  # putheader repeats a header as given
                conn.putheader("Authorization", value)
            conn.endheaders()
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), json.loads(data) if data else {}
        finally:
            conn.close()


def serve(app: WSGIMiddleware, tokens: Tokens) -> Iterator[Served]:
    served = Served(app, tokens)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def records() -> list[DecisionRecord]:
    return []


@pytest.fixture
def served(records: list[DecisionRecord]) -> Iterator[Served]:
    ring, tokens = memory_tokens()
    store = MemoryRevocationStore()
    store.revoke(str(tokens.tokens[3].nonce.uuid))
    app = WSGIMiddleware(
        wsgi_endpoint, Verifier(ring, revocations=store), wsgi_access, log=records.append
    )
    yield from serve(app, tokens)


def test_allowed_request_reaches_the_app_with_caveats_and_token_id(served: Served) -> None:
    status, _, body = served.request("GET", "/apps/42", served.tokens.reader)
    assert status == 200
    assert body["token_id"] == str(served.tokens.tokens[0].nonce.uuid)
    assert body["caveats"] == 4


def test_public_path_needs_no_token_and_gets_none(
    served: Served, records: list[DecisionRecord]
) -> None:
    assert served.request("GET", "/health")[0::2] == (200, {"public": True, "pid": os.getpid()})
    assert records == []


@pytest.mark.parametrize(
    "authorization",
    [(), ("FlyV1 fm2_bm90IGEgdG9rZW4=",), ("forged",), ("revoked",), ("reader", "reader")],
    ids=["none", "malformed", "forged", "revoked", "two headers"],
)
def test_unauthenticated_requests_get_401(served: Served, authorization: tuple[str, ...]) -> None:
    values = [getattr(served.tokens, a, a) for a in authorization]
    status, headers, body = served.request("GET", "/apps/42", *values)
    assert status == 401
    assert body == UNAUTHENTICATED_BODY
    assert headers["WWW-Authenticate"] == "FlyV1"
    assert headers["Content-Type"] == "application/problem+json"


def test_forbidden_request_gets_403_naming_the_caveat_kinds(
    served: Served, records: list[DecisionRecord]
) -> None:
    status, headers, body = served.request("DELETE", "/apps/42", served.tokens.reader)
    assert (status, body) == (403, forbidden_body("Action", "Apps"))
    assert headers["Content-Type"] == "application/problem+json"
    assert "WWW-Authenticate" not in headers
    assert [(r.status, r.failed) for r in records] == [(403, ("Action", "Apps"))]


def test_store_outage_gets_503_with_retry_after(tmp_path: Path) -> None:
    ring, tokens = memory_tokens()
    verifier = Verifier(ring, revocations=broken_revocations(tmp_path))
    app = WSGIMiddleware(wsgi_endpoint, verifier, wsgi_access, log=None, retry_after=30)
    for served in serve(app, tokens):
        status, headers, body = served.request("GET", "/apps/42", tokens.admin)
        assert (status, headers["Retry-After"], body["status"]) == (503, "30", 503)


def test_environ_holds_the_authorized_result() -> None:
    ring, tokens = memory_tokens()
    seen: list[Any] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ[ENVIRON_KEY])
        start_response("204 No Content", [])
        return []

    verifier = Verifier(ring)
    for served in serve(WSGIMiddleware(app, verifier, wsgi_access, log=None), tokens):
        assert served.request("GET", "/apps/42", tokens.reader)[0] == 204
        assert served.request("GET", "/health", tokens.reader)[0] == 204
    assert seen == [
        Authorized(verifier.verify(tokens.reader), str(tokens.tokens[0].nonce.uuid)),
        None,
    ]
