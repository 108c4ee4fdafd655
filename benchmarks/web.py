"""The web middleware's own cost: µs per request, in process, no server.

Run ``python benchmarks/web.py`` (``--quick`` for a short run). A trivial
endpoint is called directly, unprotected and behind each middleware (the
WSGI app called with an environ, the ASGI coroutine driven by hand without
an event loop), next to ``Verifier.authorize`` alone on the same header,
with the verification cache on and off. The middleware's overhead is what
a protected request costs beyond the endpoint and ``authorize``. Measured
with ``measure_all`` from ``run.py`` (interleaved rounds, medians).

The decision log is the default hook with INFO off (the logging default);
one row shows it on, writing to a handler that drops the lines. The ASGI
middleware decides inline with the in-memory stores used here; one row
shows the thread hand-off it makes for other stores.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import measure_all

from macaroons_authz import (
    Action,
    FlyAccess,
    MemoryKeyring,
    VerificationCache,
    Verifier,
    __version__,
    app_token,
    to_header,
)
from macaroons_authz.web import (
    LOGGER_NAME,
    ASGIMiddleware,
    WSGIMiddleware,
)
from macaroons_authz.web.asgi import Message, Receive, Scope, Send

NOW = 1_767_225_600
ACCESS = FlyAccess(org_id=1234, app_id=42, action=Action.READ, at=NOW + 60)
_BODY = [b"ok"]
_START: Message = {"type": "http.response.start", "status": 200, "headers": []}
_END: Message = {"type": "http.response.body", "body": b"ok"}


def wsgi_endpoint(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    return _BODY


async def asgi_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    await send(_START)
    await send(_END)


async def _receive() -> Message:
    return {"type": "http.request"}


class _Recorder:
    """The server's side: start_response and send, remembering the last status."""

    status: Any = None

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    def close(self) -> None:
        """Close the event loops the operations made."""
        for loop in self.loops:
            loop.close()

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.status = status

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


def _drive(app: Any, scope: Scope, recorder: _Recorder) -> Callable[[], object]:
    """Call an ASGI app that never suspends, without an event loop."""

    def call() -> object:
        coro = app(scope, _receive, recorder.send)
        try:
            coro.send(None)
        except StopIteration:
            return recorder.status
        coro.close()
        raise RuntimeError("the application suspended")

    return call


def _loop_calls(app: Any, scope: Scope, recorder: _Recorder) -> Callable[[], object]:
    """Call an ASGI app on an event loop, 100 requests a call (results per request)."""
    loop = asyncio.new_event_loop()
    recorder.loops.append(loop)

    async def hundred() -> None:
        for _ in range(100):
            await app(scope, _receive, recorder.send)

    def call() -> object:
        loop.run_until_complete(hundred())
        return recorder.status

    return call


def operations(cache: bool) -> tuple[dict[str, Callable[[], object]], _Recorder]:
    """Each measured operation; every call of each must end in a 200."""
    ring = MemoryKeyring()
    ring.generate()
    header = to_header(app_token(ring.current(), 1234, [42], expires_in=3600, now=NOW))
    verifier = Verifier(ring, cache=VerificationCache() if cache else None)
    environ: WSGIEnvironment = {"REQUEST_METHOD": "GET", "PATH_INFO": "/apps/42"}
    environ["HTTP_AUTHORIZATION"] = header
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/apps/42",
        "headers": [
            (b"host", b"api.example"),
            (b"user-agent", b"bench/1"),
            (b"accept", b"*/*"),
            (b"authorization", header.encode()),
        ],
    }
    rec = _Recorder()

    def wsgi_access(environ: WSGIEnvironment) -> FlyAccess:
        return ACCESS

    def asgi_access(scope: Scope) -> FlyAccess:
        return ACCESS

    wsgi = WSGIMiddleware(wsgi_endpoint, verifier, wsgi_access)
    asgi = ASGIMiddleware(asgi_endpoint, verifier, asgi_access)
    offloaded = ASGIMiddleware(asgi_endpoint, verifier, asgi_access, offload=True)
    assert not asgi.offload
    fns: dict[str, Callable[[], object]] = {
        "authorize": lambda: verifier.authorize(header, ACCESS),
        "WSGI endpoint": lambda: wsgi_endpoint(environ, rec.start_response),
        "WSGI middleware": lambda: wsgi(environ, rec.start_response),
        "ASGI endpoint": _drive(asgi_endpoint, scope, rec),
        "ASGI middleware": _drive(asgi, scope, rec),
    }
    if cache:
        fns["ASGI middleware, thread hand-off (x100)"] = _loop_calls(offloaded, scope, rec)
        fns["ASGI endpoint on a loop (x100)"] = _loop_calls(asgi_endpoint, scope, rec)
    return fns, rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 0.2 s per measurement")
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else 1.0
    print(f"macaroons_authz {__version__}, Python {platform.python_version()}")
    print()
    print("| cache | server | endpoint µs | authorize µs | with middleware µs | overhead µs |")
    print("|---|---|---:|---:|---:|---:|")
    extra: dict[str, float] = {}
    for cache in (True, False):
        fns, rec = operations(cache)
        o = measure_all(fns, seconds)
        rec.close()
        for server in ("WSGI", "ASGI"):
            total, bare = o[f"{server} middleware"], o[f"{server} endpoint"]
            print(
                f"| {'on' if cache else 'off'} | {server} | {bare:.2f} | {o['authorize']:.2f} "
                f"| {total:.2f} | {total - bare - o['authorize']:.2f} |"
            )
        if cache:
            extra = o
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fns, _ = operations(True)
    logged = measure_all(
        {k: fns[k] for k in ("authorize", "ASGI endpoint", "ASGI middleware")}, seconds
    )
    hand_off = (
        extra["ASGI middleware, thread hand-off (x100)"] - extra["ASGI endpoint on a loop (x100)"]
    ) / 100 - extra["authorize"]
    print()
    print(
        "ASGI, cache on, decision log at INFO (null handler): overhead "
        f"{logged['ASGI middleware'] - logged['ASGI endpoint'] - logged['authorize']:.2f} µs"
    )
    print(f"ASGI, cache on, decided in a thread (offload=True): overhead {hand_off:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
