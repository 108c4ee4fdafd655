"""The small API the web tests protect, as a WSGI and an ASGI application.

Routes: ``GET /health`` needs no token; ``GET`` and ``DELETE /apps/<id>``
(and the websocket ``/ws/apps/<id>``) need a token allowing that action on
app ``<id>`` of organization :data:`ORG`. Accesses are judged at the fixed
instant :data:`AT`. The endpoints answer JSON saying who was let in.

The servers under test import this module: :func:`wsgi_app` (gunicorn) and
:func:`asgi_app` (uvicorn) build the protected application from the SQLite
keyring and revocation store named by the environment variables
:data:`KEYRING_ENV` and :data:`REVOCATIONS_ENV`, and log decisions at INFO to
stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from macaroons_authz import (
    Action,
    FlyAccess,
    SQLiteKeyring,
    SQLiteRevocationStore,
    Verifier,
)
from macaroons_authz.web import (
    ENVIRON_KEY,
    STATE_KEY,
    ASGIMiddleware,
    Authorized,
    WSGIMiddleware,
)
from macaroons_authz.web.asgi import Receive, Scope, Send

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z: tokens are minted at it
AT = NOW + 60  # requests are judged at it
ORG = 1234
KEYRING_ENV = "MACAROONS_AUTHZ_WEB_KEYRING"
REVOCATIONS_ENV = "MACAROONS_AUTHZ_WEB_REVOCATIONS"

_APP = re.compile(r"/(?:ws/)?apps/(\d+)")
_ACTIONS = {"GET": Action.READ, "DELETE": Action.DELETE}


def access_for(method: str, path: str) -> FlyAccess | None:
    """The access a request needs; ``None`` for the public health check."""
    if path == "/health":
        return None
    m = _APP.fullmatch(path)
    action = _ACTIONS.get(method, Action.WRITE)
    return FlyAccess(org_id=ORG, app_id=int(m[1]) if m else None, action=action, at=AT)


def wsgi_access(environ: WSGIEnvironment) -> FlyAccess | None:
    return access_for(environ["REQUEST_METHOD"], environ["PATH_INFO"])


def asgi_access(scope: Scope) -> FlyAccess | None:
    return access_for(scope.get("method", "GET"), scope["path"])


def _who(result: Authorized | None) -> dict[str, Any]:
    if result is None:
        return {"public": True, "pid": os.getpid()}
    return {"token_id": result.token_id, "caveats": len(result.caveats), "pid": os.getpid()}


def wsgi_endpoint(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = json.dumps(_who(environ[ENVIRON_KEY])).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        # Lifespan state reaches every request's scope["state"], beside the
        # middleware's result.
        assert (await receive())["type"] == "lifespan.startup"
        scope["state"]["started"] = True
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})
        return
    state = scope["state"]
    who = _who(state[STATE_KEY])
    if "started" in state:
        who["lifespan"] = state["started"]
    body = json.dumps(who).encode()
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close", "code": 1000})
        return
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _verifier() -> Verifier:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    keyring = SQLiteKeyring(os.environ[KEYRING_ENV])
    return Verifier(keyring, revocations=SQLiteRevocationStore(os.environ[REVOCATIONS_ENV]))


def wsgi_app() -> WSGIMiddleware:
    """The protected WSGI application, for ``gunicorn 'web_app:wsgi_app()'``."""
    return WSGIMiddleware(wsgi_endpoint, _verifier(), wsgi_access)


def asgi_app() -> ASGIMiddleware:
    """The protected ASGI application, for ``uvicorn --factory web_app:asgi_app``."""
    return ASGIMiddleware(asgi_endpoint, _verifier(), asgi_access)
