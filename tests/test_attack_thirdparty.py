"""Attacks on the discharge service, its client and the SSO checks (issue 15, items 5, 6, 8, 11).

Each test reproduces an attack against the real components: a raw socket
server on 127.0.0.1 that drips its answer, WSGI services on a real HTTP
server, id_tokens signed with a throw-away RSA key.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    FLY_PERMISSION_LOCATION,
    Approve,
    AttenuationError,
    Bundle,
    ConfineOrganization,
    Decision,
    Defer,
    DischargeClient,
    DischargeError,
    DischargeService,
    DischargeTimeoutError,
    ExpiredTokenError,
    FlyioIdentity,
    GoogleIdentity,
    IdentityError,
    InvalidAccessError,
    Macaroon,
    MacaroonError,
    MalformedIdentityError,
    PendingFlow,
    Refuse,
    TicketRequest,
    WrongNonceError,
    discharge_request,
    github_identity,
    issue_discharge,
    new_encryption_key,
    to_header,
    verify_google_id_token,
)
from macaroons_authz.thirdparty import INIT_PATH, POLL_PATH

NOW = 1_700_000_000
ORG = 1234
ROOT = bytes(range(32))
NON_FINITE = [math.nan, math.inf, -math.inf, 10**400]


def bundle_for(tp_key: bytes, location: str, *caveats: Any) -> Bundle:
    token = Macaroon.new(b"kid", FLY_PERMISSION_LOCATION, ROOT)
    token.add_3p(tp_key, location, *caveats)
    return Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)


def ticket_body(bundle: Bundle) -> bytes:
    ((ticket,),) = bundle.undischarged_tickets().values()
    return json.dumps({"ticket": base64.b64encode(ticket).decode()}).encode()


def wsgi(
    app: WSGIApplication, method: str, path: str, body: bytes = b"", **environ: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request through *app* in process: status, headers, JSON body."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    env.update(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"], answer["headers"] = status, dict(headers)

    data = b"".join(app(env, start_response))
    return int(answer["status"].split()[0]), answer["headers"], json.loads(data)


# -- item 8: the client's deadline ----------------------------------------------


class Dripper:
    """A raw HTTP server on 127.0.0.1 that sends *fast* at once, then *drip* a byte per 0.1 s.

    It drips for at most 8 seconds, so a client that waits for it all fails
    the tests' time bound instead of hanging.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answers: list[tuple[bytes, bytes]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(65536)  # the request: small, one segment on loopback
                fast, drip = self.answers.pop(0) if self.answers else (b"", b"")
                try:
                    conn.sendall(fast)
                    for i in range(min(len(drip), 80)):
                        if self.stop.wait(0.1):
                            break
                        conn.sendall(drip[i : i + 1])
                except OSError:  # the client gave up
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def dripper() -> Iterator[Dripper]:
    server = Dripper()
    yield server
    server.close()


HEAD_201 = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
DRIP_HEADERS = b"X-Pad: " + b"a" * 200


def json_answer(doc: dict[str, Any]) -> bytes:
    body = json.dumps(doc).encode()
    return HEAD_201 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize("where", ["headers", "body", "poll"])
def test_a_dripping_server_cannot_outlast_the_timeout(dripper: Dripper, where: str) -> None:
    if where == "headers":  # the status line and headers, a byte at a time
        dripper.answers.append((b"", HEAD_201 + DRIP_HEADERS))
    elif where == "body":
        dripper.answers.append((HEAD_201 + b"Content-Length: 300\r\n\r\n", b"{" + b" " * 299))
    else:  # the init answers at once, the poll a byte at a time
        poll_url = dripper.url + POLL_PATH + "0" * 32
        dripper.answers.append((json_answer({"poll_url": poll_url}), b""))
        dripper.answers.append((b"", b"HTTP/1.1 200 OK\r\n" + DRIP_HEADERS))
    client = DischargeClient([dripper.url], timeout=1, request_timeout=1)
    bundle = bundle_for(new_encryption_key(), dripper.url)
    started = time.monotonic()
    with pytest.raises(DischargeTimeoutError):
        client.fetch(bundle)
    # A correctness bound (the drip lasts 8 s), not a speed measurement.
    assert time.monotonic() - started < 1 + 1.5
    assert len(bundle) == 1 and dripper.answers == []


def test_request_timeout_bounds_a_whole_request(dripper: Dripper) -> None:
    dripper.answers.append((b"", HEAD_201 + DRIP_HEADERS))
    client = DischargeClient([dripper.url], timeout=30, request_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DischargeError, match="request failed: timed out") as info:
        client.fetch(bundle_for(new_encryption_key(), dripper.url))
    assert not isinstance(info.value, DischargeTimeoutError)
    assert time.monotonic() - started < 0.5 + 1.5


@pytest.mark.parametrize("name", ["timeout", "request_timeout", "backoff", "max_backoff"])
@pytest.mark.parametrize("value", [0, -1, *NON_FINITE])
def test_client_durations_are_positive_and_finite(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        DischargeClient(["https://auth.example"], **{name: value})


# -- servers for the service tests -------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    """A WSGI server on 127.0.0.1 in a thread, recording each request's path and credential."""

    def __init__(self) -> None:
        self.app: WSGIApplication | None = None
        self.seen: list[tuple[str, str | None]] = []
        self.httpd: WSGIServer = make_server("127.0.0.1", 0, self._dispatch, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.seen.append((environ["PATH_INFO"], environ.get("HTTP_AUTHORIZATION")))
        assert self.app is not None
        return self.app(environ, start_response)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def http(server: Server) -> Server:
    server.seen.clear()
    server.app = None
    return server


def test_no_request_is_made_after_the_deadline(http: Server) -> None:
    ticks = iter([0.0, 1.0])  # the fetch starts; at its first request, the deadline is passed
    client = DischargeClient([http.url], timeout=1, clock=lambda: next(ticks))
    with pytest.raises(DischargeTimeoutError):
        client.fetch(bundle_for(new_encryption_key(), http.url))
    assert http.seen == []


def service(
    location: str, tp_key: bytes, decide: Callable[[TicketRequest], Decision], **kw: Any
) -> DischargeService:
    return DischargeService(location, tp_key, decide, clock=lambda: NOW, **kw)


# -- item 11: what the service tells strangers, and its flow store ----------------


def test_refusals_do_not_reveal_the_tickets_caveats(http: Server) -> None:
    tp_key = new_encryption_key()
    stranger = FlyioIdentity(6, (9,))
    http.app = service(http.url, tp_key, lambda r: discharge_request(stranger, now=NOW))
    bundle = bundle_for(tp_key, http.url, ConfineOrganization(ORG))
    client = DischargeClient([http.url])
    with pytest.raises(DischargeError) as info:
        client.fetch(bundle)
    assert (info.value.status, info.value.message) == (403, "refused")
    status, _, doc = wsgi(http.app, "POST", INIT_PATH, ticket_body(bundle))
    assert (status, doc) == (403, {"error": "refused"})

    def validate_myself(request: TicketRequest) -> Decision:
        request.caveats.validate(discharge_request(stranger, now=NOW))
        return Approve()

    http.app = service(http.url, tp_key, validate_myself)
    assert wsgi(http.app, "POST", INIT_PATH, ticket_body(bundle))[2] == {"error": "refused"}
    # The operator may opt in to details.
    http.app = service(http.url, tp_key, validate_myself, refusal_details=True)
    status, _, doc = wsgi(http.app, "POST", INIT_PATH, ticket_body(bundle))
    assert status == 403 and "organization 1234" in doc["error"]
    # A Refuse message is the application's own, and is sent as is.
    http.app = service(http.url, tp_key, lambda r: Refuse("log in first", 401))
    assert wsgi(http.app, "POST", INIT_PATH, ticket_body(bundle))[2] == {"error": "log in first"}


def test_anonymous_inits_cannot_evict_a_pending_user_flow(http: Server) -> None:
    tp_key = new_encryption_key()
    flows: list[PendingFlow] = []
    http.app = svc = service(
        http.url, tp_key, lambda r: Defer(interactive=True), on_deferred=flows.append, max_flows=8
    )
    user_bundle = bundle_for(tp_key, http.url)
    status, _, doc = wsgi(svc, "POST", INIT_PATH, ticket_body(user_bundle))
    assert status == 201
    user_poll = doc["user_interactive"]["poll_url"].removeprefix(http.url)
    statuses, retry_after = [], set()
    for _ in range(100):
        status, headers, doc = wsgi(
            svc, "POST", INIT_PATH, ticket_body(bundle_for(tp_key, http.url))
        )
        statuses.append(status)
        if status == 503:
            assert doc == {"error": "too many pending flows"}
            retry_after.add(headers["Retry-After"])
    assert statuses == [201] * 7 + [503] * 93
    assert retry_after == {"600"}  # the seconds until the oldest flow expires
    # The user logs in: their flow was kept, and delivers.
    svc.complete(flows[0].user_secret, Approve())
    status, _, doc = wsgi(svc, "GET", user_poll)
    assert status == 200 and doc["discharge"].startswith("fm2_")


def test_each_location_on_one_origin_gets_its_own_credential(http: Server) -> None:
    key_a, key_b = new_encryption_key(), new_encryption_key()
    loc_a, loc_b = http.url + "/a", http.url + "/b/"
    flows: list[PendingFlow] = []
    svc_a = service(loc_a, key_a, lambda r: Approve())
    svc_b = service(loc_b, key_b, lambda r: Defer(), on_deferred=flows.append)

    def route(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        app = svc_a if environ["PATH_INFO"].startswith("/a/") else svc_b
        return app(environ, start_response)

    http.app = route
    token = Macaroon.new(b"kid", FLY_PERMISSION_LOCATION, ROOT)
    token.add_3p(key_a, loc_a)
    token.add_3p(key_b, loc_b)
    bundle = Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)
    client = DischargeClient(
        [loc_a, loc_b],
        credentials={loc_a + "/": "Bearer for-a", loc_b: "Bearer for-b"},
        sleep=lambda s: svc_b.complete(flows[0].user_secret, Approve()),
    )
    assert len(client.fetch(bundle)) == 2
    assert [(p.split("/3p")[0], auth) for p, auth in http.seen] == [
        ("/a/.well-known/macfly", "Bearer for-a"),
        ("/b/.well-known/macfly", "Bearer for-b"),
        ("/b/.well-known/macfly", "Bearer for-b"),  # the polls
        ("/b/.well-known/macfly", "Bearer for-b"),
    ]
    with pytest.raises(ValueError, match="two credentials"):
        DischargeClient([loc_a], credentials={loc_a: "x", loc_a + "/": "y"})
    with pytest.raises(ValueError, match="one line"):
        DischargeClient([loc_a], credentials={loc_a: "Bearer x\r\nX-Evil: 1"})


def test_a_poll_url_outside_the_location_gets_no_credential(http: Server) -> None:
    loc = http.url + "/a"
    elsewhere = http.url + "/elsewhere" + POLL_PATH + "0" * 32

    def third_party(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        answer = {"poll_url": elsewhere} if environ["REQUEST_METHOD"] == "POST" else {"error": "no"}
        start_response("201 Created", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]

    http.app = third_party
    client = DischargeClient([loc], credentials={loc: "Bearer for-a"})
    with pytest.raises(DischargeError, match="no"):
        client.fetch(bundle_for(new_encryption_key(), loc))
    assert [auth for _, auth in http.seen] == ["Bearer for-a", None]


@pytest.mark.parametrize(
    "poll_url",
    [
        "{url}/poll/\u00e9" + "0" * 32,
        "{url}/poll/\ud800",
        "{url}/poll/a b",
        "{url}/poll/\n0123456789abcdef",
        "http://[::1/poll",
        "{url}:99999/poll",
        "{url}/poll/\x00",
    ],
)
def test_odd_poll_urls_are_typed_errors_that_do_not_quote_them(http: Server, poll_url: str) -> None:
    poll_url = poll_url.format(url=http.url)

    def third_party(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("201 Created", [("Content-Type", "application/json")])
        return [json.dumps({"poll_url": poll_url}).encode()]

    http.app = third_party
    with pytest.raises(DischargeError, match=r"bad discharge response|bad third-party URL") as info:
        DischargeClient([http.url]).fetch(bundle_for(new_encryption_key(), http.url))
    assert "/poll" not in str(info.value)


# -- item 6: bad input is a clean 4xx, never a traceback -----------------------------


@pytest.mark.parametrize(
    ("length", "status"),
    [
        ("\u00b2", 400),  # "²".isdigit() is true, int("²") raises
        ("\u0663", 400),  # ARABIC-INDIC DIGIT THREE
        ("-1", 400),
        ("1e3", 400),
        ("0x10", 400),
        ("9" * 5000, 413),  # beyond Python's int-to-str digit limit
        ("0" * 5000 + "2", 400),  # a length of 2: b"{}" has no ticket
    ],
)
@pytest.mark.parametrize("path", [INIT_PATH, "/elsewhere", POLL_PATH + "0" * 32])
def test_odd_content_lengths_are_client_errors(length: str, status: int, path: str) -> None:
    svc = service("https://auth.example", new_encryption_key(), lambda r: Approve())
    got, headers, doc = wsgi(svc, "POST", path, b"{}", CONTENT_LENGTH=length)
    expected = {INIT_PATH: status, "/elsewhere": 404}.get(path, 405)
    assert got == expected and headers["Content-Type"] == "application/json"
    assert isinstance(doc["error"], str)


def test_any_4xx_or_5xx_refusal_status_is_sent() -> None:
    tp_key = new_encryption_key()
    svc = service("https://auth.example", tp_key, lambda r: Refuse("closed", 499))
    body = ticket_body(bundle_for(tp_key, "https://auth.example"))
    status, _, doc = wsgi(svc, "POST", INIT_PATH, body)
    assert (status, doc) == (499, {"error": "closed"})
    for bad in (200, 302, 600, 99, True, "403"):
        with pytest.raises(ValueError, match="4xx or 5xx"):
            Refuse("no", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Refuse(b"no")  # type: ignore[arg-type]


def test_a_broken_service_clock_is_a_500_not_a_discharge() -> None:
    tp_key = new_encryption_key()
    for now in NON_FINITE:
        for decide in (Approve(), discharge_request(FlyioIdentity(5), now=NOW), Defer()):
            svc = DischargeService(
                "https://auth.example", tp_key, lambda r, d=decide: d, clock=lambda t=now: t
            )
            body = ticket_body(bundle_for(tp_key, "https://auth.example"))
            status, _, doc = wsgi(svc, "POST", INIT_PATH, body)
            assert (status, doc) == (500, {"error": "internal server error"})


def test_a_clock_that_breaks_later_is_a_500_on_every_path() -> None:
    tp_key = new_encryption_key()
    now: list[float] = [NOW]
    flows: list[PendingFlow] = []
    pages: list[str] = []

    def page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        pages.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    svc = DischargeService(
        "https://auth.example",
        tp_key,
        lambda r: Defer(interactive=True),
        on_deferred=flows.append,
        user_page=page,
        clock=lambda: now[0],
    )
    body = ticket_body(bundle_for(tp_key, "https://auth.example"))
    urls = wsgi(svc, "POST", INIT_PATH, body)[2]["user_interactive"]
    poll, user = (urls[k].removeprefix("https://auth.example") for k in ("poll_url", "user_url"))
    assert wsgi(svc, "GET", poll)[0] == 202
    now[0] = math.nan  # a NaN clock would keep every flow alive for ever
    for path in (poll, user):
        assert wsgi(svc, "GET", path)[::2] == (500, {"error": "internal server error"})
    with pytest.raises(InvalidAccessError):
        svc.complete(flows[0].user_secret, Approve())
    assert pages == []


def test_a_validity_window_beyond_64_bits_is_refused() -> None:
    tp_key = new_encryption_key()
    bundle = bundle_for(tp_key, "https://auth.example")
    ((ticket,),) = bundle.undischarged_tickets().values()
    request = discharge_request(FlyioIdentity(5), now=NOW)
    with pytest.raises(AttenuationError, match="64-bit"):
        issue_discharge(tp_key, "https://auth.example", ticket, request, now=NOW, validity=2.0**63)
    with pytest.raises(AttenuationError, match="64-bit"):
        issue_discharge(tp_key, "https://auth.example", ticket, request, now=-(2.0**64))
    # The end overflows to infinity, which floor() refuses with OverflowError.
    with pytest.raises(AttenuationError, match="64-bit"):
        issue_discharge(
            tp_key, "https://auth.example", ticket, request, now=1.7e308, validity=1.7e308
        )
    svc = service("https://auth.example", tp_key, lambda r: Approve(validity=1e300))
    status, _, doc = wsgi(svc, "POST", INIT_PATH, ticket_body(bundle))
    assert (status, doc) == (500, {"error": "internal server error"})


# -- items 5 and 6: id_tokens and times ------------------------------------------------


@pytest.fixture(scope="module")
def google_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def jwks(google_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    n = google_key.public_key().public_numbers().n
    return {"keys": [{"kty": "RSA", "kid": "k1", "n": b64url(n.to_bytes(256, "big")), "e": "AQAB"}]}


def sign(key: rsa.RSAPrivateKey, payload: str) -> str:
    head = b64url(json.dumps({"alg": "RS256", "kid": "k1"}).encode())
    signing_input = f"{head}.{b64url(payload.encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "https://accounts.google.com",
        "aud": "client-1",
        "sub": "1080001",
        "iat": NOW,
        "exp": NOW + 3600,
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize("now", NON_FINITE)
def test_a_non_finite_now_is_refused(
    google_key: rsa.RSAPrivateKey, jwks: dict[str, Any], now: float
) -> None:
    expired = sign(google_key, json.dumps(claims(iat=NOW - 7200, exp=NOW - 3600)))
    with pytest.raises(ExpiredTokenError):
        verify_google_id_token(expired, jwks, audience="client-1", now=NOW)
    # NaN compares false with everything: the expired token passed.
    with pytest.raises(InvalidAccessError, match="now must be a finite number"):
        verify_google_id_token(expired, jwks, audience="client-1", now=now)
    with pytest.raises(InvalidAccessError):
        discharge_request(FlyioIdentity(5), now=now)
    tp_key = new_encryption_key()
    ((ticket,),) = bundle_for(tp_key, "https://auth.example").undischarged_tickets().values()
    request = discharge_request(FlyioIdentity(5), now=NOW)
    with pytest.raises(InvalidAccessError):
        issue_discharge(tp_key, "https://auth.example", ticket, request, now=now)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (json.dumps(claims(exp=10**400)), MalformedIdentityError),
        (json.dumps(claims(iat=-(10**400))), MalformedIdentityError),
        (
            json.dumps(claims()).replace(f'"exp": {NOW + 3600}', '"exp": 1e400'),
            MalformedIdentityError,
        ),
        (json.dumps(claims(nbf=math.nan)), MalformedIdentityError),
        (json.dumps(claims(nonce="\ud800")), WrongNonceError),
        (json.dumps(claims(nonce="n-1\udfff")), WrongNonceError),
    ],
    ids=["huge-exp", "huge-iat", "inf-exp", "nan-nbf", "surrogate-nonce", "surrogate-tail"],
)
def test_odd_claims_are_identity_errors(
    google_key: rsa.RSAPrivateKey, jwks: dict[str, Any], payload: str, error: type[Exception]
) -> None:
    token = sign(google_key, payload)
    with pytest.raises(error):
        verify_google_id_token(token, jwks, audience="client-1", now=NOW, nonce="n-1")


def test_github_ids_beyond_64_bits_are_malformed() -> None:
    with pytest.raises(MalformedIdentityError):
        github_identity({"id": 2**64, "login": "x"}, [])
    member = {"state": "active", "organization": {"id": 10**400}}
    with pytest.raises(MalformedIdentityError):
        github_identity({"id": 1, "login": "x"}, [member])


# -- fuzzing -------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_text = st.text(st.one_of(st.characters(), surrogates), max_size=12)
odd_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**500),
    st.integers(min_value=-(10**500), max_value=-(10**300)),
    st.floats(),  # NaN and infinities included: json.dumps writes NaN, Infinity
    st.just(NOW),
    st.just(NOW + 3600),
)
claim_values = st.one_of(odd_numbers, odd_text, st.none(), st.booleans(), st.lists(odd_text))


@FUZZ
@given(
    overrides=st.dictionaries(
        st.sampled_from(["exp", "iat", "nbf", "nonce", "hd", "sub", "email", "azp"]),
        claim_values,
    ),
    now=st.one_of(odd_numbers, st.just(NOW)),
    nonce=st.one_of(st.none(), odd_text),
)
def test_fuzzed_id_tokens_give_an_identity_or_a_typed_error(
    google_key: rsa.RSAPrivateKey,
    jwks: dict[str, Any],
    overrides: dict[str, Any],
    now: float,
    nonce: str | None,
) -> None:
    payload = claims(**overrides)
    token = sign(google_key, json.dumps(payload))
    try:
        who = verify_google_id_token(token, jwks, audience="client-1", now=now, nonce=nonce)
    except (IdentityError, InvalidAccessError):
        return
    assert isinstance(who, GoogleIdentity)
    # Accepted only if every time check holds, on finite floats (times are
    # compared as floats: an int beyond 2**53 seconds is rounded).
    assert math.isfinite(now) and float(now) <= float(payload["exp"]) + 60
    assert float(payload["iat"]) <= float(now) + 60


@FUZZ
@given(
    length=st.one_of(
        st.text(max_size=8),
        st.from_regex(r"\A[0-9]{1,6000}\Z"),
        st.sampled_from(["\u00b2", "\u0663", "\uff11", "1\u00b2", " 7 ", "+5", "-0"]),
    ),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    path=st.sampled_from([INIT_PATH, POLL_PATH + "0" * 32, "/nowhere", INIT_PATH + "/user/x"]),
    body=st.binary(max_size=64),
    content_type=st.sampled_from(["application/json", "text/plain", "", "\u00e9"]),
)
def test_fuzzed_requests_get_a_4xx_and_a_json_error(
    length: str, method: str, path: str, body: bytes, content_type: str
) -> None:
    svc = service("https://auth.example", bytes(32), lambda r: Approve())
    status, headers, doc = wsgi(
        svc, method, path, body, CONTENT_LENGTH=length, CONTENT_TYPE=content_type
    )
    assert 400 <= status < 500
    assert headers["Content-Type"] == "application/json" and isinstance(doc["error"], str)


answers = st.recursive(
    st.one_of(st.none(), st.booleans(), odd_numbers, odd_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.dictionaries(
        st.sampled_from(["error", "discharge", "poll_url", "user_interactive"]), answers
    ),
    status=st.sampled_from([200, 201, 202, 302, 400, 404, 500, 599]),
)
def test_fuzzed_third_party_answers_give_only_discharge_errors(
    server: Server, answer: dict[str, Any], status: int
) -> None:
    def third_party(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]

    server.app = third_party
    opened: list[object] = []
    client = DischargeClient(
        [server.url], timeout=5, open_user_url=opened.append, sleep=lambda s: None
    )
    try:
        client.fetch(bundle_for(new_encryption_key(), server.url))
    except DischargeError:
        return
    except MacaroonError as exc:  # pragma: no cover - the assertion's message
        pytest.fail(f"a {type(exc).__name__} escaped: {exc}")
    pytest.fail("a made-up answer gave a discharge")
