"""The first party's side: :class:`DischargeClient` fetches the discharges a bundle lacks."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import DecodeError
from ..header import decode_token, strip_scheme
from ..macaroon import Macaroon
from ..verifier import FLY_PERMISSION_LOCATION
from . import _http
from .bundle import Bundle, UnverifiedMacaroon
from .protocol import (
    DischargeError,
    DischargeTimeoutError,
    UserInteractionRequiredError,
    _init_url,
    _seconds,
)

__all__ = ["DischargeClient"]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: they could carry credentials to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise DischargeError("bad third-party URL") from None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port or default


#: Where a credential may go: a location's origin and path.
_Scope = tuple[tuple[str, str, int | None], str]


def _scope(location: str) -> _Scope:
    return _origin(location), urllib.parse.urlsplit(location).path.rstrip("/")


def _within(url: str, scope: _Scope) -> bool:
    origin, prefix = scope
    path = urllib.parse.urlsplit(url).path
    return _origin(url) == origin and (path == prefix or path.startswith(prefix + "/"))


def _plain_url(url: object) -> bool:
    """Printable ASCII without spaces: what an HTTP request line can carry as is."""
    return isinstance(url, str) and url.isascii() and url.isprintable() and " " not in url


def _reason(exc: BaseException) -> str:
    """What failed, never the URL (poll URLs hold secrets) nor a header (credentials)."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, OSError):
        exc = exc.reason
    if isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError):
        return str(exc) or type(exc).__name__
    # http.client's messages may quote the URL (InvalidURL) or a header value.
    return type(exc).__name__


class DischargeClient:
    """Fetches the discharges a bundle lacks from trusted third parties.

    Only tickets for *trusted_locations* are sent anywhere; others are left
    undischarged. Tickets are fetched one after the other.

    Args:
        trusted_locations: the third-party locations (exactly as in the
            caveats) the client may send tickets to; ``http``/``https`` only.
        credentials: ``Authorization`` header values by third-party
            location. Each is sent only while fetching a ticket for its own
            location (a trailing ``/`` aside), and only to URLs under it:
            same origin, and a path under the location's. Two locations on
            one origin each get their own.
        open_user_url: opens a user URL (in a browser) for user-interactive
            flows; without it those flows fail with
            :class:`UserInteractionRequiredError`.
        opener: the :mod:`urllib.request` opener to use; by default one that
            follows no redirects and ends every request by the deadlines
            below. With an opener of your own, the deadlines are checked
            before each request and between reads of a response body, and
            each read of the body is bounded by the time left when the
            request started; reads of the status line and headers are
            bounded by what your handlers do.
        timeout: seconds one :meth:`fetch` may take, polling included:
            checked before each request and each read, and no socket
            operation may outlast it (:class:`DischargeTimeoutError`).
        request_timeout: seconds one HTTP request may take, in the same way
            (a :class:`DischargeError`).
        backoff: first wait between polls, in seconds; it doubles up to
            *max_backoff*.
        sleep, clock: injectable ``time.sleep`` and ``time.monotonic``.
        max_response: the largest response body read.
    """

    def __init__(
        self,
        trusted_locations: Iterable[str],
        *,
        credentials: Mapping[str, str] | None = None,
        open_user_url: Callable[[str], None] | None = None,
        opener: urllib.request.OpenerDirector | None = None,
        timeout: float = 300,
        request_timeout: float = 30,
        backoff: float = 1,
        max_backoff: float = 30,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_response: int = 1024 * 1024,
    ) -> None:
        if isinstance(trusted_locations, str):
            raise TypeError("trusted_locations must be a collection of locations")
        self._trusted = frozenset(trusted_locations)
        for loc in self._trusted:
            if urllib.parse.urlsplit(loc).scheme not in ("http", "https"):
                raise ValueError("trusted third-party locations must be http(s) URLs")
        self._credentials: dict[_Scope, str] = {}
        for loc, value in (credentials or {}).items():
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                raise ValueError(f"the credential for {loc} must be one line of text")
            try:
                scope = _scope(loc)
            except DischargeError:
                raise ValueError(f"bad credential location {loc!r}") from None
            if scope in self._credentials:
                raise ValueError(f"two credentials for the location {loc!r}")
            self._credentials[scope] = value
        self._open_user_url = open_user_url
        self._opener = opener or _http.build_opener(_NoRedirects)
        self._timeout = _seconds(timeout, "timeout")
        self._request_timeout = _seconds(request_timeout, "request_timeout")
        self._backoff = _seconds(backoff, "backoff")
        self._max_backoff = _seconds(max_backoff, "max_backoff")
        self._sleep = sleep
        self._clock = clock
        self._max_response = max_response

    def __repr__(self) -> str:
        return f"<DischargeClient trusted={sorted(self._trusted)}>"

    def fetch(self, bundle: Bundle) -> list[UnverifiedMacaroon]:
        """Fetch a discharge for every undischarged ticket of a trusted location.

        The discharges obtained are added to *bundle* and returned. Tickets
        that fail do not stop the others.

        Raises:
            DischargeError: some ticket got no discharge (the others were
                added); a combined error holds each in ``errors``. A
                :class:`DischargeTimeoutError` once *timeout* has passed.
        """
        deadline = _http.Deadline(self._clock() + self._timeout, self._clock)
        found: list[str] = []
        errors: list[DischargeError] = []
        for location, tickets in bundle.undischarged_tickets().items():
            if location not in self._trusted:
                continue
            for ticket in tickets:
                try:
                    found.append(self._fetch_one(location, ticket, deadline))
                except DischargeError as exc:
                    errors.append(exc)
        added = bundle.add_discharges(*found)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise DischargeError("; ".join(str(e) for e in errors), errors=errors)
        return added

    def fetch_header(self, header: str, location: str = FLY_PERMISSION_LOCATION) -> str:
        """:meth:`fetch` for a header; return the header with the discharges added.

        The result has the ``FlyV1`` scheme if *header* had one.
        """
        had_scheme = strip_scheme(header) != header.strip()
        bundle = Bundle.parse(header, location)
        self.fetch(bundle)
        return bundle.header(scheme=had_scheme)

    def _fetch_one(self, location: str, ticket: bytes, deadline: _http.Deadline) -> str:
        body = json.dumps({"ticket": base64.b64encode(ticket).decode("ascii")}).encode("ascii")
        scope = _scope(location)
        status, doc = self._request(_init_url(location), body, deadline, scope)
        if doc.get("error"):
            raise DischargeError(str(doc["error"]), status=status)
        if doc.get("discharge"):
            discharge = doc["discharge"]
        elif doc.get("poll_url"):
            discharge = self._poll(doc["poll_url"], scope, deadline)
        elif isinstance(doc.get("user_interactive"), dict):
            ui = doc["user_interactive"]
            poll_url, user_url = ui.get("poll_url"), ui.get("user_url")
            urls_ok = isinstance(poll_url, str) and isinstance(user_url, str)
            if not (urls_ok and poll_url and user_url):
                raise DischargeError("bad discharge response")
            if self._open_user_url is None:
                raise UserInteractionRequiredError("missing user-url callback")
            self._open_user_url(user_url)
            discharge = self._poll(poll_url, scope, deadline)
        else:
            raise DischargeError("bad discharge response")
        return _check_discharge(discharge, ticket)

    def _poll(self, poll_url: object, scope: _Scope, deadline: _http.Deadline) -> str:
        if not (isinstance(poll_url, str) and _plain_url(poll_url)):
            raise DischargeError("bad discharge response: bad poll URL")
        if _origin(poll_url) != scope[0]:
            raise DischargeError("bad discharge response: poll URL is not the third party's")
        wait = 0.0
        while True:
            status, doc = self._request(poll_url, None, deadline, scope)
            if status == 202:
                wait = self._backoff if wait == 0 else min(wait * 2, self._max_backoff)
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise DischargeTimeoutError("timed out waiting for the discharge")
                self._sleep(min(wait, remaining))
                continue
            if doc.get("error"):
                raise DischargeError(str(doc["error"]), status=status)
            discharge = doc.get("discharge")
            if not isinstance(discharge, str) or not discharge:
                raise DischargeError(f"bad response ({status}): missing discharge")
            return discharge

    def _request(
        self, url: str, body: bytes | None, deadline: _http.Deadline, scope: _Scope
    ) -> tuple[int, dict[str, Any]]:
        if deadline.remaining() <= 0:
            raise DischargeTimeoutError("timed out waiting for the discharge")
        # This request ends by the fetch's deadline or its own, whichever is first.
        bound = _http.Deadline(min(deadline.at, self._clock() + self._request_timeout), self._clock)
        try:
            # Only http(s) URLs reach here: trusted locations and same-origin poll URLs.
            req = urllib.request.Request(url, data=body, method="POST" if body else "GET")  # noqa: S310
        except ValueError:
            raise DischargeError("bad third-party URL") from None
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        credential = self._credentials.get(scope)
        if credential is not None and _within(url, scope):
            req.add_header("Authorization", credential)
        try:
            with _http.bounded(bound):
                try:
                    with self._opener.open(req, timeout=bound.left()) as resp:
                        status = resp.status
                        data = b"" if status == 202 else self._read(resp, bound)
                except urllib.error.HTTPError as err:
                    with err:
                        status, data = err.code, self._read(err, bound)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if deadline.remaining() <= 0:
                raise DischargeTimeoutError("timed out waiting for the discharge") from None
            raise DischargeError(f"third-party request failed: {_reason(exc)}") from None
        if status == 202:
            return status, {}
        if len(data) > self._max_response:
            raise DischargeError(f"bad response ({status}): too large")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise DischargeError(f"bad response ({status}): not JSON") from None
        if not isinstance(doc, dict):
            raise DischargeError(f"bad response ({status}): not a JSON object")
        if not doc.get("error") and status >= 300:
            raise DischargeError("no discharge", status=status)
        return status, doc

    def _read(self, response: Any, deadline: _http.Deadline) -> bytes:
        return _http.read_body(response, self._max_response, deadline)


def _check_discharge(discharge: object, ticket: bytes) -> str:
    if not isinstance(discharge, str):
        raise DischargeError("bad discharge response")
    discharge = discharge.strip()
    try:
        token = Macaroon.decode(decode_token(discharge))
    except DecodeError:
        raise DischargeError("bad discharge response: not a macaroon") from None
    if token.nonce.kid != ticket:
        raise DischargeError("bad discharge response: discharge is for another ticket")
    return discharge
