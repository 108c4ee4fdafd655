"""The Flask adapter: examples/flask_app.py through Flask's test client, and under gunicorn."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import flask
import pytest
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
from web_helpers import memory_tokens

from macaroons_authz import Action, AsyncVerifier, FlyAccess, Verifier
from macaroons_authz.web import Authorized, DecisionRecord, Gate
from macaroons_authz.web._frameworks import gate_for
from macaroons_authz.web.flask import G_ATTRIBUTE, require

flask_app = example("flask_app")


def _sender(app: flask.Flask) -> Send:
    client = app.test_client()

    def send(
        method: str, path: str, authorization: Sequence[str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [("Authorization", value) for value in authorization]
        response = client.open(path, method=method, headers=headers)
        return response.status_code, list(response.headers.items()), response.get_data()

    return send


def test_every_outcome_through_the_test_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring, tokens = memory_tokens()
    working, broken = verifiers(ring, tokens, tmp_path)
    check_outcomes(
        _sender(flask_app.create_app(working, clock=lambda: AT)),
        _sender(flask_app.create_app(broken, clock=lambda: AT)),
        tokens,
        caplog,
    )


def _app(guard: Verifier | Gate) -> flask.Flask:
    """Views that show what the decorator hands them."""
    app = flask.Flask(__name__)

    def read(request: flask.Request) -> FlyAccess:
        return FlyAccess(
            org_id=ORG, app_id=(request.view_args or {})["app_id"], action=Action.READ, at=AT
        )

    @app.get("/sync/<int:app_id>")
    @require(guard, read)
    def sync_view(app_id: int) -> dict[str, object]:
        result: Authorized = getattr(flask.g, G_ATTRIBUTE)
        return {"app": app_id, "token_id": result.token_id}

    @app.get("/async/<int:app_id>")
    @require(guard, read)
    async def async_view(app_id: int) -> dict[str, object]:
        return {"app": app_id, "token_id": flask.g.macaroons_authz.token_id}

    @app.get("/public")
    @require(guard, lambda request: None)
    def public() -> dict[str, object]:
        return {"result": flask.g.macaroons_authz}

    return app


def test_sync_and_async_views_get_the_result_in_g() -> None:
    ring, t = memory_tokens()
    client = _app(Verifier(ring)).test_client()
    token_id = str(t.tokens[0].nonce.uuid)
    for kind in ("sync", "async"):
        response = client.get(f"/{kind}/42", headers={"Authorization": t.reader})
        assert (response.status_code, response.get_json()) == (
            200,
            {"app": 42, "token_id": token_id},
        )
        assert client.get(f"/{kind}/43", headers={"Authorization": t.reader}).status_code == 403
        assert client.get(f"/{kind}/42").status_code == 401
    # An access of None: no token needed, and g says so.
    assert client.get("/public").get_json() == {"result": None}


def test_a_gate_of_ones_own_chooses_log_and_retry_after(tmp_path: Path) -> None:
    ring, t = memory_tokens()
    records: list[DecisionRecord] = []
    _, broken = verifiers(ring, t, tmp_path)
    client = _app(Gate(broken, log=records.append, retry_after=17)).test_client()
    response = client.get("/sync/42", headers={"Authorization": t.reader})
    assert (response.status_code, response.headers["Retry-After"]) == (503, "17")
    assert [(r.allowed, r.status) for r in records] == [(False, 503)]


def test_require_takes_a_blocking_verifier_or_a_gate_of_one() -> None:
    ring, _ = memory_tokens()
    verifier = Verifier(ring)
    own = Gate(verifier)
    assert gate_for(own) is own
    assert gate_for(verifier).verifier is verifier
    with pytest.raises(TypeError, match="expected a Verifier or a Gate, got str"):
        require("FlyV1 fm2_", lambda request: None)  # type: ignore[arg-type]
    # Flask decides synchronously: an async verifier would never be awaited.
    for async_guard in (AsyncVerifier.of(verifier), Gate(AsyncVerifier.of(verifier))):
        with pytest.raises(TypeError, match="needs a Verifier, not an AsyncVerifier"):
            require(async_guard, lambda request: None)


def test_importing_the_library_imports_no_framework() -> None:
    code = (
        "import sys, macaroons_authz, macaroons_authz.web\n"
        "names = ('flask', 'werkzeug', 'fastapi', 'starlette', 'pydantic', 'django', 'httpx')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_under_gunicorn_with_two_workers(tmp_path: Path) -> None:
    with serve("gunicorn", tmp_path, "web_framework_apps:flask_app()") as server:
        check_over_sockets(server)
        check_both_workers_decide(server)
