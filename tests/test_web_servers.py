"""End to end over real sockets: the WSGI app under gunicorn, the ASGI app under uvicorn.

Each server is started by the test as a subprocess on a socket the test
bound to 127.0.0.1 (a free port, handed over as a file descriptor, so no
other process can take the port in between), with the keys and revocations
of the application in SQLite files the test also holds. The test drives it
with http.client and raw sockets, then stops it and checks that none of its
processes is left and that its log holds decisions but no secret.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from web_app import KEYRING_ENV, REVOCATIONS_ENV
from web_helpers import UNAUTHENTICATED_BODY, Tokens, forbidden_body, mint

from macaroons_authz import SQLiteKeyring, SQLiteRevocationStore

TESTS = Path(__file__).resolve().parent
STARTUP = 30.0  # seconds a server may take to answer its first request
STOP = 15.0  # seconds it may take to stop


@attrs.define
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    tokens: Tokens
    revocations: SQLiteRevocationStore

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method: str, path: str, *authorization: str) -> tuple[int, Any, Any]:
        conn = self.connection()
        try:
            conn.putrequest(method, path)
            for value in authorization:
                conn.putheader("Authorization", value)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.headers, json.loads(resp.read())
        finally:
            conn.close()


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    pytest.fail(f"server did not answer within {STARTUP} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait; SIGKILL the whole process group if it will not go."""
    group = process.pid  # start_new_session: the server leads its own group
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        process.wait(timeout=STOP)
        pytest.fail("the server did not stop on SIGTERM")
    deadline = time.monotonic() + STOP
    while True:  # its workers too: nothing of the group may be left
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            pytest.fail("server processes were left behind")
        time.sleep(0.05)


def _gunicorn_options() -> list[str]:
    # Recent gunicorn opens a control socket under $HOME by default: a file
    # outside the test's directory, shared by concurrent runs. Not wanted.
    from gunicorn.config import KNOWN_SETTINGS  # type: ignore[import-untyped]

    known = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in known else []


def _command(kind: str, fd: int, app: str | None) -> list[str]:
    if kind == "gunicorn":
        return [
            *(sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"fd://{fd}"),
            *("--chdir", str(TESTS), "--graceful-timeout", "5", *_gunicorn_options()),
            app or "web_app:wsgi_app()",
        ]
    return [
        *(sys.executable, "-m", "uvicorn", "--fd", str(fd), "--app-dir", str(TESTS)),
        *("--factory", "--ws", "wsproto", "--no-access-log", app or "web_app:asgi_app"),
    ]


@contextlib.contextmanager
def serve(kind: str, tmp_path: Path, app: str | None = None) -> Iterator[Server]:
    """Run the test application under *kind*; stop it and check its log afterwards.

    *app* names another application in the tests directory: a gunicorn
    ``module:factory()``, or a uvicorn ``module:factory``.
    """
    keyring = SQLiteKeyring(tmp_path / "keys.db")
    keyring.generate()
    tokens = mint(keyring.current())
    keyring.close()
    revocations = SQLiteRevocationStore(tmp_path / "revocations.db")
    revocations.revoke(str(tokens.tokens[3].nonce.uuid))
    env = {
        **os.environ,
        KEYRING_ENV: str(tmp_path / "keys.db"),
        REVOCATIONS_ENV: str(tmp_path / "revocations.db"),
    }
    log = tmp_path / f"{kind}.log"
    with socket.socket() as listener, log.open("wb") as out:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        process = subprocess.Popen(
            _command(kind, listener.fileno(), app),
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
            start_new_session=True,
        )
    try:
        _wait_ready(process, port, log)
        yield Server(process, port, log, tokens, revocations)
    finally:
        _stop(process)
        revocations.close()
    text = log.read_text()
    assert "Traceback" not in text, text
    for secret in tokens.secrets:
        assert secret not in text


@pytest.fixture(params=["gunicorn", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with serve(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Server]:
    with serve("gunicorn", tmp_path) as running:
        yield running


@pytest.fixture
def uvicorn(tmp_path: Path) -> Iterator[Server]:
    with serve("uvicorn", tmp_path) as running:
        yield running


def test_decisions_over_real_sockets(server: Server) -> None:
    t = server.tokens
    status, _, body = server.request("GET", "/apps/42", t.reader)
    assert (status, body["token_id"], body["caveats"]) == (200, str(t.tokens[0].nonce.uuid), 4)
    status, headers, body = server.request("DELETE", "/apps/42", t.reader)
    assert (status, body) == (403, forbidden_body("Action", "Apps"))
    assert headers["Content-Type"] == "application/problem+json"
    for authorization in [(), (t.forged,), (t.revoked,), (t.unknown_kid,), (t.reader, t.reader)]:
        status, headers, body = server.request("GET", "/apps/42", *authorization)
        assert (status, headers["WWW-Authenticate"], body) == (401, "FlyV1", UNAUTHENTICATED_BODY)
    status, _, body = server.request("GET", "/apps/42", "Bearer " + t.admin.removeprefix("FlyV1 "))
    assert (status, body["token_id"]) == (200, str(t.tokens[1].nonce.uuid))
    assert server.request("GET", "/health")[2]["public"] is True

    # A revocation recorded by another process reaches the server's next decision.
    server.revocations.revoke(str(t.tokens[1].nonce.uuid))
    assert server.request("GET", "/apps/42", t.admin)[0] == 401

    # The decision log, at INFO on stderr, names decisions by token id.
    deadline = time.monotonic() + 5
    while "denied status=403" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.log.read_text().splitlines() if "macaroons_authz.web" in line]
    assert f"allowed status=200 token_id={t.tokens[0].nonce.uuid}" in "\n".join(lines)
    assert any("denied status=403" in line and "failed=Action,Apps" in line for line in lines)


def test_gunicorn_workers_both_decide(gunicorn: Server) -> None:
    server = gunicorn
    # A sync worker serves one connection at a time: while the first
    # request is held half-sent, only the other worker can answer.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        held.sendall(b"GET /apps/42 HTTP/1.1\r\nHost: test\r\n")
        time.sleep(0.3)  # let one worker take it
        first = server.request("GET", "/apps/42", server.tokens.reader)
        held.sendall(f"Authorization: {server.tokens.reader}\r\nConnection: close\r\n\r\n".encode())
        reply = http.client.HTTPResponse(held)
        reply.begin()
        assert reply.status == 200
        second = json.loads(reply.read())
    finally:
        held.close()
    assert first[0] == 200
    assert first[2]["token_id"] == second["token_id"]
    assert first[2]["pid"] != second["pid"]


def _websocket_handshake(server: Server, path: str, authorization: str) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: {authorization}\r\n\r\n"
            ).encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
        head, _, rest = reply.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 101"):
            return head
        length = int(next(v for k, v in _headers(head) if k == b"content-length"))
        while len(rest) < length and (chunk := sock.recv(65536)):
            rest += chunk
        return head + b"\r\n\r\n" + rest


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    pairs = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    return [(k.strip().lower(), v.strip()) for k, v in pairs]


def test_uvicorn_runs_lifespan_and_refuses_websockets_with_http(uvicorn: Server) -> None:
    server = uvicorn
    t = server.tokens
    # Lifespan went through the middleware: its state reaches the request.
    status, _, body = server.request("GET", "/apps/42", t.reader)
    assert (status, body["lifespan"]) == (200, True)
    assert "lifespan' protocol appears unsupported" not in server.log.read_text()
    assert _websocket_handshake(server, "/ws/apps/42", t.reader).startswith(b"HTTP/1.1 101 ")
    denied = _websocket_handshake(server, "/ws/apps/42", t.forged)
    head, _, body = denied.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ")
    assert (b"www-authenticate", b"FlyV1") in _headers(head)
    assert json.loads(body) == UNAUTHENTICATED_BODY
    head, _, body = _websocket_handshake(server, "/ws/apps/43", t.reader).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert json.loads(body) == forbidden_body("Apps")
