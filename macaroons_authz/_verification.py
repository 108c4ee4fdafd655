"""Verification's bookkeeping: the HMAC budget, checked discharges, binding ids, tickets.

Also which caveats verification keeps as they are (ordinary ones) and
which hold an attestation, which it may not.

Kept apart from :mod:`~macaroons_authz.macaroon` so that what bounds the
work of verifying a header (see ``docs/security.rst``, "Verification cost
is linear in the header") reads in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import _msgpack, crypto
from .caveats._base import ORDINARY, Caveat, blob
from .caveats.core import Caveat3P
from .caveats.registry import DEFAULT_REGISTRY
from .caveats.resset import IfPresent
from .errors import DecodeError, VerificationCostError, VerificationError

if TYPE_CHECKING:
    from .macaroon import Macaroon

TrustedThirdParties = Mapping[str, Sequence[bytes]]

#: The most HMAC operations one verification may spend: one :meth:`Macaroon.verify`
#: call, or every token of one header in :meth:`Bundle.verify
#: <macaroons_authz.Bundle.verify>`. A header within ``MAX_HEADER_LENGTH``
#: holds at most 786,432 token bytes, every caveat takes at least two of
#: them and each of its 256 tokens adds at most two operations (its nonce
#: and a proof's finalization), so checking each token of a header once
#: costs at most 393,728. The cap stops only work beyond that: more
#: discharges than a header holds, or discharges checked under many keys
#: (see docs/security.rst).
MAX_VERIFY_MACS = 2**19


#: Built-in caveat classes that verification keeps as they are: not
#: third-party, binding or attestation caveats, nor ``IfPresent``, which may
#: hold an attestation. A token of only these is sorted by set look-ups.
_ORDINARY_TYPES = frozenset(
    cls
    for cls in map(DEFAULT_REGISTRY.lookup, range(32))
    if cls is not None
    and cls.verification_role == ORDINARY
    and not cls.attestation
    and cls is not IfPresent
)


def _holds_attestation(cav: Caveat) -> bool:
    """Whether *cav* is an attestation or holds one, at any depth of ``IfPresent``."""
    if cav.attestation:
        return True
    if type(cav) is IfPresent:
        for c in cav.ifs or ():
            if type(c) not in _ORDINARY_TYPES and _holds_attestation(c):
                return True
    return False


class _Run:
    """The work of one verification: the HMAC operations spent, and discharge checks done.

    A discharge checked once under a key is never checked again in the same
    run, so a header that repeats a discharge, or a bundle whose permission
    tokens share one, costs each (discharge, key) pair one chain.
    """

    __slots__ = ("_signed", "macs")

    def __init__(self) -> None:
        self.macs = 0
        self._signed: dict[tuple[tuple[bytes, str, tuple[bytes, ...], bytes], bytes], bool] = {}

    def spend(self, n: int) -> None:
        """Count *n* HMAC operations, before they are made.

        Raises:
            VerificationCostError: the run would pass :data:`MAX_VERIFY_MACS`.
        """
        self.macs += n
        if self.macs > MAX_VERIFY_MACS:
            raise VerificationCostError(
                f"verification would take more than {MAX_VERIFY_MACS} HMAC operations"
            )

    def signed(self, token: Macaroon, key: bytes) -> bool:
        """Whether *token* is signed with *key* (its chain is computed at most once)."""
        memo_key = (token._identity(), key)
        ok = self._signed.get(memo_key)
        if ok is None:
            ok = self._signed[memo_key] = token._signed_by(token._chain_end(key, self))
        return ok


RUN: ContextVar[_Run | None] = ContextVar("macaroons_authz_verification_run", default=None)


@contextmanager
def verification_run() -> Iterator[None]:
    """Make every verification inside the block one run: one budget, one memo.

    Used to verify all the tokens of one header as one: the cap of
    :data:`MAX_VERIFY_MACS` then holds for the header, and a discharge shared
    by several permission tokens is checked once per key.
    """
    token = RUN.set(_Run())
    try:
        yield
    finally:
        RUN.reset(token)


class _BindingIds:
    """The binding ids a discharge may carry: prefixes of the parent's tail *digests*.

    A digest is ``SHA-256`` of one of the parent's tails.

    Matching takes one set lookup, after one pass over the digests for each
    prefix length met (at most 33), so a discharge of many bindings costs
    linear time rather than bindings times tails.
    """

    __slots__ = ("_by_length", "_digests")

    def __init__(self, digests: Sequence[bytes]) -> None:
        self._digests = digests
        self._by_length: dict[int, frozenset[bytes]] = {}

    def match(self, prefix: bytes) -> bool:
        """Whether *prefix* begins the digest of one of the tails."""
        n = len(prefix)
        if n > 32:
            return False
        prefixes = self._by_length.get(n)
        if prefixes is None:
            prefixes = self._by_length[n] = frozenset(d[:n] for d in self._digests)
        return prefix in prefixes


def _distinct_by_ticket(
    discharges: Sequence[Macaroon], tickets: set[bytes | None]
) -> dict[bytes | None, list[Macaroon]]:
    """The discharges whose KID is one of *tickets*, by KID, in order, byte-identical ones once."""
    out: dict[bytes | None, list[Macaroon]] = {}
    seen = set()
    for d in discharges:
        if d._kid not in tickets:
            continue
        identity = d._identity()
        if identity not in seen:
            seen.add(identity)
            out.setdefault(d._kid, []).append(d)
    return out


def _verify_3p(
    cav: Caveat3P,
    tail_then: bytes,
    candidates: Sequence[Macaroon],
    binding_ids: _BindingIds,
    trusted_3ps: TrustedThirdParties,
    run: _Run,
) -> Sequence[Caveat]:
    """The caveats of the first of *candidates* that discharges *cav* (in header order)."""
    if cav.ticket is None or not candidates:
        raise VerificationError(f"no matching discharge token for {cav.location}")
    rn = crypto.unseal(tail_then, cav.verifier_key or b"")
    if rn is None:
        raise VerificationError("bad verifier key in third-party caveat")
    reasons = []
    for d in candidates:
        trusted = _trusted_discharge(d, rn, trusted_3ps)
        if trusted is None:
            reasons.append("discharge key from ticket/VerifierKey mismatch")
            continue
        try:
            return d._verify_discharge(rn, binding_ids, trusted, run)
        except VerificationCostError:
            raise
        except VerificationError as exc:
            reasons.append(str(exc))
    raise VerificationError(f"discharge for {cav.location} failed: {'; '.join(reasons)}")


def _trusted_discharge(d: Macaroon, rn: bytes, trusted_3ps: TrustedThirdParties) -> bool | None:
    """Whether a trusted key opens *d*'s ticket to *rn*; ``None`` if one opens it to another key."""
    ticket = d._kid or b""
    for k in trusted_3ps.get(d.location, ()):
        plain = crypto.unseal(k, ticket)
        if plain is None:
            continue
        try:
            discharge_key = _ticket_fields(plain)[0]
        except DecodeError:
            return None
        return True if crypto.equal(discharge_key, rn) else None
    return False


def _ticket_fields(plain: bytes) -> tuple[bytes, Any]:
    obj = _msgpack.unpack(plain)
    if type(obj) is not list or len(obj) != 2:
        raise DecodeError("bad ticket")
    rn = blob(obj[0], "ticket discharge key")
    if rn is None:
        raise DecodeError("bad ticket")
    return rn, obj[1]
