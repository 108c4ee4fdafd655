"""Flask: a view decorator that lets a request in only if its token allows what the view does.

Install with ``pip install 'macaroons_authz[flask]'``. Flask is imported by
this module only.

.. code-block:: python

   from macaroons_authz.web.flask import require

   @app.get("/apps/<int:app_id>")
   @require(verifier, lambda request: FlyAccess(org_id=1234, app_id=request.view_args["app_id"],
                                                action=Action.READ))
   def read_app(app_id):
       return {"token_id": flask.g.macaroons_authz.token_id}

The decision is the :class:`~macaroons_authz.web.Gate`'s, as for the WSGI
middleware; refusals are its ``application/problem+json`` responses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask

from ..access import Access
from ..verifier import Verifier
from ._core import Gate
from ._frameworks import gate_for
from ._problem import Denial
from .asgi import STATE_KEY

__all__ = ["G_ATTRIBUTE", "require"]

#: The attribute of :data:`flask.g` that holds the :class:`~macaroons_authz.web.Authorized`
#: result of an allowed request (``None`` when *access* said no token is needed).
G_ATTRIBUTE = STATE_KEY

View = TypeVar("View", bound=Callable[..., Any])


def require(
    verifier: Verifier | Gate, access: Callable[[flask.Request], Access | None]
) -> Callable[[View], View]:
    """A decorator: the view runs only if the request's token allows ``access(request)``.

    Args:
        verifier: verifies headers: a blocking
            :class:`~macaroons_authz.Verifier` (Flask is WSGI), which gets a
            :class:`~macaroons_authz.web.Gate` with the default decision log
            and ``Retry-After``; or a :class:`~macaroons_authz.web.Gate` of
            your own, to choose them.
        access: maps the request (:data:`flask.request`, whose
            ``view_args`` hold the path's parameters) to the
            :class:`~macaroons_authz.Access` it needs, or to ``None`` when
            it needs no token.

    An allowed request's :class:`~macaroons_authz.web.Authorized` result is
    ``flask.g.macaroons_authz`` (:data:`G_ATTRIBUTE`); a refused one gets the
    gate's 401, 403 or 503 ``application/problem+json`` response and the
    view does not run. ``async def`` views are decorated alike.

    Raises:
        TypeError: *verifier* is not a :class:`~macaroons_authz.Verifier`
            or a gate of one.
    """
    gate = gate_for(verifier, blocking=True)

    def check() -> flask.Response | None:
        request = flask.request
        # Werkzeug reads the WSGI environ: a server joins repeated headers
        # into one value, refused as malformed (see WSGIMiddleware).
        result = gate.decide(request.headers.getlist("Authorization"), access(request))
        if type(result) is Denial:
            return flask.Response(result.body, result.status, list(result.headers))
        setattr(flask.g, G_ATTRIBUTE, result)
        return None

    def decorate(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                refused = check()
                return refused if refused is not None else await view(*args, **kwargs)

            return cast(View, guarded_async)

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            refused = check()
            return refused if refused is not None else view(*args, **kwargs)

        return cast(View, guarded)

    return decorate
