"""Protect a WSGI API with FlyV1 tokens, using :class:`macaroons_authz.web.WSGIMiddleware`.

The middleware wraps any WSGI application. For each request it asks
``access(environ)`` what the request wants to do (a ``FlyAccess``, or
``None`` for a path that needs no token), asks the ``Verifier`` whether
the ``Authorization`` header allows it, and answers:

* 401 when the header is missing, malformed, forged or revoked: the caller
  is not authenticated, and learns nothing more;
* 403 naming the kinds of caveat that refused the request, when the token
  is genuine but does not allow it;
* 503 when a store cannot be read (fail closed);
* otherwise it calls the application, with the verified caveats and the
  token's id in ``environ["macaroons_authz.caveats"]``.

Run it: ``python examples/wsgi_middleware.py``. It serves a small API on
127.0.0.1 (a free port), sends it requests with several tokens, prints what
happened and exits 0 if every answer was the expected one.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from macaroons_authz import (
    Action,
    FlyAccess,
    MemoryKeyring,
    MemoryRevocationStore,
    Verifier,
    app_token,
    kid_for_key,
    new_signing_key,
    org_token,
    restrict,
    to_header,
)
from macaroons_authz.web import ENVIRON_KEY, Authorized, WSGIMiddleware

# A fixed "now" (2026-01-01T00:00:00Z): tokens and requests use it, so the
# output is the same on every run. A real service passes no clock.
NOW = 1_767_225_600
ORG, APP, OTHER_APP, MACHINE = 1234, 42, 43, "e784079b449483"

# -- the API being protected ---------------------------------------------------

_APP_ROUTE = re.compile(r"/orgs/(\d+)/apps/(\d+)")
_MACHINE_ROUTE = re.compile(r"/orgs/(\d+)/apps/(\d+)/machines/([0-9a-f]+)/start")


def access_for(method: str, path: str, now: float) -> FlyAccess | None:
    """What each route of the API does, as a Fly.io access.

    ``None`` (no token needed) for the health check and for every path the
    API does not serve, which it answers with a 404.
    """
    if m := _APP_ROUTE.fullmatch(path):
        org, app = int(m[1]), int(m[2])
        if method == "GET":
            return FlyAccess(org_id=org, app_id=app, action=Action.READ, at=now)
        if method == "DELETE":
            return FlyAccess(org_id=org, app_id=app, action=Action.DELETE, at=now)
    if (m := _MACHINE_ROUTE.fullmatch(path)) and method == "POST":
        return FlyAccess(
            org_id=int(m[1]), app_id=int(m[2]), machine=m[3], action=Action.CONTROL, at=now
        )
    return None


def _reply(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {http.client.responses[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def api(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The application: protected routes only run for authorized requests."""
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if path == "/health":
        return _reply(start_response, 200, {"ok": True})
    authorized: Authorized | None = environ[ENVIRON_KEY]
    if authorized is None:  # a path access_for does not know: not ours
        return _reply(start_response, 404, {"error": "not found"})
    body = {"ok": True, "path": path, "method": method, "trusted_caveats": len(authorized.caveats)}
    return _reply(start_response, 200, body)


def protect(verifier: Verifier, *, clock: Callable[[], float] = time.time) -> WSGIMiddleware:
    """The API behind the middleware; *clock* is the time accesses are judged at."""

    def access(environ: WSGIEnvironment) -> FlyAccess | None:
        return access_for(environ["REQUEST_METHOD"], environ["PATH_INFO"], clock())

    return WSGIMiddleware(api, verifier, access)


# -- the demonstration -----------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _request(port: int, method: str, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": header} if header else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _describe(body: dict[str, Any]) -> str:
    if "title" in body:  # an application/problem+json denial
        failed = body.get("failed_caveats")
        return str(body["title"]) + (f": {', '.join(failed)}" if failed else "")
    return "ok" if body.get("ok") else str(body["error"])


def main() -> int:
    keyring = MemoryKeyring()
    keyring.generate()
    revocations = MemoryRevocationStore()
    verifier = Verifier(keyring, revocations=revocations)
    protected = protect(verifier, clock=lambda: NOW)

    # Tokens as an operator would hand them out.
    reader = to_header(
        app_token(keyring.current(), ORG, [APP], actions=Action.READ, expires_in=3600, now=NOW)
    )
    admin = org_token(keyring.current(), ORG, expires_in=3600, now=NOW)
    # Anyone holding a token can narrow it without the key: here to one app.
    app_admin = to_header(restrict(admin, apps=[APP]))
    expired = to_header(app_token(keyring.current(), ORG, [APP], expires_in=3600, now=NOW - 7200))
    leaked = app_token(keyring.current(), ORG, [APP], expires_in=3600, now=NOW)
    revocations.revoke(str(leaked.nonce.uuid))
    # A forger who guesses the key id but not the key.
    forged_key = new_signing_key()
    forged = to_header(
        org_token(forged_key, ORG, kid=kid_for_key(keyring.current().key), expires_in=60, now=NOW)
    )

    app_path = f"/orgs/{ORG}/apps/{APP}"
    cases = [
        ("no token", "GET", app_path, None, 401),
        ("not a token", "GET", app_path, "FlyV1 fm2_bm90IGEgdG9rZW4=", 401),
        ("forged token", "GET", app_path, forged, 401),
        ("revoked token", "GET", app_path, to_header(leaked), 401),
        ("read-only token, read", "GET", app_path, reader, 200),
        ("read-only token, delete", "DELETE", app_path, reader, 403),
        ("read-only token, other app", "GET", f"/orgs/{ORG}/apps/{OTHER_APP}", reader, 403),
        ("expired token", "GET", app_path, expired, 403),
        ("app admin token, delete", "DELETE", app_path, app_admin, 200),
        ("app admin token, start Machine", "POST", f"{app_path}/machines/{MACHINE}/start",
         app_admin, 200),
        ("app admin token, other app", "DELETE", f"/orgs/{ORG}/apps/{OTHER_APP}", app_admin, 403),
        ("health check, no token", "GET", "/health", None, 200),
    ]  # fmt: skip

    server = make_server("127.0.0.1", 0, protected, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    failures = 0
    try:
        for label, method, path, header, expected in cases:
            status, body = _request(server.server_port, method, path, header)
            mark = "" if status == expected else f"   <-- expected {expected}"
            failures += status != expected
            print(f"{label:<32} {method:<6} -> {status} {_describe(body)}{mark}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    print("all answers as expected" if not failures else f"{failures} unexpected answer(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
