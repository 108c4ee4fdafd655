"""The FastAPI adapter: examples/fastapi_app.py through Starlette's test client, under uvicorn.

No "from __future__ import annotations": FastAPI reads the annotations of
routes defined inside functions.
"""

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from test_web_servers import serve
from web_app import AT, ORG
from web_framework_apps import example
from web_framework_checks import Send, check_outcomes, check_over_sockets, verifiers
from web_helpers import UNAUTHENTICATED_BODY, memory_tokens

from macaroons_authz import Action, AsyncVerifier, FlyAccess, SQLiteRevocationStore, Verifier
from macaroons_authz.web import Authorized, DecisionRecord, Gate
from macaroons_authz.web.fastapi import install, problem_response, require

fastapi_app = example("fastapi_app")


def _sender(app: FastAPI) -> Send:
    client = TestClient(app)

    def send(
        method: str, path: str, authorization: Sequence[str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [("Authorization", value) for value in authorization]
        response = client.request(method, path, headers=headers)
        return response.status_code, list(response.headers.multi_items()), response.content

    return send


@pytest.mark.parametrize("face", ["blocking", "async"])
def test_every_outcome_through_the_test_client(
    face: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ring, tokens = memory_tokens()
    working: Verifier | AsyncVerifier
    broken: Verifier | AsyncVerifier
    working, broken = verifiers(ring, tokens, tmp_path)
    if face == "async":
        working, broken = AsyncVerifier.of(working), AsyncVerifier.of(broken)
    send = _sender(fastapi_app.create_app(working, clock=lambda: AT))
    check_outcomes(send, _sender(fastapi_app.create_app(broken, clock=lambda: AT)), tokens, caplog)
    # Starlette keeps repeated headers apart: two are refused.
    status, _, body = send("GET", "/apps/42", [tokens.reader, tokens.reader])
    assert (status, body.startswith(b'{"type":"about:blank","title":"Unauthorized"')) == (401, True)


def test_the_openapi_schema_shows_an_authorization_header_scheme() -> None:
    ring, _ = memory_tokens()
    schema = fastapi_app.create_app(Verifier(ring)).openapi()
    assert schema["components"]["securitySchemes"] == {
        "FlyV1": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A macaroon token: `FlyV1 fm2_…` (or `Bearer fm2_…`).",
        }
    }
    paths = schema["paths"]
    assert paths["/apps/{app_id}"]["get"]["security"] == [{"FlyV1": []}]
    assert paths["/apps/{app_id}"]["delete"]["security"] == [{"FlyV1": []}]
    assert "security" not in paths["/health"]["get"]
    # The scheme only documents the header: it is no parameter of the route.
    parameters = paths["/apps/{app_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["app_id"]


def _app(guard: Verifier | Gate, threads: list[int], *, installed: bool = True) -> FastAPI:
    """A route that shows what the dependency hands it, and on which thread it runs."""
    app = FastAPI()
    if installed:
        install(app)

    def read(request: Request) -> FlyAccess:
        return FlyAccess(
            org_id=ORG, app_id=request.path_params["app_id"], action=Action.READ, at=AT
        )

    @app.get("/apps/{app_id:int}")
    async def read_app(
        request: Request, authorized: Annotated[Authorized | None, Depends(require(guard, read))]
    ) -> dict[str, Any]:
        threads.append(threading.get_ident())
        assert authorized is not None
        assert request.state.macaroons_authz is authorized
        return {"token_id": authorized.token_id}

    @app.get("/public", dependencies=[Depends(require(guard, lambda request: None))])
    async def public(request: Request) -> dict[str, Any]:
        return {"result": request.state.macaroons_authz}

    return app


def test_the_result_is_the_dependency_value_and_in_request_state() -> None:
    ring, t = memory_tokens()
    client = TestClient(_app(Verifier(ring), []))
    response = client.get("/apps/42", headers={"Authorization": t.reader})
    assert (response.status_code, response.json()) == (
        200,
        {"token_id": str(t.tokens[0].nonce.uuid)},
    )
    assert client.get("/public").json() == {"result": None}


def test_without_install_the_status_and_headers_are_still_the_denials() -> None:
    ring, t = memory_tokens()
    client = TestClient(_app(Verifier(ring), [], installed=False))
    response = client.get("/apps/42", headers={"Authorization": t.forged})
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, "FlyV1")
    assert response.json() == {"detail": "Unauthorized"}  # FastAPI's own body
    response = client.get("/apps/43", headers={"Authorization": t.reader})
    assert (response.status_code, response.json()) == (403, {"detail": "Forbidden"})
    assert UNAUTHENTICATED_BODY["status"] == 401


def test_stores_off_memory_are_read_off_the_event_loop(tmp_path: Path) -> None:
    ring, t = memory_tokens()
    for store, offloaded in [(None, False), (SQLiteRevocationStore(tmp_path / "r.db"), True)]:
        deciders: list[int] = []

        def log(record: DecisionRecord, deciders: list[int] = deciders) -> None:
            deciders.append(threading.get_ident())

        loop_threads: list[int] = []
        gate = Gate(Verifier(ring, revocations=store), log=log)
        client = TestClient(_app(gate, loop_threads))
        assert client.get("/apps/42", headers={"Authorization": t.reader}).status_code == 200
        assert len(deciders) == len(loop_threads) == 1
        assert (deciders[0] != loop_threads[0]) is offloaded
    # offload= overrides the choice.
    deciders.clear()
    app = FastAPI()
    install(app)
    loop_threads.clear()

    @app.get("/x")
    async def x(
        _: Annotated[Any, Depends(require(gate, lambda r: _read_42(), offload=False))],
    ) -> int:
        loop_threads.append(threading.get_ident())
        return 1

    assert TestClient(app).get("/x", headers={"Authorization": t.reader}).status_code == 200
    assert deciders == loop_threads
    # An async verifier awaits its stores: there is no thread to hand off to.
    with pytest.raises(ValueError, match="nothing to offload"):
        require(AsyncVerifier.of(Verifier(ring)), lambda r: _read_42(), offload=True)


def _read_42() -> FlyAccess:
    return FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT)


def test_under_uvicorn(tmp_path: Path) -> None:
    with serve("uvicorn", tmp_path, "web_framework_apps:fastapi_app") as server:
        check_over_sockets(server)


def test_the_handler_answers_refusals_only() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(ValueError, match="not a refusal"):
        asyncio.run(problem_response(request, ValueError("not a refusal")))
