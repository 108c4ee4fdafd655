"""A GitHub secret-scanning alert endpoint that revokes leaked tokens.

When GitHub finds something that looks like one of your tokens in a public
repository, it POSTs the matches to your endpoint, signed with one of its
ECDSA keys. The endpoint here:

1. verifies the signature over the raw body before reading anything in it
   (``handle_github_alert`` does this, then classifies the matches);
2. decides which matches are real tokens: a token is real when its HMAC
   chain verifies under our keys, even if it has expired;
3. revokes each real one in a shared revocation store, by token id, which
   every attenuation of the token shares;
4. answers with the feedback GitHub accepts (true or false positive, by
   SHA-256 of the match, never the token itself).

The API's ``Verifier`` reads the same store and refuses the token from then
on. GitHub's key pair is generated here; a real endpoint builds
``GitHubPublicKeys`` from the document GitHub publishes and caches it.

Run it: ``python examples/github_leak_alert.py``. Everything stays on
127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from macaroons_authz import (
    AlertVerificationError,
    GitHubPublicKeys,
    Keyring,
    MemoryKeyring,
    RevocationStore,
    SQLiteRevocationStore,
    TokenId,
    VerificationError,
    Verifier,
    deploy_token,
    encode_token,
    handle_github_alert,
    new_signing_key,
    org_token,
    restrict,
    to_header,
    token_id,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z, so the tokens' windows are fixed
ORG, APP = 1234, 42
ALERT_PATH = "/github/secret-scanning"
MAX_ALERT = 1024 * 1024


class AlertEndpoint:
    """WSGI application receiving GitHub secret-scanning alerts."""

    def __init__(
        self, public_keys: GitHubPublicKeys, keyring: Keyring, store: RevocationStore
    ) -> None:
        self.public_keys = public_keys
        self.keyring = keyring
        self.store = store

    def revoke(self, tid: TokenId, data: bytes) -> None:
        # Revocation is by token id (the nonce's UUID): it covers this token
        # and every attenuation of it. The id is safe to log; the token is not.
        if self.store.revoke(token_id(data), reason="leaked: reported by GitHub secret scanning"):
            print(f"  endpoint: revoked token {tid.uuid}")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != ALERT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, 404, {"error": "not found"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_ALERT:
            return _reply(start_response, 413, {"error": "too large"})
        # The signature covers these exact bytes: read them raw, parse nothing yet.
        body = environ["wsgi.input"].read(length)
        headers = {
            key[5:].replace("_", "-"): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        try:
            feedback = handle_github_alert(
                body, headers, self.public_keys, self.keyring.key_for, revoke=self.revoke
            )
        except AlertVerificationError as exc:
            print(f"  endpoint: alert refused ({exc})")
            return _reply(start_response, 400, {"error": "bad alert"})
        return _reply(start_response, 200, [f.to_dict() for f in feedback])


def _reply(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {http.client.responses[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


class FakeGitHub:
    """Signs alerts as GitHub does: ECDSA P-256 over the raw body, base64 DER."""

    KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # The shape of https://api.github.com/meta/public_keys/secret_scanning
        self.public_keys_document = {
            "public_keys": [
                {"key_identifier": self.KEY_ID, "key": pem.decode(), "is_current": True}
            ]
        }

    def alert(
        self, matches: list[dict[str, str]], *, signer: ec.EllipticCurvePrivateKey | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(matches).encode()
        signature = (signer or self._key).sign(body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "Content-Type": "application/json",
            "Github-Public-Key-Identifier": self.KEY_ID,
            "Github-Public-Key-Signature": base64.b64encode(signature).decode(),
        }


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", ALERT_PATH, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _check(verifier: Verifier, header: str) -> str:
    try:
        verifier.verify(header)
    except VerificationError as exc:
        return f"refused ({exc})"
    return "accepted"


def main() -> int:
    github = FakeGitHub()
    keyring = MemoryKeyring()
    keyring.generate()
    with tempfile.TemporaryDirectory() as tmp:
        # One store file, shared by the alert endpoint and every API process.
        store = SQLiteRevocationStore(Path(tmp) / "revocations.db")
        verifier = Verifier(keyring, revocations=store)

        deploy = deploy_token(keyring.current(), ORG, APP, expires_in=86400, now=NOW)
        leaked = encode_token(deploy)  # pushed to a public repository by mistake
        # An attenuation of it, held by another CI job: it shares the token id.
        narrowed = to_header(restrict(deploy.copy(), machines=["e784079b449483"]))
        unrelated = to_header(org_token(keyring.current(), ORG, expires_in=86400, now=NOW))
        # A genuine-looking token from someone else's keys: not ours to revoke.
        foreign = encode_token(org_token(new_signing_key(), ORG))

        print("before the alert:")
        print(f"  leaked token:      {_check(verifier, to_header(leaked))}")
        print(f"  its attenuation:   {_check(verifier, narrowed)}")

        public_keys = GitHubPublicKeys.from_json(github.public_keys_document)
        endpoint = AlertEndpoint(public_keys, keyring, store)
        server = make_server("127.0.0.1", 0, endpoint, handler_class=_QuietHandler)

        # The store's close() below closes the server thread's connection too.
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            matches = [
                {"token": leaked, "type": "fly_token", "url": "https://github.com/o/r/blob/x/ci.yml",
                 "source": "content"},
                {"token": foreign, "type": "fly_token", "url": "https://github.com/o/r/blob/x/README",
                 "source": "content"},
            ]  # fmt: skip

            print("a forged alert (signed with another key):")
            body, headers = github.alert(matches, signer=ec.generate_private_key(ec.SECP256R1()))
            status, _ = _post(server.server_port, body, headers)
            print(f"  -> {status}")
            forged_ok = status == 400 and not store.is_revoked(token_id(deploy))

            print("GitHub's alert:")
            body, headers = github.alert(matches)
            status, feedback = _post(server.server_port, body, headers)
            print(f"  -> {status}: {[item['label'] for item in feedback]}")
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

        print("after the alert:")
        results = {
            "leaked token": _check(verifier, to_header(leaked)),
            "its attenuation": _check(verifier, narrowed),
            "unrelated token": _check(verifier, unrelated),
        }
        for name, result in results.items():
            print(f"  {name + ':':<18} {result}")
        store.close()

    ok = (
        forged_ok
        and [item["label"] for item in feedback] == ["true_positive", "false_positive"]
        and results["leaked token"].startswith("refused")
        and results["its attenuation"].startswith("refused")
        and results["unrelated token"] == "accepted"
    )
    print("done" if ok else "unexpected result")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
