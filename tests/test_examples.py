"""The scripts in examples/: each runs to completion and shows what it claims.

Each script is run as a subprocess (in development mode, warnings as errors,
from a scratch directory) and its output is checked. The WSGI middleware is
also exercised directly, in process.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from macaroons_authz import (
    Action,
    FlyAccess,
    MemoryKeyring,
    MemoryRevocationStore,
    StoreError,
    Verifier,
    app_token,
    to_header,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60


def _examples_dir() -> Path:
    if not EXAMPLES.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{EXAMPLES} is missing; under CI the examples must be beside the tests")
        pytest.skip(f"{EXAMPLES} not found: the examples live beside the tests directory")
    return EXAMPLES


def run_example(name: str, tmp_path: Path) -> str:
    script = _examples_dir() / name
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing on stderr: no traceback, no warning, no unclosed resource.
    assert result.stderr == ""
    # Examples show token ids and caveats, never a token (a bearer credential).
    assert "fm2_" not in result.stdout
    return result.stdout


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in _examples_dir().glob("*.py")}
    assert scripts == {
        "ci_token.py",
        "django_app.py",
        "fastapi_app.py",
        "flask_app.py",
        "github_leak_alert.py",
        "google_login_discharge.py",
        "wsgi_middleware.py",
    }


def test_wsgi_middleware_example(tmp_path: Path) -> None:
    out = run_example("wsgi_middleware.py", tmp_path)
    lines = out.splitlines()
    expected = {
        "no token": "GET    -> 401 Unauthorized",
        "not a token": "GET    -> 401 Unauthorized",
        "forged token": "GET    -> 401 Unauthorized",
        "revoked token": "GET    -> 401 Unauthorized",
        "read-only token, read": "GET    -> 200 ok",
        "read-only token, delete": "DELETE -> 403 Forbidden: Action, Apps",
        "read-only token, other app": "GET    -> 403 Forbidden: Apps",
        "expired token": "GET    -> 403 Forbidden: ValidityWindow",
        "app admin token, delete": "DELETE -> 200 ok",
        "app admin token, start Machine": "POST   -> 200 ok",
        "app admin token, other app": "DELETE -> 403 Forbidden: Apps",
        "health check, no token": "GET    -> 200 ok",
    }
    assert lines[: len(expected)] == [f"{k:<32} {v}" for k, v in expected.items()]
    assert lines[-1] == "all answers as expected"


_FRAMEWORK_EXAMPLE_LINES = [
    "no token                     GET    -> 401 Unauthorized",
    "forged token                 GET    -> 401 Unauthorized",
    "revoked token                GET    -> 401 Unauthorized",
    "read-only token, read        GET    -> 200 ok",
    "read-only token, delete      DELETE -> 403 Forbidden: Action, Apps",
    "read-only token, other app   GET    -> 403 Forbidden: Apps",
]


@pytest.mark.parametrize("name", ["flask_app.py", "fastapi_app.py"])
def test_flask_and_fastapi_examples(name: str, tmp_path: Path) -> None:
    # The whole output: every decision the example shows, through the
    # framework's own test client (tests/test_web_*.py run the same apps).
    assert run_example(name, tmp_path).splitlines() == [
        *_FRAMEWORK_EXAMPLE_LINES,
        "admin token, delete          DELETE -> 200 ok",
        "health check, no token       GET    -> 200 ok",
        "all answers as expected",
    ]


def test_django_example(tmp_path: Path) -> None:
    assert run_example("django_app.py", tmp_path).splitlines() == [
        *_FRAMEWORK_EXAMPLE_LINES,
        "app admin token, delete      DELETE -> 200 ok",
        "read-only token, start       POST   -> 403 Forbidden: Action, Apps",
        "app admin token, start       POST   -> 200 ok",
        "no token, start              POST   -> 401 Unauthorized",
        "health check, no token       GET    -> 200 ok",
        "all answers as expected",
    ]


def test_google_login_discharge_example(tmp_path: Path) -> None:
    out = run_example("google_login_discharge.py", tmp_path)
    lines = [line.strip() for line in out.splitlines()]
    assert lines[1].startswith("refused: no matching discharge token for http://127.0.0.1:")
    assert lines[2:] == [
        "2. Ada signs in with her example.com account:",
        "browser: ada@example.com signed in -> 200 signed in; you can close this window",
        "discharged: the API allows the access for Google user 110169484474386276334",
        "3. Mallory signs in with a personal Gmail account:",
        "browser: mallory@gmail.com signed in -> 403 not allowed: "
        "must authenticate with a Google account in the example.com domain",
        "no discharge: tp error (200): "
        "must authenticate with a Google account in the example.com domain",
        "done",
    ]


def test_github_leak_alert_example(tmp_path: Path) -> None:
    out = run_example("github_leak_alert.py", tmp_path)
    lines = [line.strip() for line in out.splitlines()]
    revoked = [line for line in lines if line.startswith("endpoint: revoked token ")]
    assert len(revoked) == 1  # the true positive, once; the forged alert revoked nothing
    assert lines == [
        "before the alert:",
        "leaked token:      accepted",
        "its attenuation:   accepted",
        "a forged alert (signed with another key):",
        "endpoint: alert refused (bad alert signature)",
        "-> 400",
        "GitHub's alert:",
        revoked[0],
        "-> 200: ['true_positive', 'false_positive']",
        "after the alert:",
        "leaked token:      refused (token revoked)",
        "its attenuation:   refused (token revoked)",
        "unrelated token:   accepted",
        "done",
    ]


def test_ci_token_example(tmp_path: Path) -> None:
    # Every input is fixed, so the whole output is.
    assert run_example("ci_token.py", tmp_path).splitlines() == [
        "CI token (210 characters) with caveats:",
        '  {"type":"Organization","body":{"id":1234,"mask":"rwcdC"}}',
        '  {"type":"ValidityWindow","body":{"not_before":1767225600,"not_after":1769817600}}',
        '  {"type":"Apps","body":{"apps":{"42":"rwcdC"}}}',
        '  {"type":"Machines","body":{"machines":{"e784079b449483":"rC"}}}',
        '  {"type":"ValidityWindow","body":{"not_before":1767225600,"not_after":1767229200}}',
        "same token id as the developer's token: True",
        "restart the Machine        allowed",
        "read the Machine           allowed",
        "delete the Machine         denied: unauthorized for d on machine e784079b449483",
        "restart another Machine    denied: unauthorized for machine 148e4d55f36278",
        "read the app itself        denied: unauthorized: bad data for token verification: "
        "must specify machine",
        "a Machine of another app   denied: unauthorized for app 43",
        "restart, two hours later   denied: unauthorized: token expired at 2026-01-01T01:00:00Z",
        "the developer's token still allows deleting another app",
        "all decisions as expected",
    ]


# -- the middleware, in process ---------------------------------------------------


@pytest.fixture(scope="module")
def middleware() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "example_wsgi_middleware", _examples_dir() / "wsgi_middleware.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Response:
    status: str = ""
    headers: dict[str, str]
    body: bytes = b""


def call(app: Any, method: str, path: str, header: str | None) -> Response:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(),
    }
    if header is not None:
        environ["HTTP_AUTHORIZATION"] = header
    response = Response()

    def start_response(
        status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        response.status = status
        response.headers = dict(headers)

    response.body = b"".join(app(environ, start_response))
    return response


def test_middleware_answers_401_403_200(middleware: ModuleType) -> None:
    ring = MemoryKeyring()
    ring.generate()
    now = middleware.NOW
    protected = middleware.protect(Verifier(ring), clock=lambda: now)
    reader = to_header(app_token(ring.current(), 1234, [42], actions=Action.READ))

    missing = call(protected, "GET", "/orgs/1234/apps/42", None)
    assert missing.status == "401 Unauthorized"
    assert missing.headers["WWW-Authenticate"] == "FlyV1"

    other_ring = MemoryKeyring()
    other_ring.generate()
    forged = to_header(app_token(other_ring.current(), 1234, [42]))
    assert call(protected, "GET", "/orgs/1234/apps/42", forged).body == (
        b'{"type":"about:blank","title":"Unauthorized","status":401,'
        b'"detail":"A valid FlyV1 token is required."}'
    )

    denied = call(protected, "DELETE", "/orgs/1234/apps/42", reader)
    assert denied.status == "403 Forbidden"
    assert b'"failed_caveats":["Action","Apps"]' in denied.body

    allowed = call(protected, "GET", "/orgs/1234/apps/42", reader)
    assert allowed.status == "200 OK"
    assert b'"trusted_caveats": 3' in allowed.body

    assert call(protected, "GET", "/nowhere", reader).status == "404 Not Found"


def test_middleware_fails_closed_when_revocations_cannot_be_read(
    middleware: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = MemoryKeyring()
    ring.generate()
    store = MemoryRevocationStore()

    def broken(token_id: str) -> bool:
        raise StoreError("disk on fire")

    monkeypatch.setattr(store, "is_revoked", broken)
    protected = middleware.protect(Verifier(ring, revocations=store))
    header = to_header(app_token(ring.current(), 1234, [42]))
    response = call(protected, "GET", "/orgs/1234/apps/42", header)
    assert response.status == "503 Service Unavailable"
    assert b"disk on fire" not in response.body


def test_middleware_access_for_routes(middleware: ModuleType) -> None:
    assert middleware.access_for("GET", "/orgs/1/apps/2", 5.0) == FlyAccess(
        org_id=1, app_id=2, action=Action.READ, at=5.0
    )
    assert middleware.access_for("POST", "/orgs/1/apps/2/machines/ab12/start", 5.0) == FlyAccess(
        org_id=1, app_id=2, machine="ab12", action=Action.CONTROL, at=5.0
    )
    assert middleware.access_for("PUT", "/orgs/1/apps/2", 5.0) is None
