"""Django: a middleware and a view decorator that let a request in only if its token allows it.

Install with ``pip install 'macaroons_authz[django]'``. Django is imported
by this module only.

Both read the ``MACAROONS_AUTHZ`` setting, a dict::

    MACAROONS_AUTHZ = {
        "VERIFIER": "myservice.auth.verifier",  # a verifier, or a Gate of one
        "ACCESS": "myservice.auth.access",  # request -> Access | None
    }

Each value is the object itself or its dotted path. ``ACCESS`` is needed
by the middleware only. A blocking :class:`~macaroons_authz.Verifier`
serves every view and the middleware; an
:class:`~macaroons_authz.AsyncVerifier` serves ``async def`` views and the
middleware under ASGI, awaited on the event loop.

.. code-block:: python

   MIDDLEWARE = [..., "macaroons_authz.web.django.MacaroonMiddleware"]

The decision is the :class:`~macaroons_authz.web.Gate`'s; refusals are its
``application/problem+json`` responses, and an allowed request's
:class:`~macaroons_authz.web.Authorized` result is
``request.macaroons_authz``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from ..access import Access
from ..async_verifier import AsyncVerifier
from ..verifier import Verifier
from ._core import Gate
from ._frameworks import decide_async, gate_for
from ._problem import Denial
from .asgi import STATE_KEY, _may_block

__all__ = ["REQUEST_ATTRIBUTE", "SETTING", "MacaroonMiddleware", "require"]

#: The name of the settings dict the middleware and decorator read.
SETTING = "MACAROONS_AUTHZ"

#: The request attribute that holds the :class:`~macaroons_authz.web.Authorized`
#: result of an allowed request (``None`` when *access* said no token is needed).
REQUEST_ATTRIBUTE = STATE_KEY

AccessFunction = Callable[[HttpRequest], Access | None]
View = TypeVar("View", bound=Callable[..., Any])


def _setting(name: str) -> Any:
    """``settings.MACAROONS_AUTHZ[name]``, imported if it is a dotted path."""
    config = getattr(settings, SETTING, None)
    if not isinstance(config, Mapping) or name not in config:
        raise ImproperlyConfigured(f"settings.{SETTING}[{name!r}] is not set")
    value = config[name]
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"settings.{SETTING}[{name!r}]: {exc}") from exc


# The settings' gate, resolved at its first use and forgotten when the
# setting changes (override_settings sends setting_changed).
_configured: list[Gate] = []


def _configured_gate() -> Gate:
    if _configured:
        return _configured[0]
    guard = _setting("VERIFIER")
    verifier = guard.verifier if isinstance(guard, Gate) else guard
    if not isinstance(verifier, Verifier | AsyncVerifier):
        raise ImproperlyConfigured(
            f"settings.{SETTING}['VERIFIER'] must be a Verifier, an AsyncVerifier "
            f"or a Gate of one, not {type(verifier).__name__}"
        )
    gate = gate_for(guard)
    _configured[:] = [gate]
    return gate


def _blocking_gate(who: str) -> Gate:
    """The setting's gate, for *who*, which decides synchronously."""
    gate = _configured_gate()
    if isinstance(gate.verifier, AsyncVerifier):
        # Its stores belong to an event loop: a thread cannot await them.
        raise ImproperlyConfigured(
            f"settings.{SETTING}['VERIFIER'] is an AsyncVerifier, but {who} decides "
            "synchronously: it needs a blocking Verifier"
        )
    return gate


def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        _configured.clear()


setting_changed.connect(_forget_settings)


def _headers(request: HttpRequest) -> tuple[str, ...]:
    # META is the WSGI environ (or its ASGI equivalent): repeated headers
    # arrive joined by commas, refused as malformed (see WSGIMiddleware).
    header = request.META.get("HTTP_AUTHORIZATION")
    return () if header is None else (header,)


def _translate(result: object, request: HttpRequest) -> HttpResponse | None:
    """The denial's response, or ``None`` after leaving the result on the request."""
    if type(result) is Denial:
        response = HttpResponse(result.body, status=result.status)
        for name, value in result.headers:
            response[name] = value
        return response
    setattr(request, REQUEST_ATTRIBUTE, result)
    return None


ViewHook = Callable[[HttpRequest, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


class MacaroonMiddleware:
    """Lets a request reach its view only if its token allows ``ACCESS(request)``.

    It decides in ``process_view``, once the URL is resolved, so that
    ``ACCESS`` can read the view's parameters from
    ``request.resolver_match.kwargs`` (a path that resolves to no view gets
    Django's 404 without a decision). Settings are read once, when Django
    builds its middleware chain. Place it after Django's own middleware that
    answers without a view (``SecurityMiddleware``, ``CommonMiddleware``).

    It runs in either of Django's modes, as Django builds the chain.
    Synchronous (under WSGI): ``VERIFIER`` must be a blocking
    :class:`~macaroons_authz.Verifier`. Asynchronous (under ASGI, when the
    middleware after it are async-capable): its ``process_view`` is a
    coroutine function that awaits an
    :class:`~macaroons_authz.AsyncVerifier` on the event loop, and decides
    with a blocking verifier inline when its stores are in memory, in a
    thread otherwise, as :class:`~macaroons_authz.web.ASGIMiddleware` does.
    ``ACCESS`` is called on the loop then: it must not block.

    Raises:
        django.core.exceptions.ImproperlyConfigured: a setting is missing or
            wrong, or ``VERIFIER`` is an async verifier in synchronous mode
            (its stores belong to an event loop).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            self.gate = _configured_gate()
            self._offload = _may_block(self.gate.verifier)
            # Django calls a coroutine function's process_view as it is (and
            # a plain one in a thread), and awaits what the marked instance
            # returns.
            self.process_view: ViewHook = self._process_view_async
            markcoroutinefunction(self)
        else:
            self.gate = _blocking_gate(
                "the middleware in a synchronous chain (WSGI, or a sync-only middleware after it)"
            )
            self.process_view = self._process_view
        self.access: AccessFunction = _setting("ACCESS")

    def __call__(self, request: HttpRequest) -> Any:
        # In async mode, get_response's coroutine, which the caller awaits:
        # the type's one __call__ serves both modes, as in Django's own
        # MiddlewareMixin.
        return self.get_response(request)

    def _process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """The denial's response, or ``None`` to let the view run."""
        return _translate(self.gate.decide(_headers(request), self.access(request)), request)

    async def _process_view_async(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """:meth:`_process_view` on the event loop."""
        result = await decide_async(
            self.gate, _headers(request), self.access(request), self._offload
        )
        return _translate(result, request)


def require(
    access: AccessFunction, *, verifier: Verifier | AsyncVerifier | Gate | None = None
) -> Callable[[View], View]:
    """A view decorator: the view runs only if the request's token allows ``access(request)``.

    Args:
        access: maps the request to the :class:`~macaroons_authz.Access` it
            needs (``request.resolver_match.kwargs`` holds the path's
            parameters), or to ``None``.
        verifier: a :class:`~macaroons_authz.Verifier`, an
            :class:`~macaroons_authz.AsyncVerifier` (``async def`` views
            only), or a :class:`~macaroons_authz.web.Gate` of either; by
            default the setting's ``VERIFIER``, read at the first request
            (and again after the setting changes, as under
            ``override_settings``).

    The result is ``request.macaroons_authz``, as with the middleware. An
    ``async def`` view gets an async wrapper, which awaits an async
    verifier on the event loop, and decides with a blocking one off the
    loop when its stores are not in memory, as
    :class:`~macaroons_authz.web.ASGIMiddleware` does. A sync view needs a
    blocking verifier.

    Raises:
        TypeError: *verifier* is not a verifier or a gate, or is an async
            one given for a sync view (when the decorator is applied).
        django.core.exceptions.ImproperlyConfigured: at a sync view's
            request, the setting's ``VERIFIER`` is an async verifier.
    """
    fixed = None if verifier is None else gate_for(verifier)

    def decorate(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                gate = _configured_gate() if fixed is None else fixed
                result = await decide_async(
                    gate, _headers(request), access(request), _may_block(gate.verifier)
                )
                refused = _translate(result, request)
                return refused if refused is not None else await view(request, *args, **kwargs)

            return cast(View, guarded_async)

        if fixed is not None and isinstance(fixed.verifier, AsyncVerifier):
            raise TypeError(
                f"{getattr(view, '__qualname__', view)!s} is not an async def view: "
                "it needs a blocking Verifier, not an AsyncVerifier"
            )

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            gate = _blocking_gate("a sync view") if fixed is None else fixed
            refused = _translate(gate.decide(_headers(request), access(request)), request)
            return refused if refused is not None else view(request, *args, **kwargs)

        return cast(View, guarded)

    return decorate
