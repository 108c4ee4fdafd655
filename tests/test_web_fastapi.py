"""The FastAPI adapter: examples/fastapi_app.py through Starlette's test client, under uvicorn.

No "from __future__ import annotations": FastAPI reads the annotations of
routes defined inside functions.
"""

import asyncio
import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import OpenAPI
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from test_web_servers import serve
from web_app import AT, ORG
from web_framework_apps import example
from web_framework_checks import Send, check_outcomes, check_over_sockets, verifiers
from web_helpers import UNAUTHENTICATED_BODY, memory_tokens

from macaroons_authz import Action, AsyncVerifier, FlyAccess, SQLiteRevocationStore, Verifier
from macaroons_authz.web import PROBLEM_JSON, Authorized, DecisionRecord, Gate
from macaroons_authz.web.fastapi import REFUSAL_RESPONSES, install, problem_response, require

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


def _extras(value: object) -> list[str]:
    """The keys of an OpenAPI model, at any depth, that are no field of their model."""
    if isinstance(value, BaseModel):
        found = [f"{type(value).__name__}.{key}" for key in value.model_extra or {}]
        return found + _extras(dict(value))
    if isinstance(value, dict):
        return [key for item in value.values() for key in _extras(item)]
    if isinstance(value, list | tuple):
        return [key for item in value for key in _extras(item)]
    return []


def test_the_openapi_schema_documents_the_refusals() -> None:
    ring, _ = memory_tokens()
    before = copy.deepcopy(REFUSAL_RESPONSES)
    schema = _app(Verifier(ring), []).openapi()
    # FastAPI's own OpenAPI 3.1 model reads the whole document back unchanged,
    # and every key in it is a field it knows (no misspelt member).
    model = OpenAPI.model_validate(schema)
    assert jsonable_encoder(model, by_alias=True, exclude_none=True) == schema
    assert (schema["openapi"][:4], _extras(model)) == ("3.1.", [])
    responses = schema["paths"]["/apps/{app_id}"]["get"]["responses"]
    assert sorted(responses) == ["200", "401", "403", "503"]
    members = ["detail", "status", "title", "type"]
    for status, required in [(401, members), (403, [*members, "failed_caveats"]), (503, members)]:
        documented = responses[str(status)]
        assert documented == REFUSAL_RESPONSES[status]
        assert list(documented["content"]) == [PROBLEM_JSON]
        body = documented["content"][PROBLEM_JSON]["schema"]
        Draft202012Validator.check_schema(body)
        # The gate writes every member always, and no other.
        assert sorted(body["required"]) == sorted(body["properties"]) == sorted(required)
        assert body["additionalProperties"] is False
    assert list(responses["401"]["headers"]) == ["WWW-Authenticate"]
    assert "headers" not in responses["403"]
    assert list(responses["503"]["headers"]) == ["Retry-After"]
    # Only the routes that declare it document the refusals.
    assert sorted(schema["paths"]["/public"]["get"]["responses"]) == ["200"]
    assert before == REFUSAL_RESPONSES  # FastAPI copied, never changed it


def _documented(guard: Verifier, where: str) -> FastAPI:
    """A protected route whose refusals its route, its router or the app documents."""
    app = FastAPI(responses=REFUSAL_RESPONSES if where == "app" else None)
    install(app)
    router = APIRouter(responses=REFUSAL_RESPONSES if where == "router" else None)

    @router.get(
        "/apps/{app_id:int}",
        responses=REFUSAL_RESPONSES if where == "route" else None,
        dependencies=[Depends(require(guard, _read))],
    )
    async def read_app() -> int:
        return 1

    app.include_router(router)
    return app


@pytest.mark.parametrize("where", ["route", "router", "app"])
def test_refusals_are_what_the_openapi_schema_documents(where: str, tmp_path: Path) -> None:
    ring, t = memory_tokens()
    working, broken = verifiers(ring, t, tmp_path)
    app = _documented(working, where)
    documented = app.openapi()["paths"]["/apps/{app_id}"]["get"]["responses"]
    assert sorted(documented) == ["200", "401", "403", "503"]
    client, down = TestClient(app), TestClient(_documented(broken, where))
    refusals = [
        (401, client.get("/apps/42")),
        (401, client.get("/apps/42", headers={"Authorization": t.forged})),
        (403, client.get("/apps/43", headers={"Authorization": t.reader})),
        (403, client.get("/apps/42", headers={"Authorization": t.expired})),
        (503, down.get("/apps/42", headers={"Authorization": t.reader})),
    ]
    validators = {
        status: Draft202012Validator(documented[str(status)]["content"][PROBLEM_JSON]["schema"])
        for status in (401, 403, 503)
    }
    for status, response in refusals:
        assert (response.status_code, response.headers["Content-Type"]) == (status, PROBLEM_JSON)
        body = response.json()
        validators[status].validate(body)
        # Every member the gate writes is required, and no other is allowed.
        assert sorted(validators[status].schema["required"]) == sorted(body)
        assert not validators[status].is_valid({**body, "instance": "/apps/42"})
        # Each status's schema is its own: no other refusal's body fits it.
        assert [s for s, v in validators.items() if v.is_valid(body)] == [status]
        # The headers sent beyond the body's are exactly the documented ones,
        # each with a value its schema allows.
        headers = documented[str(status)].get("headers", {})
        sent = {k.lower() for k in response.headers} - {"content-type", "content-length"}
        assert sent == {name.lower() for name in headers}
        for name, header in headers.items():
            value: object = response.headers[name]
            if header["schema"]["type"] == "integer":
                value = int(response.headers[name])
            Draft202012Validator(header["schema"]).validate(value)


def _app(guard: Verifier | Gate, threads: list[int], *, installed: bool = True) -> FastAPI:
    """A route that shows what the dependency hands it, and on which thread it runs."""
    app = FastAPI()
    if installed:
        install(app)

    @app.get("/apps/{app_id:int}", responses=REFUSAL_RESPONSES)
    async def read_app(
        request: Request, authorized: Annotated[Authorized | None, Depends(require(guard, _read))]
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


def _read(request: Request) -> FlyAccess:
    return FlyAccess(org_id=ORG, app_id=request.path_params["app_id"], action=Action.READ, at=AT)


def _read_42() -> FlyAccess:
    return FlyAccess(org_id=ORG, app_id=42, action=Action.READ, at=AT)


def test_under_uvicorn(tmp_path: Path) -> None:
    with serve("uvicorn", tmp_path, "web_framework_apps:fastapi_app") as server:
        check_over_sockets(server)


def test_the_handler_answers_refusals_only() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(ValueError, match="not a refusal"):
        asyncio.run(problem_response(request, ValueError("not a refusal")))
