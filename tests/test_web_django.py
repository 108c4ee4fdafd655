"""The Django adapter: examples/django_app.py through Django's test client, and under gunicorn.

Django's settings are process-wide and configured once: the
``django_settings`` fixture configures them from the example for this
module's tests only and unconfigures them afterwards (``settings._wrapped =
empty``, URL caches cleared, Django's loggers reset), so no other test sees
them. Each test then overrides the ``MACAROONS_AUTHZ`` setting with its own
verifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import (
    AsyncClient,
    AsyncRequestFactory,
    Client,
    RequestFactory,
    override_settings,
)
from django.urls import URLPattern, clear_url_caches, path
from django.utils.functional import empty
from test_web_servers import serve
from web_app import AT, ORG
from web_framework_apps import example
from web_framework_checks import (
    Send,
    check_both_workers_decide,
    check_outcomes,
    check_over_sockets,
    verifiers,
)
from web_helpers import (
    UNAUTHENTICATED_BODY,
    forbidden_body,
    memory_tokens,
    mint,
    problem_headers,
)

from macaroons_authz import (
    Action,
    AsyncVerifier,
    FlyAccess,
    SQLiteKeyring,
    SQLiteRevocationStore,
    Verifier,
)
from macaroons_authz.web import Authorized, DecisionRecord, Gate
from macaroons_authz.web.django import MacaroonMiddleware, require

django_app = example("django_app")


@pytest.fixture(scope="module")
def django_settings() -> Iterator[None]:
    if settings.configured:
        pytest.fail("Django's settings were configured before this module's tests")
    ring, _ = memory_tokens()
    django_app.configure(Verifier(ring), clock=lambda: AT)
    try:
        yield
    finally:
        settings._wrapped = empty
        clear_url_caches()
        # django.setup() gave Django's loggers handlers (DEFAULT_LOGGING).
        for name in ("django", "django.server"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


Guard = Verifier | AsyncVerifier | Gate


def _sender(guard: Guard | str, access: Any = django_app.access, *, asgi: bool = False) -> Send:
    """Requests through a test client with *guard* as the VERIFIER setting.

    With *asgi*, through Django's ``AsyncClient``: its ASGI handler stack,
    which builds the middleware chain in async mode.
    """

    def send(
        method: str, path: str, authorization: Sequence[str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {"Authorization": ", ".join(authorization)} if authorization else {}

        async def through_asgi() -> Any:
            return await AsyncClient().generic(method, path, headers=headers)

        with override_settings(MACAROONS_AUTHZ={"VERIFIER": guard, "ACCESS": access}):
            if asgi:
                response = asyncio.run(through_asgi())
            else:
                response = Client().generic(method, path, headers=headers)
        return response.status_code, list(response.headers.items()), response.content

    return send


@pytest.mark.usefixtures("django_settings")
def test_every_outcome_through_the_middleware(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring, tokens = memory_tokens()
    working, broken = verifiers(ring, tokens, tmp_path)
    check_outcomes(_sender(working), _sender(broken), tokens, caplog)


@pytest.mark.usefixtures("django_settings")
def test_the_middleware_under_djangos_asgi_handler() -> None:
    # In async mode, with a blocking verifier.
    ring, t = memory_tokens()
    settings_ = {"VERIFIER": Verifier(ring), "ACCESS": django_app.access}

    async def get(authorization: str | None = None) -> tuple[int, Any]:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = await AsyncClient().get("/apps/42", headers=headers)
        return response.status_code, json.loads(response.content)

    with override_settings(MACAROONS_AUTHZ=settings_):
        status, body = asyncio.run(get(t.reader))
        assert (status, body["token_id"]) == (200, str(t.tokens[0].nonce.uuid))
        assert asyncio.run(get()) == (401, UNAUTHENTICATED_BODY)


def _start(app: int) -> str:
    return f"/apps/{app}/machines/e784079b449483/start"


@pytest.mark.usefixtures("django_settings")
def test_every_outcome_through_the_decorator(tmp_path: Path) -> None:
    ring, t = memory_tokens()
    working, broken = verifiers(ring, t, tmp_path)
    send = _sender(working)
    status, _, body = send("POST", _start(42), [t.admin])
    assert (status, json.loads(body)["token_id"]) == (200, str(t.tokens[1].nonce.uuid))
    for authorization in [[], [t.forged], [t.revoked]]:
        status, headers, _ = send("POST", _start(42), authorization)
        assert (status, dict(headers)["WWW-Authenticate"]) == (401, "FlyV1")
    status, _, body = send("POST", _start(43), [t.reader])
    assert (status, json.loads(body)["failed_caveats"]) == (403, ["Action", "Apps"])
    status, headers, _ = _sender(broken)("POST", _start(42), [t.admin])
    assert (status, dict(headers)["Retry-After"]) == (503, "5")


@pytest.mark.usefixtures("django_settings")
def test_settings_may_name_the_verifier_and_access_by_dotted_path() -> None:
    ring, t = memory_tokens()
    django_app.VERIFIER = Verifier(ring)  # type: ignore[attr-defined]
    try:
        send = _sender("django_app.VERIFIER", "django_app.access")
        assert send("GET", "/apps/42", [t.reader])[0] == 200
        assert send("GET", "/apps/42", [])[0] == 401
    finally:
        del django_app.VERIFIER  # type: ignore[attr-defined]


@pytest.mark.usefixtures("django_settings")
def test_missing_or_wrong_settings_are_improperly_configured() -> None:
    def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({})

    with override_settings(MACAROONS_AUTHZ={"ACCESS": django_app.access}):
        with pytest.raises(ImproperlyConfigured, match=r"MACAROONS_AUTHZ\['VERIFIER'\] is not set"):
            MacaroonMiddleware(view)
        with pytest.raises(ImproperlyConfigured, match="VERIFIER"):
            require(django_app.access)(view)(RequestFactory().get("/"))
    wrong = override_settings(MACAROONS_AUTHZ={"VERIFIER": "django_app.ORG", "ACCESS": "x.y"})
    with (
        wrong,
        pytest.raises(
            ImproperlyConfigured,
            match="must be a Verifier, an AsyncVerifier or a Gate of one, not int",
        ),
    ):
        MacaroonMiddleware(view)
    unknown = override_settings(MACAROONS_AUTHZ={"VERIFIER": "no_such_module.verifier"})
    with unknown, pytest.raises(ImproperlyConfigured, match=r"\['VERIFIER'\]: No module named"):
        MacaroonMiddleware(view)
    ring, _ = memory_tokens()
    no_access = override_settings(MACAROONS_AUTHZ={"VERIFIER": Verifier(ring)})
    with no_access, pytest.raises(ImproperlyConfigured, match=r"\['ACCESS'\] is not set"):
        MacaroonMiddleware(view)


def _read_42(request: HttpRequest) -> FlyAccess:
    return FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT)


@pytest.mark.usefixtures("django_settings")
def test_the_decorator_takes_a_verifier_and_guards_async_views() -> None:
    ring, t = memory_tokens()
    records: list[DecisionRecord] = []

    @require(_read_42, verifier=Gate(Verifier(ring), log=records.append))
    async def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"token_id": request.macaroons_authz.token_id})

    factory = AsyncRequestFactory()
    allowed = asyncio.run(view(factory.get("/", headers={"Authorization": t.reader})))
    assert (allowed.status_code, json.loads(allowed.content)) == (
        200,
        {"token_id": str(t.tokens[0].nonce.uuid)},
    )
    refused = asyncio.run(view(factory.get("/")))
    assert (refused.status_code, refused["WWW-Authenticate"]) == (401, "FlyV1")
    assert [(r.allowed, r.status) for r in records] == [(True, 200), (False, 401)]


def test_under_gunicorn_with_two_workers(tmp_path: Path) -> None:
    with serve("gunicorn", tmp_path, "web_framework_apps:django_app()") as server:
        check_over_sockets(server)
        check_both_workers_decide(server)


# The URLconf of the tests that serve views of their own (ROOT_URLCONF is
# this module while _serving fills it).
urlpatterns: list[URLPattern] = []


@contextmanager
def _serving(guard: Guard, views: dict[str, Callable[..., Any]]) -> Iterator[None]:
    """Django serves each of *views* at ``/<name>``, without middleware, *guard* as VERIFIER."""
    urlpatterns[:] = [path(name, view) for name, view in views.items()]
    try:
        with override_settings(
            ROOT_URLCONF=__name__, MIDDLEWARE=[], MACAROONS_AUTHZ={"VERIFIER": guard}
        ):
            yield
    finally:
        urlpatterns.clear()


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _async_view(guard: Guard | None) -> Callable[..., Any]:
    """An ``async def`` view of app 42 guarded by *guard* (``None``: the setting's)."""

    @require(_read_42, verifier=guard)
    async def view(request: HttpRequest) -> JsonResponse:
        authorized: Authorized = request.macaroons_authz
        return JsonResponse({"token_id": authorized.token_id, "caveats": len(authorized.caveats)})

    return view


@pytest.mark.usefixtures("django_settings")
def test_an_async_view_awaits_an_async_verifier(tmp_path: Path) -> None:
    ring, t = memory_tokens()
    working, broken = verifiers(ring, t, tmp_path)
    views = {
        "given": _async_view(AsyncVerifier.of(working)),
        "gate": _async_view(Gate(AsyncVerifier.of(working))),
        "setting": _async_view(None),
        "blocking": _async_view(working),
        "broken": _async_view(AsyncVerifier.of(broken)),
        "broken-blocking": _async_view(broken),
    }
    send = _sender(AsyncVerifier.of(working), asgi=True)
    with _serving(AsyncVerifier.of(working), views):
        reader = {"token_id": str(t.tokens[0].nonce.uuid), "caveats": 4}
        for name in ["given", "gate", "setting", "blocking"]:
            status, _, body = send("GET", f"/{name}", [t.reader])
            assert (status, json.loads(body)) == (200, reader), name

        # Each refusal is the blocking verifier's: status, headers and body.
        unauthenticated = _compact(UNAUTHENTICATED_BODY)
        challenge = ("WWW-Authenticate", "FlyV1")
        for authorization, status, body, extra in [
            ([], 401, unauthenticated, [challenge]),
            ([t.forged], 401, unauthenticated, [challenge]),
            ([t.revoked], 401, unauthenticated, [challenge]),
            ([t.reader, t.reader], 401, unauthenticated, [challenge]),
            ([t.expired], 403, _compact(forbidden_body("ValidityWindow")), []),
        ]:
            expected = (status, list(problem_headers(body, *extra)), body)
            assert send("GET", "/blocking", authorization) == expected
            for name in ["given", "gate", "setting"]:
                assert send("GET", f"/{name}", authorization) == expected, (name, authorization)
        expected = send("GET", "/broken-blocking", [t.reader])
        assert (expected[0], dict(expected[1])["Retry-After"]) == (503, "5")
        assert send("GET", "/broken", [t.reader]) == expected


@pytest.mark.usefixtures("django_settings")
def test_a_sync_view_refuses_an_async_verifier() -> None:
    ring, _ = memory_tokens()

    def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({})

    for guard in [AsyncVerifier.of(Verifier(ring)), Gate(AsyncVerifier.of(Verifier(ring)))]:
        decorate = require(_read_42, verifier=guard)
        with pytest.raises(
            TypeError,
            match=r"view is not an async def view: it needs a blocking Verifier, "
            r"not an AsyncVerifier",
        ):
            decorate(view)

    # Through the setting: refused at the first request, under WSGI or ASGI.
    async def through_asgi() -> Any:
        return await AsyncClient().get("/sync")

    refused = r"is an AsyncVerifier, but a sync view decides synchronously"
    with _serving(AsyncVerifier.of(Verifier(ring)), {"sync": require(_read_42)(view)}):
        with pytest.raises(ImproperlyConfigured, match=refused):
            Client().get("/sync")
        with pytest.raises(ImproperlyConfigured, match=refused):
            asyncio.run(through_asgi())


@pytest.mark.usefixtures("django_settings")
def test_every_outcome_through_the_middleware_in_async_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring, t = memory_tokens()
    working, broken = verifiers(ring, t, tmp_path)
    asynchronous = AsyncVerifier.of(working)
    check_outcomes(
        _sender(asynchronous, asgi=True),
        _sender(AsyncVerifier.of(broken), asgi=True),
        t,
        caplog,
    )
    # The blocking verifier's answers under WSGI, exactly; and its own in async mode.
    for method, path_, authorization in [
        ("GET", "/apps/42", [t.reader]),
        ("GET", "/apps/42", []),
        ("GET", "/apps/42", [t.forged]),
        ("GET", "/apps/42", [t.revoked]),
        ("GET", "/apps/42", [t.reader, t.reader]),
        ("DELETE", "/apps/42", [t.reader]),
        ("GET", "/health", []),
    ]:
        expected = _sender(working)(method, path_, authorization)
        assert _sender(asynchronous, asgi=True)(method, path_, authorization) == expected
        assert _sender(working, asgi=True)(method, path_, authorization) == expected
    for guard in [broken, AsyncVerifier.of(broken)]:
        status, headers, _ = _sender(guard, asgi=True)("GET", "/apps/42", [t.reader])
        assert (status, dict(headers)["Retry-After"]) == (503, "5")


@pytest.mark.usefixtures("django_settings")
def test_the_middleware_in_async_mode_decides_on_the_loop_unless_stores_may_block(
    tmp_path: Path,
) -> None:
    # Where ASGIMiddleware decides: on the event loop's thread (asyncio.run's,
    # this one), except a blocking verifier whose stores are not in memory.
    ring, t = memory_tokens()
    threads: list[int] = []

    def record(guard: Verifier | AsyncVerifier) -> Gate:
        return Gate(guard, log=lambda _: threads.append(threading.get_ident()))

    loop = threading.get_ident()
    for guard in [Verifier(ring), AsyncVerifier.of(Verifier(ring))]:
        assert _sender(record(guard), asgi=True)("GET", "/apps/42", [t.reader])[0] == 200
        assert threads.pop() == loop, guard
    with (
        SQLiteKeyring(tmp_path / "keys.db") as keyring,
        SQLiteRevocationStore(tmp_path / "revocations.db") as store,
    ):
        keyring.generate()
        reader = mint(keyring.current()).reader
        blocking = Verifier(keyring, revocations=store)
        assert _sender(record(blocking), asgi=True)("GET", "/apps/42", [reader])[0] == 200
        assert threads.pop() != loop


def sync_only(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """A middleware that Django runs synchronously only (it declares no async capability)."""

    def middleware(request: HttpRequest) -> Any:
        return get_response(request)

    return middleware


@pytest.mark.usefixtures("django_settings")
def test_the_middleware_in_sync_mode_refuses_an_async_verifier() -> None:
    ring, t = memory_tokens()
    refused = (
        r"is an AsyncVerifier, but the middleware in a synchronous chain "
        r"\(WSGI, or a sync-only middleware after it\) decides synchronously"
    )
    with pytest.raises(ImproperlyConfigured, match=refused):
        _sender(AsyncVerifier.of(Verifier(ring)))("GET", "/apps/42", [t.reader])
    # Under ASGI, a sync-only middleware after it makes Django build it
    # synchronously; a blocking verifier still serves there.
    with override_settings(MIDDLEWARE=[*settings.MIDDLEWARE, f"{__name__}.sync_only"]):
        with pytest.raises(ImproperlyConfigured, match=refused):
            _sender(AsyncVerifier.of(Verifier(ring)), asgi=True)("GET", "/apps/42", [t.reader])
        assert _sender(Verifier(ring), asgi=True)("GET", "/apps/42", [t.reader])[0] == 200
