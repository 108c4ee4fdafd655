"""An OpenID Connect issuer's signing keys: discovered, fetched, cached and refreshed.

:class:`JWKSProvider` finds an issuer's keys as OpenID Connect Discovery
says: it reads ``<issuer>/.well-known/openid-configuration``, checks that
the document names the configured ``issuer``, and fetches the JSON Web Key
Set at its ``jwks_uri``. It remembers that ``jwks_uri`` and refreshes the
keys from it directly, reading the discovery document again only when its
max-age has run out or the key set could not be fetched there. Pass it to
:func:`~macaroons_authz.verify_google_id_token` where the key set goes;
:meth:`JWKSProvider.google` is the provider for Google's accounts.

The policy, each figure an argument of :class:`JWKSProvider`:

* **HTTPS only**, verified against the system's CAs (or *ssl_context*).
  Plain ``http://127.0.0.1`` is accepted only with
  ``allow_http_loopback=True``, which exists for tests.
* **Bounded fetches.** A refresh (at most three requests: key set,
  discovery document, key set at the ``jwks_uri`` newly named) ends within
  *timeout* seconds (10), whatever the server does; each response body is
  at most *max_response* bytes (256 KiB).
* **Redirects** are followed only within one origin (scheme, host and
  port), at most :data:`MAX_REDIRECTS` times; a redirect to another host is
  refused, so keys only ever come from the hosts the issuer and its
  discovery document name.
* **Caching.** Two things are cached: the key set, and the ``jwks_uri``
  of the last discovery document that passed the checks here. Each is fresh
  for its response's ``Cache-Control: max-age`` less its ``Age``, bounded
  to [*min_max_age*, *max_max_age*] (60 s, one day); ``no-store`` and
  ``no-cache`` count as the minimum, and a response without ``max-age`` as
  *default_max_age* (one hour). A refresh fetches the key set from the
  remembered ``jwks_uri`` while the discovery document is fresh, and
  otherwise reads the discovery document first. If the key set cannot be
  fetched from the remembered ``jwks_uri`` (an HTTP error, the network, or
  a body that is no key set), the refresh reads the discovery document
  once more and, if it names another ``jwks_uri``, fetches the keys there;
  if it names the same one, the first failure is the refresh's.
* **Unknown key ids.** An id_token whose ``kid`` the fresh keys lack makes
  the provider refetch, since the issuer may have rotated a key in. Every
  fetch (for an unknown ``kid``, for expired keys, or again after a
  failure) is at most one per *refetch_interval* seconds (30): a storm of
  tokens with made-up ``kid`` values costs the issuer one request per
  interval, and those tokens fail with
  :class:`~macaroons_authz.UnknownSigningKeyError`.
* **Outages.** When refetching fails, the last good keys are still served
  for up to *max_staleness* seconds (one hour) past their max-age; after
  that every call fails closed with :class:`StaleKeySetError`. A response
  that is not a key set never replaces good keys.
* **Threads.** A provider may be shared: one fetch runs at a time, and
  while it runs other threads whose ``kid`` the cached keys hold are served
  without waiting.

Every failure is a :class:`KeySetError`, an
:class:`~macaroons_authz.IdentityError`.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any, Protocol

import attrs

from . import _http
from .sso import GOOGLE_ISSUERS, IdentityError, _as_float

__all__ = [
    "MAX_REDIRECTS",
    "DiscoveryError",
    "JWKSProvider",
    "KeyFetchError",
    "KeySetError",
    "KeySource",
    "StaleKeySetError",
]

#: The most redirects one request follows, each within the request's origin.
MAX_REDIRECTS = 3

_DISCOVERY_PATH = "/.well-known/openid-configuration"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DIGITS = re.compile(r"[0-9]+")
_ASCII_URL = re.compile(r"[!-~]+")


class KeySource(Protocol):
    """Where :func:`~macaroons_authz.verify_google_id_token` gets keys by ``kid``.

    :class:`JWKSProvider` is one; a plain callable ``kid -> key set`` is
    accepted too.
    """

    def keys_for(self, kid: str) -> Mapping[str, Any]:
        """A JSON Web Key Set (``{"keys": [...]}``), holding the key *kid* if there is one."""
        ...


class KeySetError(IdentityError):
    """An issuer's keys could not be had: id_tokens are refused (fail closed)."""


class DiscoveryError(KeySetError):
    """The discovery document names another issuer, or no HTTPS ``jwks_uri``."""


class KeyFetchError(KeySetError):
    """A fetch failed.

    The network, a timeout, an HTTP status, a refused redirect, a body too
    large, or a body that is not the JSON expected.

    Attributes:
        url: the URL that failed (a public address: no secret).
        status: its HTTP status, when one was received.
    """

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class StaleKeySetError(KeySetError):
    """Refetching has failed for longer than ``max_staleness`` past the keys' max-age.

    Attributes:
        overdue: seconds since the cached keys' max-age ran out.
    """

    def __init__(self, message: str, *, overdue: float = 0.0) -> None:
        super().__init__(message)
        self.overdue = overdue


@attrs.frozen
class _Keys:
    """A key set as fetched, and when (on the provider's clock) it stops being fresh."""

    jwks: Mapping[str, Any] = attrs.field(repr=False)
    kids: frozenset[str]
    expires: float


def _origin(url: str, *, loopback_http: bool, what: str) -> tuple[str, str, int]:
    """*url*'s scheme, host and port, if it may be fetched at all.

    Raises:
        ValueError: *url* is not an ``https://`` URL (or, with
            *loopback_http*, ``http://127.0.0.1``), or has credentials or a
            fragment.
    """
    if not isinstance(url, str) or not _ASCII_URL.fullmatch(url):
        raise ValueError(f"the {what} must be a URL of printable ASCII")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"the {what} is not a URL") from None
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"the {what} takes no credentials or fragment")
    if parts.scheme == "https" and host:
        return "https", host, port or 443
    if parts.scheme == "http" and loopback_http and host == "127.0.0.1":
        return "http", host, port or 80
    raise ValueError(f"the {what} must be an https:// URL")


def _non_negative(value: float, name: str) -> float:
    number = _as_float(value)
    if number is None or number < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds")
    return number


def _json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise KeyFetchError(f"{url} did not answer JSON", url=url, status=200) from None


class JWKSProvider:
    """The signing keys of the OpenID Connect issuer *issuer*, kept fresh.

    Args:
        issuer: the issuer, exactly as its id_tokens' ``iss`` and its
            discovery document spell it (``https://accounts.google.com``).
        timeout: seconds one refresh (discovery and key set) may take.
        max_response: the largest response body read, in bytes.
        default_max_age: seconds keys stay fresh when the key set response
            has no ``max-age``.
        min_max_age, max_max_age: the bounds put on any max-age.
        refetch_interval: the least seconds between two fetches.
        max_staleness: seconds past their max-age that keys are still
            served while refetching fails; 0 serves no stale keys.
        ssl_context: TLS settings; by default the system's trusted CAs.
        clock: a monotonic clock, for cache ages and request deadlines.
        allow_http_loopback: accept plain ``http://127.0.0.1`` URLs. For
            tests only: nothing authenticates keys fetched over HTTP.

    Raises:
        ValueError: *issuer* is not an ``https://`` URL without query,
            fragment or credentials, or a figure is not a valid number.
    """

    def __init__(
        self,
        issuer: str,
        *,
        timeout: float = 10.0,
        max_response: int = 256 * 1024,
        default_max_age: float = 3600.0,
        min_max_age: float = 60.0,
        max_max_age: float = 86400.0,
        refetch_interval: float = 30.0,
        max_staleness: float = 3600.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        allow_http_loopback: bool = False,
    ) -> None:
        _origin(issuer, loopback_http=allow_http_loopback, what="issuer")
        if urllib.parse.urlsplit(issuer).query:
            raise ValueError("the issuer takes no query")
        timeout = _non_negative(timeout, "timeout")
        if timeout == 0:
            raise ValueError("timeout must be a positive number of seconds")
        if isinstance(max_response, bool) or not isinstance(max_response, int) or max_response < 1:
            raise ValueError("max_response must be a positive number of bytes")
        self._min_max_age = _non_negative(min_max_age, "min_max_age")
        self._max_max_age = _non_negative(max_max_age, "max_max_age")
        self._default_max_age = _non_negative(default_max_age, "default_max_age")
        if not self._min_max_age <= self._default_max_age <= self._max_max_age:
            raise ValueError("min_max_age <= default_max_age <= max_max_age must hold")
        self._issuer = issuer
        self._discovery_url = issuer.rstrip("/") + _DISCOVERY_PATH
        self._timeout = timeout
        self._max_response = max_response
        self._refetch_interval = _non_negative(refetch_interval, "refetch_interval")
        self._max_staleness = _non_negative(max_staleness, "max_staleness")
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._clock = clock
        self._loopback_http = allow_http_loopback
        self._fetching = threading.Lock()  # one fetch at a time; guards _discovered
        # The jwks_uri of the last good discovery document, and when its max-age runs out.
        self._discovered: tuple[str, float] | None = None
        self._lock = threading.Lock()  # guards the three fields below
        self._keys: _Keys | None = None
        self._last_attempt: float | None = None
        self._failure: KeySetError | None = None

    @classmethod
    def google(cls, **options: Any) -> JWKSProvider:
        """The provider of Google's keys (issuer ``https://accounts.google.com``).

        *options* are :class:`JWKSProvider`'s keyword arguments.
        """
        return cls(GOOGLE_ISSUERS[0], **options)

    @property
    def issuer(self) -> str:
        """The issuer whose keys these are."""
        return self._issuer

    @property
    def issuers(self) -> tuple[str, ...]:
        """The ``iss`` values its id_tokens may carry.

        The issuer; for Google also ``accounts.google.com``, which Google
        documents as the same issuer.
        :func:`~macaroons_authz.verify_google_id_token` refuses an id_token
        verified with these keys whose ``iss`` is not one of them.
        """
        return GOOGLE_ISSUERS if self._issuer == GOOGLE_ISSUERS[0] else (self._issuer,)

    def __repr__(self) -> str:
        return f"<JWKSProvider {self._issuer}>"

    def keys_for(self, kid: str) -> Mapping[str, Any]:
        """The issuer's key set, refreshed first if it is stale or lacks *kid*.

        The set is returned even if it lacks *kid* (a refetch was not
        allowed yet, or did not bring the key):
        :func:`~macaroons_authz.verify_google_id_token` then raises
        :class:`~macaroons_authz.UnknownSigningKeyError`. Treat it as
        read-only: it is shared.

        Raises:
            KeySetError: no keys could be fetched yet (a
                :class:`KeyFetchError` or :class:`DiscoveryError`), or the
                cached ones are more than *max_staleness* past their max-age
                (:class:`StaleKeySetError`).
        """
        if not isinstance(kid, str):
            raise TypeError("kid must be a str")
        with self._lock:
            keys = self._keys
        now = self._clock()
        if keys is not None and kid in keys.kids and now < keys.expires:
            return keys.jwks
        if not self._fetching.acquire(blocking=False):
            # Another thread is fetching: serve the keys it may replace, if they will do.
            if keys is not None and kid in keys.kids and self._servable(keys, now):
                return keys.jwks
            self._fetching.acquire()  # held at most one fetch's timeout
        try:
            return self._refresh(kid)
        finally:
            self._fetching.release()

    def _servable(self, keys: _Keys, now: float) -> bool:
        return now - keys.expires <= self._max_staleness

    def _refresh(self, kid: str) -> Mapping[str, Any]:
        now = self._clock()
        with self._lock:
            keys, last = self._keys, self._last_attempt
        due = keys is None or now >= keys.expires or kid not in keys.kids
        if due and (last is None or now - last >= self._refetch_interval):
            with self._lock:
                self._last_attempt = now
            try:
                fetched = self._fetch()
            except KeySetError as exc:
                with self._lock:
                    self._failure = exc
            else:
                with self._lock:
                    self._keys, self._failure = fetched, None
                return fetched.jwks
        with self._lock:
            failure = self._failure
        if keys is None:
            # Never fetched: the last failure again (a copy: threads may raise it at once).
            if failure is None:  # pragma: no cover - every attempt leaves keys or a failure
                raise KeyFetchError("the issuer's keys could not be fetched")
            raise copy.copy(failure)
        overdue = self._clock() - keys.expires
        if overdue > self._max_staleness:
            why = failure or "the next fetch is not due yet"
            raise StaleKeySetError(
                f"the keys of {self._issuer} are {overdue:.0f}s past their max-age and "
                f"could not be refetched: {why}",
                overdue=overdue,
            )
        return keys.jwks

    # -- fetching ----------------------------------------------------------

    def _fetch(self) -> _Keys:
        """The key set, from the remembered ``jwks_uri`` while the discovery document is fresh.

        Called with the fetch lock held, which guards ``_discovered``.
        """
        deadline = _http.Deadline(self._clock() + self._timeout, self._clock)
        if self._discovered is None or self._clock() >= self._discovered[1]:
            return self._key_set(self._discover(deadline), deadline)
        remembered = self._discovered[0]
        try:
            return self._key_set(remembered, deadline)
        except KeyFetchError as exc:
            if deadline.remaining() <= 0:
                raise
            failed = exc
        # The issuer may have moved its keys: discover once more, within the same deadline.
        jwks_uri = self._discover(deadline)
        if jwks_uri == remembered:
            raise failed
        return self._key_set(jwks_uri, deadline)

    def _discover(self, deadline: _http.Deadline) -> str:
        """The ``jwks_uri`` the issuer's discovery document names, remembered until its max-age."""
        headers, body = self._get(self._discovery_url, deadline)
        doc = _json(body, self._discovery_url)
        if not isinstance(doc, dict) or doc.get("issuer") != self._issuer:
            raise DiscoveryError(
                f"the discovery document of {self._issuer} does not name it as the issuer"
            )
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise DiscoveryError(f"the discovery document of {self._issuer} has no jwks_uri")
        try:
            _origin(jwks_uri, loopback_http=self._loopback_http, what="jwks_uri")
        except ValueError as exc:
            raise DiscoveryError(f"the discovery document of {self._issuer}: {exc}") from None
        self._discovered = jwks_uri, self._clock() + self._max_age(headers)
        return jwks_uri

    def _key_set(self, jwks_uri: str, deadline: _http.Deadline) -> _Keys:
        headers, body = self._get(jwks_uri, deadline)
        jwks = _json(body, jwks_uri)
        listed = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(listed, list):
            raise KeyFetchError(f"{jwks_uri} is not a JSON Web Key Set", url=jwks_uri, status=200)
        kids = frozenset(
            k["kid"] for k in listed if isinstance(k, dict) and isinstance(k.get("kid"), str)
        )
        return _Keys(jwks, kids, self._clock() + self._max_age(headers))

    def _max_age(self, headers: Message) -> float:
        """How long a response stays fresh: its max-age less its Age, bounded."""
        ages: list[float] = []
        for value in headers.get_all("Cache-Control") or []:
            for directive in str(value).split(","):
                name, _, arg = directive.strip().partition("=")
                name = name.strip().lower()
                if name in ("no-store", "no-cache"):
                    ages.append(0.0)
                elif name == "max-age" and _DIGITS.fullmatch(arg := arg.strip().strip('"')):
                    # More digits than any bound needs are "forever" (and int() has a limit).
                    ages.append(float(int(arg)) if len(arg) <= 15 else math.inf)
        if not ages:
            return self._default_max_age
        age = str(headers.get("Age", "0")).strip()
        current = float(int(age)) if _DIGITS.fullmatch(age) and len(age) <= 15 else 0.0
        return min(max(min(ages) - current, self._min_max_age), self._max_max_age)

    def _get(self, url: str, deadline: _http.Deadline) -> tuple[Message, bytes]:
        """A 200 response's headers and body, following same-origin redirects only."""
        origin = _origin(url, loopback_http=self._loopback_http, what="URL")
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, body = self._request(url, deadline)
            if status == 200:
                return headers, body
            if status not in _REDIRECT_STATUSES:
                raise KeyFetchError(f"{url} answered HTTP {status}", url=url, status=status)
            location = headers.get("Location")
            if not location:
                raise KeyFetchError(f"{url} redirects without a Location", url=url, status=status)
            try:
                target = urllib.parse.urljoin(url, location)
                same = _origin(target, loopback_http=True, what="URL") == origin
            except ValueError:
                same = False
            if not same:
                raise KeyFetchError(
                    f"{url} redirects to another host: refused", url=url, status=status
                )
            url = target
        raise KeyFetchError(f"{url}: more than {MAX_REDIRECTS} redirects", url=url)

    def _request(self, url: str, deadline: _http.Deadline) -> tuple[int, Message, bytes]:
        parts = urllib.parse.urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname or ""
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = _http._HTTPSConnection(host, parts.port, context=self._ssl_context)
        else:
            conn = _http._Connection(host, parts.port)
        try:
            with _http.bounded(deadline):
                conn.timeout = deadline.left()
                conn.request("GET", target, headers={"Accept": "application/json"})
                with conn.getresponse() as response:  # closed with its socket, read or not
                    status, headers = response.status, response.headers
                    redirect = status in _REDIRECT_STATUSES
                    limit = self._max_response
                    body = b"" if redirect else _http.read_body(response, limit, deadline)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.remaining() <= 0:
                raise KeyFetchError(f"fetching {url} timed out", url=url) from None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
            raise KeyFetchError(
                f"fetching {url} failed: {reason or type(exc).__name__}", url=url
            ) from None
        finally:
            conn.close()
        if len(body) > self._max_response:
            raise KeyFetchError(
                f"{url} answered more than {self._max_response} bytes", url=url, status=status
            )
        return status, headers, body
