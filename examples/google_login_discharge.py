"""An authentication service that issues discharges after a Google login.

The API's tokens carry a third-party caveat: "a discharge from the
authentication service is required, and it may only be given to someone in
the example.com Google Workspace". This script plays every part, all on
127.0.0.1:

* **Google**: an RSA key, its JWKS, and a function that "signs a user in"
  by issuing an id_token. A real service fetches Google's JWKS itself (and
  caches it); nothing here talks to Google.
* **The authentication service**: a ``DischargeService`` whose flows are
  user-interactive. Its user page sends the browser to Google and receives
  the id_token back (OpenID Connect ``form_post``), verifies it with
  ``verify_google_id_token`` and finishes the flow with who the user is;
  the ticket's ``ConfineGoogleHD`` caveat is checked against that identity
  before any discharge is minted.
* **The browser**: follows the redirect and posts the id_token back.
* **The client**: ``DischargeClient.fetch_header`` finds the ticket in the
  header, starts the flow, opens the user URL, polls, and adds the
  discharge to the header.
* **The API**: a ``Verifier`` that trusts the authentication service's key,
  so the discharge's ``GoogleUserID`` attestation reaches it.

Run it: ``python examples/google_login_discharge.py``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from macaroons_authz import (
    Action,
    ConfineGoogleHD,
    Defer,
    DischargeClient,
    DischargeError,
    DischargeService,
    FlyAccess,
    GoogleUserID,
    IdentityError,
    MemoryKeyring,
    PendingFlow,
    Refuse,
    TicketRequest,
    UnauthorizedError,
    VerificationError,
    Verifier,
    discharge_request,
    new_encryption_key,
    org_token,
    to_header,
    verify_google_id_token,
)

# A fixed "now" (2026-01-01T00:00:00Z) for every clock, so runs are identical.
NOW = 1_767_225_600
ORG, APP = 1234, 42
CLIENT_ID = "1234-example.apps.googleusercontent.com"
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
WORKSPACE = "example.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- "Google" ------------------------------------------------------------------


class FakeGoogle:
    """Stands in for Google's sign-in: its own RSA key, its JWKS, its id_tokens."""

    KID = "demo-key-1"

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self._key.public_key().public_numbers()
        self.jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.KID,
                    "use": "sig",
                    "alg": "RS256",
                    "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                }
            ]
        }

    def sign_in(self, user: dict[str, Any], *, client_id: str, nonce: str) -> str:
        """The id_token Google would post back after *user* signs in."""
        claims = {
            "iss": "https://accounts.google.com",
            "aud": client_id,
            "azp": client_id,
            "iat": NOW - 5,
            "exp": NOW + 3600,
            "nonce": nonce,
            "email_verified": True,
            **user,
        }
        head = {"alg": "RS256", "kid": self.KID, "typ": "JWT"}
        signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


# -- the authentication service ------------------------------------------------------


def _page(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    data = text.encode()
    start_response(
        f"{status} {http.client.responses[status]}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _oidc_nonce(flow: PendingFlow) -> str:
    # Ties the id_token to this flow: only someone who saw the user URL knows
    # it, and an id_token minted for another flow will not match.
    return hashlib.sha256(flow.user_secret.encode()).hexdigest()


class LoginPage:
    """The user page of the discharge flow: Google sign-in, then finish the flow."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.service: DischargeService | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        assert self.service is not None
        flow: PendingFlow = environ["macaroons_authz.flow"]
        if environ["REQUEST_METHOD"] == "GET":
            # Send the browser to Google; it comes back here with a POST.
            query = urllib.parse.urlencode(
                {
                    "client_id": CLIENT_ID,
                    "response_type": "id_token",
                    "response_mode": "form_post",
                    "scope": "openid email",
                    "redirect_uri": flow.user_url,
                    "nonce": _oidc_nonce(flow),
                    "hd": WORKSPACE,  # a hint for Google's account chooser, not a check
                }
            )
            start_response("302 Found", [("Location", f"{GOOGLE_AUTH_URL}?{query}")])
            return [b""]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = urllib.parse.parse_qs(environ["wsgi.input"].read(min(length, 65536)).decode())
        try:
            identity = verify_google_id_token(
                form.get("id_token", [""])[0],
                self.jwks,
                audience=CLIENT_ID,
                now=NOW,
                nonce=_oidc_nonce(flow),
            )
        except IdentityError as exc:
            # The flow stays pending: the user may try again.
            return _page(start_response, 401, f"sign-in failed: {exc}\n")
        try:
            # The ticket's caveats (ConfineGoogleHD) are checked against the
            # identity here; only then is a discharge minted.
            self.service.complete(flow.user_secret, discharge_request(identity, now=NOW))
        except UnauthorizedError as exc:
            # End the flow, so the waiting client hears the refusal at once.
            self.service.complete(flow.user_secret, Refuse(str(exc)))
            return _page(start_response, 403, f"not allowed: {exc}\n")
        return _page(start_response, 200, "signed in; you can close this window\n")


def authorize(request: TicketRequest) -> Defer:
    # Every ticket needs the user to sign in. A service with its own session
    # cookie could recognise the user from request.headers and answer at once.
    return Defer(interactive=True)


# -- the browser --------------------------------------------------------------------


class Browser:
    """Follows the user URL to "Google", signs in as *user*, posts the id_token back."""

    def __init__(self, google: FakeGoogle, user: dict[str, Any]) -> None:
        self.google = google
        self.user = user

    def __call__(self, user_url: str) -> None:
        status, headers, _ = _http("GET", user_url)
        assert status == 302, status
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["Location"]).query)
        id_token = self.google.sign_in(
            self.user, client_id=query["client_id"][0], nonce=query["nonce"][0]
        )
        form = urllib.parse.urlencode({"id_token": id_token})
        status, _, text = _http("POST", query["redirect_uri"][0], form)
        print(f"  browser: {self.user['email']} signed in -> {status} {text.strip()}")


def _http(method: str, url: str, form: str | None = None) -> tuple[int, dict[str, str], str]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
        conn.request(method, parts.path, body=form, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the story ------------------------------------------------------------------------


def main() -> int:
    google = FakeGoogle()
    tp_key = new_encryption_key()  # shared by the API and the authentication service

    server = make_server("127.0.0.1", 0, lambda e, s: [], handler_class=_QuietHandler)
    auth_location = f"http://127.0.0.1:{server.server_port}"
    page = LoginPage(google.jwks)
    service = DischargeService(
        auth_location, tp_key, authorize, user_page=page, clock=lambda: NOW, validity=300
    )
    page.service = service
    server.set_app(service)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    # The API mints a token that needs a discharge from the authentication
    # service, which may only give one to an example.com Workspace account.
    keyring = MemoryKeyring()
    keyring.generate()
    token = org_token(keyring.current(), ORG, role="member", expires_in=86400, now=NOW)
    token.add_3p(tp_key, auth_location, ConfineGoogleHD(WORKSPACE))
    header = to_header(token)
    verifier = Verifier(keyring, trusted_3ps={auth_location: [tp_key]})
    access = FlyAccess(org_id=ORG, app_id=APP, action=Action.READ, at=NOW + 10)

    ok = True
    try:
        print("1. the token alone:")
        try:
            verifier.authorize(header, access)
            ok = False
            print("  accepted (unexpected)")
        except VerificationError as exc:
            print(f"  refused: {exc}")

        print("2. Ada signs in with her example.com account:")
        ada = {"sub": "110169484474386276334", "email": "ada@example.com", "hd": WORKSPACE}
        client = DischargeClient([auth_location], open_user_url=Browser(google, ada), backoff=0.05)
        discharged = client.fetch_header(header)
        caveats = verifier.authorize(discharged, access)
        (who,) = caveats.of_type(GoogleUserID)
        print(f"  discharged: the API allows the access for Google user {who.id}")

        print("3. Mallory signs in with a personal Gmail account:")
        mallory = {"sub": "104729392837465001122", "email": "mallory@gmail.com"}
        client = DischargeClient(
            [auth_location], open_user_url=Browser(google, mallory), backoff=0.05
        )
        try:
            client.fetch_header(header)
            ok = False
            print("  discharged (unexpected)")
        except DischargeError as exc:
            print(f"  no discharge: {exc}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    print("done" if ok else "unexpected result")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
