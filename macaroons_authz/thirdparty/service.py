"""The third party's side: :class:`DischargeService`, a WSGI application.

The decisions are made on a framework-neutral request (:mod:`._io`); the
WSGI form is :meth:`DischargeService.__call__`, and the ASGI form
:class:`~macaroons_authz.thirdparty.asgi_service.ASGIDischargeService` wraps
the same service.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .. import crypto
from ..caveats.auth import DischargeRequest
from ..caveats.caveat_set import CaveatSet
from ..caveats.registry import CaveatRegistry
from ..errors import MacaroonError, UnauthorizedError
from ..header import encode_token
from ..macaroon import Macaroon, discharge_ticket
from ..stores._sqlite import StoreError
from ..stores.flows import FlowRecord, FlowResult, FlowStore, FlowStoreFullError, MemoryFlowStore
from ._io import HTTPError, Reply, Request, content_length, json_reply, read_ticket
from .flows import PendingFlow, _key, _new_secret
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
from .user_page import ApproveCallback, UserPage, error_page

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FLOW_ENVIRON_KEY", "DischargeService"]

# The logger's name is the one the docs give, from before the package split.
_log = logging.getLogger("macaroons_authz.thirdparty")
_MAX_DRAIN = 1024 * 1024
#: Seconds a 503 for an unreachable flow store asks the client to wait.
_STORE_RETRY_AFTER = "5"
#: Key of the WSGI environ entry holding the :class:`PendingFlow` for a user page.
FLOW_ENVIRON_KEY = "macaroons_authz.flow"


class DischargeService:
    """A third party's discharge endpoints, as a WSGI application.

    Its ASGI form is
    :class:`~macaroons_authz.thirdparty.asgi_service.ASGIDischargeService`.

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
        approve: serve the service's own user page at each user URL (see
            :mod:`~macaroons_authz.thirdparty.user_page`): an HTML page with
            Approve and Deny buttons, protected against cross-site request
            forgery; Approve calls *approve* with the :class:`PendingFlow`
            and the browser's request headers, and finishes the flow with
            the decision it returns. Not with *user_page* or *user_url*.
        user_url: builds the user URL from a user secret, when the page
            lives elsewhere.
        flows: where deferred flows are kept: a
            :class:`~macaroons_authz.stores.flows.FlowStore`. In this
            process's memory by default; a
            :class:`~macaroons_authz.stores.flows.SQLiteFlowStore` or
            :class:`~macaroons_authz.stores.postgres_flows.PostgresFlowStore`
            lets several workers serve one service (any of them may get a
            poll). The service hands the store only digests of the secrets.
        clock: the time (unix seconds); the wall clock by default.
        validity: seconds of validity of discharges minted for a
            :class:`~macaroons_authz.DischargeRequest`.
        max_body: the largest request body read (413 above).
        max_flows: the most deferred flows kept (in the flow store, by every
            worker sharing it). Expired flows go first;
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
        approve: ApproveCallback | None = None,
        user_url: Callable[[str], str] | None = None,
        flows: FlowStore | None = None,
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
        _seconds(flow_ttl, "flow_ttl")
        if max_flows < 1:
            raise ValueError("max_flows must be positive")
        if approve is not None and (user_page is not None or user_url is not None):
            # The page is served at the service's own user URLs.
            raise ValueError("give approve or user_page/user_url, not both")
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
        self._max_flows = max_flows
        self._ttl = flow_ttl
        self._registry = registry
        self._refusal_details = refusal_details
        self._store: FlowStore = MemoryFlowStore() if flows is None else flows
        self._page = (
            None
            if approve is None
            else UserPage(
                tp_key=key,
                location=location,
                approve=approve,
                complete=self.complete,
                cookie_max_age=max(1, round(flow_ttl)),
                refusal_details=refusal_details,
            )
        )

    def __repr__(self) -> str:
        return f"<DischargeService location={self.location!r} flows={self._store!r}>"

    # -- the application's side --------------------------------------------

    def complete(self, user_secret: str, decision: Approve | Refuse | DischargeRequest) -> None:
        """Finish a deferred flow; its poll URL then answers once.

        :class:`Refuse` ends the flow with an error for the client. If a
        :class:`~macaroons_authz.DischargeRequest` does not meet the
        ticket's caveats, the error is raised and the flow stays pending
        (the user may try another account); refuse it to end it. Of two
        calls for one flow (two workers, say), one finishes it and the
        other raises :class:`FlowNotFoundError`.

        Raises:
            FlowNotFoundError: no pending flow has this user secret.
            UnauthorizedError: the request does not meet the ticket's caveats.
            StoreError: the flow store cannot be reached.
        """
        if not isinstance(decision, (Approve, Refuse, DischargeRequest)):
            raise TypeError("complete() needs Approve, Refuse or a DischargeRequest")
        now = self._now()
        user_key, record = self._pending(user_secret, now)
        tid = _digest(record.ticket)
        if isinstance(decision, Refuse):
            result = FlowResult(200, {"error": decision.message})
        else:
            caveats, discharge = discharge_ticket(
                self._key, self.location, record.ticket, self._registry
            )
            result = FlowResult(200, {"discharge": self._mint(caveats, discharge, decision, now)})
        if not self._store.finish(user_key, result, now=now, expires_at=now + self._ttl):
            raise FlowNotFoundError("no pending flow for this secret")
        outcome = "refused" if isinstance(decision, Refuse) else "discharged"
        _log.info("3p flow %s tid=%s", outcome, tid)

    def flow(self, user_secret: str) -> PendingFlow:
        """The pending flow of *user_secret* (for a user page hosted elsewhere).

        Its request has no headers (see :class:`PendingFlow`).

        Raises:
            FlowNotFoundError: no pending flow has this user secret.
            StoreError: the flow store cannot be reached.
        """
        _, record = self._pending(user_secret, self._now())
        return self._pending_flow(user_secret, record)

    def _pending(self, user_secret: str, now: float) -> tuple[str, FlowRecord]:
        user_key = _key(user_secret)
        record = None if user_key is None else self._store.pending(user_key, now=now)
        if user_key is None or record is None:
            raise FlowNotFoundError("no pending flow for this secret")
        return user_key, record

    def _pending_flow(
        self, user_secret: str, record: FlowRecord, request: TicketRequest | None = None
    ) -> PendingFlow:
        if request is None:
            caveats, _ = discharge_ticket(self._key, self.location, record.ticket, self._registry)
            request = TicketRequest(caveats, {}, record.remote_addr, _digest(record.ticket))
        return PendingFlow(
            user_secret,
            self._user_url(user_secret),
            request,
            record.interactive,
            record.expires_at,
        )

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

    # -- HTTP, for both forms ---------------------------------------------------

    def _serve(self, request: Request, *, custom_page: bool) -> Reply | PendingFlow:
        """Answer *request*; a :class:`PendingFlow` means "hand it to the custom user page"."""
        path, method, base = request.path, request.method, self._base_path
        user_path = path.startswith(base + USER_PATH)
        try:
            if path == base + INIT_PATH:
                if method != "POST":
                    raise HTTPError(405, "method not allowed", [("Allow", "POST")])
                return json_reply(*self._init(request))
            if path.startswith(base + POLL_PATH):
                if method != "GET":
                    raise HTTPError(405, "method not allowed", [("Allow", "GET")])
                return json_reply(*self._poll(path[len(base + POLL_PATH) :]))
            if user_path and (custom_page or self._page is not None):
                secret = path[len(base + USER_PATH) :]
                try:
                    user_key, record = self._pending(secret, self._now())
                except FlowNotFoundError:
                    raise HTTPError(404, "not found") from None
                flow = self._pending_flow(secret, record)
                if custom_page or self._page is None:
                    return flow
                return self._page.serve(request, flow, user_key)
            raise HTTPError(404, "not found")
        except HTTPError as exc:
            if user_path and self._page is not None and not custom_page:
                return error_page(exc)
            return json_reply(exc.status, {"error": exc.message}, exc.headers)
        except StoreError as exc:
            # Fail closed, and say it is ours and passing.
            _log.error("3p flow store unavailable: %s", exc)
            retry = [("Retry-After", _STORE_RETRY_AFTER)]
            return json_reply(503, {"error": "service unavailable"}, retry)
        except MacaroonError:
            # Not the client's doing (a clock that is not finite, say).
            _log.exception("3p request failed")
            return json_reply(500, {"error": "internal server error"})

    def _init(self, req: Request) -> tuple[int, dict[str, Any]]:
        ticket = read_ticket(req, self._max_body)
        try:
            caveats, discharge = discharge_ticket(self._key, self.location, ticket, self._registry)
        except (MacaroonError, ValueError):
            raise HTTPError(400, "bad ticket") from None
        request = TicketRequest(caveats, req.headers, req.remote_addr, _digest(ticket))
        try:
            decision = self._authorize(request)
        except UnauthorizedError as exc:
            return self._refused(request, exc)
        except Exception:
            _log.exception("3p authorize callback failed tid=%s", request.ticket_id)
            raise HTTPError(500, "internal server error") from None
        if isinstance(decision, Refuse):
            _log.info("3p refused tid=%s status=%d", request.ticket_id, decision.status)
            return decision.status, {"error": decision.message}
        if isinstance(decision, Defer):
            return self._defer(ticket, request, decision.interactive)
        if not isinstance(decision, (Approve, DischargeRequest)):
            _log.error("3p authorize callback returned %s", type(decision).__name__)
            raise HTTPError(500, "internal server error")
        now = self._now()  # outside the try: a broken clock is a 500, not a refusal
        try:
            token = self._mint(caveats, discharge, decision, now)
        except UnauthorizedError as exc:
            return self._refused(request, exc)
        except MacaroonError:
            _log.exception("3p minting failed tid=%s", request.ticket_id)
            raise HTTPError(500, "internal server error") from None
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
        user_secret, poll_secret = _new_secret(), _new_secret()
        now = self._now()
        record = FlowRecord(
            _digest(user_secret.encode("ascii")),
            _digest(poll_secret.encode("ascii")),
            ticket,
            request.remote_addr,
            interactive,
            now + self._ttl,
        )
        try:
            self._store.create(record, now=now, limit=self._max_flows)
        except FlowStoreFullError as exc:
            _log.warning("3p flow store full: refused tid=%s", request.ticket_id)
            retry = [("Retry-After", str(exc.retry_after))]
            raise HTTPError(503, "too many pending flows", retry) from None
        poll_url = f"{self._base_url}{POLL_PATH}{poll_secret}"
        flow = self._pending_flow(user_secret, record, request)
        if self._on_deferred is not None:
            try:
                self._on_deferred(flow)
            except Exception:
                _log.exception("3p on_deferred callback failed tid=%s", request.ticket_id)
                raise HTTPError(500, "internal server error") from None
        _log.info("3p deferred tid=%s interactive=%s", request.ticket_id, interactive)
        if interactive:
            return 201, {"user_interactive": {"poll_url": poll_url, "user_url": flow.user_url}}
        return 201, {"poll_url": poll_url}

    def _poll(self, secret: str) -> tuple[int, dict[str, Any]]:
        poll_key = _key(secret)
        result = None if poll_key is None else self._store.take(poll_key, now=self._now())
        if result is None:
            raise HTTPError(404, "not found")
        return result.status, result.body

    # -- WSGI ------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request (WSGI)."""
        request = Request(
            str(environ.get("REQUEST_METHOD", "GET")),
            environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            _headers(environ),
            str(environ.get("REMOTE_ADDR", "")),
            environ["wsgi.input"].read,
        )
        page = self._user_page
        answer = self._serve(request, custom_page=page is not None)
        if isinstance(answer, PendingFlow):
            if page is None:  # pragma: no cover - _serve hands over flows only to a page
                raise TypeError("no user page")
            environ[FLOW_ENVIRON_KEY] = answer
            # The page's errors are its own, and it may have started its response already.
            return page(environ, start_response)
        if not request.body_read:
            _drain(environ)
        start_response(answer.status_line, answer.headers)
        return [answer.body]


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
    try:
        length = content_length(_headers(environ))
    except HTTPError:
        return
    remaining = min(length or 0, _MAX_DRAIN)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        remaining -= len(chunk)
