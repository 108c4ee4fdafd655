"""The discharge service's own user page, and its ASGI form, in process.

The page (``DischargeService(approve=...)``) is driven here request by
request through the WSGI and ASGI interfaces: what it shows, the
cross-site request forgery defences (each refusal leaves the flow pending,
and a proper approval still works after it), the application's callback,
and the same answers from both forms. The whole flow in a real browser is
in test_discharge_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest

from macaroons_authz import (
    Approve,
    ConfineOrganization,
    Defer,
    DischargeRequest,
    DischargeService,
    FlyioIdentity,
    Macaroon,
    PendingFlow,
    Refuse,
    UnauthorizedError,
    discharge_request,
    new_encryption_key,
)
from macaroons_authz.thirdparty import INIT_PATH, USER_PATH
from macaroons_authz.thirdparty.asgi_service import FLOW_STATE_KEY, ASGIDischargeService

NOW = 1_767_225_600
LOCATION = "http://auth.test"
ORIGIN = LOCATION
ADA = FlyioIdentity(7, organization_ids=[1234])

Reply = tuple[int, list[tuple[str, str]], bytes]


def wsgi(
    app: Any, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Reply:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": "192.0.2.7",
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = int(status.split()[0]), hdrs

    data = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], data


def asgi(
    app: Any, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Reply:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": raw,
             "client": ("192.0.2.7", 5555)}  # fmt: skip
    # The body in two pieces, as a server may deliver it.
    pieces = [body[:5], body[5:]]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, end = sent
    hdrs = [(k.decode(), v.decode()) for k, v in start["headers"]]
    return start["status"], hdrs, end["body"]


def header(headers: list[tuple[str, str]], name: str) -> str:
    (value,) = [v for k, v in headers if k.lower() == name.lower()]
    return value


class Harness:
    def __init__(self, *, location: str = LOCATION, **kw: Any) -> None:
        self.tp_key = new_encryption_key()
        self.flows: list[PendingFlow] = []
        self.calls: list[tuple[PendingFlow, Mapping[str, str]]] = []
        self.decide: Callable[[], Approve | DischargeRequest | Refuse] = lambda: discharge_request(
            ADA, now=NOW
        )
        self.location = location
        self.service = DischargeService(
            location, self.tp_key, lambda r: Defer(interactive=True), on_deferred=self.flows.append,
            approve=self.approve, clock=lambda: NOW, **kw,
        )  # fmt: skip

    def approve(self, flow: PendingFlow, headers: Mapping[str, str]) -> Any:
        self.calls.append((flow, headers))
        return self.decide()

    def start(self, call: Callable[..., Reply] = wsgi, app: Any = None) -> tuple[str, str]:
        """A new user flow: its user path and poll path."""
        token = Macaroon.new(b"kid", "https://api.example", bytes(32))
        token.add_3p(self.tp_key, self.location, ConfineOrganization(1234))
        ((ticket,),) = token.third_party_tickets().values()
        body = json.dumps({"ticket": base64.b64encode(ticket).decode()}).encode()
        status, _, data = call(
            app or self.service, "POST", INIT_PATH, body, {"Content-Type": "application/json"}
        )
        assert status == 201, data
        urls = json.loads(data)["user_interactive"]
        return (
            urllib.parse.urlsplit(urls["user_url"]).path,
            urllib.parse.urlsplit(urls["poll_url"]).path,
        )

    def show(self, path: str, call: Callable[..., Reply] = wsgi, app: Any = None) -> Any:
        """GET the page: (status, headers, html, nonce, form token)."""
        status, headers, data = call(app or self.service, "GET", path)
        html = data.decode()
        nonce = re.match(r"macaroons_authz_flow=([0-9a-f]{32});", header(headers, "Set-Cookie"))
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
        assert nonce and token, html
        return status, headers, html, nonce[1], token[1]

    def post(
        self,
        path: str,
        form: dict[str, str],
        *,
        nonce: str | None,
        extra: dict[str, str] | None = None,
        call: Callable[..., Reply] = wsgi,
        app: Any = None,
    ) -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN}
        if nonce is not None:
            headers["Cookie"] = f"session=ada; macaroons_authz_flow={nonce}"
        headers.update(extra or {})
        body = urllib.parse.urlencode(form).encode()
        status, _, data = call(app or self.service, "POST", path, body, headers)
        return status, data.decode()

    def poll(self, path: str) -> tuple[int, Any]:
        status, _, data = wsgi(self.service, "GET", path)
        return status, json.loads(data)


def title(html: str) -> str:
    found = re.search(r"<title>(.*)</title>", html)
    assert found, html
    return found[1]


# -- the page ----------------------------------------------------------------------------


def test_the_page_shows_the_request_and_a_protected_form() -> None:
    h = Harness()
    user, _ = h.start()
    status, headers, html, nonce, token = h.show(user)
    assert status == 200 and title(html) == "Approve access"
    assert "Conditions it must meet: ConfineOrganization." in html
    assert "A program at 192.0.2.7 asks http://auth.test to vouch for you." in html
    assert '<button type="submit" name="decision" value="approve">Approve</button>' in html
    cookie = header(headers, "Set-Cookie")
    assert cookie == (
        f"macaroons_authz_flow={nonce}; Path={user}; Max-Age=600; HttpOnly; SameSite=Strict"
    )
    assert dict(headers) | {"Set-Cookie": "", "Content-Length": ""} == {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Length": "",
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "Set-Cookie": "",
    }
    # No secret in the page: the form posts to the page's own URL.
    secret = user.rsplit("/", 1)[1]
    assert secret not in html and h.tp_key.hex() not in html
    # A browser that has the cookie keeps its nonce.
    _, headers, _ = wsgi(
        h.service, "GET", user, headers={"Cookie": f"macaroons_authz_flow={nonce}"}
    )
    assert header(headers, "Set-Cookie").startswith(f"macaroons_authz_flow={nonce};")
    assert token != h.show(user)[4]  # a new browser, a new nonce, a new token


def test_the_cookie_is_secure_on_https() -> None:
    h = Harness(location="https://auth.test")
    user, _ = h.start()
    assert header(h.show(user)[1], "Set-Cookie").endswith("; SameSite=Strict; Secure")


def test_what_the_page_shows_is_escaped() -> None:
    h = Harness()
    token = Macaroon.new(b"kid", "https://api.example", bytes(32))
    token.add_3p(h.tp_key, LOCATION)
    ((ticket,),) = token.third_party_tickets().values()
    body = json.dumps({"ticket": base64.b64encode(ticket).decode()}).encode()
    environ_addr = "<script>alert(1)</script>"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": INIT_PATH,
        "REMOTE_ADDR": environ_addr,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    data = b"".join(h.service(environ, lambda status, headers, exc_info=None: None))
    user = urllib.parse.urlsplit(json.loads(data)["user_interactive"]["user_url"]).path
    html = h.show(user)[2]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_approve_finishes_the_flow_with_the_callbacks_decision() -> None:
    h = Harness()
    user, poll = h.start()
    assert h.poll(poll)[0] == 202
    _, _, _, nonce, token = h.show(user)
    status, html = h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)
    assert (status, title(html)) == (200, "Approved")
    (flow, headers), = h.calls  # fmt: skip
    assert flow.user_url.endswith(user) and flow.request.remote_addr == "192.0.2.7"
    assert headers["cookie"] == f"session=ada; macaroons_authz_flow={nonce}"
    status, doc = h.poll(poll)
    assert status == 200 and doc["discharge"].startswith("fm2_")
    # The flow is over: the page is gone.
    status, _, data = wsgi(h.service, "GET", user)
    assert (status, title(data.decode())) == (404, "Link expired")


def test_deny_refuses_the_flow() -> None:
    h = Harness()
    user, poll = h.start()
    _, _, _, nonce, token = h.show(user)
    status, html = h.post(user, {"csrf": token, "decision": "deny"}, nonce=nonce)
    assert (status, title(html)) == (200, "Denied") and h.calls == []
    assert h.poll(poll) == (200, {"error": "the user denied the request"})


FORGERIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("no cookie", {"nonce": None}, 403, "This form expired"),
    ("another browser's nonce", {"nonce": "ab" * 16}, 403, "This form expired"),
    ("a malformed nonce", {"nonce": "x"}, 403, "This form expired"),
    ("no token", {"form": {"decision": "approve"}}, 403, "This form expired"),
    ("another site", {"extra": {"Origin": "https://evil.test"}}, 403, "own page"),
    ("an opaque origin", {"extra": {"Origin": "null"}}, 403, "own page"),
    ("cross-site fetch", {"extra": {"Sec-Fetch-Site": "cross-site"}}, 403, "own page"),
    ("same-site fetch", {"extra": {"Sec-Fetch-Site": "same-site"}}, 403, "own page"),
    ("JSON", {"extra": {"Content-Type": "application/json"}}, 415, "web form"),
    ("an unknown decision", {"form": {"csrf": "TOKEN", "decision": "maybe"}}, 400, "malformed"),
    (
        "too large",
        {"form": {"csrf": "TOKEN", "decision": "approve", "pad": "x" * 5000}},
        413,
        "larger",
    ),
]


@pytest.mark.parametrize(("case", "change", "status", "message"), FORGERIES)
def test_a_post_not_from_the_page_is_refused_and_the_flow_stays_pending(
    case: str, change: dict[str, Any], status: int, message: str
) -> None:
    h = Harness()
    user, poll = h.start()
    _, _, _, nonce, token = h.show(user)
    form = change.get("form", {"csrf": "TOKEN", "decision": "approve"})
    form = {k: token if v == "TOKEN" else v for k, v in form.items()}
    got, html = h.post(user, form, nonce=change.get("nonce", nonce), extra=change.get("extra"))
    assert got == status and message in html, html
    assert h.calls == [] and h.poll(poll)[0] == 202
    # The page, properly used, still approves.
    assert h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)[0] == 200
    assert h.poll(poll)[0] == 200


def test_a_token_of_another_flow_does_not_approve_this_one() -> None:
    h = Harness()
    mine, mine_poll = h.start()
    theirs, _ = h.start()
    _, _, _, nonce, token = h.show(theirs)
    status, html = h.post(mine, {"csrf": token, "decision": "approve"}, nonce=nonce)
    assert (status, "This form expired" in html) == (403, True)
    assert h.poll(mine_poll)[0] == 202


def test_a_refusing_callback_leaves_the_flow_pending() -> None:
    h = Harness()
    user, poll = h.start()
    _, _, _, nonce, token = h.show(user)

    def refuse() -> Approve:
        raise UnauthorizedError("sign in <first>")

    h.decide = refuse
    status, html = h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)
    assert (status, title(html)) == (403, "Not approved")
    assert "this account may not" in html and "sign in" not in html
    # A DischargeRequest that does not meet the ticket's caveats: the same.
    h.decide = lambda: discharge_request(FlyioIdentity(8, organization_ids=[9]), now=NOW)
    assert h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)[0] == 403
    assert h.poll(poll)[0] == 202
    h.decide = lambda: Approve()
    assert h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)[0] == 200


def test_refusal_details_show_the_reason_escaped() -> None:
    h = Harness(refusal_details=True)
    user, _ = h.start()
    _, _, _, nonce, token = h.show(user)

    def refuse() -> Approve:
        raise UnauthorizedError("sign in <first>")

    h.decide = refuse
    html = h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)[1]
    assert "Not approved: sign in &lt;first&gt;." in html


@pytest.mark.parametrize("broken", ["raises", "returns junk"])
def test_a_broken_callback_is_a_500_page(broken: str, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    user, poll = h.start()
    _, _, _, nonce, token = h.show(user)

    def crash() -> Approve:
        raise RuntimeError("secret internals")

    h.decide = crash if broken == "raises" else (lambda: "yes")  # type: ignore[assignment,return-value]
    status, html = h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce)
    assert (status, title(html)) == (500, "Something went wrong")
    assert "secret internals" not in html and h.poll(poll)[0] == 202


def test_other_methods_and_unknown_flows() -> None:
    h = Harness()
    user, _ = h.start()
    status, headers, data = wsgi(h.service, "PUT", user)
    assert (status, header(headers, "Allow")) == (405, "GET, POST")
    for path in (USER_PATH + "0" * 32, USER_PATH + "nope", user + "x"):
        status, headers, data = wsgi(h.service, "GET", path)
        assert (status, title(data.decode())) == (404, "Link expired")
        assert header(headers, "Content-Type") == "text/html; charset=utf-8"


def test_approve_and_a_user_page_are_exclusive() -> None:
    def page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return []

    for other in ({"user_page": page}, {"user_url": lambda secret: "https://x.test/" + secret}):
        with pytest.raises(ValueError, match="not both"):
            DischargeService(
                LOCATION, new_encryption_key(), lambda r: Defer(), approve=lambda f, h: Approve(),
                **other,  # type: ignore[arg-type]
            )  # fmt: skip


# -- the ASGI form ---------------------------------------------------------------------


def test_the_asgi_form_serves_the_same_flow() -> None:
    h = Harness()
    app = ASGIDischargeService(h.service)
    user, poll = h.start(asgi, app)
    status, _, data = asgi(app, "GET", poll)
    assert (status, json.loads(data)) == (202, {"error": "not ready"})
    _, _, html, nonce, token = h.show(user, asgi, app)
    assert "A program at 192.0.2.7" in html
    forged = h.post(user, {"csrf": "0" * 64, "decision": "approve"}, nonce=nonce, call=asgi,
                    app=app)  # fmt: skip
    assert forged[0] == 403
    status, html = h.post(user, {"csrf": token, "decision": "approve"}, nonce=nonce, call=asgi,
                          app=app)  # fmt: skip
    assert (status, title(html)) == (200, "Approved")
    status, _, data = asgi(app, "GET", poll)
    assert status == 200 and json.loads(data)["discharge"].startswith("fm2_")
    assert asgi(app, "GET", poll)[::2] == (404, b'{"error":"not found"}\n')


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("GET", INIT_PATH, b"", {}),
        ("POST", INIT_PATH, b"{not json", {"Content-Type": "application/json"}),
        ("POST", INIT_PATH, b'{"ticket": "AAAA"}', {"Content-Type": "text/plain"}),
        ("POST", INIT_PATH, b"x" * 70_000, {"Content-Type": "application/json"}),
        ("POST", INIT_PATH, b'{"ticket": "AAAA"}', {"Content-Type": "application/json"}),
        ("GET", "/elsewhere", b"", {}),
        ("POST", INIT_PATH + "/poll/" + "0" * 32, b"{}", {}),
    ],
)
def test_both_forms_answer_alike(
    method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    h = Harness()
    status, got, data = asgi(ASGIDischargeService(h.service), method, path, body, headers)
    expected = wsgi(h.service, method, path, body, headers)
    assert (status, got, data) == (
        expected[0],
        [(k.lower(), v) for k, v in expected[1]],
        expected[2],
    )


def test_the_asgi_form_hands_user_urls_to_an_asgi_page() -> None:
    seen: list[PendingFlow] = []

    async def page(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["state"][FLOW_STATE_KEY])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    tp_key = new_encryption_key()
    service = DischargeService(LOCATION, tp_key, lambda r: Defer(interactive=True))
    app = ASGIDischargeService(service, user_page=page)
    h = Harness()
    h.tp_key, h.service = tp_key, service
    user, _ = h.start(asgi, app)
    assert asgi(app, "GET", user) == (200, [], b"hello")
    assert seen[0].user_url == LOCATION + user and seen[0].request.headers == {}

    def wsgi_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return []

    with pytest.raises(ValueError, match="ASGI user_page"):
        ASGIDischargeService(
            DischargeService(LOCATION, tp_key, lambda r: Defer(), user_page=wsgi_page)
        )


def test_the_asgi_form_speaks_lifespan_and_closes_websockets() -> None:
    app = ASGIDischargeService(DischargeService(LOCATION, new_encryption_key(), lambda r: Defer()))
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Any] = []

    async def receive() -> Any:
        return inbox.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    asyncio.run(app({"type": "websocket", "path": "/", "headers": []}, receive, send))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
        "websocket.close",
    ]
