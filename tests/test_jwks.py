"""JWKSProvider against a local OpenID Connect issuer on 127.0.0.1 that rotates its keys.

The issuer is a threaded ``http.server`` behind TLS with a throw-away
self-signed certificate (for 127.0.0.1 and localhost); the provider trusts
it through its ``ssl_context``. The server counts the requests it gets by
path, and routes can be replaced to make it fail, stall, trickle, redirect
or answer too much. Cache ages run on a fake clock.
"""

from __future__ import annotations

import base64
import collections
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from macaroons_authz import (
    GOOGLE_ISSUERS,
    DiscoveryError,
    GoogleIdentity,
    IdentityError,
    JWKSProvider,
    KeyFetchError,
    KeySetError,
    MacaroonError,
    StaleKeySetError,
    UnknownSigningKeyError,
    WrongIssuerError,
    verify_google_id_token,
)
from macaroons_authz.thirdparty.jwks import MAX_REDIRECTS

NOW = 1_700_000_000  # the id_tokens' time, apart from the provider's clock
CLIENT_ID = "1234-abc.apps.googleusercontent.com"
SUB = "110169484474386276334"
DISCOVERY = "/.well-known/openid-configuration"


# -- keys and id_tokens ------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(n), "e": b64url(e)}


@pytest.fixture(scope="module")
def k1() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def k2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def id_token(key: rsa.RSAPrivateKey, kid: str, issuer: str) -> str:
    head = b64url(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    claims = {"iss": issuer, "aud": CLIENT_ID, "sub": SUB, "iat": NOW - 5, "exp": NOW + 3600}
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


def verify(token: str, keys: Any, issuer: str) -> GoogleIdentity:
    return verify_google_id_token(token, keys, audience=CLIENT_ID, now=NOW, issuer=issuer)


WHO = GoogleIdentity(int(SUB))


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the issuer --------------------------------------------------------------


Route = Callable[["Handler"], None]


class Issuer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, scheme: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.scheme = scheme
        self.lock = threading.Lock()
        self.hits: collections.Counter[str] = collections.Counter()
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.cache_control: str | None = "max-age=3600"
        self.age: str | None = None
        self.discovery_cache_control: str | None = None
        self.jwks_path = "/jwks"  # where the discovery document says the keys are
        self.routes: dict[str, Route] = {}
        self.closing = threading.Event()

    @property
    def issuer(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits[path]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwk(key, kid) for kid, key in self.keys]}


class Handler(BaseHTTPRequestHandler):
    server: Issuer

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            route = srv.routes.get(self.path)
        if route is not None:
            route(self)
        elif self.path == DISCOVERY:
            cache = srv.discovery_cache_control
            headers = {} if cache is None else {"Cache-Control": cache}
            self.send_json({"issuer": srv.issuer, "jwks_uri": srv.issuer + srv.jwks_path}, headers)
        elif self.path in ("/jwks", srv.jwks_path):
            self.send_jwks()
        else:
            self.send_error(404)

    def send_json(self, doc: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_jwks(self) -> None:
        srv = self.server
        headers = {}
        if srv.cache_control is not None:
            headers["Cache-Control"] = srv.cache_control
        if srv.age is not None:
            headers["Age"] = srv.age
        self.send_json(srv.jwks(), headers)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _certificate(directory: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem.decode("ascii")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return _certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trust(tls: tuple[Path, Path, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls[2])


def _serve(srv: Issuer) -> Iterator[Issuer]:
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.closing.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def idp(tls: tuple[Path, Path, str], k1: rsa.RSAPrivateKey) -> Iterator[Issuer]:
    srv = Issuer("https")
    srv.keys = [("k1", k1)]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls[0], tls[1])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    yield from _serve(srv)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(idp: Issuer, trust: ssl.SSLContext, clock: Clock) -> Callable[..., JWKSProvider]:
    def make(**options: Any) -> JWKSProvider:
        options.setdefault("clock", clock)
        return JWKSProvider(idp.issuer, ssl_context=trust, **options)

    return make


# -- rotation and the unknown-kid refetch ------------------------------------


def test_a_rotated_in_key_verifies_after_one_refetch(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any, k2: Any
) -> None:
    keys = make()
    assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 1)
    idp.keys = [("k1", k1), ("k2", k2)]  # the issuer rotates k2 in
    clock.t += 30  # one refetch interval later, well within max-age
    assert verify(id_token(k2, "k2", idp.issuer), keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 2
    # Both keys are now cached: no further request for either.
    assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    assert verify(id_token(k2, "k2", idp.issuer), keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 2


def test_an_unknown_kid_storm_refetches_at_most_once_per_interval(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any, k2: Any
) -> None:
    keys = make(refetch_interval=30)
    good = id_token(k1, "k1", idp.issuer)
    assert verify(good, keys, idp.issuer) == WHO
    forged = [id_token(k2, f"forged-{i}", idp.issuer) for i in range(40)]

    def attempt(token: str) -> str:
        try:
            verify(token, keys, idp.issuer)
        except UnknownSigningKeyError:
            return "unknown"
        return "verified"

    def storm() -> list[str]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(attempt, forged * 5 + [good] * 20))

    assert storm().count("unknown") == 200  # within the interval of the first fetch
    assert idp.count("/jwks") == 1
    for expected in (2, 3):
        clock.t += 30
        outcomes = storm()
        assert outcomes.count("unknown") == 200 and outcomes.count("verified") == 20
        assert idp.count("/jwks") == expected  # one refetch per interval, whatever the storm
    clock.t += 29
    assert storm().count("unknown") == 200
    assert idp.count("/jwks") == 3


def test_a_running_fetch_does_not_hold_up_tokens_whose_key_is_cached(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.cache_control = "max-age=60"
    keys = make(timeout=5)
    good = id_token(k1, "k1", idp.issuer)
    verify(good, keys, idp.issuer)
    release, answered = threading.Event(), threading.Event()

    def stalled(handler: Handler) -> None:
        release.wait(5)
        handler.send_jwks()
        answered.set()

    idp.routes["/jwks"] = stalled
    clock.t += 61  # the keys are stale: the next call refetches
    fetcher = threading.Thread(target=verify, args=(good, keys, idp.issuer))
    fetcher.start()
    for _ in range(500):
        if idp.count("/jwks") == 2:
            break
        time.sleep(0.01)
    assert idp.count("/jwks") == 2
    assert verify(good, keys, idp.issuer) == WHO  # served the cached key meanwhile
    assert not answered.is_set()  # the fetch was still running: this call did not wait for it
    release.set()
    fetcher.join(5)
    assert idp.count("/jwks") == 2


# -- outages -----------------------------------------------------------------


def _unavailable(handler: Handler) -> None:
    handler.send_error(503)


def test_an_outage_serves_the_last_good_keys_until_max_staleness(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.cache_control = "max-age=60"
    keys = make(max_staleness=600, refetch_interval=30)
    good = id_token(k1, "k1", idp.issuer)
    verify(good, keys, idp.issuer)  # fetched at 1000, fresh until 1060
    idp.routes["/jwks"] = _unavailable
    clock.t = 1060
    assert verify(good, keys, idp.issuer) == WHO  # the refetch failed: stale keys served
    assert idp.count("/jwks") == 2
    clock.t = 1089
    assert verify(good, keys, idp.issuer) == WHO  # no retry within the interval
    assert idp.count("/jwks") == 2
    clock.t = 1660  # 600 s past max-age: still served
    assert verify(good, keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 3
    clock.t = 1661
    with pytest.raises(StaleKeySetError, match="601s past their max-age") as info:
        verify(good, keys, idp.issuer)
    assert info.value.overdue == 601
    assert "HTTP 503" in str(info.value)
    del idp.routes["/jwks"]  # the issuer is back
    clock.t = 1690
    assert verify(good, keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 4


def test_a_response_that_is_no_key_set_never_replaces_good_keys(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    keys = make(max_staleness=600)
    good = id_token(k1, "k1", idp.issuer)
    verify(good, keys, idp.issuer)
    idp.routes["/jwks"] = lambda h: h.send_json({"keys": "none"})
    clock.t += 3600
    assert verify(good, keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 2
    clock.t += 601
    with pytest.raises(StaleKeySetError, match="is not a JSON Web Key Set"):
        verify(good, keys, idp.issuer)


def test_without_keys_a_failure_is_raised_and_retried_once_per_interval(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.routes["/jwks"] = _unavailable
    keys = make()
    good = id_token(k1, "k1", idp.issuer)
    for _ in range(3):
        with pytest.raises(KeyFetchError, match="HTTP 503") as info:
            verify(good, keys, idp.issuer)
        assert info.value.status == 503
        assert info.value.url == idp.issuer + "/jwks"
    assert idp.count("/jwks") == 1
    del idp.routes["/jwks"]
    clock.t += 30
    assert verify(good, keys, idp.issuer) == WHO
    assert idp.count("/jwks") == 2


def test_an_unreachable_issuer_is_a_fetch_error(trust: ssl.SSLContext, k1: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    issuer = f"https://127.0.0.1:{port}"
    keys = JWKSProvider(issuer, ssl_context=trust, clock=Clock())
    with pytest.raises(KeyFetchError, match="failed") as info:
        verify(id_token(k1, "k1", issuer), keys, issuer)
    assert info.value.status is None


def test_an_untrusted_certificate_is_a_fetch_error(idp: Issuer, k1: Any) -> None:
    keys = JWKSProvider(idp.issuer, clock=Clock())  # the system's CAs do not know ours
    with pytest.raises(KeyFetchError, match="failed"):
        verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer)
    assert idp.count("/jwks") == 0


# -- redirects ---------------------------------------------------------------


@pytest.mark.parametrize("path", [DISCOVERY, "/jwks"])
def test_a_redirect_to_another_host_is_refused(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any, path: str
) -> None:
    port = idp.server_address[1]
    elsewhere = f"https://localhost:{port}/elsewhere"  # the certificate is valid there too
    idp.routes[path] = lambda h: h.redirect(elsewhere)
    idp.routes["/elsewhere"] = lambda h: (
        h.send_jwks() if path == "/jwks" else h.send_json({"issuer": idp.issuer})
    )
    with pytest.raises(KeyFetchError, match="redirects to another host: refused") as info:
        verify(id_token(k1, "k1", idp.issuer), make(), idp.issuer)
    assert info.value.status == 302
    assert idp.count("/elsewhere") == 0


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("http://127.0.0.1:{port}/elsewhere", "to another host"),  # another scheme
        ("https://127.0.0.1:1/elsewhere", "to another host"),  # another port
        ("https://localhost:{port}/elsewhere", "to another host"),
        ("//localhost:{port}/elsewhere", "to another host"),
        ("https://[::1/elsewhere", "to another host"),  # not a URL
        ("", "without a Location"),
    ],
)
def test_only_same_origin_redirects_are_followed(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any, location: str, message: str
) -> None:
    target = location.format(port=idp.server_address[1])
    idp.routes["/jwks"] = lambda h: h.redirect(target, 307)
    with pytest.raises(KeyFetchError, match=f"redirects {message}"):
        verify(id_token(k1, "k1", idp.issuer), make(), idp.issuer)
    assert idp.count("/elsewhere") == 0


def test_same_origin_redirects_are_followed_a_few_times(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.routes["/jwks"] = lambda h: h.redirect("/keys/v2", 301)
    idp.routes["/keys/v2"] = lambda h: h.redirect(f"{idp.issuer}/keys/v3", 308)
    idp.routes["/keys/v3"] = Handler.send_jwks
    assert verify(id_token(k1, "k1", idp.issuer), make(), idp.issuer) == WHO
    assert [idp.count(p) for p in ("/jwks", "/keys/v2", "/keys/v3")] == [1, 1, 1]
    idp.routes["/loop"] = lambda h: h.redirect("/loop")
    idp.routes["/jwks"] = lambda h: h.redirect("/loop")
    with pytest.raises(KeyFetchError, match=f"more than {MAX_REDIRECTS} redirects"):
        verify(id_token(k1, "k1", idp.issuer), make(), idp.issuer)
    assert idp.count("/loop") == MAX_REDIRECTS


# -- size and time -----------------------------------------------------------


@pytest.mark.parametrize("path", [DISCOVERY, "/jwks"])
def test_an_oversize_response_is_refused(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any, path: str
) -> None:
    doc = {"issuer": idp.issuer, "jwks_uri": idp.issuer + "/jwks", **idp.jwks()}
    idp.routes[path] = lambda h: h.send_json({**doc, "padding": "x" * 5000})
    with pytest.raises(KeyFetchError, match="more than 4096 bytes"):
        verify(id_token(k1, "k1", idp.issuer), make(max_response=4096), idp.issuer)
    idp.routes[path] = lambda h: h.send_json({**doc, "padding": "x" * 3000})
    assert verify(id_token(k1, "k1", idp.issuer), make(max_response=4096), idp.issuer) == WHO


def _trickle(handler: Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        while not handler.server.closing.wait(0.05):
            handler.wfile.write(b" ")  # each read is quick; the whole never ends
    except OSError:
        pass  # the client hung up


def _trickle_headers(handler: Handler) -> None:
    try:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        while not handler.server.closing.wait(0.05):
            handler.wfile.write(b"a")  # one header line that never ends
    except OSError:
        pass


def _silent(handler: Handler) -> None:
    handler.server.closing.wait(30)


@pytest.mark.parametrize("route", [_trickle, _trickle_headers, _silent])
def test_a_slow_response_is_refused_within_the_timeout(
    idp: Issuer, trust: ssl.SSLContext, k1: Any, route: Route
) -> None:
    idp.routes["/jwks"] = route
    keys = JWKSProvider(idp.issuer, ssl_context=trust, timeout=0.5)  # the real clock
    started = time.monotonic()
    with pytest.raises(KeyFetchError, match="timed out"):
        verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer)
    # Bounded by the timeout, not by the server (which would go on for 30 s).
    assert time.monotonic() - started < 5


# -- max-age -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh"),
    [
        ("max-age=120", None, 120),
        ("public, max-age=120, must-revalidate, no-transform", None, 120),
        ('max-age="300"', None, 300),
        ("max-age=120", "20", 100),
        ("max-age=5", None, 60),  # raised to min_max_age
        ("max-age=" + "9" * 40, None, 86400),  # lowered to max_max_age
        ("no-store", None, 60),
        ("no-cache, max-age=600", None, 60),
        ("max-age=soon", None, 3600),  # unreadable: the default
        (None, None, 3600),
    ],
)
def test_max_age_is_honoured_within_its_bounds(
    idp: Issuer,
    make: Callable[..., JWKSProvider],
    clock: Clock,
    k1: Any,
    cache_control: str | None,
    age: str | None,
    fresh: int,
) -> None:
    idp.cache_control, idp.age = cache_control, age
    keys = make()
    good = id_token(k1, "k1", idp.issuer)
    verify(good, keys, idp.issuer)
    clock.t += fresh - 1
    verify(good, keys, idp.issuer)
    assert idp.count("/jwks") == 1
    clock.t += 1
    verify(good, keys, idp.issuer)
    assert idp.count("/jwks") == 2


# -- discovery ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"issuer": "https://accounts.google.com"}, "does not name it as the issuer"),
        ({"issuer": "{issuer}/"}, "does not name it as the issuer"),
        ({"issuer": "{issuer}"}, "has no jwks_uri"),
        ({"issuer": "{issuer}", "jwks_uri": 7}, "has no jwks_uri"),
        ({"issuer": "{issuer}", "jwks_uri": "http://127.0.0.1:1/jwks"}, "must be an https"),
        ({"issuer": "{issuer}", "jwks_uri": "https://u:p@example.com/"}, "no credentials"),
        (["{issuer}"], "does not name it as the issuer"),
    ],
)
def test_a_bad_discovery_document_is_refused(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any, document: Any, message: str
) -> None:
    text = json.dumps(document).replace("{issuer}", idp.issuer)
    idp.routes[DISCOVERY] = lambda h: h.send_json(json.loads(text))
    with pytest.raises(DiscoveryError, match=message):
        verify(id_token(k1, "k1", idp.issuer), make(), idp.issuer)
    assert idp.count("/jwks") == 0


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[" * 100_000])
def test_a_body_that_is_not_json_is_a_fetch_error(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any, body: bytes
) -> None:
    def answer(h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    idp.routes["/jwks"] = answer
    with pytest.raises(KeyFetchError, match="did not answer JSON"):
        verify(id_token(k1, "k1", idp.issuer), make(max_response=200_000), idp.issuer)


def test_plain_http_only_to_127_0_0_1_and_only_when_allowed(k1: Any) -> None:
    srv = Issuer("http")
    srv.keys = [("k1", k1)]
    for idp in _serve(srv):
        with pytest.raises(ValueError, match="must be an https:// URL"):
            JWKSProvider(idp.issuer)
        keys = JWKSProvider(idp.issuer, allow_http_loopback=True, clock=Clock())
        assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    for issuer in ("http://localhost:8080", "http://example.com"):
        with pytest.raises(ValueError, match="must be an https:// URL"):
            JWKSProvider(issuer, allow_http_loopback=True)


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("accounts.google.com", "must be an https"),
        ("https://", "must be an https"),
        ("ftp://accounts.google.com", "must be an https"),
        ("https://user:pw@accounts.google.com", "no credentials"),
        ("https://accounts.google.com#x", "no credentials or fragment"),
        ("https://accounts.google.com?x=1", "no query"),
        ("https://accounts.google.com:99999", "is not a URL"),
        ("https://accounts.google.com/ é", "printable ASCII"),
        (b"https://accounts.google.com", "printable ASCII"),
    ],
)
def test_an_issuer_must_be_an_https_url(issuer: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JWKSProvider(issuer)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive"),
        ({"timeout": float("nan")}, "timeout must be a non-negative"),
        ({"max_response": 0}, "max_response must be a positive"),
        ({"max_response": True}, "max_response must be a positive"),
        ({"refetch_interval": -1}, "refetch_interval must be"),
        ({"max_staleness": float("inf")}, "max_staleness must be"),
        ({"min_max_age": 100, "default_max_age": 50}, "min_max_age <= default_max_age"),
        ({"default_max_age": 100_000}, "default_max_age <= max_max_age"),
    ],
)
def test_bad_figures_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JWKSProvider("https://accounts.google.com", **options)


# -- the remembered jwks_uri -------------------------------------------------


def test_refreshes_within_the_discovery_documents_max_age_fetch_only_the_key_set(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any, k2: Any
) -> None:
    idp.discovery_cache_control = "max-age=600"
    keys = make()
    assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 1)
    idp.keys = [("k1", k1), ("k2", k2)]  # a key rotation
    clock.t += 30
    assert verify(id_token(k2, "k2", idp.issuer), keys, idp.issuer) == WHO
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 2)
    clock.t += 30
    with pytest.raises(UnknownSigningKeyError):
        verify(id_token(k2, "k3", idp.issuer), keys, idp.issuer)
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 3)


@pytest.mark.parametrize(
    ("cache_control", "fresh"),
    [
        ("max-age=120", 120),
        ("public, max-age=300", 300),
        ("max-age=5", 60),  # raised to min_max_age
        ("no-cache", 60),
        ("max-age=" + "9" * 40, 86400),  # lowered to max_max_age
        (None, 3600),  # default_max_age
    ],
)
def test_the_discovery_document_is_read_again_once_its_max_age_runs_out(
    idp: Issuer,
    make: Callable[..., JWKSProvider],
    clock: Clock,
    k1: Any,
    k2: Any,
    cache_control: str | None,
    fresh: int,
) -> None:
    idp.discovery_cache_control = cache_control
    keys = make(refetch_interval=0)
    assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    # The issuer moves its keys, rotated, to a new place; the old one still serves k1 alone.
    idp.keys, idp.jwks_path = [("k1", k1), ("k2", k2)], "/keys/v2"
    idp.routes["/jwks"] = lambda h: h.send_json({"keys": [jwk(k1, "k1")]})
    rotated = id_token(k2, "k2", idp.issuer)
    clock.t += fresh - 1
    with pytest.raises(UnknownSigningKeyError):  # refetched from the remembered jwks_uri
        verify(rotated, keys, idp.issuer)
    assert [idp.count(p) for p in (DISCOVERY, "/jwks", "/keys/v2")] == [1, 2, 0]
    clock.t += 1
    assert verify(rotated, keys, idp.issuer) == WHO
    assert [idp.count(p) for p in (DISCOVERY, "/jwks", "/keys/v2")] == [2, 2, 1]


def _hang_up(handler: Handler) -> None:
    handler.close_connection = True  # no response at all


@pytest.mark.parametrize(
    "failure",
    [lambda h: h.send_error(404), lambda h: h.send_json({"keys": "none"}), _hang_up],
    ids=["404", "no key set", "hang-up"],
)
def test_a_key_set_uri_that_fails_is_discovered_again_once(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any, k2: Any, failure: Route
) -> None:
    keys = make()
    assert verify(id_token(k1, "k1", idp.issuer), keys, idp.issuer) == WHO
    idp.keys, idp.jwks_path = [("k1", k1), ("k2", k2)], "/keys/v2"
    idp.routes["/jwks"] = failure  # the issuer moved its keys
    clock.t += 30
    assert verify(id_token(k2, "k2", idp.issuer), keys, idp.issuer) == WHO
    assert [idp.count(p) for p in (DISCOVERY, "/jwks", "/keys/v2")] == [2, 2, 1]
    clock.t += 30  # the new jwks_uri is remembered
    with pytest.raises(UnknownSigningKeyError):
        verify(id_token(k2, "k3", idp.issuer), keys, idp.issuer)
    assert [idp.count(p) for p in (DISCOVERY, "/jwks", "/keys/v2")] == [2, 2, 2]


def test_a_rediscovery_naming_the_same_failing_uri_raises_the_first_error(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any, k2: Any
) -> None:
    idp.cache_control = "max-age=60"
    keys = make(max_staleness=0)
    good = id_token(k1, "k1", idp.issuer)
    assert verify(good, keys, idp.issuer) == WHO
    idp.keys = [("k1", k1), ("k2", k2)]
    clock.t = 1030
    assert verify(id_token(k2, "k2", idp.issuer), keys, idp.issuer) == WHO  # fresh until 1090
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 2)
    idp.routes["/jwks"] = lambda h: h.send_error(404)
    clock.t = 1091
    first = f"refetched: {idp.issuer}/jwks answered HTTP 404"
    with pytest.raises(StaleKeySetError, match=re.escape(first) + "$"):
        verify(good, keys, idp.issuer)
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (2, 3)


def test_a_failed_rediscovery_is_the_refreshs_failure(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.cache_control = "max-age=60"
    keys = make(max_staleness=0)
    good = id_token(k1, "k1", idp.issuer)
    assert verify(good, keys, idp.issuer) == WHO
    idp.routes["/jwks"] = lambda h: h.send_error(404)
    idp.routes[DISCOVERY] = lambda h: h.send_json({"issuer": "https://accounts.google.com"})
    clock.t += 61
    refused = f"refetched: the discovery document of {idp.issuer} does not name it as the issuer"
    with pytest.raises(StaleKeySetError, match=re.escape(refused) + "$"):
        verify(good, keys, idp.issuer)
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (2, 2)


def test_a_key_set_fetch_that_uses_up_the_timeout_is_not_followed_by_a_rediscovery(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.cache_control = "max-age=60"
    keys = make(timeout=10, max_staleness=0)
    good = id_token(k1, "k1", idp.issuer)
    assert verify(good, keys, idp.issuer) == WHO

    def late(handler: Handler) -> None:
        clock.t += 10  # the refresh's deadline passes while this answers
        handler.send_jwks()

    idp.routes["/jwks"] = late
    clock.t += 61
    timed_out = f"refetched: fetching {idp.issuer}/jwks timed out"
    with pytest.raises(StaleKeySetError, match=re.escape(timed_out) + "$"):
        verify(good, keys, idp.issuer)
    assert (idp.count(DISCOVERY), idp.count("/jwks")) == (1, 2)


# -- the API -----------------------------------------------------------------


def test_the_google_preset_and_what_a_provider_shows() -> None:
    clock = Clock()
    keys = JWKSProvider.google(clock=clock, refetch_interval=5)
    assert keys.issuer == GOOGLE_ISSUERS[0] == "https://accounts.google.com"
    assert repr(keys) == "<JWKSProvider https://accounts.google.com>"
    with pytest.raises(TypeError):
        keys.keys_for(b"k1")  # type: ignore[arg-type]


def test_key_sources_of_every_kind_verify(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any
) -> None:
    provider = make()
    token = id_token(k1, "k1", idp.issuer)
    asked: list[str] = []

    def by_kid(kid: str) -> dict[str, Any]:
        asked.append(kid)
        return idp.jwks()

    for source in (provider, provider.keys_for, by_kid, idp.jwks()):
        assert verify(token, source, idp.issuer) == WHO
    assert asked == ["k1"]
    # An alg other than RS256 is refused before any key is asked for.
    head = b64url(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    with pytest.raises(IdentityError):
        verify(f"{head}.{token.split('.', 1)[1]}", by_kid, idp.issuer)
    assert asked == ["k1"]


def test_a_provider_refuses_tokens_for_another_issuer_signed_with_its_keys(
    idp: Issuer, make: Callable[..., JWKSProvider], k1: Any
) -> None:
    provider = make()
    assert provider.issuers == (idp.issuer,)
    claims_google = id_token(k1, "k1", "https://accounts.google.com")
    # The issuer argument (Google's, by default) allows it; the provider's keys do not.
    with pytest.raises(WrongIssuerError, match="not the key provider's"):
        verify_google_id_token(claims_google, provider, audience=CLIENT_ID, now=NOW)
    assert verify_google_id_token(claims_google, idp.jwks(), audience=CLIENT_ID, now=NOW) == WHO
    assert JWKSProvider.google().issuers == GOOGLE_ISSUERS


def test_stale_keys_when_no_fetch_is_due_say_so(
    idp: Issuer, make: Callable[..., JWKSProvider], clock: Clock, k1: Any
) -> None:
    idp.cache_control = "no-store"
    keys = make(min_max_age=0, default_max_age=0, max_staleness=5, refetch_interval=30)
    good = id_token(k1, "k1", idp.issuer)
    assert verify(good, keys, idp.issuer) == WHO
    clock.t += 6
    with pytest.raises(StaleKeySetError, match="the next fetch is not due yet"):
        verify(good, keys, idp.issuer)
    assert idp.count("/jwks") == 1


def test_key_set_errors_are_identity_errors() -> None:
    for cls in (KeySetError, DiscoveryError, KeyFetchError, StaleKeySetError):
        assert issubclass(cls, IdentityError) and issubclass(cls, MacaroonError)
    for cls in (DiscoveryError, KeyFetchError, StaleKeySetError):
        assert issubclass(cls, KeySetError)
