"""The discharge service as an ASGI 3 application.

:class:`ASGIDischargeService` wraps a :class:`~macaroons_authz.DischargeService`:
every decision is the service's own (the same code as its WSGI form), made
in a thread (:func:`asyncio.to_thread`), since a flow store on SQLite or
PostgreSQL does I/O that must not block the event loop. The adapter only
reads the request (its body bounded by the service's limits) and sends the
reply::

    from macaroons_authz.thirdparty.asgi_service import ASGIDischargeService

    app = ASGIDischargeService(DischargeService(location, key, authorize, flows=flows))
    # uvicorn module:app
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._io import HTTPError, Reply, Request, content_length
from .flows import PendingFlow
from .protocol import INIT_PATH, USER_PATH
from .service import DischargeService
from .user_page import _MAX_FORM

__all__ = ["FLOW_STATE_KEY", "ASGIDischargeService"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Key of the ``scope["state"]`` entry holding the :class:`PendingFlow` for a user page.
FLOW_STATE_KEY = "macaroons_authz.flow"


class ASGIDischargeService:
    """A :class:`~macaroons_authz.DischargeService`, served over ASGI 3.

    Args:
        service: the service; its WSGI ``user_page``, if any, cannot be
            served here: give *user_page* instead (or the service's own
            page, ``approve=``).
        user_page: an ASGI application serving user URLs; it finds the
            :class:`PendingFlow` in ``scope["state"][FLOW_STATE_KEY]``.

    Lifespan events are acknowledged; websocket connections are closed.
    """

    def __init__(self, service: DischargeService, *, user_page: ASGIApp | None = None) -> None:
        if service._user_page is not None and user_page is None:
            raise ValueError(
                "the service's user_page is a WSGI application: "
                "give the ASGI form an ASGI user_page"
            )
        self.service = service
        self._user_page = user_page

    def __repr__(self) -> str:
        return f"<ASGIDischargeService {self.service!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection (ASGI 3)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        headers = _headers(scope)
        path = scope["path"]  # the full path (ASGI: root_path is already part of it)
        method = scope.get("method", "GET")
        body = await self._body(path, method, headers, receive)
        client = scope.get("client")
        request = Request(
            method,
            path,
            headers,
            str(client[0]) if client else "",
            io.BytesIO(body).read,
        )
        custom = self._user_page is not None
        answer = await asyncio.to_thread(self.service._serve, request, custom_page=custom)
        if isinstance(answer, PendingFlow):
            if self._user_page is None:  # pragma: no cover - a flow comes only with a page
                raise TypeError("no user page")
            scope.setdefault("state", {})[FLOW_STATE_KEY] = answer
            await self._user_page(scope, receive, send)
            return
        await _send(send, answer)

    async def _body(
        self, path: str, method: str, headers: dict[str, str], receive: Receive
    ) -> bytes:
        """The body, when the service will read it: bounded by its Content-Length and limits."""
        base = self.service._base_path
        if method != "POST":
            return b""
        if path == base + INIT_PATH:
            limit = self.service._max_body
        elif path.startswith(base + USER_PATH) and self._user_page is None:
            limit = _MAX_FORM
        else:
            return b""
        try:
            length = content_length(headers)
        except HTTPError:
            return b""  # the service answers 400
        if length is None or length > limit:
            return b""  # the service answers 411 or 413 without reading
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size < length:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunk = message.get("body", b"")
            chunks.append(chunk[: length - size])
            size += len(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; repeated headers joined as HTTP joins them (cookies with ``; ``)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


async def _send(send: Send, reply: Reply) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
