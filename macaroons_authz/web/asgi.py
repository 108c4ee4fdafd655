"""ASGI 3 middleware: the gate in front of any ASGI application.

HTTP and websocket connections are decided; every other scope (lifespan)
passes through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..access import Access
from ..async_verifier import AsyncVerifier
from ..verifier import Verifier
from ._core import Gate
from ._log import DecisionLog, log_decision
from ._problem import Denial

__all__ = ["STATE_KEY", "ASGIApp", "ASGIMiddleware", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the middleware leaves the :class:`Authorized` result in
#: ``scope["state"]`` (``None`` on a path that needs no token).
STATE_KEY = "macaroons_authz"


class ASGIMiddleware:
    """Lets a connection reach *app* only if its token allows the access it needs.

    Args:
        app: the ASGI 3 application to protect.
        verifier: verifies headers: an
            :class:`~macaroons_authz.AsyncVerifier`, which awaits its
            stores on the event loop (while one request waits on a store,
            the loop serves the others), or a blocking
            :class:`~macaroons_authz.Verifier`.
        access: maps a connection's scope (``"http"`` or ``"websocket"``)
            to the :class:`~macaroons_authz.Access` it needs, or to ``None``
            when its path needs no token.
        log: the decision log hook (see :class:`Gate`).
        retry_after: seconds a 503 asks the client to wait.
        offload: with a blocking verifier, decide in a thread
            (:func:`asyncio.to_thread`), so that a store's I/O never blocks
            the loop. ``None`` (the default) decides inline when the
            verifier's keyring and revocation store are the in-memory ones
            (:attr:`Verifier.may_block <macaroons_authz.Verifier.may_block>`)
            and in a thread otherwise. The hand-off uses :mod:`asyncio`.
            An async verifier never needs one: ``True`` is refused.

    The result goes to ``scope["state"][STATE_KEY]``; a scope without
    ``"state"`` (a server without lifespan state) is given one.

    A refused websocket is answered before it is accepted: with the denial's
    HTTP response when the server offers the ``websocket.http.response``
    extension (uvicorn does), else by closing it with code 1008 (policy
    violation), which the server turns into a bare HTTP 403.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier | AsyncVerifier,
        access: Callable[[Scope], Access | None],
        *,
        log: DecisionLog | None = log_decision,
        retry_after: int = 5,
        offload: bool | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.gate = Gate(verifier, log=log, retry_after=retry_after)
        if isinstance(verifier, AsyncVerifier) and offload:
            raise ValueError("an AsyncVerifier awaits its stores: there is nothing to offload")
        self.offload = _may_block(verifier) if offload is None else offload
        self._async = isinstance(verifier, AsyncVerifier)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        access = self.access(scope)
        result = None
        if access is not None:
            # Header names should be lower case in ASGI, but need not be;
            # the length test spares most headers the lower().
            headers = [
                v.decode("latin-1")
                for k, v in scope["headers"]
                if len(k) == 13 and k.lower() == b"authorization"
            ]
            if self._async:
                result = await self.gate.adecide(headers, access)
            elif self.offload:
                # to_thread: the hook runs in the request's context variables.
                result = await asyncio.to_thread(self.gate.decide, headers, access)
            else:
                result = self.gate.decide(headers, access)
            if type(result) is Denial:
                if kind == "http":
                    await _refuse_http(send, result)
                else:
                    await _refuse_websocket(scope, receive, send, result)
                return
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state[STATE_KEY] = result
        await self.app(scope, receive, send)


def _may_block(verifier: Verifier | AsyncVerifier) -> bool:
    """Whether deciding with *verifier* blocks on I/O (an async verifier never does)."""
    return isinstance(verifier, Verifier) and verifier.may_block


def _raw_headers(denial: Denial) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in denial.headers]


async def _refuse_http(send: Send, denial: Denial) -> None:
    await send(
        {"type": "http.response.start", "status": denial.status, "headers": _raw_headers(denial)}
    )
    await send({"type": "http.response.body", "body": denial.body})


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, denial: Denial) -> None:
    if (await receive())["type"] != "websocket.connect":
        return  # the client left before the handshake: nobody to answer
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": denial.status,
                "headers": _raw_headers(denial),
            }
        )
        await send({"type": "websocket.http.response.body", "body": denial.body})
    else:
        await send({"type": "websocket.close", "code": 1008})
