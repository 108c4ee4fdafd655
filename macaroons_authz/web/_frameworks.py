"""What the framework adapters share: one gate per verifier, and the async hand-off.

The adapters (:mod:`~macaroons_authz.web.flask`,
:mod:`~macaroons_authz.web.fastapi`, :mod:`~macaroons_authz.web.django`)
only find a request's headers and translate the :class:`Gate`'s answer;
this module imports no framework.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence

from ..access import Access
from ..async_verifier import AsyncVerifier
from ..verifier import Verifier
from ._core import Authorized, Gate
from ._problem import Denial

__all__ = ["decide_async", "gate_for"]

# One gate per verifier: views protected with the same verifier share its
# gate, so they share one bounded token-id memo rather than one memo each.
_gates: weakref.WeakKeyDictionary[Verifier, Gate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def gate_for(guard: Verifier | Gate) -> Gate:
    """*guard* if it is a :class:`Gate`, else the one gate (default log and 503) of the verifier."""
    if isinstance(guard, Gate):
        return guard
    if not isinstance(guard, Verifier):
        raise TypeError(f"expected a Verifier or a Gate, got {type(guard).__name__}")
    with _gates_lock:
        gate = _gates.get(guard)
        if gate is None:
            _gates[guard] = gate = Gate(guard)
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
