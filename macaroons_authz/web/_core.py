"""The decision core: one request's ``Authorization`` headers and access in, a decision out.

Every adapter (WSGI, ASGI, the framework ones) calls :meth:`Gate.decide`
and only translates its answer; none decides anything itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import attrs

from .. import StoreError
from ..access import Access
from ..async_verifier import AsyncVerifier
from ..caveats.caveat_set import CaveatSet
from ..decision import VerifiedToken
from ..errors import DecodeError, UnauthorizedError, VerificationError
from ..verifier import Verifier
from ._log import DecisionLog, DecisionRecord, _logger, log_decision
from ._problem import Denial, forbidden, unauthenticated, unavailable

__all__ = ["Authorized", "Gate"]

# What a verifier raises that is a decision (anything else is a bug: a 500).
_DECISIONS = (UnauthorizedError, DecodeError, VerificationError, StoreError)


@attrs.frozen
class Authorized:
    """An allowed request's verified result, handed to the application.

    Attributes:
        caveats: the trusted caveats of the token, as
            :meth:`~macaroons_authz.Verifier.authorize` returned them.
        token_id: the permission token's id (its nonce UUID), for logs
            and revocation: in a header of several permission tokens, the
            one that allowed the request.
    """

    caveats: CaveatSet
    token_id: str


_Identity = tuple[str | None, str | None]  # (token id, KID hex)
_NO_IDENTITY: _Identity = (None, None)


class Gate:
    """Decides whether requests may proceed; shared by every adapter.

    One gate (and its verifier, cache and stores) may serve any number of
    threads, or of asyncio tasks, at once: it keeps no state of its own
    between decisions, and the verifier and its cache are safe to share.

    Args:
        verifier: verifies headers and validates accesses: a
            :class:`~macaroons_authz.Verifier` for :meth:`decide`, an
            :class:`~macaroons_authz.AsyncVerifier` for :meth:`adecide`.
        log: called with a :class:`DecisionRecord` after each decision
            (:func:`log_decision`, INFO on the ``macaroons_authz.web``
            logger, by default); ``None`` logs nothing.
        retry_after: seconds a 503 asks the client to wait: a whole number,
            0 or more, as ``Retry-After`` allows.
        timer: the clock that times decisions (for the log's latency).

    Raises:
        ValueError: *retry_after* is not a whole number of seconds, 0 or more.
    """

    def __init__(
        self,
        verifier: Verifier | AsyncVerifier,
        *,
        log: DecisionLog | None = log_decision,
        retry_after: int = 5,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if type(retry_after) is not int or retry_after < 0:
            raise ValueError(f"retry_after must be whole seconds, 0 or more, not {retry_after!r}")
        self.verifier = verifier
        self._log = log
        self._unavailable = unavailable(retry_after)
        self._timer = timer

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
            repeated, malformed, forged, revoked or unknown-key token (in a
            header of several permission tokens: when none is authentic),
            403 for an authentic token that does not allow *access*, 503
            when a store cannot be read.

        Raises:
            TypeError: the gate's verifier is an
                :class:`~macaroons_authz.AsyncVerifier` (use :meth:`adecide`).
        """
        if access is None:
            return None
        verifier = self.verifier
        if not isinstance(verifier, Verifier):
            raise TypeError("a gate of an AsyncVerifier decides with adecide()")
        log, start = self._start()
        if len(authorization) != 1:
            return self._deny(log, unauthenticated(), None, access, start)
        header = authorization[0]
        try:
            verified = verifier.authorize_token(header, access)
        except _DECISIONS as exc:
            return self._refuse(exc, log, header, access, start)
        return self._allow(verified, log, access, start)

    async def adecide(
        self, authorization: Sequence[str], access: Access | None
    ) -> Authorized | Denial | None:
        """:meth:`decide` with the gate's :class:`~macaroons_authz.AsyncVerifier`.

        The verifier awaits its stores: while this request waits on one,
        the event loop serves others.

        Raises:
            TypeError: the gate's verifier is a blocking
                :class:`~macaroons_authz.Verifier` (use :meth:`decide`).
        """
        if access is None:
            return None
        verifier = self.verifier
        if not isinstance(verifier, AsyncVerifier):
            raise TypeError("a gate of a blocking Verifier decides with decide()")
        log, start = self._start()
        if len(authorization) != 1:
            return self._deny(log, unauthenticated(), None, access, start)
        header = authorization[0]
        try:
            verified = await verifier.authorize_token(header, access)
        except _DECISIONS as exc:
            return self._refuse(exc, log, header, access, start)
        return self._allow(verified, log, access, start)

    def _start(self) -> tuple[DecisionLog | None, float]:
        """The log to record this decision in (if any), and when the decision began."""
        log = self._log
        if log is log_decision and not _logger.isEnabledFor(logging.INFO):
            log = None  # no record to build: that is a third of the cost of a hit
        return log, (0.0 if log is None else self._timer())

    def _allow(
        self, verified: VerifiedToken, log: DecisionLog | None, access: Access, start: float
    ) -> Authorized:
        token_id = verified.token_id
        if log is not None:
            kid = verified.kid.hex()
            log(DecisionRecord(True, 200, token_id, kid, access, (), self._timer() - start))
        return Authorized(verified.caveats, token_id)

    def _refuse(
        self, exc: Exception, log: DecisionLog | None, header: str, access: Access, start: float
    ) -> Denial:
        if isinstance(exc, UnauthorizedError):
            denial = forbidden(_kinds(exc))
        elif isinstance(exc, StoreError):
            denial = self._unavailable
        else:
            denial = unauthenticated()
        return self._deny(log, denial, header, access, start)

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
        """The id and KID of the header's permission token, if it has exactly one that decodes."""
        try:
            token, _ = self.verifier.split(header)
        except DecodeError:
            return _NO_IDENTITY
        nonce = token.nonce
        return str(nonce.uuid), (nonce.kid or b"").hex()


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
