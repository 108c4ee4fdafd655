"""What the framework adapters share: the gate of a verifier, and the async hand-off.

The adapters (:mod:`~macaroons_authz.web.flask`,
:mod:`~macaroons_authz.web.fastapi`, :mod:`~macaroons_authz.web.django`)
only find a request's headers and translate the :class:`Gate`'s answer;
this module imports no framework.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..access import Access
from ..async_verifier import AsyncVerifier
from ..verifier import Verifier
from ._core import Authorized, Gate
from ._problem import Denial

__all__ = ["decide_async", "gate_for"]


def gate_for(guard: Verifier | AsyncVerifier | Gate, *, blocking: bool = False) -> Gate:
    """*guard* if it is a :class:`Gate`, else a gate of the verifier (default log and 503).

    Args:
        guard: a verifier, or a gate of one.
        blocking: the adapter decides synchronously (Flask, Django), so the
            gate's verifier must be a blocking :class:`~macaroons_authz.Verifier`.

    Raises:
        TypeError: *guard* is neither, or an async verifier where a
            blocking one is needed.
    """
    if isinstance(guard, Gate):
        gate = guard
    elif isinstance(guard, Verifier | AsyncVerifier):
        gate = Gate(guard)
    else:
        raise TypeError(f"expected a Verifier or a Gate, got {type(guard).__name__}")
    if blocking and not isinstance(gate.verifier, Verifier):
        raise TypeError(
            "this adapter decides synchronously: it needs a Verifier, not an AsyncVerifier"
        )
    return gate


async def decide_async(
    gate: Gate, authorization: Sequence[str], access: Access | None, offload: bool
) -> Authorized | Denial | None:
    """:meth:`Gate.decide` from a coroutine: in a thread if *offload*, else inline.

    A gate of an :class:`~macaroons_authz.AsyncVerifier` awaits
    :meth:`Gate.adecide` instead.

    *offload* is :class:`~macaroons_authz.web.ASGIMiddleware`'s choice
    (``_may_block``): stores that are not in memory may wait on I/O, which
    must not block the event loop. :func:`asyncio.to_thread` keeps the
    request's context variables for the log hook.
    """
    if isinstance(gate.verifier, AsyncVerifier):
        return await gate.adecide(authorization, access)
    if offload:
        return await asyncio.to_thread(gate.decide, authorization, access)
    return gate.decide(authorization, access)
