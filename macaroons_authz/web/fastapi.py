"""FastAPI: a dependency that lets a request in only if its token allows what the route does.

Install with ``pip install 'macaroons_authz[fastapi]'``. FastAPI (and
Starlette) are imported by this module only.

.. code-block:: python

   from macaroons_authz.web.fastapi import REFUSAL_RESPONSES, install, require

   install(app)  # refusals as application/problem+json

   def read(request):
       return FlyAccess(org_id=1234, app_id=request.path_params["app_id"], action=Action.READ)

   @app.get("/apps/{app_id:int}", responses=REFUSAL_RESPONSES)  # the refusals, in OpenAPI
   async def read_app(authorized: Annotated[Authorized, Depends(require(verifier, read))]):
       return {"token_id": authorized.token_id}

The decision is the :class:`~macaroons_authz.web.Gate`'s, as for the ASGI
middleware, and is made off the event loop in the same cases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..access import Access
from ..async_verifier import AsyncVerifier
from ..verifier import Verifier
from ._core import Authorized, Gate
from ._frameworks import decide_async, gate_for
from ._problem import PROBLEM_JSON, Denial
from .asgi import STATE_KEY, _may_block

__all__ = [
    "REFUSAL_RESPONSES",
    "SECURITY_SCHEME",
    "Refused",
    "install",
    "problem_response",
    "require",
]

#: How every route that depends on :func:`require` shows in the OpenAPI
#: schema: an ``apiKey`` security scheme named ``FlyV1``, in the
#: ``Authorization`` header. It only documents the header: the decision
#: reads every ``Authorization`` header of the request itself.
SECURITY_SCHEME = APIKeyHeader(
    name="Authorization",
    scheme_name="FlyV1",
    description="A macaroon token: `FlyV1 fm2_…` (or `Bearer fm2_…`).",
    auto_error=False,
)


def _refusal(
    status: HTTPStatus,
    description: str,
    headers: dict[str, Any] | None = None,
    **members: dict[str, Any],
) -> dict[str, Any]:
    """The OpenAPI response of one refusal: its problem document and its headers."""
    # The members _problem writes, every one always, and nothing else.
    properties = {
        "type": {"type": "string", "const": "about:blank"},
        "title": {"type": "string", "const": status.phrase},
        "status": {"type": "integer", "const": int(status)},
        "detail": {"type": "string"},
        **members,
    }
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


#: The refusals of :func:`require` for the OpenAPI schema, which cannot
#: learn them from a dependency: pass it as ``responses=REFUSAL_RESPONSES``
#: to a route (``@app.get(...)``), an ``APIRouter`` or the ``FastAPI`` app.
#: It documents the 401, 403 and 503 ``application/problem+json`` documents
#: (RFC 9457) as :func:`install` sends them, and their ``WWW-Authenticate``
#: (401) and ``Retry-After`` (503) headers. Extend a copy
#: (``{**REFUSAL_RESPONSES, 404: {...}}``) rather than this mapping.
REFUSAL_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _refusal(
        HTTPStatus.UNAUTHORIZED,
        "No valid token: none, several, or one that is malformed, forged, revoked"
        " or of an unknown key. Every 401 is the same response.",
        {
            "WWW-Authenticate": {
                "description": "The scheme to authenticate with.",
                "required": True,
                "schema": {"type": "string", "const": "FlyV1"},
            }
        },
    ),
    403: _refusal(
        HTTPStatus.FORBIDDEN,
        "The token is authentic but does not allow this request.",
        failed_caveats={
            "description": "The kinds of caveat that refused the request"
            " (their type names, such as `Apps`), each once.",
            "type": "array",
            "items": {"type": "string"},
        },
    ),
    503: _refusal(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "A keyring or revocation store could not be read, so nothing is allowed.",
        {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    ),
}

_EXTRA_HEADERS = frozenset({"Content-Type", "Content-Length"})


class Refused(HTTPException):
    """A refused request, raised by :func:`require`'s dependency.

    An :class:`~starlette.exceptions.HTTPException` with the denial's
    status and its ``WWW-Authenticate`` or ``Retry-After`` header, so that
    even without :func:`install` the client gets the right status and
    headers (with FastAPI's own ``{"detail": ...}`` body).

    Attributes:
        denial: the :class:`~macaroons_authz.web.Denial` to send.
    """

    def __init__(self, denial: Denial) -> None:
        headers = {k: v for k, v in denial.headers if k not in _EXTRA_HEADERS}
        super().__init__(denial.status, headers=headers)
        self.denial = denial


async def problem_response(request: Request, exc: Exception) -> Response:
    """The exception handler for :class:`Refused`: the denial's exact response."""
    if not isinstance(exc, Refused):
        raise exc  # registered for something else: not ours to answer
    denial = exc.denial
    return Response(denial.body, denial.status, headers=dict(denial.headers))


def install(app: Starlette) -> None:
    """Answer :class:`Refused` with the denial's ``application/problem+json`` response."""
    app.add_exception_handler(Refused, problem_response)


def require(
    verifier: Verifier | AsyncVerifier | Gate,
    access: Callable[[Request], Access | None],
    *,
    offload: bool | None = None,
) -> Callable[..., Awaitable[Authorized | None]]:
    """A dependency: the route runs only if the request's token allows ``access(request)``.

    Use it as ``Depends(require(verifier, access))``; it returns the
    :class:`~macaroons_authz.web.Authorized` result (``None`` when *access*
    said no token is needed), also left in ``request.state.macaroons_authz``.
    A refused request raises :class:`Refused`, answered with the gate's
    401, 403 or 503 response once :func:`install` has been called. Routes
    using it show ``SECURITY_SCHEME`` in the OpenAPI schema; declare
    ``responses=REFUSAL_RESPONSES`` on them to show the refusals too. HTTP
    routes only: protect websockets with
    :class:`~macaroons_authz.web.ASGIMiddleware`.

    Args:
        verifier: an :class:`~macaroons_authz.AsyncVerifier`, which awaits
            its stores on the event loop, or a blocking
            :class:`~macaroons_authz.Verifier`; either gets a
            :class:`~macaroons_authz.web.Gate` with the default decision log
            and ``Retry-After``. Or a :class:`~macaroons_authz.web.Gate` of
            your own, to choose them.
        access: maps the request (``request.path_params`` holds the path's
            parameters) to the :class:`~macaroons_authz.Access` it needs,
            or to ``None``.
        offload: with a blocking verifier, decide in a thread
            (:func:`asyncio.to_thread`); ``None`` chooses as
            :class:`~macaroons_authz.web.ASGIMiddleware` does (inline for
            the in-memory stores, in a thread otherwise). An async verifier
            never needs one: ``True`` is refused.

    Raises:
        TypeError: *verifier* is none of those.
        ValueError: ``offload=True`` with an async verifier.
    """
    gate = gate_for(verifier)
    if isinstance(gate.verifier, AsyncVerifier) and offload:
        raise ValueError("an AsyncVerifier awaits its stores: there is nothing to offload")
    hand_off = _may_block(gate.verifier) if offload is None else offload

    async def authorized(
        request: Request, _header: Annotated[str | None, Depends(SECURITY_SCHEME)]
    ) -> Authorized | None:
        headers = request.headers.getlist("authorization")
        result = await decide_async(gate, headers, access(request), hand_off)
        if isinstance(result, Denial):
            raise Refused(result)
        setattr(request.state, STATE_KEY, result)
        return result

    return authorized
