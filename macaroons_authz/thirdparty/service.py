"""The third party's side: :class:`DischargeService`, a WSGI application."""

from __future__ import annotations

import binascii
import http
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import crypto
from ..caveats._base import unb64
from ..caveats.auth import DischargeRequest
from ..caveats.caveat_set import CaveatSet
from ..caveats.registry import CaveatRegistry
from ..errors import MacaroonError, UnauthorizedError
from ..header import encode_token
from ..macaroon import Macaroon, discharge_ticket
from .flows import PendingFlow, _FlowStore, _FlowStoreFullError, _pending
from .protocol import (
    INIT_PATH,
    POLL_PATH,
    USER_PATH,
    Approve,
    Decision,
    Defer,
    FlowNotFoundError,
    Refuse,
    TicketRequest,
    _digest,
    _seconds,
)
from .sso import _finite_now, _mint_discharge, _validity_window

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FLOW_ENVIRON_KEY", "DischargeService"]

# The logger's name is the one the docs give, from before the package split.
_log = logging.getLogger("macaroons_authz.thirdparty")
_DIGITS = re.compile(r"[0-9]+")
_BODY_READ_KEY = "macaroons_authz.body_read"
_MAX_DRAIN = 1024 * 1024
#: Key of the WSGI environ entry holding the :class:`PendingFlow` for a user page.
FLOW_ENVIRON_KEY = "macaroons_authz.flow"


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
