"""``AsyncVerifier``: the verifier for event loops, deciding exactly as ``Verifier`` does.

The decision is :mod:`macaroons_authz.decision`'s, the same steps the
blocking :class:`~macaroons_authz.Verifier` runs; this face only awaits the
look-ups they ask for (a root key, a revocation check, the revocation feed)
on async stores (see :mod:`macaroons_authz.stores.async_`). While one
request waits on a store, the loop serves the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .access import Access
from .cache import VerificationCache
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .decision import (
    VerifiedToken,
    _Request,
    _Result,
    _Steps,
    decide,
    store_error,
    verify_all,
)
from .errors import MacaroonError
from .stores.async_ import (
    AsyncKeyring,
    AsyncRevocationStore,
    async_keyring,
    async_revocations,
)
from .stores.keyring import Keyring
from .stores.revocation import RevocationStore
from .verifier import FLY_PERMISSION_LOCATION, Verifier, _BaseVerifier, _new_policy

__all__ = ["AsyncVerifier"]


class AsyncVerifier(_BaseVerifier):
    """Verifies headers of tokens minted for one location, awaiting its stores.

    Its methods are the coroutine versions of :class:`Verifier`'s, with the
    same arguments, results and errors. Stores may be async
    (:class:`~macaroons_authz.stores.async_.AsyncKeyring`,
    :class:`~macaroons_authz.stores.async_.AsyncRevocationStore`, such as
    the PostgreSQL ones of :mod:`~macaroons_authz.stores.postgres_async`)
    or blocking: the in-memory stores are then called on the loop, any
    other in a worker thread (see
    :func:`~macaroons_authz.stores.async_.async_keyring`).

    One async verifier may serve any number of tasks at once, and share its
    :class:`VerificationCache` with the threads of a :class:`Verifier`
    made by :meth:`of`.

    Args:
        keyring: root keys by KID.
        location: the location of the permission tokens accepted.
        trusted_3ps: for each third-party location, the keys shared with it.
        registry: the caveat registry to decode with.
        revocations: where revoked tokens are kept.
        cache: a :class:`VerificationCache`, or ``None``.
    """

    def __init__(
        self,
        keyring: Keyring | AsyncKeyring,
        *,
        location: str = FLY_PERMISSION_LOCATION,
        trusted_3ps: Mapping[str, Sequence[bytes]] | None = None,
        registry: CaveatRegistry | None = None,
        revocations: RevocationStore | AsyncRevocationStore | None = None,
        cache: VerificationCache | None = None,
    ) -> None:
        super().__init__(
            _new_policy(location, trusted_3ps, registry, cache, revocations is not None)
        )
        self._keyring = async_keyring(keyring)
        self._revocations = None if revocations is None else async_revocations(revocations)

    @classmethod
    def of(cls, verifier: Verifier) -> AsyncVerifier:
        """The async face of *verifier*: its stores, trust, registry and cache.

        Its blocking stores are called in worker threads (the in-memory ones
        on the loop). The two share the cache, and decide alike.
        """
        face = cls.__new__(cls)
        _BaseVerifier.__init__(face, verifier._policy)
        face._keyring = async_keyring(verifier.keyring)
        store = verifier.revocations
        face._revocations = None if store is None else async_revocations(store)
        return face

    @property
    def keyring(self) -> AsyncKeyring:
        """The keyring root keys are found in (an async one)."""
        return self._keyring

    @property
    def revocations(self) -> AsyncRevocationStore | None:
        """The revocation store (an async one), if any."""
        return self._revocations

    async def verify(self, header: str) -> CaveatSet:
        """:meth:`Verifier.verify`, awaiting the stores."""
        hit = await self._hit(header)
        if hit is not None:
            return hit.caveats
        caveats: CaveatSet = (await self._run(decide(self._policy, header, None, identify=False)))[
            0
        ]
        return caveats

    async def verify_all(self, header: str) -> list[VerifiedToken]:
        """:meth:`Verifier.verify_all`, awaiting the stores."""
        cache, revocations = self.cache, self._revocations
        if cache is not None and revocations is not None:
            await cache.afollow(revocations)
        verified: list[VerifiedToken] = await self._run(verify_all(self._policy, header))
        return verified

    async def authorize(self, header: str, access: Access) -> CaveatSet:
        """:meth:`Verifier.authorize`, awaiting the stores."""
        hit = await self._hit(header)
        if hit is not None:
            hit.caveats.validate(access)
            return hit.caveats
        result = await self._run(decide(self._policy, header, access, identify=False))
        caveats: CaveatSet = result[0]
        return caveats

    async def authorize_token(self, header: str, access: Access) -> VerifiedToken:
        """:meth:`Verifier.authorize_token`, awaiting the stores."""
        hit = await self._hit(header)
        if hit is not None:
            hit.caveats.validate(access)
            return hit
        result: _Result = await self._run(decide(self._policy, header, access, identify=True))
        verified = result[1]
        assert verified is not None  # identify=True
        return verified

    async def _hit(self, header: str) -> VerifiedToken | None:
        cache = self.cache
        if cache is None:
            return None
        if self._revocations is not None:
            await cache.afollow(self._revocations)
        entry = cache._find(header)
        return None if entry is None else entry.token

    async def _run(self, steps: _Steps) -> Any:
        """Run the decision *steps*, awaiting the answers to their look-ups."""
        try:
            request = next(steps)
            while True:
                try:
                    answer = await self._answer(request)
                except MacaroonError as exc:
                    request = steps.throw(exc)
                except Exception as exc:
                    store = "keyring" if isinstance(request, bytes) else "revocation store"
                    request = steps.throw(store_error(store, exc))
                else:
                    request = steps.send(answer)
        except StopIteration as done:
            return done.value

    async def _answer(self, request: _Request) -> object:
        if isinstance(request, bytes):
            return await self._keyring.key_for(request)
        assert self._revocations is not None
        for token_id in request:
            if await self._revocations.is_revoked(token_id):
                return True
        return False
