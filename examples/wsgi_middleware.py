"""Protect a WSGI API with FlyV1 tokens.

``FlyV1Auth`` wraps any WSGI application. For each request it works out
what the request wants to do (a ``FlyAccess``), asks a ``Verifier`` whether
the ``Authorization`` header allows it, and answers:

* 401 when the header is missing, malformed, forged or revoked: the caller
  is not authenticated, and learns nothing more;
* 403 with the reasons when the token is genuine but does not allow this
  request (the holder can read its own caveats anyway, so the reasons give
  nothing away);
* otherwise it calls the application, with the trusted caveats in
  ``environ["macaroons_authz.caveats"]``.

Run it: ``python examples/wsgi_middleware.py``. It serves a small API on
127.0.0.1 (a free port), sends it requests with several tokens, prints what
happened and exits 0 if every answer was the expected one.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from macaroons_authz import (
    Action,
    CaveatSet,
    DecodeError,
    FlyAccess,
    MacaroonError,
    MemoryKeyring,
    UnauthorizedError,
    VerificationError,
    Verifier,
    app_token,
    kid_for_key,
    new_signing_key,
    org_token,
    restrict,
    to_header,
)

log = logging.getLogger("flyv1-auth")

#: Where the middleware leaves the trusted caveats for the application.
CAVEATS_KEY = "macaroons_authz.caveats"

# A fixed "now" (2026-01-01T00:00:00Z): tokens and requests use it, so the
# output is the same on every run. A real service passes no clock.
NOW = 1_767_225_600
ORG, APP, OTHER_APP, MACHINE = 1234, 42, 43, "e784079b449483"

AccessFor = Callable[[str, str, float], FlyAccess | None]


def _reply(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = json.dumps(body).encode()
    phrase = http.client.responses[status]
    start_response(
        f"{status} {phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


class FlyV1Auth:
    """WSGI middleware: a request passes only if its FlyV1 token allows its access.

    Args:
        app: the application to protect.
        verifier: verifies headers (keys, trusted third parties, revocations).
        access_for: maps ``(method, path, now)`` to the access the request
            makes, or ``None`` for an unknown route (404).
        clock: the time accesses are judged at; the wall clock by default.
    """

    def __init__(
        self,
        app: WSGIApplication,
        verifier: Verifier,
        access_for: AccessFor,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.access_for = access_for
        self.clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        access = self.access_for(
            environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""), self.clock()
        )
        if access is None:
            return _reply(start_response, 404, {"error": "not found"})
        header = environ.get("HTTP_AUTHORIZATION", "")
        challenge = [("WWW-Authenticate", "FlyV1")]
        if not header:
            return _reply(start_response, 401, {"error": "token required"}, challenge)
        try:
            caveats = self.verifier.authorize(header, access)
        except (DecodeError, VerificationError) as exc:
            # The reason goes to our log only: telling a forger why its token
            # failed would help it. Library messages never hold key material.
            log.info("rejected token: %s", exc)
            return _reply(start_response, 401, {"error": "invalid token"}, challenge)
        except UnauthorizedError as exc:
            reasons = [str(leaf) for leaf in exc.leaves()]
            return _reply(start_response, 403, {"error": "forbidden", "reasons": reasons})
        except MacaroonError:
            # Anything else (a revocation store that cannot be read, say)
            # must fail closed: no answer is not a yes.
            log.exception("cannot authorize")
            return _reply(start_response, 503, {"error": "try again later"})
        environ[CAVEATS_KEY] = caveats
        return self.app(environ, start_response)


# -- the API being protected ---------------------------------------------------

_APP_ROUTE = re.compile(r"/orgs/(\d+)/apps/(\d+)")
_MACHINE_ROUTE = re.compile(r"/orgs/(\d+)/apps/(\d+)/machines/([0-9a-f]+)/start")


def access_for(method: str, path: str, now: float) -> FlyAccess | None:
    """What each route of the API does, as a Fly.io access."""
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


def api(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The application: it only runs for authorized requests."""
    caveats: CaveatSet = environ[CAVEATS_KEY]
    body = {"ok": True, "path": environ["PATH_INFO"], "trusted_caveats": len(caveats)}
    return _reply(start_response, 200, body)


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


def main() -> int:
    keyring = MemoryKeyring()
    keyring.generate()
    verifier = Verifier(keyring)
    protected = FlyV1Auth(api, verifier, access_for, clock=lambda: NOW)

    # Tokens as an operator would hand them out.
    reader = to_header(
        app_token(keyring.current(), ORG, [APP], actions=Action.READ, expires_in=3600, now=NOW)
    )
    admin = org_token(keyring.current(), ORG, expires_in=3600, now=NOW)
    # Anyone holding a token can narrow it without the key: here to one app.
    app_admin = to_header(restrict(admin, apps=[APP]))
    expired = to_header(app_token(keyring.current(), ORG, [APP], expires_in=3600, now=NOW - 7200))
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
        ("read-only token, read", "GET", app_path, reader, 200),
        ("read-only token, delete", "DELETE", app_path, reader, 403),
        ("read-only token, other app", "GET", f"/orgs/{ORG}/apps/{OTHER_APP}", reader, 403),
        ("expired token", "GET", app_path, expired, 403),
        ("app admin token, delete", "DELETE", app_path, app_admin, 200),
        ("app admin token, start Machine", "POST", f"{app_path}/machines/{MACHINE}/start",
         app_admin, 200),
        ("app admin token, other app", "DELETE", f"/orgs/{ORG}/apps/{OTHER_APP}", app_admin, 403),
    ]  # fmt: skip

    server = make_server("127.0.0.1", 0, protected, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    failures = 0
    try:
        for label, method, path, header, expected in cases:
            status, body = _request(server.server_port, method, path, header)
            detail = "; ".join(body.get("reasons", [])) or body.get("error", "ok")
            mark = "" if status == expected else f"   <-- expected {expected}"
            failures += status != expected
            print(f"{label:<32} {method:<6} -> {status} {detail}{mark}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    print("all answers as expected" if not failures else f"{failures} unexpected answer(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
