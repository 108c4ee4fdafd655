"""A background thread that keeps a Fly.io token set's discharges fresh.

flyctl's agent does this (``keepConfigTokensFresh``): once a minute it
refreshes the discharges and writes the tokens back to ``config.yml``
unless another program changed them meanwhile. :class:`Refresher` does the
same with a :class:`~macaroons_authz.fly.Discharger`, waking when the next
discharge falls due (at most every *interval* seconds), retrying a failed
refresh a bounded number of times with a doubling wait, and reporting
failures through ``on_error`` and :attr:`Refresher.last_error`. It logs
the kind of each failure, never a token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ..errors import MacaroonError
from ..leaks import redact_tokens
from .config_file import write_access_token
from .discharges import Discharger, RefreshResult, _seconds
from .token_set import TokenSet

__all__ = ["Refresher"]

_log = logging.getLogger("macaroons_authz.fly")
_T = TypeVar("_T")


class Refresher:
    """Keeps a :class:`~macaroons_authz.fly.TokenSet` fresh, in a daemon thread or by hand.

    Read the current set from :attr:`tokens` (or a header from
    :meth:`header`) before each request. :meth:`refresh_now` refreshes once
    in the calling thread; :meth:`start` runs it in a daemon thread until
    :meth:`stop` (or the end of a ``with`` block).

    Args:
        tokens: the set to keep fresh.
        discharger: how to fetch discharges; a default
            :class:`~macaroons_authz.fly.Discharger` if omitted.
        clock: the current time in unix seconds (``time.time``), read once
            per refresh.
        interval: the longest wait between two refreshes, in seconds
            (flyctl's minute); shorter when a discharge falls due sooner.
        backoff: the first wait after a failed refresh; it doubles on each
            failure in a row, up to *max_backoff*.
        max_retries: failed refreshes in a row retried after *backoff*;
            after that, the next try waits *interval*.
        on_update: called with the new set each time it changes.
        on_error: called with each failure (a
            :class:`~macaroons_authz.MacaroonError`, usually a
            :class:`~macaroons_authz.thirdparty.DischargeError` or a
            :class:`~macaroons_authz.fly.FlyConfigError`). Exceptions it
            raises are logged and ignored.
        write_back: write each changed set to the config file it came from
            (:attr:`TokenSet.from_file`), atomically
            (:func:`~macaroons_authz.fly.write_access_token`), unless the
            file's tokens changed since they were read: then the file is
            left alone and a :class:`~macaroons_authz.fly.ConfigChangedError`
            reported.
    """

    def __init__(
        self,
        tokens: TokenSet,
        discharger: Discharger | None = None,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = 60,
        backoff: float = 1,
        max_backoff: float = 60,
        max_retries: int = 5,
        on_update: Callable[[TokenSet], None] | None = None,
        on_error: Callable[[MacaroonError], None] | None = None,
        write_back: bool = False,
    ) -> None:
        if not isinstance(tokens, TokenSet):
            raise TypeError("tokens must be a TokenSet")
        if type(max_retries) is not int or max_retries < 0:
            raise ValueError("max_retries must be a non-negative integer")
        self.discharger = discharger or Discharger()
        self._clock = clock
        self._interval = _seconds(interval, "interval")
        self._backoff = _seconds(backoff, "backoff")
        self._max_backoff = _seconds(max_backoff, "max_backoff")
        self._max_retries = max_retries
        self._on_update = on_update
        self._on_error = on_error
        self._write_back = write_back
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._tokens = tokens
        self._written = tokens.text()
        self._last_error: MacaroonError | None = None
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<Refresher {self.tokens!r} running={running}>"

    @property
    def tokens(self) -> TokenSet:
        """The current token set."""
        with self._lock:
            return self._tokens

    @property
    def last_error(self) -> MacaroonError | None:
        """The failure of the last refresh; ``None`` once one succeeds."""
        with self._lock:
            return self._last_error

    def header(self) -> str:
        """:meth:`TokenSet.header <macaroons_authz.fly.TokenSet.header>` of the current set."""
        return self.tokens.header()

    # -- one refresh -------------------------------------------------------

    def refresh_now(self) -> RefreshResult:
        """Refresh once, now, in this thread; never raises for a failed fetch or write.

        The failure, if any, is :attr:`last_error`, passed to ``on_error``
        and in the result's ``error`` (a write-back failure is only in the
        first two). Two calls at once (the thread's and yours) run one
        after the other.
        """
        with self._refreshing:
            result = self.discharger.refresh(self.tokens, now=self._clock())
            error: MacaroonError | None = result.error
            if result.changed:
                with self._lock:
                    self._tokens = result.tokens
                self._call(self._on_update, result.tokens)
                path = result.tokens.from_file
                if self._write_back and path is not None:
                    error = self._write(path, result.tokens.text()) or error
            with self._lock:
                self._last_error = error
            if error is not None:
                # The kind and message only: they name no token, and are redacted besides.
                _log.warning(
                    "refreshing Fly.io tokens failed: %s: %s",
                    type(error).__name__,
                    redact_tokens(str(error)),
                )
                self._call(self._on_error, error)
            return result

    def _write(self, path: Path, text: str) -> MacaroonError | None:
        try:
            write_access_token(path, text, expect=self._written)
        except MacaroonError as exc:
            return exc
        self._written = text
        return None

    def _call(self, callback: Callable[[_T], None] | None, value: _T) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception as exc:
            _log.error("Refresher callback %s raised %s", callback, type(exc).__name__)

    # -- the thread --------------------------------------------------------

    def start(self) -> Refresher:
        """Start the daemon thread; return self.

        Raises:
            RuntimeError: it was started already.
        """
        if self._thread is not None:
            raise RuntimeError("the refresher was started already")
        self._thread = threading.Thread(target=self._run, name="fly-token-refresher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread; wait for it at most *timeout* seconds.

        By default the wait is the discharger's timeout and 5 seconds: a
        fetch in progress ends by then. Return whether the thread ended.
        """
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(self.discharger.timeout + 5 if timeout is None else timeout)
        return not thread.is_alive()

    def __enter__(self) -> Refresher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            tokens: TokenSet | None = None
            try:
                result = self.refresh_now()
            except Exception as exc:  # a bug or a broken clock: keep the thread, say what
                _log.error("refreshing Fly.io tokens failed: %s", type(exc).__name__)
            else:
                if self.last_error is None:
                    tokens = result.tokens
            self._stop.wait(self._wait(tokens))

    def _wait(self, tokens: TokenSet | None) -> float:
        """Seconds until the next refresh: *tokens* after a success, ``None`` after a failure."""
        if tokens is None:
            self._failures += 1
            if self._failures <= self._max_retries:
                return min(self._backoff * 2.0 ** (self._failures - 1), self._max_backoff)
            self._failures = 0
            return self._interval
        self._failures = 0
        due = self.discharger.next_refresh(tokens)
        if due is None:
            return self._interval
        left = due - self._clock()
        # Still due right after a successful refresh (a discharge shorter
        # than the margin): wait the interval rather than loop.
        return self._interval if left <= 0 else min(left, self._interval)
