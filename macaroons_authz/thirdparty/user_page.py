"""The discharge service's own user page: an HTML page with Approve and Deny buttons.

A service given ``approve=`` serves it at each user URL. ``GET`` shows what
is asked (the third party, the ticket's conditions by kind, the client's
address) and a form; ``POST`` of that form finishes the flow with what the
application's *approve* callback decides for the browser that sent it (say,
the identity of its session cookie), or refuses the flow if the user denies.

**Cross-site request forgery.** The user URL holds the user secret, and
whoever started the flow knows it. What must not happen is that a site makes
a signed-in user's browser post "approve" for a flow the site started. So
the form must come from this page, in this browser:

* ``GET`` sets a cookie holding a random nonce (``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` on https, scoped to the flow's path), and
  the form carries a token: HMAC-SHA256 of the flow's user-secret digest and
  that nonce, under a key derived from the third-party key (so every worker
  of the service computes the same token). A ``POST`` needs the cookie and
  a matching token (compared in constant time): another site can neither
  read the cookie nor, not knowing it, compute the token; and a
  ``SameSite=Strict`` cookie is not even sent with a cross-site post.
* A ``POST`` whose ``Origin`` is not the service's, or whose
  ``Sec-Fetch-Site`` is cross-site, is refused before anything else.
* The page cannot be framed (``frame-ancestors 'none'``,
  ``X-Frame-Options: DENY``: no clickjacking of the button), loads nothing
  (``default-src 'none'``), posts only to itself, and sends no
  ``Referer`` to other origins (its URL holds the user secret).

No secret but the user secret is in a URL; the page shows no secret.
"""

from __future__ import annotations

import html
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie

from .. import crypto
from ..caveats.auth import DischargeRequest
from ..errors import UnauthorizedError
from ._io import HTTPError, Reply, Request, media_type, read_body
from .flows import PendingFlow, _new_secret
from .protocol import Approve, FlowNotFoundError, Refuse

__all__ = ["COOKIE_NAME", "ApproveCallback"]

_log = logging.getLogger("macaroons_authz.thirdparty")

#: The name of the cookie holding the page's nonce.
COOKIE_NAME = "macaroons_authz_flow"
#: What the application's *approve* callback is called with: the pending flow
#: and the browser's request headers (lower-case names: ``cookie``...). It
#: returns the decision for this user; an
#: :class:`~macaroons_authz.UnauthorizedError` it raises shows the user a
#: refusal and leaves the flow pending.
ApproveCallback = Callable[[PendingFlow, Mapping[str, str]], Approve | DischargeRequest | Refuse]

_NONCE = re.compile(r"[0-9a-f]{32}")
_MAX_FORM = 4096
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    # Not no-referrer: with it, browsers send "Origin: null" with the form's post.
    ("Referrer-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
]


def csrf_key(tp_key: bytes) -> bytes:
    """The key of the page's form tokens: derived from the third-party key, never it."""
    return crypto.mac(tp_key, b"macaroons_authz user page form tokens")


def _token(key: bytes, user_key: str, nonce: str) -> str:
    return crypto.mac(key, f"{user_key}:{nonce}".encode("ascii")).hex()


def page(status: int, title: str, body: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    """An HTML page; *title* is escaped here, *body* must be escaped by the caller."""
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    data = text.encode("utf-8")
    return Reply(
        status,
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *_SECURITY_HEADERS,
            *(headers or []),
        ],
        data,
    )


def error_page(exc: HTTPError) -> Reply:
    messages = {
        404: ("Link expired", "<p>This link has expired or was already used.</p>"),
        405: ("Not allowed", "<p>This page takes GET and POST only.</p>"),
    }
    title, body = messages.get(
        exc.status, ("Something went wrong", f"<p>{html.escape(exc.message)}</p>")
    )
    return page(exc.status, title, body, exc.headers)


def _cookie_nonce(headers: Mapping[str, str]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(COOKIE_NAME)
    value = morsel.value if morsel is not None else ""
    return value if _NONCE.fullmatch(value) else None


class UserPage:
    """The page, given the service's callbacks (see the module documentation)."""

    def __init__(
        self,
        *,
        tp_key: bytes,
        location: str,
        approve: ApproveCallback,
        complete: Callable[[str, Approve | DischargeRequest | Refuse], None],
        cookie_max_age: int,
        refusal_details: bool,
    ) -> None:
        self._key = csrf_key(tp_key)
        parts = urllib.parse.urlsplit(location)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._secure = parts.scheme == "https"
        self._location = location
        self._approve = approve
        self._complete = complete
        self._max_age = cookie_max_age
        self._refusal_details = refusal_details

    def serve(self, request: Request, flow: PendingFlow, user_key: str) -> Reply:
        if request.method == "GET":
            return self._show(request, flow, user_key)
        if request.method == "POST":
            return self._decide(request, flow, user_key)
        raise HTTPError(405, "method not allowed", [("Allow", "GET, POST")])

    def _show(self, request: Request, flow: PendingFlow, user_key: str) -> Reply:
        nonce = _cookie_nonce(request.headers) or _new_secret()
        path = urllib.parse.urlsplit(flow.user_url).path
        cookie = f"{COOKIE_NAME}={nonce}; Path={path}; Max-Age={self._max_age}"
        cookie += "; HttpOnly; SameSite=Strict"
        if self._secure:
            cookie += "; Secure"
        kinds = sorted({c.name for c in flow.request.caveats})
        conditions = ", ".join(html.escape(k) for k in kinds) or "none"
        body = (
            f"<p>A program at {html.escape(flow.request.remote_addr or 'an unknown address')} "
            f"asks {html.escape(self._location)} to vouch for you.</p>\n"
            f"<p>Conditions it must meet: {conditions}.</p>\n"
            '<form method="post">'
            f'<input type="hidden" name="csrf" value="{_token(self._key, user_key, nonce)}">'
            '<button type="submit" name="decision" value="approve">Approve</button> '
            '<button type="submit" name="decision" value="deny">Deny</button>'
            "</form>"
        )
        return page(200, "Approve access", body, [("Set-Cookie", cookie)])

    def _decide(self, request: Request, flow: PendingFlow, user_key: str) -> Reply:
        headers = request.headers
        origin = headers.get("origin")
        site = headers.get("sec-fetch-site")
        if (origin is not None and origin != self._origin) or site not in (
            None,
            "same-origin",
            "none",
        ):
            _log.info("3p user page: cross-site post refused tid=%s", flow.request.ticket_id)
            raise HTTPError(403, "This form must be sent from its own page.")
        if media_type(headers) != "application/x-www-form-urlencoded":
            raise HTTPError(415, "The form must be sent as a web form.")
        raw = read_body(request, _MAX_FORM)
        try:
            form = urllib.parse.parse_qs(raw.decode("ascii"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(400, "The form is malformed.") from None
        nonce = _cookie_nonce(headers)
        sent = form.get("csrf", [""])[0]
        expected = _token(self._key, user_key, nonce) if nonce else ""
        if not nonce or not crypto.equal(sent.encode("ascii"), expected.encode("ascii")):
            _log.info("3p user page: form token refused tid=%s", flow.request.ticket_id)
            raise HTTPError(403, "This form expired: reload the page and try again.")
        choice = form.get("decision", [""])[0]
        decision: Approve | DischargeRequest | Refuse
        if choice == "deny":
            decision = Refuse("the user denied the request")
        elif choice == "approve":
            try:
                decision = self._approve(flow, headers)
            except UnauthorizedError as exc:
                return self._refused(flow, exc)
            except Exception:
                _log.exception("3p approve callback failed tid=%s", flow.request.ticket_id)
                raise HTTPError(500, "The request could not be approved.") from None
            if not isinstance(decision, (Approve, DischargeRequest, Refuse)):
                _log.error("3p approve callback returned %s", type(decision).__name__)
                raise HTTPError(500, "The request could not be approved.")
        else:
            raise HTTPError(400, "The form is malformed.")
        try:
            self._complete(flow.user_secret, decision)
        except UnauthorizedError as exc:
            return self._refused(flow, exc)
        except FlowNotFoundError:
            raise HTTPError(404, "not found") from None
        expire = f"{COOKIE_NAME}=; Path={urllib.parse.urlsplit(flow.user_url).path}; Max-Age=0"
        if isinstance(decision, Refuse):
            return page(
                200, "Denied", "<p>You may close this window.</p>", [("Set-Cookie", expire)]
            )
        return page(200, "Approved", "<p>You may close this window.</p>", [("Set-Cookie", expire)])

    def _refused(self, flow: PendingFlow, exc: UnauthorizedError) -> Reply:
        # The flow stays pending: the user may sign in with another account.
        _log.info("3p user page refused tid=%s: %s", flow.request.ticket_id, exc)
        reason = html.escape(str(exc)) if self._refusal_details else "this account may not"
        body = f"<p>Not approved: {reason}.</p><p>You may try again with another account.</p>"
        return page(403, "Not approved", body)
