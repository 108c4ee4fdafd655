"""Protect a Django API with FlyV1 tokens, using :mod:`macaroons_authz.web.django`.

A whole Django project in one file. :class:`MacaroonMiddleware` decides
every request with the ``ACCESS`` function named in the settings (here: read
or delete an app); a view it leaves alone can protect itself with the
``@require(access)`` decorator (here: starting a Machine). Refused requests
get a 401, 403 or 503 ``application/problem+json`` response and the view
does not run; allowed ones find the verified result in
``request.macaroons_authz``.

Run it: ``python examples/django_app.py``. It sends requests with several
tokens through Django's test client, prints what happened and exits 0 if
every answer was the expected one. A real project puts :func:`configure`'s
settings in its settings module.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

from macaroons_authz import (
    Action,
    FlyAccess,
    MemoryKeyring,
    MemoryRevocationStore,
    Verifier,
    app_token,
    kid_for_key,
    new_signing_key,
    org_token,
    restrict,
    to_header,
)
from macaroons_authz.web import Authorized, Gate
from macaroons_authz.web.django import require

# A fixed "now" (2026-01-01T00:00:00Z) for the demonstration's tokens and
# requests; a real service passes no clock.
NOW = 1_767_225_600
ORG = 1234
ACTIONS = {"GET": Action.READ, "DELETE": Action.DELETE}


def access(request: HttpRequest) -> FlyAccess | None:
    """The middleware's ACCESS: what a request on one app needs; ``None`` elsewhere."""
    match = request.resolver_match
    if match is None or match.url_name != "app":
        return None  # the health check, and views that protect themselves
    action = ACTIONS.get(request.method or "", Action.WRITE)
    return FlyAccess(org_id=ORG, app_id=match.kwargs["app_id"], action=action, at=settings.CLOCK())


def start_access(request: HttpRequest) -> FlyAccess:
    """What starting a Machine needs: control of that Machine of that app."""
    kwargs = request.resolver_match.kwargs
    return FlyAccess(
        org_id=ORG,
        app_id=kwargs["app_id"],
        machine=kwargs["machine"],
        action=Action.CONTROL,
        at=settings.CLOCK(),
    )


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def app_detail(request: HttpRequest, app_id: int) -> JsonResponse:
    authorized: Authorized = request.macaroons_authz
    return JsonResponse(
        {
            "app": app_id,
            "method": request.method,
            "token_id": authorized.token_id,
            "caveats": len(authorized.caveats),
        }
    )


@require(start_access)
def start_machine(request: HttpRequest, app_id: int, machine: str) -> JsonResponse:
    authorized: Authorized = request.macaroons_authz
    return JsonResponse({"app": app_id, "machine": machine, "token_id": authorized.token_id})


urlpatterns = [
    path("health", health),
    path("apps/<int:app_id>", app_detail, name="app"),
    path("apps/<int:app_id>/machines/<slug:machine>/start", start_machine),
]


def configure(verifier: Verifier | Gate, clock: Callable[[], float] = time.time) -> None:
    """Django's settings for this project, then ``django.setup()``."""
    settings.configure(
        ROOT_URLCONF=__name__,
        # Django 4.2 wants one to log an error; nothing here signs with it.
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        MIDDLEWARE=["macaroons_authz.web.django.MacaroonMiddleware"],
        # Objects or dotted paths ("myservice.auth.verifier").
        MACAROONS_AUTHZ={"VERIFIER": verifier, "ACCESS": access},
        CLOCK=clock,  # the time accesses are judged at (this project's own setting)
    )
    django.setup()


def main() -> int:
    from django.test import Client

    keyring = MemoryKeyring()
    keyring.generate()
    key = keyring.current()
    revocations = MemoryRevocationStore()
    configure(Verifier(keyring, revocations=revocations), clock=lambda: NOW)

    reader = to_header(app_token(key, ORG, [42], actions=Action.READ, expires_in=3600, now=NOW))
    admin = org_token(key, ORG, expires_in=3600, now=NOW)
    app_admin = to_header(restrict(admin, apps=[42]))
    leaked = app_token(key, ORG, [42], expires_in=3600, now=NOW)
    revocations.revoke(str(leaked.nonce.uuid))
    forged = to_header(org_token(new_signing_key(), ORG, kid=kid_for_key(key.key), now=NOW))
    start = "/apps/42/machines/e784079b449483/start"
    cases: list[tuple[str, str, str, str | None, int]] = [
        ("no token", "GET", "/apps/42", None, 401),
        ("forged token", "GET", "/apps/42", forged, 401),
        ("revoked token", "GET", "/apps/42", to_header(leaked), 401),
        ("read-only token, read", "GET", "/apps/42", reader, 200),
        ("read-only token, delete", "DELETE", "/apps/42", reader, 403),
        ("read-only token, other app", "GET", "/apps/43", reader, 403),
        ("app admin token, delete", "DELETE", "/apps/42", app_admin, 200),
        ("read-only token, start", "POST", start, reader, 403),
        ("app admin token, start", "POST", start, app_admin, 200),
        ("no token, start", "POST", start, None, 401),
        ("health check, no token", "GET", "/health", None, 200),
    ]
    client = Client()
    failures = 0
    for label, method, url, header, expected in cases:
        headers = {} if header is None else {"Authorization": header}
        response = client.generic(method, url, headers=headers)
        body: dict[str, Any] = response.json()
        failed = body.get("failed_caveats")
        said = body.get("title", "ok") + (f": {', '.join(failed)}" if failed else "")
        mark = "" if response.status_code == expected else f"   <-- expected {expected}"
        failures += response.status_code != expected
        print(f"{label:<28} {method:<6} -> {response.status_code} {said}{mark}")
    print("all answers as expected" if not failures else f"{failures} unexpected answer(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
