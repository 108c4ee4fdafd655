"""The responses that stop a request: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import attrs

__all__ = ["PROBLEM_JSON", "Denial", "forbidden", "unauthenticated", "unavailable"]

#: The media type of every denial's body (RFC 9457).
PROBLEM_JSON = "application/problem+json"


@attrs.frozen
class Denial:
    """A refused request: the response to send instead of calling the application.

    Attributes:
        status: 401, 403 or 503.
        headers: the response headers, as ``(name, value)`` pairs.
        body: the ``application/problem+json`` document, as bytes.
        failed: for a 403, the kinds of caveat that refused the access (the
            caveat type names, such as ``"Apps"``); empty otherwise.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    failed: tuple[str, ...] = ()


def _problem(
    status: HTTPStatus,
    detail: str,
    headers: Iterable[tuple[str, str]] = (),
    **members: Any,
) -> Denial:
    # type "about:blank": the status says it all, so the title is its phrase.
    doc = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail}
    body = json.dumps({**doc, **members}, separators=(",", ":")).encode()
    return Denial(
        int(status),
        (("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body))), *headers),
        body,
        tuple(members.get("failed_caveats", ())),
    )


def unauthenticated() -> Denial:
    """401: no token, or none that is authentic. Says nothing more, so it is no oracle."""
    return _UNAUTHENTICATED


def forbidden(failed: tuple[str, ...]) -> Denial:
    """403: an authentic token that does not allow the access, naming the caveat kinds."""
    return _problem(
        HTTPStatus.FORBIDDEN,
        "The token does not allow this request.",
        failed_caveats=list(failed),
    )


def unavailable(retry_after: int) -> Denial:
    """503: a store could not be read, so nothing is allowed (fail closed)."""
    return _problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "Authorization is unavailable; try again later.",
        (("Retry-After", str(retry_after)),),
    )


_UNAUTHENTICATED = _problem(
    HTTPStatus.UNAUTHORIZED,
    "A valid FlyV1 token is required.",
    (("WWW-Authenticate", "FlyV1"),),
)
