"""What the framework tests check alike: every outcome through a test client, and over sockets."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_web_servers import Server
from web_helpers import UNAUTHENTICATED_BODY, Tokens, broken_revocations, forbidden_body

from macaroons_authz import MemoryKeyring, MemoryRevocationStore, Verifier

# A request through a framework's test client: (method, path, Authorization
# values) -> (status, headers as (name, value) pairs, body bytes).
Send = Callable[[str, str, Sequence[str]], tuple[int, list[tuple[str, str]], bytes]]


def verifiers(ring: MemoryKeyring, tokens: Tokens, tmp_path: Path) -> tuple[Verifier, Verifier]:
    """A verifier whose store revoked the ``revoked`` token, and one whose store is broken."""
    revocations = MemoryRevocationStore()
    revocations.revoke(str(tokens.tokens[3].nonce.uuid))
    return (
        Verifier(ring, revocations=revocations),
        Verifier(ring, revocations=broken_revocations(tmp_path)),
    )


def _header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def check_outcomes(
    send: Send, broken: Send, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    """Every outcome, with the core's exact status, headers and body; nothing secret logged.

    *send* reaches the example's app with a working verifier, *broken* with
    one whose revocation store cannot be read.
    """
    t = tokens
    caplog.set_level("INFO", logger="macaroons_authz.web")

    status, _, body = send("GET", "/apps/42", [t.reader])
    assert (status, json.loads(body)["token_id"]) == (200, str(t.tokens[0].nonce.uuid))
    assert json.loads(body)["caveats"] == 4
    status, _, body = send("GET", "/apps/42", ["Bearer " + t.admin.removeprefix("FlyV1 ")])
    assert (status, json.loads(body)["token_id"]) == (200, str(t.tokens[1].nonce.uuid))
    assert send("GET", "/health", [])[0] == 200

    unauthenticated = json.dumps(UNAUTHENTICATED_BODY, separators=(",", ":")).encode()
    for authorization in [[], [t.forged], [t.revoked], [t.unknown_kid], ["FlyV1 fm2_bm90"]]:
        status, headers, body = send("GET", "/apps/42", authorization)
        assert (status, body) == (401, unauthenticated), authorization
        assert _header(headers, "WWW-Authenticate") == ["FlyV1"]
        assert _header(headers, "Content-Type") == ["application/problem+json"]
        assert _header(headers, "Content-Length") == [str(len(body))]

    for method, path, token, failed in [
        ("DELETE", "/apps/42", t.reader, ("Action", "Apps")),
        ("GET", "/apps/43", t.reader, ("Apps",)),
        ("GET", "/apps/42", t.expired, ("ValidityWindow",)),
    ]:
        status, headers, body = send(method, path, [token])
        assert (status, json.loads(body)) == (403, forbidden_body(*failed))
        assert _header(headers, "Content-Type") == ["application/problem+json"]
        assert not _header(headers, "WWW-Authenticate")

    status, headers, body = broken("GET", "/apps/42", [t.reader])
    assert (status, json.loads(body)["status"]) == (503, 503)
    assert _header(headers, "Retry-After") == ["5"]
    assert _header(headers, "Content-Type") == ["application/problem+json"]

    text = caplog.text
    assert f"allowed status=200 token_id={t.tokens[0].nonce.uuid}" in text
    assert "denied status=403" in text and "failed=Action,Apps" in text
    assert "denied status=503" in text
    for secret in t.secrets:
        assert secret not in text


def check_over_sockets(server: Server) -> None:
    """The example's app under a real server: the same decisions, and revocations from outside."""
    t = server.tokens
    status, _, body = server.request("GET", "/apps/42", t.reader)
    assert (status, body["token_id"], body["caveats"]) == (200, str(t.tokens[0].nonce.uuid), 4)
    status, headers, body = server.request("DELETE", "/apps/42", t.reader)
    assert (status, body) == (403, forbidden_body("Action", "Apps"))
    assert headers["Content-Type"] == "application/problem+json"
    status, _, body = server.request("GET", "/apps/42", t.expired)
    assert (status, body) == (403, forbidden_body("ValidityWindow"))
    for authorization in [(), (t.forged,), (t.revoked,), (t.unknown_kid,), (t.reader, t.reader)]:
        status, headers, body = server.request("GET", "/apps/42", *authorization)
        assert (status, headers["WWW-Authenticate"], body) == (401, "FlyV1", UNAUTHENTICATED_BODY)
    status, _, body = server.request("DELETE", "/apps/43", t.admin)
    assert (status, body["token_id"]) == (200, str(t.tokens[1].nonce.uuid))
    assert server.request("GET", "/health")[2] == {"ok": True}

    # A revocation recorded by another process reaches the server's next decision.
    server.revocations.revoke(str(t.tokens[1].nonce.uuid))
    assert server.request("GET", "/apps/42", t.admin)[0] == 401

    deadline = time.monotonic() + 5
    while "denied status=403" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.log.read_text().splitlines() if "macaroons_authz.web" in line]
    assert f"allowed status=200 token_id={t.tokens[0].nonce.uuid}" in "\n".join(lines)
    assert any("denied status=403" in line and "failed=Action,Apps" in line for line in lines)


def check_both_workers_decide(server: Server) -> None:
    """Each of gunicorn's two workers decides (their X-Pid differ)."""
    # A sync worker serves one connection at a time: while the first
    # request is held half-sent, only the other worker can answer.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        held.sendall(b"GET /apps/42 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.3)  # let one worker take it
        conn = server.connection()
        try:
            conn.request("GET", "/apps/42", headers={"Authorization": server.tokens.reader})
            first = conn.getresponse()
            first_body: Any = json.loads(first.read())
        finally:
            conn.close()
        held.sendall(f"Authorization: {server.tokens.reader}\r\nConnection: close\r\n\r\n".encode())
        second = http.client.HTTPResponse(held)
        second.begin()
        second_body: Any = json.loads(second.read())
    finally:
        held.close()
    assert (first.status, second.status) == (200, 200)
    assert first_body["token_id"] == second_body["token_id"]
    assert first.headers["X-Pid"] != second.headers["X-Pid"]
