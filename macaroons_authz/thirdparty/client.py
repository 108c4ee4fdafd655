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

from . import _http, crypto
from .bundle import Bundle, UnverifiedMacaroon
from .caveats._base import Caveat, unb64
from .caveats.auth import DischargeRequest
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .errors import DecodeError, MacaroonError, UnauthorizedError
from .header import decode_token, encode_token, strip_scheme
from .macaroon import Macaroon, discharge_ticket
from .sso import _as_float, _finite_now, _mint_discharge, _validity_window
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
_DIGITS = re.compile(r"[0-9]+")
_SECRET_BYTES = 16
_BODY_READ_KEY = "macaroons_authz.body_read"
_MAX_DRAIN = 1024 * 1024
#: Key of the WSGI environ entry holding the :class:`PendingFlow` for a user page.
FLOW_ENVIRON_KEY = "macaroons_authz.flow"


def _seconds(value: float, name: str) -> float:
    number = _as_float(value)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return number


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
        if value is not None:
            _seconds(value, "validity")


@attrs.frozen
class Defer:
    """Answer later: a poll flow, or a user-interactive one if *interactive*."""

    interactive: bool = False


def _error_status(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not int or not 400 <= value <= 599:
        raise ValueError("Refuse status must be a 4xx or 5xx HTTP status")


@attrs.frozen
class Refuse:
    """Refuse with *message* (sent to the client as is) and HTTP *status*.

    Any status from 400 to 599 is sent, known to :mod:`http` or not (nginx's
    499, say); anything else raises :class:`ValueError`.
    """

    message: str = attrs.field(default="unauthorized", validator=attrs.validators.instance_of(str))
    status: int = attrs.field(default=403, validator=_error_status)


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


class _FlowStoreFullError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many pending flows")
        self.retry_after = retry_after


class _FlowStore:
    """Deferred flows in memory: bounded, expiring, indexed by secret digests.

    Flows are kept in the order they expire (a finished flow moves to the
    end, as its lifetime restarts), so expired ones are dropped from the
    front. When the store is full a new flow is refused, never made room
    for: evicting the oldest would let anyone who can start flows end a
    user's login.
    """

    def __init__(self, max_flows: int, ttl: float, clock: Callable[[], float]) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be positive")
        self._max = max_flows
        _seconds(ttl, "flow_ttl")
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
        """A new flow and its poll secret.

        Raises:
            _FlowStoreFullError: the store holds *max_flows* live flows.
        """
        user_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        poll_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        now = self._clock()
        flow = _Flow(
            ticket,
            request,
            interactive,
            now + self._ttl,
            "u" + _digest(user_secret.encode("ascii")),
            "p" + _digest(poll_secret.encode("ascii")),
            user_secret,
            user_url(user_secret),
        )
        with self._lock:
            while self._flows:
                oldest = next(iter(self._flows.values()))
                if now <= oldest.expires_at:
                    break
                self._drop(oldest)
            if len(self._flows) >= self._max:
                oldest = next(iter(self._flows.values()))
                raise _FlowStoreFullError(max(1, math.ceil(oldest.expires_at - now)))
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
            self._flows.move_to_end(flow.poll_key)
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
        refusal_details: send the client the reason of a 403 that a
            :class:`~macaroons_authz.UnauthorizedError` caused (unmet
            ticket caveats, or one the callback raised). Off by default:
            the reason names the ticket's caveats, which anyone holding
            the ticket could then read by presenting it without the right
            identity, so the client is told only ``"refused"`` (the reason
            is logged). A :class:`Refuse` message is always sent as is.
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
        max_flows: the most deferred flows kept. Expired flows go first;
            when all are live, a new one is refused with 503 and a
            ``Retry-After`` of the seconds until the oldest expires. No
            live flow is ever evicted.
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
        refusal_details: bool = False,
    ) -> None:
        crypto.check_key(key, "third-party key", crypto.KEY_SIZE)
        _seconds(validity, "validity")
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
        self._refusal_details = refusal_details
        self._store = _FlowStore(max_flows, flow_ttl, self._now)

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
        token = self._mint(caveats, discharge, decision, self._now())
        self._store.finish(flow, 200, {"discharge": token})
        _log.info("3p flow discharged tid=%s", flow.request.ticket_id)

    def flow(self, user_secret: str) -> PendingFlow:
        """The pending flow of *user_secret* (for a user page hosted elsewhere).

        Raises:
            FlowNotFoundError: no pending flow has this user secret.
        """
        return _pending(self._store.pending(user_secret))

    def _now(self) -> float:
        return _finite_now(self._clock(), "the discharge service's clock")

    def _mint(
        self,
        caveats: CaveatSet,
        discharge: Macaroon,
        decision: Approve | DischargeRequest,
        now: float,
    ) -> str:
        if isinstance(decision, DischargeRequest):
            _mint_discharge(caveats, discharge, decision, now=now, validity=self._validity)
        else:
            extra = list(decision.caveats)
            if decision.validity is not None:
                extra.append(_validity_window(now, decision.validity))
            discharge.add(*extra)
        return encode_token(discharge)

    # -- WSGI ------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request (WSGI)."""
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        base = self._base_path
        page: WSGIApplication | None = None
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
                environ[FLOW_ENVIRON_KEY] = self._user_flow(path[len(base + USER_PATH) :])
                page = self._user_page
            else:
                raise _HTTPError(404, "not found")
        except _HTTPError as exc:
            _drain(environ)
            return _respond(start_response, exc.status, {"error": exc.message}, exc.headers)
        except MacaroonError:
            # Not the client's doing (a clock that is not finite, say).
            _log.exception("3p request failed")
            _drain(environ)
            return _respond(start_response, 500, {"error": "internal server error"})
        if page is not None:
            # Outside the try: the page's errors are its own, and it may have
            # started its response already.
            return page(environ, start_response)
        return _respond(start_response, status, body)

    def _init(self, environ: WSGIEnvironment) -> tuple[int, dict[str, Any]]:
        ticket = _read_ticket(environ, self._max_body)
        try:
            caveats, discharge = discharge_ticket(self._key, self.location, ticket, self._registry)
        except (MacaroonError, ValueError):
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
            return self._refused(request, exc)
        except Exception:
            _log.exception("3p authorize callback failed tid=%s", request.ticket_id)
            raise _HTTPError(500, "internal server error") from None
        if isinstance(decision, Refuse):
            _log.info("3p refused tid=%s status=%d", request.ticket_id, decision.status)
            return decision.status, {"error": decision.message}
        if isinstance(decision, Defer):
            return self._defer(ticket, request, decision.interactive)
        if not isinstance(decision, (Approve, DischargeRequest)):
            _log.error("3p authorize callback returned %s", type(decision).__name__)
            raise _HTTPError(500, "internal server error")
        now = self._now()  # outside the try: a broken clock is a 500, not a refusal
        try:
            token = self._mint(caveats, discharge, decision, now)
        except UnauthorizedError as exc:
            return self._refused(request, exc)
        except MacaroonError:
            _log.exception("3p minting failed tid=%s", request.ticket_id)
            raise _HTTPError(500, "internal server error") from None
        _log.info("3p discharged tid=%s", request.ticket_id)
        return 201, {"discharge": token}

    def _refused(
        self, request: TicketRequest, exc: UnauthorizedError
    ) -> tuple[int, dict[str, Any]]:
        _log.info("3p refused tid=%s: %s", request.ticket_id, exc)
        return 403, {"error": str(exc) if self._refusal_details else "refused"}

    def _defer(
        self, ticket: bytes, request: TicketRequest, interactive: bool
    ) -> tuple[int, dict[str, Any]]:
        try:
            flow, poll_secret = self._store.create(ticket, request, interactive, self._user_url)
        except _FlowStoreFullError as exc:
            _log.warning("3p flow store full: refused tid=%s", request.ticket_id)
            retry = [("Retry-After", str(exc.retry_after))]
            raise _HTTPError(503, "too many pending flows", retry) from None
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

    def _user_flow(self, secret: str) -> PendingFlow:
        try:
            return self.flow(secret)
        except FlowNotFoundError:
            raise _HTTPError(404, "not found") from None


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


def _content_length(environ: WSGIEnvironment) -> int | None:
    """The request's Content-Length; ``None`` if it has none.

    Only ASCII digits count (``str.isdigit`` takes ``"²"``, which ``int``
    refuses); a length of more than 18 digits reads as 10**18, larger than
    any limit, and is never converted.

    Raises:
        _HTTPError: 400, the header is not a number.
    """
    raw = str(environ.get("CONTENT_LENGTH", "")).strip()
    if not raw:
        return None
    if not _DIGITS.fullmatch(raw):
        raise _HTTPError(400, "bad Content-Length")
    raw = raw.lstrip("0") or "0"
    return int(raw) if len(raw) <= 18 else 10**18


def _drain(environ: WSGIEnvironment) -> None:
    """Read and discard an unread request body (bounded), so the reply is not lost.

    A server that closes a connection with unread data resets it, and the
    client may never see the error response.
    """
    if environ.get(_BODY_READ_KEY):
        return
    try:
        length = _content_length(environ)
    except _HTTPError:
        return
    remaining = min(length or 0, _MAX_DRAIN)
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
    length = _content_length(environ)
    if length is None:
        raise _HTTPError(411, "request body needs a Content-Length")
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
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:  # a status unknown to http, such as nginx's 499
        phrase = "Client Error" if status < 500 else "Server Error"
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
