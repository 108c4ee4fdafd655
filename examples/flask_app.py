"""Protect a Flask API with FlyV1 tokens, using :func:`macaroons_authz.web.flask.require`.

Each protected view says, in one decorator line, what a request needs (a
``FlyAccess``); the request's token must allow it. Refused requests get a
401, 403 or 503 ``application/problem+json`` response and the view does not
run; allowed ones find the verified result in ``flask.g.macaroons_authz``.

Run it: ``python examples/flask_app.py``. It sends requests with several
tokens through Flask's test client, prints what happened and exits 0 if
every answer was the expected one. Serve :func:`create_app`'s application
with any WSGI server, for instance ``gunicorn 'myservice:create_app(verifier)'``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import flask

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
    to_header,
)
from macaroons_authz.web import Authorized, Gate
from macaroons_authz.web.flask import require

# A fixed "now" (2026-01-01T00:00:00Z) for the demonstration's tokens and
# requests; a real service passes no clock.
NOW = 1_767_225_600
ORG = 1234
ACTIONS = {"GET": Action.READ, "DELETE": Action.DELETE}


def create_app(verifier: Verifier | Gate, clock: Callable[[], float] = time.time) -> flask.Flask:
    """The API: a public health check, and apps to read or delete with a token."""
    app = flask.Flask(__name__)

    def app_access(request: flask.Request) -> FlyAccess:
        """What a request on one app needs: its method's action, on that app."""
        app_id = (request.view_args or {})["app_id"]
        action = ACTIONS.get(request.method, Action.WRITE)
        return FlyAccess(org_id=ORG, app_id=app_id, action=action, at=clock())

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.route("/apps/<int:app_id>", methods=["GET", "DELETE"])
    @require(verifier, app_access)
    def app_detail(app_id: int) -> dict[str, Any]:
        authorized: Authorized = flask.g.macaroons_authz
        return {
            "app": app_id,
            "method": flask.request.method,
            "token_id": authorized.token_id,
            "caveats": len(authorized.caveats),
        }

    return app


def main() -> int:
    keyring = MemoryKeyring()
    keyring.generate()
    key = keyring.current()
    revocations = MemoryRevocationStore()
    client = create_app(Verifier(keyring, revocations=revocations), clock=lambda: NOW).test_client()

    reader = to_header(app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW))
    admin = to_header(org_token(key, ORG, expires_in=3600, now=NOW))
    leaked = app_token(key, ORG, [42], expires_in=3600, now=NOW)
    revocations.revoke(str(leaked.nonce.uuid))
    forged = to_header(org_token(new_signing_key(), ORG, kid=kid_for_key(key.key), now=NOW))
    cases = [
        ("no token", "GET", "/apps/42", None, 401),
        ("forged token", "GET", "/apps/42", forged, 401),
        ("revoked token", "GET", "/apps/42", to_header(leaked), 401),
        ("read-only token, read", "GET", "/apps/42", reader, 200),
        ("read-only token, delete", "DELETE", "/apps/42", reader, 403),
        ("read-only token, other app", "GET", "/apps/43", reader, 403),
        ("admin token, delete", "DELETE", "/apps/43", admin, 200),
        ("health check, no token", "GET", "/health", None, 200),
    ]
    failures = 0
    for label, method, path, header, expected in cases:
        headers = {} if header is None else {"Authorization": header}
        response = client.open(path, method=method, headers=headers)
        body = response.get_json(force=True)
        failed = body.get("failed_caveats")
        said = body.get("title", "ok") + (f": {', '.join(failed)}" if failed else "")
        mark = "" if response.status_code == expected else f"   <-- expected {expected}"
        failures += response.status_code != expected
        print(f"{label:<28} {method:<6} -> {response.status_code} {said}{mark}")
    print("all answers as expected" if not failures else f"{failures} unexpected answer(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
