"""The discharge service's deferred flows: kept in memory, bounded, expiring."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from .. import crypto
from .protocol import FlowNotFoundError, TicketRequest, _digest, _seconds

__all__ = ["PendingFlow"]

_SECRET = re.compile(r"[0-9a-f]{32}")
_SECRET_BYTES = 16


@attrs.frozen
class PendingFlow:
    """A deferred flow, as the application sees it.

    Attributes:
        user_secret: the application's handle on the flow: pass it to
            :meth:`DischargeService.complete`. Hidden from ``repr``.
        user_url: the URL the client is told to open (user-interactive
            flows); it holds the user secret. Hidden from ``repr``.
        request: the request that started the flow.
        interactive: whether it is a user-interactive flow.
        expires_at: when it is forgotten (the service's clock).
    """

    user_secret: str = attrs.field(repr=False)
    user_url: str = attrs.field(repr=False)
    request: TicketRequest
    interactive: bool
    expires_at: float


@attrs.define
class _Flow:
    ticket: bytes = attrs.field(repr=False)
    request: TicketRequest
    interactive: bool
    expires_at: float
    user_key: str
    poll_key: str
    user_secret: str = attrs.field(repr=False)
    user_url: str = attrs.field(repr=False)
    result: tuple[int, dict[str, Any]] | None = None


class _FlowStoreFullError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many pending flows")
        self.retry_after = retry_after


class _FlowStore:
    """Deferred flows in memory: bounded, expiring, indexed by secret digests.

    Flows are kept in the order they expire (a finished flow moves to the
    end, as its lifetime restarts), so expired ones are dropped from the
    front. When the store is full a new flow is refused, never made room
    for: evicting the oldest would let anyone who can start flows end a
    user's login.
    """

    def __init__(self, max_flows: int, ttl: float, clock: Callable[[], float]) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be positive")
        self._max = max_flows
        _seconds(ttl, "flow_ttl")
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._flows: OrderedDict[str, _Flow] = OrderedDict()
        self._by_user: dict[str, str] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._flows)

    def _drop(self, flow: _Flow) -> None:
        self._flows.pop(flow.poll_key, None)
        self._by_user.pop(flow.user_key, None)

    def _live(self, flow: _Flow | None) -> _Flow | None:
        if flow is not None and self._clock() > flow.expires_at:
            self._drop(flow)
            return None
        return flow

    def create(
        self,
        ticket: bytes,
        request: TicketRequest,
        interactive: bool,
        user_url: Callable[[str], str],
    ) -> tuple[_Flow, str]:
        """A new flow and its poll secret.

        Raises:
            _FlowStoreFullError: the store holds *max_flows* live flows.
        """
        user_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        poll_secret = crypto.random_bytes(_SECRET_BYTES).hex()
        now = self._clock()
        flow = _Flow(
            ticket,
            request,
            interactive,
            now + self._ttl,
            "u" + _digest(user_secret.encode("ascii")),
            "p" + _digest(poll_secret.encode("ascii")),
            user_secret,
            user_url(user_secret),
        )
        with self._lock:
            while self._flows:
                oldest = next(iter(self._flows.values()))
                if now <= oldest.expires_at:
                    break
                self._drop(oldest)
            if len(self._flows) >= self._max:
                oldest = next(iter(self._flows.values()))
                raise _FlowStoreFullError(max(1, math.ceil(oldest.expires_at - now)))
            self._flows[flow.poll_key] = flow
            self._by_user[flow.user_key] = flow.poll_key
        return flow, poll_secret

    def pending(self, user_secret: str) -> _Flow:
        if not isinstance(user_secret, str) or not _SECRET.fullmatch(user_secret):
            raise FlowNotFoundError("no pending flow for this secret")
        with self._lock:
            poll_key = self._by_user.get("u" + _digest(user_secret.encode("ascii")))
            flow = self._live(self._flows.get(poll_key or ""))
            if flow is None or flow.result is not None:
                raise FlowNotFoundError("no pending flow for this secret")
            return flow

    def finish(self, flow: _Flow, status: int, body: dict[str, Any]) -> None:
        with self._lock:
            if self._live(self._flows.get(flow.poll_key)) is not flow or flow.result is not None:
                raise FlowNotFoundError("no pending flow for this secret")
            flow.result = (status, body)
            flow.expires_at = self._clock() + self._ttl
            self._flows.move_to_end(flow.poll_key)
            # The user secret is spent: only the poll secret reaches the result.
            self._by_user.pop(flow.user_key, None)

    def take(self, poll_secret: str) -> tuple[int, dict[str, Any]] | None:
        """The result (deleting the flow), ``(202, ...)`` while pending, ``None`` if unknown."""
        if not _SECRET.fullmatch(poll_secret):
            return None
        with self._lock:
            flow = self._live(self._flows.get("p" + _digest(poll_secret.encode("ascii"))))
            if flow is None:
                return None
            if flow.result is None:
                return 202, {"error": "not ready"}
            self._drop(flow)
            return flow.result


def _pending(flow: _Flow) -> PendingFlow:
    return PendingFlow(
        flow.user_secret, flow.user_url, flow.request, flow.interactive, flow.expires_at
    )
