"""SSO identities and the discharges an authentication service mints from them.

An authentication third party learns who its caller is (a Fly.io login, a
Google account from an OpenID Connect ``id_token``, a GitHub account from
the GitHub API), gathers that into a
:class:`~macaroons_authz.DischargeRequest`, checks a ticket's caveats
(``ConfineUser``, ``ConfineOrganization``, ``ConfineGoogleHD``,
``ConfineGitHubOrg``, ``MaxValidity``) against it, and mints a short-lived
proof discharge carrying the matching attestations. Nothing here touches
the network or the wall clock: keys, API responses and the time are given.

>>> from macaroons_authz import ConfineGitHubOrg, Macaroon, new_encryption_key
>>> tp_key = new_encryption_key()
>>> token = Macaroon.new(b"kid", "https://api.example", bytes(32))
>>> token.add_3p(tp_key, "https://auth.example", ConfineGitHubOrg(42))
>>> (ticket,) = token.third_party_tickets()["https://auth.example"]
>>> who = github_identity(
...     {"id": 7, "login": "octocat"},
...     [{"state": "active", "organization": {"id": 42}}],
... )
>>> request = discharge_request(who, now=1_700_000_000)
>>> discharge = issue_discharge(tp_key, "https://auth.example", ticket, request, now=1_700_000_000)
>>> [c.name for c in discharge.unsafe_caveats]
['ValidityWindow', 'GitHubUserID']
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .. import crypto
from ..caveats._base import U64_MAX, Caveat, non_finite_time
from ..caveats.auth import (
    DischargeRequest,
    FlyioIdentity,
    FlyioUserID,
    GitHubIdentity,
    GitHubUserID,
    GoogleIdentity,
    GoogleUserID,
)
from ..caveats.caveat_set import CaveatSet
from ..caveats.core import ValidityWindow
from ..caveats.registry import CaveatRegistry
from ..errors import AttenuationError, UnauthorizedError, VerificationError
from ..macaroon import Macaroon, discharge_ticket

if TYPE_CHECKING:
    from .jwks import KeySource

__all__ = [
    "GOOGLE_ISSUERS",
    "ExpiredTokenError",
    "HostedDomainError",
    "IdentityError",
    "InvalidSignatureError",
    "MalformedIdentityError",
    "MissingHostedDomainError",
    "NotYetValidError",
    "UnknownSigningKeyError",
    "UnsupportedAlgorithmError",
    "WrongAudienceError",
    "WrongHostedDomainError",
    "WrongIssuerError",
    "WrongNonceError",
    "discharge_request",
    "github_identity",
    "issue_discharge",
    "verify_google_id_token",
]

#: The issuers Google's id_tokens carry.
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")

#: The longest id_token (in characters) that is parsed at all.
MAX_ID_TOKEN_LENGTH = 16 * 1024
_MIN_RSA_BITS = 2048
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SUBJECT = re.compile(r"0|[1-9][0-9]{0,254}")

Identity = FlyioIdentity | GoogleIdentity | GitHubIdentity


# -- errors ------------------------------------------------------------------


class IdentityError(VerificationError):
    """An identity could not be established. Messages never hold the token."""


class MalformedIdentityError(IdentityError):
    """An id_token, a key set or an API response is not what it must be."""


class UnsupportedAlgorithmError(IdentityError):
    """The id_token is not signed with RS256 (``alg: none`` included)."""


class UnknownSigningKeyError(IdentityError):
    """The key set holds no RSA signing key with the id_token's ``kid``."""


class InvalidSignatureError(IdentityError):
    """The id_token's signature does not verify."""


class WrongIssuerError(IdentityError):
    """The id_token's ``iss`` is not a trusted issuer."""


class WrongAudienceError(IdentityError):
    """The id_token was not issued for us (``aud`` or ``azp``)."""


class ExpiredTokenError(IdentityError):
    """The id_token's ``exp`` has passed, beyond the allowed clock skew."""


class NotYetValidError(IdentityError):
    """The id_token is issued (``iat``) or valid (``nbf``) in the future."""


class WrongNonceError(IdentityError):
    """The id_token's ``nonce`` is missing or not the one expected."""


class HostedDomainError(IdentityError):
    """The id_token's hosted domain (``hd``) is not the one required."""


class MissingHostedDomainError(HostedDomainError):
    """A hosted domain is required but the id_token has none (a consumer account)."""


class WrongHostedDomainError(HostedDomainError):
    """The id_token's hosted domain is another one."""


# -- Google ------------------------------------------------------------------


def verify_google_id_token(
    id_token: str,
    jwks: Mapping[str, Any] | KeySource | Callable[[str], Mapping[str, Any]],
    *,
    audience: str | Sequence[str],
    now: float,
    issuer: str | Sequence[str] = GOOGLE_ISSUERS,
    nonce: str | None = None,
    max_skew: float = 60,
    hosted_domain: str | None = None,
) -> GoogleIdentity:
    """Verify a Google OpenID Connect id_token and return who it names.

    The token is parsed strictly as a compact JWS; only ``RS256`` is
    accepted. Its key is chosen by ``kid`` from *jwks*: Google's published
    key set, or where to get it by ``kid``, such as a
    :class:`~macaroons_authz.JWKSProvider` (nothing is fetched here
    otherwise). Then the claims are checked:

    * ``iss`` is one of *issuer* (and, with a key provider that has
      ``issuers``, one of those);
    * ``aud`` (a string or a list) lists only our client ids, at least one;
      with several audiences, ``azp`` must be present and one of ours;
    * ``exp`` has not passed and ``iat`` (and ``nbf``, if present) is not in
      the future, each within *max_skew* seconds;
    * ``nonce`` equals *nonce*, when one is given;
    * ``hd`` equals *hosted_domain*, when one is given. The hosted domain is
      only ever read from the signed token.

    The identity is keyed on ``sub``, a decimal string (leading zeros are
    refused so that one number has one spelling); ``email`` is kept only
    when ``email_verified`` is true.

    Args:
        id_token: the compact JWS.
        jwks: a JSON Web Key Set document (``{"keys": [...]}``), or a
            :class:`~macaroons_authz.KeySource` (an object with
            ``keys_for(kid)``, such as :meth:`JWKSProvider.google()
            <macaroons_authz.JWKSProvider.google>`), or a callable
            ``kid -> key set``; asked only once the header names an RS256
            key.
        audience: our OAuth client id(s).
        now: the current time, unix seconds.
        issuer: the accepted issuer(s).
        nonce: the nonce sent in the authentication request, if any.
        max_skew: the clock skew allowed, in seconds.
        hosted_domain: the Google Workspace domain required, if any.

    Raises:
        IdentityError: a subclass naming the check that failed; a
            :class:`~macaroons_authz.KeySetError` when a provider has no
            usable keys.
        InvalidAccessError: *now* is NaN, infinite or not a number (a NaN
            would pass every time check).
    """
    if not isinstance(id_token, str):
        raise TypeError("id_token must be a str")
    now = _finite_now(now)
    skew = _as_float(max_skew)
    if skew is None or skew < 0:
        raise ValueError("max_skew must be a non-negative number of seconds")
    max_skew = skew
    header, claims, signing_input, signature = _parse_jws(id_token)
    alg = header.get("alg")
    if alg != "RS256":
        raise UnsupportedAlgorithmError("id_token must be signed with RS256")
    if "crit" in header:
        raise MalformedIdentityError("id_token has critical header parameters")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise UnknownSigningKeyError("id_token names no signing key")
    key = _rsa_key(_key_set(jwks, kid), kid)
    if len(signature) != (key.key_size + 7) // 8:
        raise InvalidSignatureError("id_token signature is invalid")
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidSignatureError("id_token signature is invalid") from None

    issuers = (issuer,) if isinstance(issuer, str) else tuple(issuer)
    if claims.get("iss") not in issuers:
        raise WrongIssuerError("id_token issuer is not trusted")
    # A provider's keys sign for its own issuer only, whatever *issuer* allows.
    own = None if isinstance(jwks, Mapping) else getattr(jwks, "issuers", None)
    if own is not None and claims.get("iss") not in own:
        raise WrongIssuerError("id_token issuer is not the key provider's")
    _check_audience(claims, (audience,) if isinstance(audience, str) else tuple(audience))
    exp = _number(claims, "exp")
    iat = _number(claims, "iat")
    if now > exp + max_skew:
        raise ExpiredTokenError("id_token has expired")
    if iat > now + max_skew:
        raise NotYetValidError("id_token is issued in the future")
    if "nbf" in claims and _number(claims, "nbf") > now + max_skew:
        raise NotYetValidError("id_token is not valid yet")
    if nonce is not None:
        got = claims.get("nonce")
        # JSON can spell lone surrogates ("\ud800"), which strict UTF-8 cannot encode.
        if not isinstance(got, str) or not crypto.equal(
            got.encode("utf-8", "surrogatepass"), nonce.encode("utf-8", "surrogatepass")
        ):
            raise WrongNonceError("id_token nonce does not match")
    hd = claims.get("hd", "")
    if not isinstance(hd, str):
        raise MalformedIdentityError("id_token hd claim must be a string")
    if hosted_domain is not None:
        if not hd:
            raise MissingHostedDomainError(
                f"id_token has no hosted domain; {hosted_domain} is required"
            )
        if hd != hosted_domain:
            raise WrongHostedDomainError(f"id_token hosted domain is not {hosted_domain}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _SUBJECT.fullmatch(sub):
        raise MalformedIdentityError("id_token sub must be a decimal string")
    email = claims.get("email", "")
    verified = claims.get("email_verified") is True
    return GoogleIdentity(
        int(sub), hd=hd, email=email if verified and isinstance(email, str) else ""
    )


def _b64url(segment: str, what: str) -> bytes:
    if not _B64URL.fullmatch(segment):
        raise MalformedIdentityError(f"id_token {what} is not base64url")
    try:  # a length of 4n + 1 fails here
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedIdentityError(f"id_token {what} is not base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        raise MalformedIdentityError(f"id_token {what} is not canonical base64url")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise MalformedIdentityError("id_token JSON has a duplicate member")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise MalformedIdentityError("id_token JSON has a non-finite number")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedIdentityError(f"id_token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedIdentityError(f"id_token {what} is not a JSON object")
    return value


def _parse_jws(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if len(token) > MAX_ID_TOKEN_LENGTH:
        raise MalformedIdentityError("id_token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedIdentityError("id_token is not a compact JWS")
    header = _json_object(_b64url(parts[0], "header"), "header")
    claims = _json_object(_b64url(parts[1], "payload"), "payload")
    signature = _b64url(parts[2], "signature")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _key_set(source: object, kid: str) -> Any:
    """The key set *source* is, or gives for *kid* (a provider, or a callable)."""
    if isinstance(source, Mapping):
        return source
    keys_for = getattr(source, "keys_for", None)
    if callable(keys_for):
        return keys_for(kid)
    return source(kid) if callable(source) else source


def _jwk_int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedIdentityError(f"JWKS key has no {name}")
    try:
        return int.from_bytes(_b64url(value, f"JWKS {name}"), "big")
    except MalformedIdentityError:
        raise MalformedIdentityError(f"JWKS key {name} is not base64url") from None


def _rsa_key(jwks: Mapping[str, Any], kid: str) -> rsa.RSAPublicKey:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise MalformedIdentityError("JWKS must be an object with a list of keys")
    matches = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
    if not matches:
        raise UnknownSigningKeyError("no key in the JWKS has the id_token's kid")
    if len(matches) > 1:
        raise MalformedIdentityError("several keys in the JWKS have the id_token's kid")
    jwk = matches[0]
    if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
        raise UnknownSigningKeyError("the id_token's key is not an RSA signing key")
    if jwk.get("alg", "RS256") != "RS256":
        raise UnsupportedAlgorithmError("the id_token's key is not for RS256")
    n, e = _jwk_int(jwk, "n"), _jwk_int(jwk, "e")
    if n.bit_length() < _MIN_RSA_BITS:
        raise MalformedIdentityError(f"JWKS key is shorter than {_MIN_RSA_BITS} bits")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise MalformedIdentityError("JWKS key is not a valid RSA public key") from None


def _as_float(value: object) -> float | None:
    """*value* as a finite float, or ``None`` (not a number, NaN, infinite, or beyond floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int such as 10**400
        return None
    return number if math.isfinite(number) else None


def _finite_now(now: float, what: str = "now") -> float:
    """*now*, if it is a finite time (*what* names it in the error).

    Raises:
        InvalidAccessError: *now* is NaN, infinite, not a number, or an int
            too large for a float.
    """
    if _as_float(now) is None:
        raise non_finite_time(what, now)
    return now


def _number(claims: Mapping[str, Any], name: str) -> float:
    number = _as_float(claims.get(name))
    if number is None:
        raise MalformedIdentityError(f"id_token {name} claim must be a finite number")
    return number


def _check_audience(claims: Mapping[str, Any], ours: tuple[str, ...]) -> None:
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
        raise MalformedIdentityError("id_token aud claim must be a string or a list of strings")
    if not auds or any(a not in ours for a in auds):
        raise WrongAudienceError("id_token was not issued for this client")
    if len(auds) > 1 and claims.get("azp") not in ours:
        raise WrongAudienceError("id_token with several audiences needs our azp")


# -- GitHub and Fly.io -------------------------------------------------------


def _api_int(obj: Any, name: str, what: str) -> int:
    value = obj.get(name) if isinstance(obj, Mapping) else None
    # GitHub ids are 64-bit, as GitHubUserID encodes them.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise MalformedIdentityError(f"GitHub {what} has no valid {name}")
    return value


def github_identity(
    user: Mapping[str, Any], memberships: Sequence[Mapping[str, Any]]
) -> GitHubIdentity:
    """A GitHub identity from parsed API responses (nothing is fetched).

    Args:
        user: the body of ``GET /user`` (``id`` and ``login`` are read).
        memberships: the body of ``GET /user/memberships/orgs``; only orgs
            whose membership ``state`` is ``"active"`` count (pending
            invitations do not).

    Raises:
        MalformedIdentityError: a response lacks what is needed, or a
            membership is another user's.
    """
    user_id = _api_int(user, "id", "user")
    login = user.get("login")
    if not isinstance(login, str) or not login:
        raise MalformedIdentityError("GitHub user has no login")
    if isinstance(memberships, (str, bytes, Mapping)) or not isinstance(memberships, Sequence):
        raise MalformedIdentityError("GitHub memberships must be a list")
    org_ids: list[int] = []
    for m in memberships:
        if not isinstance(m, Mapping):
            raise MalformedIdentityError("GitHub membership must be an object")
        if "user" in m and _api_int(m.get("user"), "id", "membership user") != user_id:
            raise MalformedIdentityError("GitHub membership belongs to another user")
        state = m.get("state")
        if not isinstance(state, str):
            raise MalformedIdentityError("GitHub membership has no state")
        org_id = _api_int(m.get("organization"), "id", "membership organization")
        if state == "active" and org_id not in org_ids:
            org_ids.append(org_id)
    return GitHubIdentity(user_id, login=login, org_ids=org_ids)


def discharge_request(*identities: Identity, now: float) -> DischargeRequest:
    """A :class:`~macaroons_authz.DischargeRequest` from verified identities at *now*.

    Pass a :class:`~macaroons_authz.FlyioIdentity` (user id and org ids of a
    Fly.io login), a :class:`~macaroons_authz.GoogleIdentity` (from
    :func:`verify_google_id_token`) or a :class:`~macaroons_authz.GitHubIdentity`
    (from :func:`github_identity`), as many as the caller proved.

    Raises:
        InvalidAccessError: *now* is NaN, infinite or not a number.
    """
    now = _finite_now(now)
    flyio: list[FlyioIdentity] = []
    google: list[GoogleIdentity] = []
    github: list[GitHubIdentity] = []
    for i in identities:
        if isinstance(i, FlyioIdentity):
            flyio.append(i)
        elif isinstance(i, GoogleIdentity):
            google.append(i)
        elif isinstance(i, GitHubIdentity):
            github.append(i)
        else:
            raise TypeError(f"not an identity: {type(i).__name__}")
    return DischargeRequest(flyio=flyio, google=google, github=github, at=now)


# -- minting -----------------------------------------------------------------


def _attestations(request: DischargeRequest) -> list[Caveat]:
    out: list[Caveat] = [FlyioUserID(i.user_id) for i in request.flyio]
    out += [GitHubUserID(i.user_id) for i in request.github]
    out += [GoogleUserID(i.user_id) for i in request.google]
    return out


def _validity_window(now: float, validity: float) -> ValidityWindow:
    """``ValidityWindow(floor(now), floor(now + validity))`` for a finite *now*.

    Raises:
        AttenuationError: *validity* is not a positive number of seconds, or
            the window does not fit a ValidityWindow's 64-bit fields.
    """
    seconds = _as_float(validity)
    if seconds is None or seconds <= 0:
        raise AttenuationError("validity must be a positive number of seconds")
    end = now + seconds
    if not -(2.0**63) <= now <= end < 2.0**63:
        raise AttenuationError("the validity window does not fit 64-bit unix seconds")
    return ValidityWindow(math.floor(now), math.floor(end))


def _mint_discharge(
    ticket_caveats: CaveatSet,
    discharge: Macaroon,
    request: DischargeRequest,
    *,
    now: float,
    validity: float,
    bind_to: Macaroon | bytes | None = None,
) -> Macaroon:
    """Check *ticket_caveats* against *request*, then attest and finalize *discharge*.

    The shared step of :func:`issue_discharge` and the discharge service;
    *discharge* is the one :func:`~macaroons_authz.discharge_ticket` made.
    It gets ``ValidityWindow(floor(now), floor(now + validity))``, then an
    attestation per identity, then the binding; it is finalized.

    Raises:
        UnauthorizedError: the request has no identity, or does not meet
            the ticket's caveats (every unmet one is a cause); *discharge*
            is left unchanged. An :class:`~macaroons_authz.InvalidAccessError`
            if *now* is NaN, infinite or not a number.
    """
    now = _finite_now(now)
    window = _validity_window(now, validity)
    if not (request.flyio or request.google or request.github):
        raise UnauthorizedError("unauthorized: the discharge request holds no verified identity")
    ticket_caveats.validate(attrs.evolve(request, expiry=float(window.not_after), at=now))
    discharge.add(window, *_attestations(request))
    if bind_to is not None:
        discharge.bind(bind_to)
    discharge.encode()
    return discharge


def issue_discharge(
    key: bytes,
    location: str,
    ticket: bytes,
    request: DischargeRequest,
    *,
    now: float,
    validity: float = 300,
    bind_to: Macaroon | bytes | None = None,
    registry: CaveatRegistry | None = None,
) -> Macaroon:
    """Mint a proof discharge for *ticket* as authentication service *location*.

    The ticket is opened with *key*; its caveats (``ConfineUser``,
    ``ConfineOrganization``, ``ConfineGoogleHD``, ``ConfineGitHubOrg``,
    ``MaxValidity``, ...) are validated against *request* with the planned
    expiry, so ``MaxValidity`` sees it. The discharge then gets a
    ``ValidityWindow`` of *validity* seconds from *now*, a ``FlyioUserID`` /
    ``GitHubUserID`` / ``GoogleUserID`` attestation per identity, and, when
    *bind_to* is given, a binding to that parent token. It is returned
    finalized: encode it with :func:`~macaroons_authz.encode_token`.

    Raises:
        VerificationError: the ticket was not sealed with *key*.
        DecodeError: the ticket opens but is malformed.
        UnauthorizedError: the request does not meet the ticket's caveats
            (each unmet requirement is a cause) or holds no identity;
            nothing is minted. An :class:`~macaroons_authz.InvalidAccessError`
            if *now* is NaN, infinite or not a number.
    """
    caveats, discharge = discharge_ticket(key, location, ticket, registry)
    return _mint_discharge(caveats, discharge, request, now=now, validity=validity, bind_to=bind_to)
