"""WSGI middleware (PEP 3333): the gate in front of any WSGI application."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from ..access import Access
from ..verifier import Verifier
from ._core import Gate
from ._log import DecisionLog, log_decision
from ._problem import Denial

__all__ = ["ENVIRON_KEY", "WSGIMiddleware"]

#: Where the middleware leaves the :class:`Authorized` result in the environ
#: (``None`` on a path that needs no token).
ENVIRON_KEY = "macaroons_authz.caveats"


class WSGIMiddleware:
    """Lets a request reach *app* only if its token allows the access it needs.

    Args:
        app: the WSGI application to protect.
        verifier: verifies headers; shared by every thread of the server.
        access: maps a request's environ to the :class:`~macaroons_authz.Access`
            it needs, or to ``None`` when its path needs no token.
        log: the decision log hook (see :class:`Gate`).
        retry_after: seconds a 503 asks the client to wait.

    A WSGI server joins repeated ``Authorization`` headers into one value
    with commas; the second header's scheme then makes the value malformed,
    so it is refused with a 401 like any malformed header.
    """

    def __init__(
        self,
        app: WSGIApplication,
        verifier: Verifier,
        access: Callable[[WSGIEnvironment], Access | None],
        *,
        log: DecisionLog | None = log_decision,
        retry_after: int = 5,
    ) -> None:
        self.app = app
        self.access = access
        self.gate = Gate(verifier, log=log, retry_after=retry_after)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION")
        result = self.gate.decide(() if header is None else (header,), self.access(environ))
        if type(result) is Denial:
            return _respond(result, start_response)
        environ[ENVIRON_KEY] = result
        return self.app(environ, start_response)


def _respond(denial: Denial, start_response: StartResponse) -> list[bytes]:
    status = HTTPStatus(denial.status)
    start_response(f"{denial.status} {status.phrase}", list(denial.headers))
    return [denial.body]
