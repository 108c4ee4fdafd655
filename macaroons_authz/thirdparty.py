"""The HTTP discharge protocol of third parties (spec section 11).

:class:`DischargeService` is a WSGI application (standard library only) that
a third party runs at its location::

    POST <location>/.well-known/macfly/3p            {"ticket": "<base64>"}
    GET  <location>/.well-known/macfly/3p/poll/<poll secret>
    any  <location>/.well-known/macfly/3p/user/<user secret>   (optional page)

For each ticket it asks the application's *authorize* callback what to do,
and answers with a discharge at once (201 ``{"discharge": "fm2_..."}``), a
poll URL (201 ``{"poll_url": ...}``), a user-interactive flow (201
``{"user_interactive": {"poll_url": ..., "user_url": ...}}``) or an error
(``{"error": ...}``). A deferred flow is finished later with
:meth:`DischargeService.complete`; its poll URL then answers 200 once and is
gone (404). Poll and user secrets are 16 random bytes in hex and expire.
Flows are looked up by the BLAKE2b-256 digests of their secrets; the poll
secret is kept only as its digest, while the user secret (and the user URL
holding it) stays in memory with the pending flow, for the application to
show the user.

:class:`DischargeClient` fetches the discharges a bundle lacks from the third
parties it trusts, following the poll and user-interactive flows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http
import http.client
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import crypto
from .bundle import Bundle, UnverifiedMacaroon
from .caveats._base import Caveat, unb64
from .caveats.auth import DischargeRequest
from .caveats.caveat_set import CaveatSet
from .caveats.core import ValidityWindow
from .caveats.registry import CaveatRegistry
from .errors import DecodeError, MacaroonError, UnauthorizedError, VerificationError
from .header import decode_token, encode_token, strip_scheme
from .macaroon import Macaroon, discharge_ticket
from .sso import _mint_discharge
from .verifier import FLY_PERMISSION_LOCATION

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "INIT_PATH",
    "POLL_PATH",
    "USER_PATH",
    "Approve",
    "Decision",
    "Defer",
    "DischargeClient",
    "DischargeError",
    "DischargeService",
    "DischargeTimeoutError",
    "FlowNotFoundError",
    "PendingFlow",
    "Refuse",
    "TicketRequest",
    "UserInteractionRequiredError",
]

#: Path of the init endpoint, under the third party's location.
INIT_PATH = "/.well-known/macfly/3p"
#: Path prefix of poll URLs.
POLL_PATH = INIT_PATH + "/poll/"
#: Path prefix of the user URLs the service serves itself.
USER_PATH = INIT_PATH + "/user/"

_log = logging.getLogger(__name__)
_SECRET = re.compile(r"[0-9a-f]{32}")
_SECRET_BYTES = 16
_BODY_READ_KEY = "macaroons_authz.body_read"
_MAX_DRAIN = 1024 * 1024
#: Key of the WSGI environ entry holding the :class:`PendingFlow` for a user page.
FLOW_ENVIRON_KEY = "macaroons_authz.flow"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def _init_url(location: str) -> str:
    return location + (INIT_PATH[1:] if location.endswith("/") else INIT_PATH)


# -- decisions ---------------------------------------------------------------


@attrs.frozen
class TicketRequest:
    """What the *authorize* callback is told about a discharge request.

    Attributes:
        caveats: the ticket's caveats: the first party's conditions, which
            the callback must check before approving.
        headers: the HTTP request headers, lower-case names (``authorization``,
            ``cookie``, ...); hidden from ``repr``.
        remote_addr: the client's address, as the server saw it.
        ticket_id: hex BLAKE2b-256 of the ticket, for logs.
    """

    caveats: CaveatSet
    headers: Mapping[str, str] = attrs.field(repr=False, factory=dict)
    remote_addr: str = ""
    ticket_id: str = ""

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, if any."""
        return self.headers.get("authorization")


@attrs.frozen
class Approve:
    """Discharge now, adding *caveats*.

    Use this only after checking the ticket's caveats yourself; return a
    :class:`~macaroons_authz.DischargeRequest` instead to have them checked
    against verified identities. A ``ValidityWindow`` of *validity* seconds
    is added too, unless *validity* is ``None``.
    """

    caveats: tuple[Caveat, ...] = attrs.field(default=(), converter=tuple)
    validity: float | None = attrs.field(default=300)

    @validity.validator
    def _check_validity(self, _: object, value: float | None) -> None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("validity must be a positive number of seconds, or None")


@attrs.frozen
class Defer:
    """Answer later: a poll flow, or a user-interactive one if *interactive*."""

    interactive: bool = False


@attrs.frozen
class Refuse:
    """Refuse with *message* (sent to the client) and HTTP *status*."""

    message: str = "unauthorized"
    status: int = 403


#: What the *authorize* callback returns. A
#: :class:`~macaroons_authz.DischargeRequest` means "this is who the caller
#: is": the ticket's caveats are checked against it and the discharge
#: carries its attestations.
Decision = Approve | Defer | Refuse | DischargeRequest


@attrs.frozen
class PendingFlow:
    """A deferred flow, as the application sees it.

    Attributes:
        user_secret: the application's handle on the flow: pass it to
            :meth:`DischargeService.complete`. Hidden from ``repr``.
        user_url: the URL the client is told to open (user-interactive
            flows); it holds the user secret. Hidden from ``repr``.
        request: the request that started the flow.
        interactive: whether it is a user-interactive flow.
        expires_at: when it is forgotten (the service's clock).
    """

    user_secret: str = attrs.field(repr=False)
    user_url: str = attrs.field(repr=False)
    request: TicketRequest
    interactive: bool
    expires_at: float


# -- errors ------------------------------------------------------------------


class DischargeError(MacaroonError):
    """A third party did not give a discharge.

    Attributes:
        status: the HTTP status of the failing answer, if there was one.
        message: what went wrong (the third party's ``error``, or ours).
        errors: for a combined error, the error of each ticket.
    """

    def __init__(
        self, message: str, *, status: int | None = None, errors: Iterable[DischargeError] = ()
    ) -> None:
        self.message = message
        self.status = status
        self.errors: tuple[DischargeError, ...] = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"tp error ({self.status}): {self.message}"

    def contains(self, cls: type[BaseException]) -> bool:
        """Whether this error, or one it combines, is an instance of *cls*."""
        return isinstance(self, cls) or any(e.contains(cls) for e in self.errors)


class UserInteractionRequiredError(DischargeError):
    """The third party wants the user to visit a URL, but there is no callback to open it."""


class DischargeTimeoutError(DischargeError):
    """The discharge was not ready before the client's timeout."""


class FlowNotFoundError(MacaroonError, LookupError):
    """No pending flow has this secret (unknown, expired, or already finished)."""


# -- the flow store ------------------------------------------------------------


@attrs.define
class _Flow:
    ticket: bytes = attrs.field(repr=False)
    request: TicketRequest
    interactive: bool
    expires_at: float
    user_key: str
    poll_key: str
    user_secret: str = attrs.field(repr=False)
    user_url: str = attrs.field(repr=False)
    result: tuple[int, dict[str, Any]] | None = None


class _FlowStore:
    """Deferred flows in memory: bounded, expiring, indexed by secret digests."""

    def __init__(self, max_flows: int, ttl: float, clock: Callable[[], float]) -> None:
        if max_flows < 1 or ttl <= 0:
            raise ValueError("max_flows and flow_ttl must be positive")
        self._max = max_flows
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._flows: OrderedDict[str, _Flow] = OrderedDict()
        self._by_user: dict[str, str] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._flows)

    def _drop(self, flow: _Flow) -> None:
        self._flows.pop(flow.poll_key, None)
        self._by_user.pop(flow.user_key, None)

    def _live(self, flow: _Flow | None) -> _Flow | None:
        if flow is not None and self._clock() > flow.expires_at:
            self._drop(flow)
            return None
        return flow

    def create(
        self,
        ticket: bytes,
        request: TicketRequest,
        interactive: bool,
        user_url: Callable[[str], str],
    ) -> tuple[_Flow, str]:
        user_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        poll_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        flow = _Flow(
            ticket,
            request,
            interactive,
            self._clock() + self._ttl,
            "u" + _digest(user_secret.encode("ascii")),
            "p" + _digest(poll_secret.encode("ascii")),
            user_secret,
            user_url(user_secret),
        )
        with self._lock:
            if len(self._flows) >= self._max:
                for old in list(self._flows.values()):
                    self._live(old)
            while len(self._flows) >= self._max:
                self._drop(next(iter(self._flows.values())))
            self._flows[flow.poll_key] = flow
            self._by_user[flow.user_key] = flow.poll_key
        return flow, poll_secret

    def pending(self, user_secret: str) -> _Flow:
        if not isinstance(user_secret, str) or not _SECRET.fullmatch(user_secret):
            raise FlowNotFoundError("no pending flow for this secret")
        with self._lock:
            poll_key = self._by_user.get("u" + _digest(user_secret.encode("ascii")))
            flow = self._live(self._flows.get(poll_key or ""))
            if flow is None or flow.result is not None:
                raise FlowNotFoundError("no pending flow for this secret")
            return flow

    def finish(self, flow: _Flow, status: int, body: dict[str, Any]) -> None:
        with self._lock:
            if self._live(self._flows.get(flow.poll_key)) is not flow or flow.result is not None:
                raise FlowNotFoundError("no pending flow for this secret")
            flow.result = (status, body)
            flow.expires_at = self._clock() + self._ttl
            # The user secret is spent: only the poll secret reaches the result.
            self._by_user.pop(flow.user_key, None)

    def take(self, poll_secret: str) -> tuple[int, dict[str, Any]] | None:
        """The result (deleting the flow), ``(202, ...)`` while pending, ``None`` if unknown."""
        if not _SECRET.fullmatch(poll_secret):
            return None
        with self._lock:
            flow = self._live(self._flows.get("p" + _digest(poll_secret.encode("ascii"))))
            if flow is None:
                return None
            if flow.result is None:
                return 202, {"error": "not ready"}
            self._drop(flow)
            return flow.result


# -- the service ---------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class DischargeService:
    """A third party's discharge endpoints, as a WSGI application.

    Args:
        location: the third party's location, exactly as first parties name
            it in their third-party caveats (``https://auth.example``); the
            service answers under its path and writes it into discharges
            and poll URLs.
        key: the 32-byte key shared with first parties, which opens tickets.
        authorize: called with a :class:`TicketRequest` for each new
            ticket; returns a :data:`Decision`. An
            :class:`~macaroons_authz.UnauthorizedError` it raises refuses
            with 403; any other exception gives 500.
        on_deferred: called with the :class:`PendingFlow` of each deferred
            flow, so the application can finish it later.
        user_page: a WSGI application serving user URLs (the default
            ``user_url``); it finds the :class:`PendingFlow` in
            ``environ["macaroons_authz.flow"]``. Without it, user URLs 404.
        user_url: builds the user URL from a user secret, when the page
            lives elsewhere.
        clock: the time (unix seconds); the wall clock by default.
        validity: seconds of validity of discharges minted for a
            :class:`~macaroons_authz.DischargeRequest`.
        max_body: the largest request body read (413 above).
        max_flows: the most deferred flows kept (the oldest go first).
        flow_ttl: seconds a deferred flow (or its result) is kept.
        registry: the caveat registry tickets are decoded with.
    """

    def __init__(
        self,
        location: str,
        key: bytes,
        authorize: Callable[[TicketRequest], Decision],
        *,
        on_deferred: Callable[[PendingFlow], None] | None = None,
        user_page: WSGIApplication | None = None,
        user_url: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
        validity: float = 300,
        max_body: int = 64 * 1024,
        max_flows: int = 10_000,
        flow_ttl: float = 600,
        registry: CaveatRegistry | None = None,
    ) -> None:
        crypto.check_key(key, "third-party key", crypto.KEY_SIZE)
        parts = urllib.parse.urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("location must be an absolute http(s) URL")
        self.location = location
        self._key = key
        self._authorize = authorize
        self._on_deferred = on_deferred
        self._user_page = user_page
        self._base_path = parts.path.rstrip("/")
        self._base_url = location.rstrip("/")
        self._user_url = user_url or (lambda secret: f"{self._base_url}{USER_PATH}{secret}")
        self._clock = clock
        self._validity = validity
        self._max_body = max_body
        self._registry = registry
        self._store = _FlowStore(max_flows, flow_ttl, clock)

    def __repr__(self) -> str:
        return f"<DischargeService location={self.location!r} flows={len(self._store)}>"

    # -- the application's side --------------------------------------------

    def complete(self, user_secret: str, decision: Approve | Refuse | DischargeRequest) -> None:
        """Finish a deferred flow; its poll URL then answers once.

        :class:`Refuse` ends the flow with an error for the client. If a
        :class:`~macaroons_authz.DischargeRequest` does not meet the
        ticket's caveats, the error is raised and the flow stays pending
        (the user may try another account); refuse it to end it.

        Raises:
            FlowNotFoundError: no pending flow has this user secret.
            UnauthorizedError: the request does not meet the ticket's caveats.
        """
        if not isinstance(decision, (Approve, Refuse, DischargeRequest)):
            raise TypeError("complete() needs Approve, Refuse or a DischargeRequest")
        flow = self._store.pending(user_secret)
        if isinstance(decision, Refuse):
            self._store.finish(flow, 200, {"error": decision.message})
            _log.info("3p flow refused tid=%s", flow.request.ticket_id)
            return
        caveats, discharge = discharge_ticket(self._key, self.location, flow.ticket, self._registry)
        token = self._mint(caveats, discharge, decision)
        self._store.finish(flow, 200, {"discharge": token})
        _log.info("3p flow discharged tid=%s", flow.request.ticket_id)

    def flow(self, user_secret: str) -> PendingFlow:
        """The pending flow of *user_secret* (for a user page hosted elsewhere).

        Raises:
            FlowNotFoundError: no pending flow has this user secret.
        """
        return _pending(self._store.pending(user_secret))

    def _mint(
        self, caveats: CaveatSet, discharge: Macaroon, decision: Approve | DischargeRequest
    ) -> str:
        now = self._clock()
        if isinstance(decision, DischargeRequest):
            _mint_discharge(caveats, discharge, decision, now=now, validity=self._validity)
        else:
            extra = list(decision.caveats)
            if decision.validity is not None:
                extra.append(ValidityWindow(math.floor(now), math.floor(now + decision.validity)))
            discharge.add(*extra)
        return encode_token(discharge)

    # -- WSGI ------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request (WSGI)."""
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        base = self._base_path
        try:
            if path == base + INIT_PATH:
                if method != "POST":
                    raise _HTTPError(405, "method not allowed", [("Allow", "POST")])
                status, body = self._init(environ)
            elif path.startswith(base + POLL_PATH):
                if method != "GET":
                    raise _HTTPError(405, "method not allowed", [("Allow", "GET")])
                status, body = self._poll(path[len(base + POLL_PATH) :])
            elif path.startswith(base + USER_PATH) and self._user_page is not None:
                return self._user(environ, start_response, path[len(base + USER_PATH) :])
            else:
                raise _HTTPError(404, "not found")
        except _HTTPError as exc:
            _drain(environ)
            return _respond(start_response, exc.status, {"error": exc.message}, exc.headers)
        return _respond(start_response, status, body)

    def _init(self, environ: WSGIEnvironment) -> tuple[int, dict[str, Any]]:
        ticket = _read_ticket(environ, self._max_body)
        try:
            caveats, discharge = discharge_ticket(self._key, self.location, ticket, self._registry)
        except (VerificationError, DecodeError, ValueError):
            raise _HTTPError(400, "bad ticket") from None
        request = TicketRequest(
            caveats,
            _headers(environ),
            str(environ.get("REMOTE_ADDR", "")),
            _digest(ticket),
        )
        try:
            decision = self._authorize(request)
        except UnauthorizedError as exc:
            decision = Refuse(str(exc), 403)
        except Exception:
            _log.exception("3p authorize callback failed tid=%s", request.ticket_id)
            raise _HTTPError(500, "internal server error") from None
        if isinstance(decision, Refuse):
            status = decision.status if 400 <= decision.status <= 599 else 403
            _log.info("3p refused tid=%s status=%d", request.ticket_id, status)
            return status, {"error": decision.message}
        if isinstance(decision, Defer):
            return self._defer(ticket, request, decision.interactive)
        if not isinstance(decision, (Approve, DischargeRequest)):
            _log.error("3p authorize callback returned %s", type(decision).__name__)
            raise _HTTPError(500, "internal server error")
        try:
            token = self._mint(caveats, discharge, decision)
        except UnauthorizedError as exc:
            _log.info("3p refused tid=%s: ticket caveats unmet", request.ticket_id)
            return 403, {"error": str(exc)}
        except MacaroonError:
            _log.exception("3p minting failed tid=%s", request.ticket_id)
            raise _HTTPError(500, "internal server error") from None
        _log.info("3p discharged tid=%s", request.ticket_id)
        return 201, {"discharge": token}

    def _defer(
        self, ticket: bytes, request: TicketRequest, interactive: bool
    ) -> tuple[int, dict[str, Any]]:
        flow, poll_secret = self._store.create(ticket, request, interactive, self._user_url)
        poll_url = f"{self._base_url}{POLL_PATH}{poll_secret}"
        if self._on_deferred is not None:
            try:
                self._on_deferred(_pending(flow))
            except Exception:
                _log.exception("3p on_deferred callback failed tid=%s", request.ticket_id)
                raise _HTTPError(500, "internal server error") from None
        _log.info("3p deferred tid=%s interactive=%s", request.ticket_id, interactive)
        if interactive:
            return 201, {"user_interactive": {"poll_url": poll_url, "user_url": flow.user_url}}
        return 201, {"poll_url": poll_url}

    def _poll(self, secret: str) -> tuple[int, dict[str, Any]]:
        result = self._store.take(secret)
        if result is None:
            raise _HTTPError(404, "not found")
        return result

    def _user(
        self, environ: WSGIEnvironment, start_response: StartResponse, secret: str
    ) -> Iterable[bytes]:
        assert self._user_page is not None
        try:
            flow = self.flow(secret)
        except FlowNotFoundError:
            return _respond(start_response, 404, {"error": "not found"})
        environ[FLOW_ENVIRON_KEY] = flow
        return self._user_page(environ, start_response)


def _pending(flow: _Flow) -> PendingFlow:
    return PendingFlow(
        flow.user_secret, flow.user_url, flow.request, flow.interactive, flow.expires_at
    )


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    out = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").lower()] = str(environ[key])
    return out


def _drain(environ: WSGIEnvironment) -> None:
    """Read and discard an unread request body (bounded), so the reply is not lost.

    A server that closes a connection with unread data resets it, and the
    client may never see the error response.
    """
    raw_length = str(environ.get("CONTENT_LENGTH", "")).strip()
    if environ.get(_BODY_READ_KEY) or not raw_length.isdigit():
        return
    remaining = min(int(raw_length), _MAX_DRAIN)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        remaining -= len(chunk)
    environ[_BODY_READ_KEY] = True


def _read_ticket(environ: WSGIEnvironment, max_body: int) -> bytes:
    media_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if media_type != "application/json":
        raise _HTTPError(415, "request body must be application/json")
    raw_length = str(environ.get("CONTENT_LENGTH", "")).strip()
    if not raw_length:
        raise _HTTPError(411, "request body needs a Content-Length")
    if not raw_length.isdigit():
        raise _HTTPError(400, "bad Content-Length")
    length = int(raw_length)
    if length > max_body:
        raise _HTTPError(413, f"request body larger than {max_body} bytes")
    body = environ["wsgi.input"].read(length) if length else b""
    environ[_BODY_READ_KEY] = True
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _HTTPError(400, "request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _HTTPError(400, "request body must be a JSON object")
    value = doc.get("ticket")
    if not isinstance(value, str) or not value:
        raise _HTTPError(400, "missing ticket")
    try:
        return unb64(value)
    except (binascii.Error, ValueError):
        raise _HTTPError(400, "ticket is not base64") from None


def _respond(
    start_response: StartResponse,
    status: int,
    body: Mapping[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = json.dumps(body, separators=(",", ":")).encode("utf-8") + b"\n"
    phrase = http.HTTPStatus(status).phrase
    start_response(
        f"{status} {phrase}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [data]


# -- the client ----------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: they could carry credentials to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise DischargeError("bad third-party URL") from None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or ""), port or default


class DischargeClient:
    """Fetches the discharges a bundle lacks from trusted third parties.

    Only tickets for *trusted_locations* are sent anywhere; others are left
    undischarged. Tickets are fetched one after the other.

    Args:
        trusted_locations: the third-party locations (exactly as in the
            caveats) the client may send tickets to; ``http``/``https`` only.
        credentials: ``Authorization`` header values by third-party
            location; each is sent only to its location's origin (scheme,
            host and port).
        open_user_url: opens a user URL (in a browser) for user-interactive
            flows; without it those flows fail with
            :class:`UserInteractionRequiredError`.
        opener: the :mod:`urllib.request` opener to use; by default one that
            follows no redirects.
        timeout: seconds one :meth:`fetch` may take, polling included.
        request_timeout: seconds one HTTP request may take.
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
        self._credentials = {_origin(loc): value for loc, value in (credentials or {}).items()}
        self._open_user_url = open_user_url
        self._opener = opener or urllib.request.build_opener(_NoRedirects)
        self._timeout = timeout
        self._request_timeout = request_timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
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
                added); a combined error holds each in ``errors``.
        """
        deadline = self._clock() + self._timeout
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
        return bundle.header() if had_scheme else str(bundle)

    def _fetch_one(self, location: str, ticket: bytes, deadline: float) -> str:
        body = json.dumps({"ticket": base64.b64encode(ticket).decode("ascii")}).encode("ascii")
        status, doc = self._request(_init_url(location), body)
        if doc.get("error"):
            raise DischargeError(str(doc["error"]), status=status)
        origin = _origin(location)
        if doc.get("discharge"):
            discharge = doc["discharge"]
        elif doc.get("poll_url"):
            discharge = self._poll(doc["poll_url"], origin, deadline)
        elif isinstance(doc.get("user_interactive"), dict):
            ui = doc["user_interactive"]
            poll_url, user_url = ui.get("poll_url"), ui.get("user_url")
            urls_ok = isinstance(poll_url, str) and isinstance(user_url, str)
            if not (urls_ok and poll_url and user_url):
                raise DischargeError("bad discharge response")
            if self._open_user_url is None:
                raise UserInteractionRequiredError("missing user-url callback")
            self._open_user_url(user_url)
            discharge = self._poll(poll_url, origin, deadline)
        else:
            raise DischargeError("bad discharge response")
        return _check_discharge(discharge, ticket)

    def _poll(self, poll_url: object, origin: tuple[str, str, int | None], deadline: float) -> str:
        if not isinstance(poll_url, str) or _origin(poll_url) != origin:
            raise DischargeError("bad discharge response: poll URL is not the third party's")
        wait = 0.0
        while True:
            status, doc = self._request(poll_url, None)
            if status == 202:
                wait = self._backoff if wait == 0 else min(wait * 2, self._max_backoff)
                remaining = deadline - self._clock()
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

    def _request(self, url: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
        try:
            # Only http(s) URLs reach here: trusted locations and same-origin poll URLs.
            req = urllib.request.Request(url, data=body, method="POST" if body else "GET")  # noqa: S310
        except ValueError:
            raise DischargeError("bad third-party URL") from None
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        credential = self._credentials.get(_origin(url))
        if credential is not None:
            req.add_header("Authorization", credential)
        try:
            with self._opener.open(req, timeout=self._request_timeout) as resp:
                status, data = resp.status, resp.read(self._max_response + 1)
        except urllib.error.HTTPError as err:
            with err:
                status, data = err.code, err.read(self._max_response + 1)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # The reason names the failure, never the URL (poll URLs hold secrets).
            reason = getattr(exc, "reason", exc)
            raise DischargeError(f"third-party request failed: {reason}") from None
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
