"""The discharge protocol end to end: a real HTTP server on 127.0.0.1 and the client."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from email.message import Message
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from macaroons_authz import (
    FLY_PERMISSION_LOCATION,
    Action,
    Approve,
    Bundle,
    ConfineGoogleHD,
    ConfineOrganization,
    Decision,
    Defer,
    DischargeClient,
    DischargeError,
    DischargeRequest,
    DischargeService,
    DischargeTimeoutError,
    FlowNotFoundError,
    FlyAccess,
    FlyioIdentity,
    GoogleUserID,
    IdentityError,
    Macaroon,
    MemoryKeyring,
    PendingFlow,
    Refuse,
    TicketRequest,
    UnauthorizedError,
    UserInteractionRequiredError,
    ValidityWindow,
    Verifier,
    discharge_request,
    discharge_ticket,
    encode_token,
    new_encryption_key,
    org_token,
    to_header,
    verify_google_id_token,
)
from macaroons_authz.thirdparty import FLOW_ENVIRON_KEY, INIT_PATH, POLL_PATH

NOW = 1_700_000_000.0
ORG = 1234


class Clock:
    """A settable clock; ``sleep`` advances it (and may run a hook)."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server:
    """A WSGI server on 127.0.0.1, port 0, in a thread; the app can be swapped."""

    def __init__(self) -> None:
        self.app: WSGIApplication | None = None
        self.httpd: WSGIServer = make_server("127.0.0.1", 0, self._dispatch, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
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
def ring() -> MemoryKeyring:
    keys = MemoryKeyring()
    keys.generate()
    return keys


@pytest.fixture
def tp_key() -> bytes:
    return new_encryption_key()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


class Harness:
    """A service on the shared server, and what it saw."""

    def __init__(self, server: Server, tp_key: bytes, ring: MemoryKeyring, clock: Clock) -> None:
        self.server = server
        self.location = server.url
        self.tp_key = tp_key
        self.ring = ring
        self.clock = clock
        self.decide: Callable[[TicketRequest], Decision] = lambda r: Approve()
        self.requests: list[TicketRequest] = []
        self.flows: list[PendingFlow] = []
        self.user_page: WSGIApplication | None = None
        self.service = self.make_service()

    def make_service(self, **kw: Any) -> DischargeService:
        def authorize(request: TicketRequest) -> Decision:
            self.requests.append(request)
            return self.decide(request)

        def user_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            assert self.user_page is not None
            return self.user_page(environ, start_response)

        options: dict[str, Any] = {
            "on_deferred": self.flows.append,
            "user_page": user_page,
            "clock": self.clock,
        }
        options.update(kw)
        service = DischargeService(self.location, self.tp_key, authorize, **options)
        self.server.app = service
        self.service = service
        return service

    def token(self, *caveats: Any) -> Macaroon:
        token = org_token(self.ring.current(), ORG)
        token.add_3p(self.tp_key, self.location, *caveats)
        return token

    def bundle(self, *caveats: Any) -> Bundle:
        return Bundle.parse(to_header(self.token(*caveats)), FLY_PERMISSION_LOCATION)

    def client(self, **kw: Any) -> DischargeClient:
        options: dict[str, Any] = {"sleep": self.clock.sleep, "clock": self.clock, "timeout": 30}
        options.update(kw)
        return DischargeClient([self.location], **options)

    def authorize(self, bundle: Bundle, *, trusted: bool = False) -> list[str]:
        verifier = Verifier(
            self.ring, trusted_3ps={self.location: [self.tp_key]} if trusted else {}
        )
        access = FlyAccess(org_id=ORG, action=Action.READ, at=self.clock.now + 1)
        return [c.name for c in verifier.authorize(bundle.header(), access)]


@pytest.fixture
def h(server: Server, tp_key: bytes, ring: MemoryKeyring, clock: Clock) -> Harness:
    return Harness(server, tp_key, ring, clock)


def raw(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, dict[str, Any], Message]:
    req = urllib.request.Request(url, data=body, method=method)
    if content_type is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), err.headers


def init_body(ticket: bytes) -> bytes:
    return json.dumps({"ticket": base64.b64encode(ticket).decode()}).encode()


def ticket_of(token: Macaroon) -> bytes:
    (tickets,) = token.third_party_tickets().values()
    return tickets[0]


# -- flows ---------------------------------------------------------------------


def test_immediate_discharge(h: Harness) -> None:
    h.decide = lambda r: Approve([ValidityWindow(0, 2**40)], validity=60)
    bundle = h.bundle(ConfineOrganization(ORG))
    (added,) = h.client().fetch(bundle)
    assert added.location == h.location and added.macaroon.is_proof
    assert list(h.requests[0].caveats) == [ConfineOrganization(ORG)]
    assert [c.name for c in added.unsafe_caveats] == ["ValidityWindow", "ValidityWindow"]
    assert added.unsafe_caveats[1] == ValidityWindow(int(NOW), int(NOW) + 60)
    assert h.authorize(bundle) == ["Organization", "ValidityWindow", "ValidityWindow"]
    assert bundle.undischarged_tickets() == {}
    # Nothing left to fetch: no request is made.
    assert h.client().fetch(bundle) == []
    assert len(h.requests) == 1


def test_discharge_request_decision_checks_caveats_and_attests(h: Harness) -> None:
    h.decide = lambda r: discharge_request(FlyioIdentity(5, (ORG,)), now=h.clock.now)
    bundle = h.bundle(ConfineOrganization(ORG))
    h.client().fetch(bundle)
    assert "FlyioUserID" in h.authorize(bundle, trusted=True)
    # A caller from another organization: the ticket's caveat refuses it,
    # without saying which caveat (the ticket is sealed: its holder may not read it).
    h.decide = lambda r: discharge_request(FlyioIdentity(6, (9,)), now=h.clock.now)
    other = h.bundle(ConfineOrganization(ORG))
    with pytest.raises(DischargeError) as info:
        h.client().fetch(other)
    assert (info.value.status, info.value.message) == (403, "refused")
    assert len(other) == 1


def test_credentials_go_only_to_their_origin(h: Harness) -> None:
    h.client(credentials={h.location: "Bearer sesame"}).fetch(h.bundle())
    h.client(credentials={"http://127.0.0.1:1": "Bearer wrong"}).fetch(h.bundle())
    h.client(credentials={h.location.replace("http:", "https:"): "Bearer tls"}).fetch(h.bundle())
    assert [r.authorization for r in h.requests] == ["Bearer sesame", None, None]
    assert "sesame" not in repr(h.requests[0])


def test_poll_flow(h: Harness) -> None:
    h.decide = lambda r: Defer()
    h.clock.on_sleep = lambda: h.service.complete(h.flows[0].user_secret, Approve())
    bundle = h.bundle()
    (added,) = h.client().fetch(bundle)
    assert h.clock.slept == [1]
    assert not h.flows[0].interactive
    assert h.authorize(bundle) == ["Organization", "ValidityWindow"]
    assert added.text in bundle.header()


def test_polling_backs_off_and_times_out(h: Harness) -> None:
    h.decide = lambda r: Defer()
    bundle = h.bundle()
    with pytest.raises(DischargeTimeoutError):
        h.client(timeout=10).fetch(bundle)
    # 1, 2, 4 seconds, then only what is left before the deadline.
    assert h.clock.slept == [1, 2, 4, 3]
    assert len(bundle) == 1
    h.clock.slept.clear()
    with pytest.raises(DischargeTimeoutError):
        h.client(timeout=100, backoff=0.5, max_backoff=2).fetch(h.bundle())
    assert h.clock.slept[:5] == [0.5, 1, 2, 2, 2]


def test_user_interactive_flow(h: Harness) -> None:
    h.decide = lambda r: Defer(interactive=True)
    visits: list[str] = []

    def page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        flow: PendingFlow = environ[FLOW_ENVIRON_KEY]
        visits.append(environ["PATH_INFO"])
        identity = FlyioIdentity(5, (ORG,))
        h.service.complete(flow.user_secret, discharge_request(identity, now=h.clock.now))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"approved, you may close this window"]

    def open_url(url: str) -> None:
        # The "browser": visit the user page served by the service.
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.read().startswith(b"approved")

    h.user_page = page
    bundle = h.bundle(ConfineOrganization(ORG))
    h.client(open_user_url=open_url).fetch(bundle)
    assert len(visits) == 1 and h.flows[0].interactive
    assert h.clock.slept == []
    assert h.authorize(bundle, trusted=True) == [
        "Organization",
        "ValidityWindow",
        "FlyioUserID",
    ]
    # The user URL is spent once the flow is finished.
    status, doc, _ = raw(h.flows[0].user_url)
    assert (status, doc) == (404, {"error": "not found"})


def test_user_interactive_flow_needs_a_callback(h: Harness) -> None:
    h.decide = lambda r: Defer(interactive=True)
    bundle = h.bundle()
    with pytest.raises(UserInteractionRequiredError) as info:
        h.client().fetch(bundle)
    assert info.value.contains(UserInteractionRequiredError)
    assert len(bundle) == 1


def test_refusal(h: Harness) -> None:
    h.decide = lambda r: Refuse("not on my watch", 401)
    bundle = h.bundle()
    with pytest.raises(DischargeError) as info:
        h.client().fetch(bundle)
    assert (info.value.status, info.value.message) == (401, "not on my watch")
    assert str(info.value) == "tp error (401): not on my watch"
    assert len(bundle) == 1

    def deny(request: TicketRequest) -> Decision:
        raise UnauthorizedError("unauthorized: go away")

    h.decide = deny
    with pytest.raises(DischargeError, match=r"^tp error \(403\): refused$"):
        h.client().fetch(bundle)

    def crash(request: TicketRequest) -> Decision:
        raise RuntimeError("secret internals")

    h.decide = crash
    with pytest.raises(DischargeError) as info:
        h.client().fetch(bundle)
    assert (info.value.status, info.value.message) == (500, "internal server error")


def test_deferred_flow_refused_later(h: Harness) -> None:
    h.decide = lambda r: Defer()
    h.clock.on_sleep = lambda: h.service.complete(h.flows[0].user_secret, Refuse("denied"))
    bundle = h.bundle()
    with pytest.raises(DischargeError) as info:
        h.client().fetch(bundle)
    assert (info.value.status, info.value.message) == (200, "denied")
    assert len(bundle) == 1


def test_completing_with_unmet_caveats_keeps_the_flow_pending(h: Harness) -> None:
    h.decide = lambda r: Defer()
    bundle = h.bundle(ConfineOrganization(ORG))
    poll_url = raw_init(h, ticket_of_bundle(bundle))["poll_url"]
    secret = h.flows[0].user_secret
    with pytest.raises(UnauthorizedError, match="organization 1234"):
        h.service.complete(secret, discharge_request(FlyioIdentity(6, (1,)), now=NOW))
    assert raw(poll_url)[0] == 202
    h.service.complete(secret, discharge_request(FlyioIdentity(5, (ORG,)), now=NOW))
    status, doc, _ = raw(poll_url)
    assert status == 200 and doc["discharge"].startswith("fm2_")
    # Delivered once: replaying the poll secret finds nothing.
    assert raw(poll_url)[:2] == (404, {"error": "not found"})
    with pytest.raises(FlowNotFoundError):
        h.service.complete(secret, Approve())


def ticket_of_bundle(bundle: Bundle) -> bytes:
    ((ticket,),) = bundle.undischarged_tickets().values()
    return ticket


def raw_init(h: Harness, ticket: bytes) -> dict[str, Any]:
    status, doc, headers = raw(h.location + INIT_PATH, method="POST", body=init_body(ticket))
    assert status == 201
    assert headers["Cache-Control"] == "no-store"
    return doc


def test_expired_poll_secret(h: Harness) -> None:
    h.make_service(flow_ttl=60)
    h.decide = lambda r: Defer()
    poll_url = raw_init(h, ticket_of(h.token()))["poll_url"]
    assert raw(poll_url)[0] == 202
    h.clock.now += 61
    assert raw(poll_url)[:2] == (404, {"error": "not found"})
    with pytest.raises(FlowNotFoundError):
        h.service.complete(h.flows[0].user_secret, Approve())


def test_secrets_are_separate_hashed_and_hidden(h: Harness) -> None:
    h.decide = lambda r: Defer(interactive=True)
    doc = raw_init(h, ticket_of(h.token()))["user_interactive"]
    poll_secret = doc["poll_url"].rsplit("/", 1)[1]
    user_secret = doc["user_url"].rsplit("/", 1)[1]
    assert doc["poll_url"] == f"{h.location}{POLL_PATH}{poll_secret}"
    assert len(poll_secret) == len(user_secret) == 32 and poll_secret != user_secret
    # A poll secret is not a user secret, and the other way round.
    with pytest.raises(FlowNotFoundError):
        h.service.complete(poll_secret, Approve())
    assert raw(f"{h.location}{POLL_PATH}{user_secret}")[0] == 404
    # Only digests are kept; reprs show no secret.
    store = h.service._store
    keys = " ".join([*store._flows, *store._by_user])
    assert poll_secret not in keys and user_secret not in keys
    text = repr(h.flows[0]) + repr(h.service) + repr(store._flows)
    assert poll_secret not in text and user_secret not in text


def test_flow_store_is_bounded(h: Harness) -> None:
    h.make_service(max_flows=2, flow_ttl=60)
    h.decide = lambda r: Defer()
    urls = [raw_init(h, ticket_of(h.token()))["poll_url"] for _ in range(2)]
    h.clock.now += 10
    body = init_body(ticket_of(h.token()))
    status, doc, headers = raw(h.location + INIT_PATH, method="POST", body=body)
    assert (status, doc, headers["Retry-After"]) == (503, {"error": "too many pending flows"}, "50")
    assert [raw(u)[0] for u in urls] == [202, 202]
    # Expired flows make room.
    h.clock.now += 51
    assert "poll_url" in raw_init(h, ticket_of(h.token()))
    assert [raw(u)[0] for u in urls] == [404, 404]


# -- malformed requests ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "request body is not valid JSON"),
        (b"[1, 2]", "application/json", 400, "request body must be a JSON object"),
        (b"{}", "application/json", 400, "missing ticket"),
        (b'{"ticket": "***"}', "application/json", 400, "ticket is not base64"),
        (b'{"ticket": "' + b"A" * 4000 + b'"}', "application/json", 413, None),
        (b"\xff\xfe", "application/json", 400, "request body is not valid JSON"),
        (b'{"ticket": "AAAA"}', "text/plain", 415, None),
        (b'{"ticket": "AAAA"}', None, 415, None),
    ],
)
def test_malformed_init_requests(
    h: Harness, body: bytes, content_type: str | None, status: int, message: str | None
) -> None:
    h.make_service(max_body=1024)
    got, doc, headers = raw(
        h.location + INIT_PATH, method="POST", body=body, content_type=content_type
    )
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert isinstance(doc["error"], str) and doc["error"]
    if message is not None:
        assert doc["error"] == message
    assert h.requests == []


def test_bad_ticket_is_refused(h: Harness) -> None:
    other = new_encryption_key()
    token = org_token(h.ring.current(), ORG)
    token.add_3p(other, h.location)
    for ticket in (ticket_of(token), b"\x00" * 80):
        status, doc, _ = raw(h.location + INIT_PATH, method="POST", body=init_body(ticket))
        assert (status, doc) == (400, {"error": "bad ticket"})
    assert h.requests == []


def test_wrong_methods_and_paths(h: Harness) -> None:
    status, _, headers = raw(h.location + INIT_PATH)
    assert (status, headers["Allow"]) == (405, "POST")
    status, _, headers = raw(h.location + POLL_PATH + "0" * 32, method="POST", body=b"{}")
    assert (status, headers["Allow"]) == (405, "GET")
    assert raw(h.location + "/elsewhere")[0] == 404
    assert raw(h.location + POLL_PATH + "not-a-secret")[0] == 404
    assert raw(h.location + POLL_PATH + "0" * 32)[0] == 404


# -- client ----------------------------------------------------------------------


def test_client_only_contacts_trusted_locations(h: Harness) -> None:
    token = h.token()
    untrusted = "http://127.0.0.1:1"  # nothing listens there
    token.add_3p(new_encryption_key(), untrusted)
    bundle = Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)
    (added,) = h.client().fetch(bundle)
    assert added.location == h.location
    assert list(bundle.undischarged_tickets()) == [untrusted]
    with pytest.raises(DischargeError, match="request failed"):
        DischargeClient([untrusted], timeout=1).fetch(bundle)
    with pytest.raises(ValueError, match="http"):
        DischargeClient(["file:///etc"])


def test_fetch_header_keeps_the_scheme(h: Harness) -> None:
    token = h.token()
    header = h.client().fetch_header(to_header(token))
    assert header.startswith("FlyV1 ") and header.count(",") == 1
    bare = h.client().fetch_header(encode_token(h.token()))
    assert not bare.startswith("FlyV1") and bare.count(",") == 1


def fake_third_party(h: Harness, answer: dict[str, Any], status: int = 201) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]

    h.server.app = app


def test_client_refuses_bad_answers(h: Harness) -> None:
    bundle = h.bundle()
    stranger = org_token(h.ring.current(), ORG)
    stranger.add_3p(h.tp_key, h.location)
    _, other_discharge = discharge_ticket(h.tp_key, h.location, ticket_of(stranger))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"poll_url": "http://evil.example/poll/x"}, "not the third party's"),
        ({"discharge": encode_token(other_discharge)}, "another ticket"),
        ({"discharge": "fm2_f"}, "not a macaroon"),
        ({"user_interactive": {"poll_url": h.location}}, "bad discharge response"),
        ({}, "bad discharge response"),
    ]
    for answer, message in cases:
        fake_third_party(h, answer)
        with pytest.raises(DischargeError, match=message):
            h.client(open_user_url=lambda url: None).fetch(bundle)
    fake_third_party(h, {"nope": 1}, status=500)
    with pytest.raises(DischargeError, match=r"tp error \(500\)"):
        h.client().fetch(bundle)
    assert len(bundle) == 1


def test_several_failures_are_combined(h: Harness) -> None:
    h.decide = lambda r: Refuse("no")
    bundle = Bundle.parse(to_header(h.token(), h.token()), FLY_PERMISSION_LOCATION)
    with pytest.raises(DischargeError) as info:
        h.client().fetch(bundle)
    assert len(info.value.errors) == 2
    assert str(info.value) == "tp error (403): no; tp error (403): no"
    assert info.value.contains(DischargeError)
    assert not info.value.contains(UserInteractionRequiredError)


def test_service_rejects_bad_configuration(tp_key: bytes) -> None:
    with pytest.raises(ValueError, match="absolute"):
        DischargeService("auth.example", tp_key, lambda r: Approve())
    with pytest.raises(ValueError, match="32 bytes"):
        DischargeService("https://auth.example", b"short", lambda r: Approve())
    with pytest.raises(ValueError, match="validity"):
        Approve(validity=0)


# -- Google Workspace, through the service ---------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_google_workspace_flow_through_the_service(h: Harness) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "g1",
                "n": b64url(numbers.n.to_bytes(256, "big")),
                "e": b64url(numbers.e.to_bytes(3, "big")),
            }
        ]
    }

    def id_token(hd: str) -> str:
        head = b64url(json.dumps({"alg": "RS256", "kid": "g1"}).encode())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": "client-1",
            "sub": "108000000000000000001",
            "hd": hd,
            "iat": NOW,
            "exp": NOW + 3600,
        }
        signing_input = f"{head}.{b64url(json.dumps(claims).encode())}"
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig)}"

    def authorize(request: TicketRequest) -> Decision:
        scheme, _, token = (request.authorization or "").partition(" ")
        if scheme != "Bearer":
            return Refuse("log in with Google", 401)
        try:
            who = verify_google_id_token(token, jwks, audience="client-1", now=h.clock.now)
        except IdentityError as exc:
            return Refuse(str(exc), 401)
        return discharge_request(who, now=h.clock.now)

    h.make_service(refusal_details=True)
    h.decide = authorize
    token = h.token(ConfineGoogleHD("example.com"))
    bundle = Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)
    insider = h.client(credentials={h.location: f"Bearer {id_token('example.com')}"})
    insider.fetch(bundle)
    names = h.authorize(bundle, trusted=True)
    assert names == ["Organization", "ValidityWindow", "GoogleUserID"]
    assert h.authorize(bundle) == ["Organization", "ValidityWindow"]
    caveats = bundle.verify(Verifier(h.ring, trusted_3ps={h.location: [h.tp_key]}))[0].caveats
    assert caveats.of_type(GoogleUserID) == [GoogleUserID(108000000000000000001)]

    outsider_bundle = Bundle.parse(to_header(token), FLY_PERMISSION_LOCATION)
    outsider = h.client(credentials={h.location: f"Bearer {id_token('elsewhere.example')}"})
    with pytest.raises(DischargeError, match=r"example\.com domain") as info:
        outsider.fetch(outsider_bundle)
    assert info.value.status == 403
    assert len(outsider_bundle) == 1
    assert outsider_bundle.undischarged_tickets()
    with pytest.raises(DischargeError, match=r"tp error \(401\)"):
        h.client().fetch(outsider_bundle)


def test_a_request_without_identity_is_refused_not_minted(h: Harness) -> None:
    h.decide = lambda r: DischargeRequest(at=h.clock.now)
    bundle = h.bundle()
    with pytest.raises(DischargeError) as info:
        h.client().fetch(bundle)
    assert (info.value.status, info.value.message) == (403, "refused")
    assert len(bundle) == 1
