"""The discharge service the worker and browser tests run under gunicorn and uvicorn.

Configured by the environment (the test binds the socket first, so it knows
the location):

* ``DISCHARGE_LOCATION``: the service's location, ``http://127.0.0.1:PORT``;
* ``DISCHARGE_KEY``: the third-party key, in hex;
* ``DISCHARGE_FLOWS``: ``memory``, ``sqlite:PATH`` or ``postgres:SCHEMA:URL``;
* ``DISCHARGE_PENDING``: a directory where ``on_deferred`` leaves the user
  secret of each poll flow, under its ticket id, for ``/test/complete``.

The application decides: a client sending ``Authorization: Bearer poll`` gets
a poll flow, which ``POST /test/complete/<ticket id>`` (on any worker)
finishes for Ada; any other gets a user-interactive flow, served by the
service's own page, where Approve is allowed to a browser with the cookie
``session=ada``. Every answer carries the answering process's id in
``X-Worker-Pid`` (only in this test application), so a test can see which
worker answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from macaroons_authz import (
    Defer,
    DischargeRequest,
    DischargeService,
    FlyioIdentity,
    PendingFlow,
    TicketRequest,
    UnauthorizedError,
    discharge_request,
)
from macaroons_authz.stores.flows import FlowStore, MemoryFlowStore, SQLiteFlowStore
from macaroons_authz.thirdparty.asgi_service import ASGIDischargeService, Receive, Scope, Send

ORG = 1234
ADA = FlyioIdentity(7, organization_ids=[ORG])
COMPLETE_PATH = "/test/complete/"


def _flows() -> FlowStore:
    spec = os.environ["DISCHARGE_FLOWS"]
    if spec == "memory":
        return MemoryFlowStore()
    kind, _, rest = spec.partition(":")
    if kind == "sqlite":
        return SQLiteFlowStore(rest)
    from macaroons_authz.stores.postgres_flows import PostgresFlowStore

    schema, _, url = rest.partition(":")
    return PostgresFlowStore(url, schema=schema, pool_size=2)


def authorize(request: TicketRequest) -> Defer:
    return Defer(interactive=request.authorization != "Bearer poll")


def approve(flow: PendingFlow, headers: Mapping[str, str]) -> DischargeRequest:
    cookies = {c.strip() for c in headers.get("cookie", "").split(";")}
    if "session=ada" not in cookies:
        raise UnauthorizedError("sign in first")
    return discharge_request(ADA, now=time.time())


def _pending_dir() -> Path:
    return Path(os.environ["DISCHARGE_PENDING"])


def on_deferred(flow: PendingFlow) -> None:
    if not flow.interactive:
        path = _pending_dir() / flow.request.ticket_id
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(flow.user_secret)


def service() -> DischargeService:
    return DischargeService(
        os.environ["DISCHARGE_LOCATION"],
        bytes.fromhex(os.environ["DISCHARGE_KEY"]),
        authorize,
        on_deferred=on_deferred,
        approve=approve,
        flows=_flows(),
    )


def _complete(svc: DischargeService, ticket_id: str) -> int:
    """Finish the poll flow of *ticket_id* for Ada; the status to answer."""
    if not ticket_id.isalnum():
        return 400
    try:
        secret = (_pending_dir() / ticket_id).read_text()
    except FileNotFoundError:
        return 404
    svc.complete(secret, discharge_request(ADA, now=time.time()))
    return 204


def wsgi_app() -> Any:
    """The WSGI service, for ``gunicorn 'discharge_app:wsgi_app()'``."""
    svc = service()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def with_pid(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Worker-Pid", str(os.getpid()))], exc_info)

        path = environ.get("PATH_INFO", "")
        if path == "/health":
            with_pid("200 OK", [("Content-Length", "0")])
            return []
        if path.startswith(COMPLETE_PATH) and environ["REQUEST_METHOD"] == "POST":
            status = _complete(svc, path.removeprefix(COMPLETE_PATH))
            with_pid(f"{status} X", [("Content-Length", "0")])
            return []
        return svc(environ, with_pid)

    return app


def asgi_app() -> Any:
    """The ASGI service, for ``uvicorn --factory discharge_app:asgi_app``."""
    svc = service()
    inner = ASGIDischargeService(svc)
    pid = str(os.getpid()).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def with_pid(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker-pid", pid)]
            await send(message)

        if scope["type"] == "http" and scope["path"] == "/health":
            await with_pid({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await inner(scope, receive, with_pid)

    return app
