"""Discharges from Fly.io's authentication service: fetched when missing, refreshed before expiry.

A Fly.io session's permission token carries a third-party caveat for the
authentication service (``https://api.fly.io/aaa/v1``, or
``https://auth.fly.io`` in newer tokens); its discharge lasts a few hours.
flyctl and fly-go (``tokens.Tokens.Update``) prune what has expired and ask
the service for the discharges that are missing, sending the session's
``fo1_`` OAuth tokens as ``Authorization: Bearer``. :class:`Discharger`
does the same through the library's
:class:`~macaroons_authz.thirdparty.DischargeClient`, with one difference:
fly-go drops a discharge about to expire *before* fetching its successor,
so an outage leaves the session without one; here the old discharge is
kept until the new one arrives (or until it really expires).

Times are given by the caller (``now``, unix seconds); nothing here reads
the clock for expiry. Expiry is read from the tokens' *unverified* caveats
(only Fly.io can verify them): it says when to refresh, nothing more.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable

import attrs

from ..thirdparty.bundle import Bundle, MacaroonToken
from ..thirdparty.client import DischargeClient
from ..thirdparty.protocol import DischargeError
from .locations import AUTH_LOCATIONS, LOCATION_PERMISSION
from .token_set import TokenSet, _decoded, unverified_expiration

__all__ = ["DEFAULT_REFRESH_MARGIN", "Discharger", "RefreshResult"]

#: Seconds before its expiry a discharge is fetched again: flyctl's background
#: refresher prunes two minutes ahead (``keepConfigTokensFresh``).
DEFAULT_REFRESH_MARGIN = 120.0


@attrs.frozen
class RefreshResult:
    """What one :meth:`Discharger.refresh` did.

    Attributes:
        tokens: the set to use from now on: the old one, pruned, with the
            discharges that were fetched. On failure it still holds every
            old discharge that has not expired.
        fetched: how many discharges were fetched.
        dropped: how many macaroons were pruned (expired, undecodable, or
            discharges no permission token needs), and old discharges
            replaced by new ones.
        error: why some ticket got no discharge, if one did not; the
            fetched ones are in *tokens* all the same.
    """

    tokens: TokenSet
    fetched: int = 0
    dropped: int = 0
    error: DischargeError | None = None

    @property
    def changed(self) -> bool:
        """Whether *tokens* differs from the set refreshed."""
        return bool(self.fetched or self.dropped)


def _seconds(value: float, name: str, *, zero: bool = False) -> float:
    number = float(value)
    if not (number >= 0 if zero else number > 0) or number == float("inf"):
        raise ValueError(f"{name} must be a finite {'non-negative' if zero else 'positive'} number")
    return number


class Discharger:
    """Fetches and refreshes the discharges of Fly.io's authentication service.

    Only tickets for *locations* are sent anywhere, and the OAuth tokens of
    the set only to those locations (each to its own, and only to URLs
    under it), as ``Authorization: Bearer <fo1_ tokens>``.

    Args:
        locations: the authentication service's locations
            (:data:`~macaroons_authz.fly.AUTH_LOCATIONS` by default).
        margin: seconds before their (unverified) expiry that discharges
            are fetched again.
        open_user_url: opens a URL for the user (in a browser), for the
            flows where the service asks the user to log in; without it,
            those tickets fail with
            :class:`~macaroons_authz.thirdparty.UserInteractionRequiredError`.
        timeout: seconds one :meth:`refresh` may spend fetching (fly-go's
            30 s), polling included.
        request_timeout: seconds one HTTP request may take.
        opener: the :mod:`urllib.request` opener, as
            :class:`~macaroons_authz.thirdparty.DischargeClient` takes it.
        sleep: the wait between polls (``time.sleep``).

    Raises:
        ValueError: a location is not an http(s) URL, or a number is not
            a finite positive one (*margin* may be zero).
    """

    def __init__(
        self,
        *,
        locations: Iterable[str] = AUTH_LOCATIONS,
        margin: float = DEFAULT_REFRESH_MARGIN,
        open_user_url: Callable[[str], None] | None = None,
        timeout: float = 30,
        request_timeout: float = 30,
        opener: urllib.request.OpenerDirector | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(locations, str):
            raise TypeError("locations must be a collection of locations")
        self.locations = frozenset(locations)
        for loc in self.locations:
            if urllib.parse.urlsplit(loc).scheme not in ("http", "https"):
                raise ValueError(f"{loc!r} is not an http(s) location")
        self.margin = _seconds(margin, "margin", zero=True)
        self.timeout = _seconds(timeout, "timeout")
        self._request_timeout = _seconds(request_timeout, "request_timeout")
        self._open_user_url = open_user_url
        self._opener = opener
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Discharger locations={sorted(self.locations)} margin={self.margin}>"

    # -- reading the set ---------------------------------------------------

    def due(self, tokens: TokenSet, now: float) -> list[str]:
        """The discharges of *tokens* from :attr:`locations` that expire within :attr:`margin`."""
        soon = now + self.margin
        out = []
        for piece in tokens.macaroons:
            token = _decoded(piece)
            if token is None or token.location not in self.locations:
                continue
            end = unverified_expiration(token)
            if end is not None and end <= soon:
                out.append(piece)
        return out

    def next_refresh(self, tokens: TokenSet) -> float | None:
        """When the first discharge of :attr:`locations` falls due (its expiry less the margin).

        ``None`` when none of them expires.
        """
        ends = []
        for piece in tokens.macaroons:
            token = _decoded(piece)
            if token is not None and token.location in self.locations:
                end = unverified_expiration(token)
                if end is not None:
                    ends.append(end - self.margin)
        return min(ends, default=None)

    def missing(self, tokens: TokenSet) -> dict[str, list[bytes]]:
        """The tickets for :attr:`locations` that no discharge of *tokens* answers, by location."""
        if not tokens.macaroons:
            return {}
        bundle = Bundle.parse(",".join(tokens.macaroons), LOCATION_PERMISSION)
        return {
            loc: tickets
            for loc, tickets in bundle.undischarged_tickets().items()
            if loc in self.locations
        }

    # -- refreshing --------------------------------------------------------

    def refresh(self, tokens: TokenSet, *, now: float) -> RefreshResult:
        """Prune *tokens*, and fetch the discharges that are missing or due at *now*.

        Expired and useless macaroons are pruned (:meth:`TokenSet.prune
        <macaroons_authz.fly.TokenSet.prune>` with no advance). A discharge
        due within :attr:`margin` is replaced by a new one only once the
        new one has arrived; if the fetch fails it stays, and the failure
        is the result's ``error`` (nothing is raised for it). OAuth tokens
        are kept as they are.
        """
        base = tokens.prune(now, advance=0)
        dropped = len(tokens.macaroons) - len(base.macaroons)
        due = set(self.due(base, now))
        rest = [m for m in base.macaroons if m not in due]
        bundle = Bundle.parse(",".join(rest), LOCATION_PERMISSION) if rest else None
        if bundle is None or not any(
            loc in self.locations for loc in bundle.undischarged_tickets()
        ):
            return RefreshResult(base, 0, dropped)
        before = len(bundle)
        error: DischargeError | None = None
        try:
            self._client(tokens).fetch(bundle)
        except DischargeError as exc:
            error = exc
        new = [t.text for t in bundle.tokens[before:]]
        answered = {t.nonce.kid for t in bundle.tokens[before:] if isinstance(t, MacaroonToken)}
        kept = []
        for piece in base.macaroons:
            token = _decoded(piece) if piece in due else None
            if token is not None and token.nonce.kid in answered:
                dropped += 1  # replaced by its successor
                continue
            kept.append(piece)
        return RefreshResult(attrs.evolve(base, macaroons=kept + new), len(new), dropped, error)

    def _client(self, tokens: TokenSet) -> DischargeClient:
        credentials = {}
        if tokens.oauth:
            bearer = "Bearer " + ",".join(tokens.oauth)
            if any(c in bearer for c in "\r\n\0"):
                raise DischargeError("the OAuth tokens cannot be sent in a header")
            credentials = dict.fromkeys(self.locations, bearer)
        return DischargeClient(
            self.locations,
            credentials=credentials,
            open_user_url=self._open_user_url,
            opener=self._opener,
            timeout=self.timeout,
            request_timeout=self._request_timeout,
            sleep=self._sleep,
        )
