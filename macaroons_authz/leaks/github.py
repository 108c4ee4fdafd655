"""GitHub's secret-scanning partner program: verify alerts, classify and revoke tokens.

:func:`verify_github_alert` checks the ECDSA signature GitHub puts on an
alert and parses it; :func:`classify_github_alert` decides which reported
tokens are real (true positives) under the caller's keys, optionally revokes
them, and builds the feedback GitHub accepts; :func:`handle_github_alert`
does both.
"""

from __future__ import annotations

import base64
import binascii
import json
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .. import crypto
from .._gojson import load_json
from ..errors import DecodeError, VerificationError
from ..macaroon import Macaroon
from .scanner import TokenId, _scan, _sha256_hex

__all__ = [
    "GITHUB_KEY_IDENTIFIER_HEADER",
    "GITHUB_SIGNATURE_HEADER",
    "AlertVerificationError",
    "GitHubFeedback",
    "GitHubPublicKeys",
    "GitHubTokenMatch",
    "classify_github_alert",
    "handle_github_alert",
    "verify_github_alert",
]

#: The header naming which of GitHub's public keys signed an alert.
GITHUB_KEY_IDENTIFIER_HEADER: Final = "Github-Public-Key-Identifier"
#: The header holding the base64 DER ECDSA signature of an alert's body.
GITHUB_SIGNATURE_HEADER: Final = "Github-Public-Key-Signature"


class AlertVerificationError(VerificationError):
    """A GitHub secret-scanning alert was refused.

    Its signature header or key identifier header is missing or repeated,
    the signature is not base64 or does not verify over the raw body, the
    key identifier is not among the public keys supplied, the public-keys
    document is malformed, or the signed body is not a JSON array of
    matches. The message never contains a reported token.
    """


def _read_only(
    keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> Mapping[str, ec.EllipticCurvePublicKey]:
    return types.MappingProxyType(dict(keys))


def _frozen(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(ids)


@attrs.frozen(eq=False)
class GitHubPublicKeys:
    """GitHub's secret-scanning public keys, by key identifier.

    Build it with :meth:`from_json` from the document GitHub publishes at
    ``https://api.github.com/meta/public_keys/secret_scanning``, which the
    caller fetches (and caches) as it sees fit; this library does no I/O.
    A key verifies alerts whether or not it is marked ``is_current``, so
    alerts signed just before a rotation still verify.

    Attributes:
        keys: the P-256 public keys, by ``key_identifier``.
        current: the identifiers marked ``is_current``.
    """

    keys: Mapping[str, ec.EllipticCurvePublicKey] = attrs.field(
        converter=_read_only, repr=lambda k: repr(sorted(k))
    )
    current: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)

    @classmethod
    def from_json(cls, document: str | bytes | Mapping[str, Any]) -> GitHubPublicKeys:
        """Parse ``{"public_keys": [{"key_identifier", "key", "is_current"}, ...]}``.

        *document* is the JSON text or its parsed value. Every key must be a
        PEM ``PUBLIC KEY`` on the P-256 curve.

        Raises:
            AlertVerificationError: the document is malformed.
        """
        try:
            doc = (
                load_json(document, "public keys document")
                if isinstance(document, str | bytes)
                else document
            )
        except DecodeError as exc:  # not JSON, or nested too deeply
            raise AlertVerificationError(str(exc)) from None
        entries = doc.get("public_keys") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise AlertVerificationError("public keys document has no public_keys list")
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        current = set()
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise AlertVerificationError("public keys document: entry is not an object")
            ident, pem = entry.get("key_identifier"), entry.get("key")
            if not isinstance(ident, str) or not ident or not isinstance(pem, str):
                raise AlertVerificationError("public keys document: bad key_identifier or key")
            try:
                key = serialization.load_pem_public_key(pem.encode("ascii"))
            except (ValueError, UnicodeError, TypeError):
                raise AlertVerificationError(f"public key {ident!r} is not a PEM key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, ec.SECP256R1
            ):
                raise AlertVerificationError(f"public key {ident!r} is not an ECDSA P-256 key")
            keys[ident] = key
            if entry.get("is_current") is True:
                current.add(ident)
        return cls(keys, current)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Check the signature GitHub put on *body*; return only if it is genuine.

        Args:
            body: the request's raw body bytes, exactly as received.
            headers: the request's headers (names in any case).

        Raises:
            AlertVerificationError: see the class.
        """
        if not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        ident = _one_header(headers, GITHUB_KEY_IDENTIFIER_HEADER)
        signature = _one_header(headers, GITHUB_SIGNATURE_HEADER)
        key = self.keys.get(ident)
        if key is None:
            raise AlertVerificationError("unknown GitHub public key identifier")
        try:
            der = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise AlertVerificationError("signature is not base64") from None
        try:
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise AlertVerificationError("bad alert signature") from None


def _one_header(headers: Mapping[str, str], name: str) -> str:
    want = name.lower()
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == want]
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].strip():
        what = "missing" if not values else "malformed"
        raise AlertVerificationError(f"{what} {name} header")
    return values[0].strip()


@attrs.frozen
class GitHubTokenMatch:
    """One match GitHub reported: a string its pattern found, and where.

    Attributes:
        token: the matched string; a secret, so never in ``repr``.
        token_type: the secret type name (``type`` in the payload).
        url: the public URL where it was found (may be empty).
        source: where on GitHub it was found (``commit``, ``content``, ...).
    """

    token: str = attrs.field(repr=False)
    token_type: str
    url: str = ""
    source: str = ""

    @property
    def token_hash(self) -> str:
        """SHA-256 hex of the reported string: the ``token_hash`` of feedback."""
        return _sha256_hex(self.token)


@attrs.frozen
class GitHubFeedback:
    """Feedback on one match, in the hashed form GitHub accepts.

    Attributes:
        token_hash: SHA-256 hex of the reported string.
        token_type: the match's secret type.
        label: ``"true_positive"`` or ``"false_positive"``.
    """

    token_hash: str
    token_type: str
    label: Literal["true_positive", "false_positive"]

    def to_dict(self) -> dict[str, str]:
        """``{"token_hash": ..., "token_type": ..., "label": ...}``."""
        return {"token_hash": self.token_hash, "token_type": self.token_type, "label": self.label}

    @staticmethod
    def to_json(feedback: Iterable[GitHubFeedback]) -> str:
        """The JSON array of *feedback*, the body to send back to GitHub."""
        return json.dumps([f.to_dict() for f in feedback], separators=(",", ":"))


def verify_github_alert(
    body: bytes,
    headers: Mapping[str, str],
    public_keys: GitHubPublicKeys | str | bytes | Mapping[str, Any],
) -> list[GitHubTokenMatch]:
    """Verify a secret-scanning alert's signature, then parse its matches.

    GitHub signs the raw body with ECDSA P-256 and SHA-256 and sends the
    base64 DER signature in ``Github-Public-Key-Signature`` and the signing
    key's identifier in ``Github-Public-Key-Identifier``. Nothing in the
    body is looked at before the signature is checked.

    Args:
        body: the raw request body.
        headers: the request headers (names in any case).
        public_keys: :class:`GitHubPublicKeys`, or the public-keys document
            (JSON text or parsed) for :meth:`GitHubPublicKeys.from_json`.

    Returns:
        The matches, in order: ``[{"token", "type", "url", "source"}, ...]``.

    Raises:
        AlertVerificationError: the alert is refused (bad, missing or
            unverifiable signature, unknown key, malformed body).
    """
    keys = (
        public_keys
        if isinstance(public_keys, GitHubPublicKeys)
        else (GitHubPublicKeys.from_json(public_keys))
    )
    keys.verify(body, headers)
    try:
        items = load_json(body, "alert body")
    except DecodeError as exc:  # not JSON, or nested too deeply
        raise AlertVerificationError(str(exc)) from None
    if not isinstance(items, list):
        raise AlertVerificationError("alert body is not a JSON array")
    matches = []
    for item in items:
        if not isinstance(item, dict):
            raise AlertVerificationError("alert match is not an object")
        token, token_type = item.get("token"), item.get("type")
        url, source = item.get("url", ""), item.get("source", "")
        if not (isinstance(token, str) and token and isinstance(token_type, str)):
            raise AlertVerificationError("alert match lacks a token or type")
        if not isinstance(url, str | None) or not isinstance(source, str | None):
            raise AlertVerificationError("alert match has a bad url or source")
        matches.append(GitHubTokenMatch(token, token_type, url or "", source or ""))
    return matches


def _signature_ok(m: Macaroon, key_for_kid: Callable[[bytes], bytes | None]) -> bool:
    """Whether *m*'s own HMAC chain checks out under the key for its KID.

    Only the token's signature is checked: not its discharges, third-party
    caveats or validity. A leaked token is real even when it is expired or
    useless without a discharge.
    """
    key = key_for_kid(m.nonce.kid or b"")
    if key is None:
        return False
    crypto.check_key(key, "key")
    try:
        end = m._chain_end(key)
    except DecodeError:
        return False
    return m._signed_by(end)


def classify_github_alert(
    matches: Iterable[GitHubTokenMatch],
    key_for_kid: Callable[[bytes], bytes | None],
    *,
    revoke: Callable[[TokenId, bytes], None] | None = None,
) -> list[GitHubFeedback]:
    """Label each match true or false positive; revoke the true ones.

    A match is a true positive if a macaroon in it (a token string, a
    header or a comma-separated bundle, found as :func:`find_tokens` finds
    them) parses and its own signature (its HMAC chain) verifies under
    ``key_for_kid(kid)``. Only the signature is checked, not discharges,
    third-party caveats or validity windows: an expired or undischarged
    token is still a real, leaked one. Everything else, ``fo1_`` tokens
    included (they cannot be checked here), is a false positive.

    A third party can classify its discharges too: their KID is the ticket,
    which its ``key_for_kid`` can open to the discharge's root key.

    Args:
        matches: the matches from :func:`verify_github_alert`.
        key_for_kid: the root key for a KID, or ``None`` if unknown (for
            example ``keyring.key_for``). Its exceptions propagate: a
            keyring outage must not turn into false-positive feedback.
        revoke: if given, called once per distinct verified token with its
            :class:`TokenId` and its decoded (MessagePack) bytes.

    Returns:
        One :class:`GitHubFeedback` per match, in order.
    """
    revoked: set[bytes] = set()
    feedback = []
    for match in matches:
        verified = False
        for hit in _scan((match.token,), None):
            if hit.macaroon is None or hit.data is None:
                continue
            if not _signature_ok(hit.macaroon, key_for_kid):
                continue
            verified = True
            if revoke is not None and hit.data not in revoked:
                revoked.add(hit.data)
                revoke(hit.finding.token_id, hit.data)
        label: Literal["true_positive", "false_positive"] = (
            "true_positive" if verified else "false_positive"
        )
        feedback.append(GitHubFeedback(match.token_hash, match.token_type, label))
    return feedback


def handle_github_alert(
    body: bytes,
    headers: Mapping[str, str],
    public_keys: GitHubPublicKeys | str | bytes | Mapping[str, Any],
    key_for_kid: Callable[[bytes], bytes | None],
    *,
    revoke: Callable[[TokenId, bytes], None] | None = None,
) -> list[GitHubFeedback]:
    """:func:`verify_github_alert`, then :func:`classify_github_alert`.

    Send ``GitHubFeedback.to_json(result)`` back as the response body (to
    partners that give feedback); answer an :class:`AlertVerificationError`
    with a client error.
    """
    matches = verify_github_alert(body, headers, public_keys)
    return classify_github_alert(matches, key_for_kid, revoke=revoke)
