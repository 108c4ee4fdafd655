"""HTTP requests that end by a deadline, for the discharge client.

A socket timeout bounds one socket operation, not a request: a server that
sends a byte every 0.1 s keeps every read short and the request going for
ever. Here each operation's timeout is the time left before the deadline,
set again before each connect, send and read, and a read after the
deadline fails at once. The deadline is set
for the current thread by :func:`bounded`; the handlers of
:func:`build_opener` honour it.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import io
import socket
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_CHUNK = 64 * 1024


@attrs.frozen
class Deadline:
    """When a request must be over, on *clock*."""

    at: float
    clock: Callable[[], float]

    def remaining(self) -> float:
        """Seconds left (zero or less once passed)."""
        return self.at - self.clock()

    def left(self) -> float:
        """The timeout of the next operation.

        Raises:
            TimeoutError: the deadline has passed.
        """
        remaining = self.remaining()
        if remaining <= 0:
            raise TimeoutError("timed out")
        return remaining


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "macaroons_authz_deadline", default=None
)


@contextlib.contextmanager
def bounded(deadline: Deadline) -> Iterator[None]:
    """Requests made in this block, through :func:`build_opener`'s handlers, end by *deadline*."""
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)


class _Reader(io.RawIOBase):
    """A socket's reader that sets the timeout to the time left before each read."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Response(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        deadline = _current.get()
        if deadline is not None:
            # The status line and headers are read through this too.
            self.fp = io.BufferedReader(_Reader(self.fp.detach(), sock, deadline))


class _Connection(http.client.HTTPConnection):
    response_class = _Response

    def _set_timeout(self) -> None:
        deadline = _current.get()
        if deadline is not None and self.sock is not None:
            self.sock.settimeout(deadline.left())

    def connect(self) -> None:
        # HTTPSConnection.connect calls this, then shakes hands over the socket
        # with the timeout set here: the time left after connecting.
        super().connect()
        self._set_timeout()

    def send(self, data: Any) -> None:
        self._set_timeout()
        super().send(data)


class _HTTPSConnection(http.client.HTTPSConnection, _Connection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> Any:
        return super().do_open(_Connection, req, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request, **kwargs: Any) -> Any:
        return super().do_open(_HTTPSConnection, req, **kwargs)


def build_opener(
    *handlers: urllib.request.BaseHandler | Callable[[], urllib.request.BaseHandler],
) -> urllib.request.OpenerDirector:
    """:func:`urllib.request.build_opener` with HTTP(S) handlers that honour :func:`bounded`."""
    return urllib.request.build_opener(*handlers, _HTTPHandler, _HTTPSHandler)


class _Readable(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


def read_body(response: _Readable, limit: int, deadline: Deadline) -> bytes:
    """Up to *limit* + 1 bytes of *response*, read in chunks; the deadline is checked between.

    Raises:
        TimeoutError: the deadline passed.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        deadline.left()
        chunk = response.read1(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
