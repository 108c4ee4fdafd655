"""The Machines API token client against a stand-in server on 127.0.0.1.

The stand-in is not Fly.io: it implements the two endpoints as superfly/
macaroon's flyio/machinesapi client expects them (request and response
shapes from machinesapi.go) and verifies with this library, on the test
keys, over HTTPS with a certificate made for the test.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fly_helpers import APP, KEY, NOW, OAUTH, ORG, TRUSTED, fly_tokens

from macaroons_authz import (
    Action,
    Bundle,
    CaveatSet,
    DecodeError,
    FailedMacaroon,
    FlyAccess,
    MemoryKeyring,
    NoAuthorizedTokensError,
    NoVerifiedTokensError,
    UnauthorizedError,
    VerificationError,
    VerifiedMacaroon,
    org_token,
    to_header,
)
from macaroons_authz.caveats.resset import parse_action_letters
from macaroons_authz.fly import (
    LOCATION_PERMISSION,
    MACHINES_API_INTERNAL_URL,
    MachinesAccess,
    MachinesAPIClient,
    MachinesAPIError,
    RemoteUnauthorizedError,
    RemoteVerificationError,
)
from macaroons_authz.header import decode_token

SLUGS = {"acme": ORG}
APPS = {"web": APP}


class StandIn(http.server.ThreadingHTTPServer):
    """Fly.io's token endpoints, as the Go client expects them, verifying on the test keys."""

    daemon_threads = True
    mode = "normal"
    requests: list[tuple[str, dict[str, Any]]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the timeout test) is no error of the stand-in.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(1.5)
        if mode == "huge":
            return self._send(200, b"[" + b" " * (2 * 1024 * 1024) + b"]")
        if mode == "not-json":
            return self._send(200, b"<html>")
        if mode == "error-500":
            return self._json(500, {"error": "database on fire\x1b[31m"})
        bundle = Bundle.parse(body["header"], LOCATION_PERMISSION)
        try:
            verified = bundle.verify(MemoryKeyring([KEY]), trusted_3ps=TRUSTED)
        except NoVerifiedTokensError:
            verified = []
        if self.path == "/v1/tokens/authenticate":
            return self._json(200, [_result(v) for v in verified])
        if self.path != "/v1/tokens/authorize":
            return self._json(404, {"error": "not found"})
        if not verified:
            return self._json(401, {"error": "no verified tokens"})
        try:
            token = bundle.validate(_access(body["access"]))
        except UnauthorizedError as exc:
            return self._json(403, {"error": str(exc)})
        answer = {"access": {"orgid": ORG}, "verified_token": _result(token)}
        if mode == "wrong-token":
            answer["verified_token"] = _result(_verified_other())
        return self._json(200, answer)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, json.dumps(doc).encode())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _result(token: VerifiedMacaroon) -> dict[str, Any]:
    raw = decode_token(token.text)
    return {
        "caveats": token.caveats.to_json_value(),
        "permission_token": base64.b64encode(raw).decode(),
    }


def _verified_other() -> VerifiedMacaroon:
    other = Bundle.parse(to_header(org_token(KEY, ORG)), LOCATION_PERMISSION)
    return other.verify(MemoryKeyring([KEY]))[0]


def _access(doc: dict[str, Any]) -> FlyAccess:
    return FlyAccess(
        org_id=SLUGS.get(doc.get("org_slug", ""), 0) if "org_slug" in doc else ORG,
        app_id=APPS.get(doc["app_name"], 0) if "app_name" in doc else None,
        machine=doc.get("machine_id"),
        command=doc.get("command"),
        action=parse_action_letters(doc.get("action", ""), "action"),
        at=NOW + 1,
    )


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(tls: tuple[Path, Path]) -> Iterator[StandIn]:
    srv = StandIn(("127.0.0.1", 0), Handler)
    srv.requests = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*tls)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def client(server: StandIn, tls: tuple[Path, Path]) -> MachinesAPIClient:
    ctx = ssl.create_default_context(cafile=str(tls[0]))
    return MachinesAPIClient(f"https://127.0.0.1:{server.server_address[1]}", ssl_context=ctx)


def test_authenticate_gives_a_bundle_of_verified_tokens(
    client: MachinesAPIClient, server: StandIn
) -> None:
    tokens = fly_tokens()
    bundle = client.authenticate(tokens.header)
    (perm,) = bundle.permission_tokens()
    assert isinstance(perm, VerifiedMacaroon)
    assert perm.caveats == tokens.permission.verify(KEY, [tokens.discharge], TRUSTED)
    # Decisions are then local, as superfly/tokenizer makes them.
    assert bundle.validate(FlyAccess(org_id=ORG, app_id=APP, action=Action.READ, at=NOW + 1))
    with pytest.raises(NoAuthorizedTokensError):
        bundle.validate(FlyAccess(org_id=ORG, app_id=APP + 1, action=Action.READ, at=NOW + 1))
    # The request: {"header": ...} with the macaroons only, no scheme, no OAuth token.
    ((path, body),) = server.requests
    assert path == "/v1/tokens/authenticate"
    assert set(body) == {"header"}
    assert body["header"] == f"{tokens.header.split(' ')[1].rsplit(',', 1)[0]}"
    assert OAUTH not in body["header"]


def test_verify_gives_the_caveat_set(client: MachinesAPIClient) -> None:
    tokens = fly_tokens()
    caveats = client.verify(tokens.header)
    assert isinstance(caveats, CaveatSet)
    assert caveats == tokens.permission.verify(KEY, [tokens.discharge], TRUSTED)
    with pytest.raises(DecodeError, match="multiple permission tokens"):
        client.verify(to_header(tokens.permission, fly_tokens().permission))


def test_tokens_that_do_not_verify(client: MachinesAPIClient, server: StandIn) -> None:
    tokens = fly_tokens()
    # Without its discharge the permission token cannot verify.
    with pytest.raises(NoVerifiedTokensError) as info:
        client.verify(to_header(tokens.permission))
    assert isinstance(info.value, VerificationError)
    # One of two verifies: the bundle says which.
    forged = org_token(bytes(32), ORG)
    bundle = client.authenticate(to_header(forged, tokens.permission, tokens.discharge))
    kinds = [type(t) for t in bundle.permission_tokens()]
    assert kinds == [FailedMacaroon, VerifiedMacaroon]
    # No permission token: no request at all.
    before = len(server.requests)
    with pytest.raises(NoVerifiedTokensError):
        client.authenticate(to_header(tokens.discharge))
    assert len(server.requests) == before


def test_authorize_asks_fly_with_names(client: MachinesAPIClient, server: StandIn) -> None:
    tokens = fly_tokens()
    access = MachinesAccess(action=Action.READ, org_slug="acme", app_name="web")
    caveats = client.authorize(tokens.header, access)
    assert caveats == tokens.permission.verify(KEY, [tokens.discharge], TRUSTED)
    path, body = server.requests[-1]
    assert path == "/v1/tokens/authorize"
    assert body["access"] == {"action": "r", "org_slug": "acme", "app_name": "web"}
    assert OAUTH not in body["header"]


def test_authorize_denied_is_unauthorized(client: MachinesAPIClient) -> None:
    tokens = fly_tokens()
    access = MachinesAccess(action=Action.DELETE, org_slug="acme", app_name="db")
    with pytest.raises(RemoteUnauthorizedError) as info:
        client.authorize(tokens.header, access)
    assert isinstance(info.value, UnauthorizedError) and info.value.status == 403
    with pytest.raises(RemoteVerificationError) as refused:
        client.authorize(to_header(tokens.permission), access)
    assert isinstance(refused.value, VerificationError) and refused.value.status == 401


def test_an_answer_for_another_token_is_refused(client: MachinesAPIClient, server: StandIn) -> None:
    server.mode = "wrong-token"
    access = MachinesAccess(action=Action.READ, org_slug="acme")
    with pytest.raises(NoVerifiedTokensError):
        client.authorize(fly_tokens().header, access)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("huge", "larger than"),
        ("not-json", "not JSON"),
        ("error-500", r"machines API \(500\): database on fire\?\[31m"),
    ],
)
def test_failures_fail_closed(
    client: MachinesAPIClient, server: StandIn, mode: str, message: str
) -> None:
    server.mode = mode
    with pytest.raises(MachinesAPIError, match=message):
        client.verify(fly_tokens().header)


def test_the_timeout_bounds_the_call(server: StandIn, tls: tuple[Path, Path]) -> None:
    server.mode = "slow"
    ctx = ssl.create_default_context(cafile=str(tls[0]))
    url = f"https://127.0.0.1:{server.server_address[1]}"
    client = MachinesAPIClient(url, ssl_context=ctx, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(MachinesAPIError, match="timed out"):
        client.verify(fly_tokens().header)
    assert time.monotonic() - started < 1.4


def test_an_untrusted_certificate_is_refused(server: StandIn) -> None:
    client = MachinesAPIClient(f"https://127.0.0.1:{server.server_address[1]}")
    with pytest.raises(MachinesAPIError, match="request failed") as info:
        client.verify(fly_tokens().header)
    assert "fm2_" not in str(info.value)


def test_unreachable_is_a_typed_error() -> None:
    client = MachinesAPIClient("https://127.0.0.1:9", timeout=2)
    with pytest.raises(MachinesAPIError, match="request failed"):
        client.verify(fly_tokens().header)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.machines.dev",
        "ftp://x",
        "https://",
        "https://user:pw@api.machines.dev",
        "https://api.machines.dev/?q=1",
    ],
)
def test_only_https_or_fly_private_network(url: str) -> None:
    with pytest.raises(ValueError, match="Machines API URL"):
        MachinesAPIClient(url)
    assert repr(MachinesAPIClient(MACHINES_API_INTERNAL_URL)) == (
        "<MachinesAPIClient http://_api.internal:4280>"
    )


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_timeouts_must_be_positive_and_finite(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        MachinesAPIClient(timeout=timeout)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_the_response_cap_must_be_a_positive_integer(size: int) -> None:
    with pytest.raises(ValueError, match="max_response"):
        MachinesAPIClient(max_response=size)


def test_access_json_is_gos() -> None:
    full = MachinesAccess(
        action=Action.READ | Action.CONTROL,
        org_slug="acme",
        app_name="web",
        machine_id="m1",
        command=["ls", "-l"],
        source_machine="m2",
    )
    assert full.to_json() == {
        "action": "rC",
        "org_slug": "acme",
        "app_name": "web",
        "machine_id": "m1",
        "source_machine": "m2",
        "command": ["ls", "-l"],
    }
    assert MachinesAccess().to_json() == {}
    with pytest.raises(TypeError, match="argv"):
        MachinesAccess(command="ls")
    with pytest.raises(TypeError):
        MachinesAccess(app_name=42)  # type: ignore[arg-type]


# -- headers with several permission tokens (issue 20) ----------------------------------


def test_several_permission_tokens_are_taken_as_go_takes_them(
    client: MachinesAPIClient, server: StandIn
) -> None:
    ours, other = fly_tokens(), fly_tokens(org=ORG + 1, oauth=False)
    header = to_header(other.permission, other.discharge, ours.permission, ours.discharge, OAUTH)
    # Go's Authorize: every token is sent, Fly.io answers with the one that allows.
    access = MachinesAccess(action=Action.READ, org_slug="acme", app_name="web")
    assert client.authorize(header, access) == ours.permission.verify(
        KEY, [ours.discharge], TRUSTED
    )
    _, body = server.requests[-1]
    assert len(body["header"].split(",")) == 4
    assert OAUTH not in body["header"]
    with pytest.raises(RemoteUnauthorizedError):
        client.authorize(header, MachinesAccess(action=Action.READ, org_slug="nope"))
    # Go's Verify: each permission token verified, with its own discharge.
    bundle = client.authenticate(header)
    assert [type(t) for t in bundle.permission_tokens()] == [VerifiedMacaroon, VerifiedMacaroon]


def test_verify_refuses_several_tokens_and_names_the_calls_that_take_them(
    client: MachinesAPIClient, server: StandIn
) -> None:
    ours, other = fly_tokens(), fly_tokens(org=ORG + 1, oauth=False)
    header = to_header(other.permission, other.discharge, ours.permission, ours.discharge)
    before = len(server.requests)
    with pytest.raises(DecodeError) as info:
        client.verify(header)
    assert str(info.value) == (
        "multiple permission tokens: authenticate() verifies each, authorize() "
        "accepts the header if one of them allows the access"
    )
    assert len(server.requests) == before  # refused before asking Fly.io
