"""The decision core: one request's ``Authorization`` headers and access in, a decision out.

Every adapter (WSGI, ASGI, the framework ones) calls :meth:`Gate.decide`
and only translates its answer; none decides anything itself.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from .. import StoreError
from ..access import Access
from ..caveats.caveat_set import CaveatSet
from ..errors import DecodeError, UnauthorizedError, VerificationError
from ..verifier import Verifier
from ._log import DecisionLog, DecisionRecord, _logger, log_decision
from ._problem import Denial, forbidden, unauthenticated, unavailable

__all__ = ["Authorized", "Gate"]

# The identity memo holds at most this many bytes: each entry is charged its
# header's size plus _ENTRY_BYTES for the id strings, their tuple and the
# dict's share (about 270 bytes, measured with tracemalloc).
_MEMO_BYTES = 8 * 1024 * 1024
_ENTRY_BYTES = 300


@attrs.frozen
class Authorized:
    """An allowed request's verified result, handed to the application.

    Attributes:
        caveats: the trusted caveats of the token, as
            :meth:`~macaroons_authz.Verifier.authorize` returned them.
        token_id: the permission token's id (its nonce UUID), for logs
            and revocation.
    """

    caveats: CaveatSet
    token_id: str


_Identity = tuple[str | None, str | None]  # (token id, KID hex)
_NO_IDENTITY: _Identity = (None, None)


class Gate:
    """Decides whether requests may proceed; shared by every adapter.

    One gate (and its verifier, cache and stores) may serve any number of
    threads at once: the verifier and its cache are thread-safe, and the
    gate's own state is a memo of token ids that any thread may fill.

    Args:
        verifier: verifies headers and validates accesses.
        log: called with a :class:`DecisionRecord` after each decision
            (:func:`log_decision`, INFO on the ``macaroons_authz.web``
            logger, by default); ``None`` logs nothing.
        retry_after: seconds a 503 asks the client to wait.
        timer: the clock that times decisions (for the log's latency).
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        log: DecisionLog | None = log_decision,
        retry_after: int = 5,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.verifier = verifier
        self._log = log
        self._unavailable = unavailable(retry_after)
        self._timer = timer
        # header -> (token id, KID hex) of its permission token: a pure
        # function of the header, remembered because computing it costs
        # more than a cached authorization.
        self._ids: dict[str, _Identity] = {}
        self._ids_bytes = 0
        self._ids_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Gate {self.verifier!r}>"

    def decide(
        self, authorization: Sequence[str], access: Access | None
    ) -> Authorized | Denial | None:
        """The decision for a request.

        Args:
            authorization: the values of the request's ``Authorization``
                headers (none, one, or several, which are refused).
            access: what the request needs, or ``None`` when its path needs
                no token.

        Returns:
            ``None`` when no token is needed (nothing is verified or
            logged); an :class:`Authorized` when the token allows *access*;
            otherwise the :class:`Denial` to send: 401 for a missing,
            repeated, malformed, forged, revoked or unknown-key token, 403
            for an authentic token that does not allow *access*, 503 when
            a store cannot be read.
        """
        if access is None:
            return None
        log = self._log
        if log is log_decision and not _logger.isEnabledFor(logging.INFO):
            log = None  # no record to build: that is a third of the cost of a hit
        start = 0.0 if log is None else self._timer()
        if len(authorization) != 1:
            return self._deny(log, unauthenticated(), None, access, start)
        header = authorization[0]
        try:
            caveats = self.verifier.authorize(header, access)
        except UnauthorizedError as exc:
            return self._deny(log, forbidden(_kinds(exc)), header, access, start)
        except (DecodeError, VerificationError):
            return self._deny(log, unauthenticated(), header, access, start)
        except StoreError:
            return self._deny(log, self._unavailable, header, access, start)
        token_id, kid = self._ids.get(header) or self._remember(header)
        assert token_id is not None  # an authorized header has a permission token
        if log is not None:
            log(DecisionRecord(True, 200, token_id, kid, access, (), self._timer() - start))
        return Authorized(caveats, token_id)

    def _deny(
        self,
        log: DecisionLog | None,
        denial: Denial,
        header: str | None,
        access: Access,
        start: float,
    ) -> Denial:
        if log is not None:
            token_id, kid = _NO_IDENTITY if header is None else self._identify(header)
            elapsed = self._timer() - start
            log(DecisionRecord(False, denial.status, token_id, kid, access, denial.failed, elapsed))
        return denial

    def _identify(self, header: str) -> _Identity:
        """The id and KID of the header's permission token, if it has one that decodes."""
        try:
            token, _ = self.verifier.split(header)
        except DecodeError:
            return _NO_IDENTITY
        nonce = token.nonce
        return str(nonce.uuid), (nonce.kid or b"").hex()

    def _remember(self, header: str) -> _Identity:
        """:meth:`_identify`, memoized for authorized headers up to :data:`_MEMO_BYTES`."""
        identity = self._identify(header)
        cost = sys.getsizeof(header) + _ENTRY_BYTES
        with self._ids_lock:
            if self._ids_bytes + cost > _MEMO_BYTES:
                self._ids.clear()
                self._ids_bytes = 0
            if cost <= _MEMO_BYTES and header not in self._ids:
                self._ids[header] = identity
                self._ids_bytes += cost
        return identity


def _kinds(exc: UnauthorizedError) -> tuple[str, ...]:
    """The kinds of caveat that refused an access, each once, in order.

    A caveat's kind is its type name; a failure without a caveat (the
    access itself is malformed) is named by its error class.
    """
    kinds: dict[str, None] = {}
    for leaf in exc.leaves():
        caveat = leaf.caveat
        kinds[type(leaf).__name__ if caveat is None else str(type(caveat).name)] = None
    return tuple(kinds)
