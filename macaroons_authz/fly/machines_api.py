"""Checking Fly.io tokens with Fly.io: the Machines API's token endpoints.

A service that receives Fly.io tokens cannot verify them itself: only
Fly.io holds the keys. superfly/tokenizer sends them to the Machines API
(superfly/macaroon's ``flyio/machinesapi`` client), which answers with each
permission token's verified caveats; this is that client:

* ``POST /v1/tokens/authenticate`` ``{"header": "<tokens>"}`` answers
  ``[{"caveats": [...], "permission_token": "<base64>"}, ...]``, one entry
  per permission token that verified;
* ``POST /v1/tokens/authorize`` ``{"header": ..., "access": {...}}``
  answers ``{"access": {...}, "verified_token": {...}}`` when the access is
  allowed, where the access names resources by slug and name
  (:class:`MachinesAccess`), since Fly.io resolves them;
* any other status answers ``{"error": "..."}``.

The answers are the local :class:`~macaroons_authz.Verifier`'s: a
:class:`~macaroons_authz.CaveatSet`, or a
:class:`~macaroons_authz.VerificationError` /
:class:`~macaroons_authz.UnauthorizedError`. A failed call (unreachable,
timed out, a malformed or oversized answer, a 5xx) is a
:class:`MachinesAPIError`: it fails closed, never allows.

Only macaroons are sent (each permission token and its discharges);
``fo1_`` OAuth tokens in a header stay here.

A header may hold several permission tokens (``fly tokens create ssh``
emits two; flyctl's sessions hold one per organization). As in Go,
:meth:`~MachinesAPIClient.authenticate` (Go's ``Client.Verify``) verifies
each, and :meth:`~MachinesAPIClient.authorize` (Go's ``Authorize``) sends
them all and Fly.io answers with the token that allows the access. Go has
no one-token ``verify``: :meth:`~MachinesAPIClient.verify` refuses several
tokens, as :meth:`Verifier.verify <macaroons_authz.Verifier.verify>` does,
since there is no one answer without an access.
"""

from __future__ import annotations

import binascii
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import attrs

from .._gojson import unb64
from ..caveats.caveat_set import CaveatSet
from ..caveats.registry import CaveatRegistry
from ..caveats.resset import action_letters
from ..errors import DecodeError, MacaroonError, UnauthorizedError, VerificationError
from ..header import decode_token
from ..thirdparty._http import Deadline, _Connection, _HTTPSConnection, bounded, read_body
from ..thirdparty.bundle import (
    Bundle,
    FailedMacaroon,
    NoVerifiedTokensError,
    VerifiedMacaroon,
    at_location,
)
from .locations import LOCATION_PERMISSION, MACHINES_API_INTERNAL_URL, MACHINES_API_URL

__all__ = [
    "AUTHENTICATE_PATH",
    "AUTHORIZE_PATH",
    "MachinesAPIClient",
    "MachinesAPIError",
    "MachinesAccess",
    "RemoteUnauthorizedError",
    "RemoteVerificationError",
]

AUTHENTICATE_PATH = "/v1/tokens/authenticate"
AUTHORIZE_PATH = "/v1/tokens/authorize"
_MAX_MESSAGE = 200


class MachinesAPIError(MacaroonError):
    """The Machines API could not give an answer: the check failed closed.

    Attributes:
        status: the HTTP status, when there was an answer.
        message: what went wrong (the service's ``error``, shortened, or ours).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.message = message
        self.status = status
        super().__init__(message if status is None else f"machines API ({status}): {message}")


class RemoteVerificationError(VerificationError):
    """The Machines API refused the tokens as not authentic (HTTP 401).

    Attributes:
        status: the HTTP status.
    """

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(f"machines API ({status}): {message}")


class RemoteUnauthorizedError(UnauthorizedError):
    """The Machines API found the tokens authentic but not allowing the access (HTTP 403).

    Attributes:
        status: the HTTP status.
    """

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(f"machines API ({status}): {message}")


def _opt_str(value: str | None) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a str or None, not {type(value).__name__}")
    return value


def _opt_argv(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(a, str) for a in value):
        raise TypeError("command is an argv: a list of strings")
    return tuple(value)


@attrs.frozen
class MachinesAccess:
    """An access as the Machines API takes it (``machinesapi.Access``).

    Resources are named as users know them (organization slug, app name,
    volume and Machine ids); Fly.io resolves them and checks that they
    belong together. Give the parents of what you name (a Machine feature
    needs its Machine); apps, volumes and Machines find their own parents.

    Attributes:
        action: the action mask (see :class:`~macaroons_authz.Action`).
    """

    action: int = 0
    org_slug: str | None = attrs.field(default=None, converter=_opt_str)
    app_name: str | None = attrs.field(default=None, converter=_opt_str)
    volume_id: str | None = attrs.field(default=None, converter=_opt_str)
    machine_id: str | None = attrs.field(default=None, converter=_opt_str)
    org_feature: str | None = attrs.field(default=None, converter=_opt_str)
    app_feature: str | None = attrs.field(default=None, converter=_opt_str)
    machine_feature: str | None = attrs.field(default=None, converter=_opt_str)
    mutation: str | None = attrs.field(default=None, converter=_opt_str)
    source_machine: str | None = attrs.field(default=None, converter=_opt_str)
    command: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_argv)
    storage_object: str | None = attrs.field(default=None, converter=_opt_str)

    def to_json(self) -> dict[str, Any]:
        """The JSON object Go writes: unset fields left out, the action as letters."""
        out: dict[str, Any] = {}
        for field in attrs.fields(MachinesAccess):
            value = getattr(self, field.name)
            if field.name == "action":
                if value:
                    out["action"] = action_letters(value)
            elif field.name == "command":
                if value:  # Go's omitempty leaves out an empty argv too
                    out["command"] = list(value)
            elif value is not None:
                out[field.name] = value
        return out


def _clean(message: object) -> str:
    """The service's error text, printable and short (it is shown, so keep it tame)."""
    text = message if isinstance(message, str) else "no error message"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


class MachinesAPIClient:
    """A client of the Machines API's token endpoints.

    Args:
        base_url: the API's address. HTTPS, except Fly.io's private-network
            address :data:`~macaroons_authz.fly.MACHINES_API_INTERNAL_URL`
            (plain HTTP over Fly.io's encrypted private network), which Go
            uses when ``FLY_APP_NAME`` is set.
        timeout: seconds one call may take, connecting, sending and reading
            included.
        max_response: the largest answer read, in bytes.
        ssl_context: TLS settings; the system's trusted CAs by default.
        clock: a monotonic clock for the deadline.
        registry: the caveat registry the answers' caveats are read with.

    Raises:
        ValueError: a base URL that is not HTTPS (or the private address),
            a timeout that is not a positive finite number, or a
            *max_response* that is not a positive integer.
    """

    def __init__(
        self,
        base_url: str = MACHINES_API_URL,
        *,
        timeout: float = 10.0,
        max_response: int = 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: CaveatRegistry | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        internal = urllib.parse.urlsplit(MACHINES_API_INTERNAL_URL)
        if parts.scheme == "http" and parts.netloc == internal.netloc:
            self._https = False
        elif parts.scheme == "https" and parts.hostname:
            self._https = True
        else:
            raise ValueError(
                "the Machines API URL must be https:// (or Fly.io's private "
                f"{MACHINES_API_INTERNAL_URL})"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("the Machines API URL takes no query, fragment or credentials")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(max_response, bool) or not isinstance(max_response, int) or max_response < 1:
            raise ValueError("max_response must be a positive number of bytes")
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._base_url = base_url
        self._timeout = float(timeout)
        self._max_response = max_response
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._clock = clock
        self._registry = registry

    def __repr__(self) -> str:
        return f"<MachinesAPIClient {self._base_url}>"

    # -- the endpoints ---------------------------------------------------

    def authenticate(self, header: str | Bundle) -> Bundle:
        """Verify every Fly.io permission token of *header* with the Machines API.

        Returns a new bundle in which each permission token is a
        :class:`~macaroons_authz.VerifiedMacaroon` holding the caveats Fly.io
        verified, or a :class:`~macaroons_authz.FailedMacaroon`; decide
        accesses on it with :meth:`Bundle.validate
        <macaroons_authz.Bundle.validate>` (what superfly/tokenizer does).

        Raises:
            NoVerifiedTokensError: no permission token verified (or there is none).
            RemoteVerificationError: the service refused the tokens (401).
            MachinesAPIError: the call failed; nothing is known.
        """
        bundle = self._bundle(header)
        permissions = bundle.permission_tokens()
        if not permissions:
            raise NoVerifiedTokensError([])
        answer = self._post(AUTHENTICATE_PATH, {"header": _macaroons(bundle)})
        if not isinstance(answer, list):
            raise MachinesAPIError("bad answer: not a JSON list")
        verified = {}
        for entry in answer:
            token, trusted = self._verified_token(entry)
            verified[token] = trusted
        results: list[VerifiedMacaroon | FailedMacaroon] = []
        tokens = list(bundle)
        for i, t in enumerate(tokens):
            if bundle.is_permission(t):
                caveats = verified.get(decode_token(t.text))
                if caveats is None:
                    result: VerifiedMacaroon | FailedMacaroon = FailedMacaroon(
                        t.text, t.macaroon, VerificationError("verification failed")
                    )
                else:
                    result = VerifiedMacaroon(t.text, t.macaroon, caveats)
                tokens[i] = result
                results.append(result)
        out = Bundle(bundle.location, tokens, registry=self._registry)
        if not any(isinstance(r, VerifiedMacaroon) for r in results):
            raise NoVerifiedTokensError([r for r in results if isinstance(r, FailedMacaroon)])
        return out

    def verify(self, header: str | Bundle) -> CaveatSet:
        """The caveats Fly.io verified for the one permission token of *header*.

        Raises:
            DecodeError: *header* holds several permission tokens
                (:meth:`authenticate` verifies each, :meth:`authorize`
                accepts them if one allows the access).
            NoVerifiedTokensError: the token did not verify (or there is none).
            RemoteVerificationError: the service refused the tokens (401).
            MachinesAPIError: the call failed.
        """
        bundle = self._bundle(header)
        if len(bundle.permission_tokens()) > 1:
            raise DecodeError(
                "multiple permission tokens: authenticate() verifies each, authorize() "
                "accepts the header if one of them allows the access"
            )
        # authenticate() raises unless some permission token (here, the one) verified.
        verified = [t for t in self.authenticate(bundle) if isinstance(t, VerifiedMacaroon)]
        return verified[0].caveats

    def authorize(self, header: str | Bundle, access: MachinesAccess) -> CaveatSet:
        """Ask Fly.io whether *header* allows *access*; the caveats of the token that does.

        Every permission token of *header* is sent: the access is allowed
        if any of them allows it, and the answer names that one.

        Raises:
            RemoteUnauthorizedError: the tokens do not allow the access (403).
            RemoteVerificationError: the service refused the tokens (401).
            NoVerifiedTokensError: the answer names no permission token of
                *header* (or *header* has none).
            MachinesAPIError: the call failed.
        """
        if not isinstance(access, MachinesAccess):
            raise TypeError("access must be a MachinesAccess")
        bundle = self._bundle(header)
        permissions = bundle.permission_tokens()
        if not permissions:
            raise NoVerifiedTokensError([])
        body = {"header": _macaroons(bundle), "access": access.to_json()}
        answer = self._post(AUTHORIZE_PATH, body)
        if not isinstance(answer, dict):
            raise MachinesAPIError("bad answer: not a JSON object")
        token, caveats = self._verified_token(answer.get("verified_token"))
        if not any(decode_token(t.text) == token for t in permissions):
            raise NoVerifiedTokensError([])
        return caveats

    # -- the wire --------------------------------------------------------

    def _bundle(self, header: str | Bundle) -> Bundle:
        if isinstance(header, Bundle):
            if header.location != LOCATION_PERMISSION:
                raise ValueError(f"the bundle must be for {LOCATION_PERMISSION}")
            return header.copy()
        if not isinstance(header, str):
            raise TypeError("header must be a str or a Bundle")
        return Bundle.parse(header, LOCATION_PERMISSION, registry=self._registry)

    def _verified_token(self, entry: object) -> tuple[bytes, CaveatSet]:
        if not isinstance(entry, dict):
            raise MachinesAPIError("bad answer: a verified token is not a JSON object")
        raw, caveats = entry.get("permission_token"), entry.get("caveats")
        if not isinstance(raw, str) or not isinstance(caveats, list):
            raise MachinesAPIError("bad answer: a verified token lacks its token or caveats")
        try:
            return unb64(raw), CaveatSet.from_json(caveats, self._registry)
        except (binascii.Error, ValueError):
            # DecodeError is a ValueError: a caveat list the registry cannot read.
            raise MachinesAPIError("bad answer: a verified token does not decode") from None

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        deadline = Deadline(self._clock() + self._timeout, self._clock)
        data = json.dumps(body).encode("utf-8")
        conn: http.client.HTTPConnection
        if self._https:
            conn = _HTTPSConnection(self._host, self._port, context=self._ssl_context)
        else:
            conn = _Connection(self._host, self._port)
        try:
            with bounded(deadline):
                conn.timeout = deadline.left()
                conn.request(
                    "POST",
                    self._prefix + path,
                    body=data,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                )
                with conn.getresponse() as resp:
                    status = resp.status
                    raw = read_body(resp, self._max_response, deadline)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.remaining() <= 0:
                raise MachinesAPIError("timed out") from None
            # Name the failure, never the request (it holds the tokens).
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
            raise MachinesAPIError(f"request failed: {reason or type(exc).__name__}") from None
        finally:
            conn.close()
        if len(raw) > self._max_response:
            raise MachinesAPIError(f"answer larger than {self._max_response} bytes", status=status)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise MachinesAPIError("bad answer: not JSON", status=status) from None
        if status == 200:
            return doc
        message = _clean(doc.get("error") if isinstance(doc, dict) else None)
        if status == 401:
            raise RemoteVerificationError(message, status=status)
        if status == 403:
            raise RemoteUnauthorizedError(message, status=status)
        raise MachinesAPIError(message, status=status)


def _macaroons(bundle: Bundle) -> str:
    """Each permission token and its discharges, comma-joined (no OAuth token, no scheme)."""
    keep = bundle.with_discharges(at_location(bundle.location))
    return bundle.select(keep).header(scheme=False)
