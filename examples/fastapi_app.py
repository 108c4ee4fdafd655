"""Protect a FastAPI API with FlyV1 tokens, using :func:`macaroons_authz.web.fastapi.require`.

Each protected route depends on ``require(verifier, access)``: ``access``
says what a request needs (a ``FlyAccess``), and the request's token must
allow it. Refused requests get a 401, 403 or 503
``application/problem+json`` response and the route does not run; allowed
ones receive the verified result as the dependency's value. The OpenAPI
schema shows the routes as secured by a ``FlyV1`` token in the
``Authorization`` header.

Run it: ``python examples/fastapi_app.py`` (Starlette's test client needs
``httpx``). It sends requests with several tokens through the test client,
prints what happened and exits 0 if every answer was the expected one.
Serve :func:`create_app`'s application with any ASGI server, for instance
``uvicorn --factory myservice:app``.
"""

# No "from __future__ import annotations": FastAPI reads the routes'
# annotations, and AppToken below is local to create_app.

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from macaroons_authz import (
    Action,
    AsyncVerifier,
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
from macaroons_authz.web.fastapi import install, require

# A fixed "now" (2026-01-01T00:00:00Z) for the demonstration's tokens and
# requests; a real service passes no clock.
NOW = 1_767_225_600
ORG = 1234
ACTIONS = {"GET": Action.READ, "DELETE": Action.DELETE}


def create_app(
    verifier: Verifier | AsyncVerifier | Gate, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The API: a public health check, and apps to read or delete with a token.

    An :class:`~macaroons_authz.AsyncVerifier` awaits its stores on the
    event loop; a blocking :class:`~macaroons_authz.Verifier` with stores
    that are not in memory decides in a thread.
    """
    app = FastAPI(title="Apps")
    install(app)  # refusals as application/problem+json

    def app_access(request: Request) -> FlyAccess:
        """What a request on one app needs: its method's action, on that app."""
        action = ACTIONS.get(request.method, Action.WRITE)
        return FlyAccess(
            org_id=ORG, app_id=request.path_params["app_id"], action=action, at=clock()
        )

    AppToken = Annotated[Authorized, Depends(require(verifier, app_access))]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    # {app_id:int}: only digits reach the route, as an int in path_params.
    @app.get("/apps/{app_id:int}")
    async def read_app(app_id: int, authorized: AppToken) -> dict[str, Any]:
        return {"app": app_id, "token_id": authorized.token_id, "caveats": len(authorized.caveats)}

    @app.delete("/apps/{app_id:int}")
    async def delete_app(app_id: int, authorized: AppToken) -> dict[str, Any]:
        return {"app": app_id, "deleted": True, "token_id": authorized.token_id}

    return app


def main() -> int:
    keyring = MemoryKeyring()
    keyring.generate()
    key = keyring.current()
    revocations = MemoryRevocationStore()
    app = create_app(Verifier(keyring, revocations=revocations), clock=lambda: NOW)

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
    with TestClient(app) as client:
        for label, method, path, header, expected in cases:
            headers = {} if header is None else {"Authorization": header}
            response = client.request(method, path, headers=headers)
            body = response.json()
            failed = body.get("failed_caveats")
            said = body.get("title", "ok") + (f": {', '.join(failed)}" if failed else "")
            mark = "" if response.status_code == expected else f"   <-- expected {expected}"
            failures += response.status_code != expected
            print(f"{label:<28} {method:<6} -> {response.status_code} {said}{mark}")
    print("all answers as expected" if not failures else f"{failures} unexpected answer(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
