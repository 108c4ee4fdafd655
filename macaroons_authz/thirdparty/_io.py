"""The discharge service's HTTP plumbing, the same for its WSGI and ASGI forms.

A request reaches the service as a :class:`Request` (method, path, lower-case
headers, the client's address, and a way to read the body); the service
answers with a :class:`Reply`. The adapters (WSGI in :mod:`.service`, ASGI in
:mod:`.asgi_service`) only translate.
"""

from __future__ import annotations

import binascii
import http
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .._gojson import unb64

_DIGITS = re.compile(r"[0-9]+")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@attrs.define
class Request:
    """One request, as the service sees it.

    *read* reads up to *n* bytes of the body; *body_read* says whether the
    service read it (a WSGI server must otherwise be drained of it).
    """

    method: str
    path: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    remote_addr: str
    read: Callable[[int], bytes] = attrs.field(repr=False)
    body_read: bool = False


@attrs.frozen
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = attrs.field(repr=False)

    @property
    def status_line(self) -> str:
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:  # a status unknown to http, such as nginx's 499
            phrase = "Client Error" if self.status < 500 else "Server Error"
        return f"{self.status} {phrase}"


def json_reply(
    status: int, body: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    data = json.dumps(body, separators=(",", ":")).encode("utf-8") + b"\n"
    return Reply(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
        data,
    )


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length; ``None`` if it has none.

    Only ASCII digits count (``str.isdigit`` takes ``"²"``, which ``int``
    refuses); a length of more than 18 digits reads as 10**18, larger than
    any limit, and is never converted.

    Raises:
        HTTPError: 400, the header is not a number.
    """
    raw = headers.get("content-length", "").strip()
    if not raw:
        return None
    if not _DIGITS.fullmatch(raw):
        raise HTTPError(400, "bad Content-Length")
    raw = raw.lstrip("0") or "0"
    return int(raw) if len(raw) <= 18 else 10**18


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def read_body(request: Request, max_body: int) -> bytes:
    """The body of *request*, which must have a Content-Length of at most *max_body*.

    Raises:
        HTTPError: 411 without a Content-Length, 413 above *max_body*.
    """
    length = content_length(request.headers)
    if length is None:
        raise HTTPError(411, "request body needs a Content-Length")
    if length > max_body:
        raise HTTPError(413, f"request body larger than {max_body} bytes")
    body = request.read(length) if length else b""
    request.body_read = True
    return body


def read_ticket(request: Request, max_body: int) -> bytes:
    if media_type(request.headers) != "application/json":
        raise HTTPError(415, "request body must be application/json")
    body = read_body(request, max_body)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HTTPError(400, "request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HTTPError(400, "request body must be a JSON object")
    value = doc.get("ticket")
    if not isinstance(value, str) or not value:
        raise HTTPError(400, "missing ticket")
    try:
        return unb64(value)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "ticket is not base64") from None
