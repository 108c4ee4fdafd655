"""The costliest headers an attacker can send within the documented limits.

Not a test: it builds each hostile header shape on throw-away keys, checks
that it is within the limits (``MAX_HEADER_LENGTH``, ``MAX_HEADER_TOKENS``,
``MAX_TOKEN_SIZE`` per token, ``MAX_CAVEATS`` per set), verifies it once
through a cacheless :class:`~macaroons_authz.Verifier`, and prints the
seconds and the number of HMAC operations it took::

    python benchmarks/worst_header.py                 # every shape, full size
    python benchmarks/worst_header.py --scale 0.1 shared-ticket

Every attack token is one an attacker can make from a token they hold
(attenuation needs no key) plus discharges they forge (a discharge's tail
is theirs to invent). The tokens are built here from the chain directly,
since :meth:`~macaroons_authz.Macaroon.add` refuses some of these shapes.

Shapes:

* ``shared-ticket``: the permission token carries as many third-party
  caveats as fit, all with one ticket (different locations), followed by
  as many wrong discharges of that ticket as fit and one right one.
* ``wrong-discharges``: one third-party caveat, every other byte of the
  header spent on wrong discharges of its ticket, then the right one.
* ``bindings``: one third-party caveat on a permission token of
  ``MAX_CAVEATS`` caveats, and forged discharges made of binding caveats
  that match none of its tails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from macaroons_authz import (
    BindToParentToken,
    Caveat,
    Caveat3P,
    MemoryKeyring,
    Nonce,
    UnregisteredCaveat,
    VerificationError,
    Verifier,
    crypto,
    encode_token,
    to_header,
)
from macaroons_authz.caveats._base import MAX_CAVEATS
from macaroons_authz.header import MAX_HEADER_LENGTH, MAX_HEADER_TOKENS
from macaroons_authz.macaroon import MAX_TOKEN_SIZE, Macaroon

LOCATION = "https://api.fly.io/v1"
KEY = bytes(range(32))
RN = bytes(range(32, 64))
TICKET = b"t" * 16
# The smallest caveat: an unknown type with a one-byte body (two bytes a caveat).
TINY = UnregisteredCaveat(100, b"\x00")


def forge(nonce: Nonce, location: str, key: bytes, caveats: Iterable[Caveat]) -> bytes:
    """The encoding of a token with *caveats* signed under *key*, bypassing ``add``'s rules.

    A third-party caveat with a ``discharge_key`` gets its verifier key
    sealed under the tail before it, as ``add`` does.
    """
    tail = crypto.mac(key, nonce.encode())
    done: list[Caveat] = []
    for cav in caveats:
        if isinstance(cav, Caveat3P) and cav.discharge_key is not None:
            cav = Caveat3P(cav.location, crypto.seal(tail, cav.discharge_key), cav.ticket)
        done.append(cav)
        tail = crypto.mac(tail, cav.packed())
    if nonce.proof:
        tail = crypto.finalize(tail)
    return Macaroon(nonce, location, done, tail, finalized=True).encode()


def discharge(n_caveats: int, *, right: bool, i: int = 0, cav: Caveat = TINY) -> bytes:
    """A proof for TICKET with *n_caveats* copies of *cav*; signed under RN if *right*."""
    nonce = Nonce(TICKET, i.to_bytes(16, "big"), True)
    key = RN if right else crypto.random_bytes(32)
    return forge(nonce, "https://tp.example", key, [cav] * n_caveats)


def permission(caveats: list[Caveat]) -> bytes:
    """A permission token signed with KEY (what the attacker attenuated)."""
    return forge(Nonce(crypto.kid_for_key(KEY), b"r" * 16, False), LOCATION, KEY, caveats)


def fill(budget: int, make: Callable[[int], bytes], slots: int) -> list[bytes]:
    """Tokens ``make(i)`` while their token strings fit *budget* characters and *slots*."""
    out: list[bytes] = []
    for i in range(slots):
        tok = make(i)
        cost = len(encode_token(tok)) + 1
        if cost > budget:
            break
        budget -= cost
        out.append(tok)
    return out


def three_p(n: int) -> list[Caveat]:
    """*n* third-party caveats that all carry TICKET (locations differ)."""
    return [Caveat3P(f"https://tp{i}.example", None, TICKET, discharge_key=RN) for i in range(n)]


def shape_shared_ticket(scale: float) -> list[bytes]:
    # As many 3P caveats as fit MAX_TOKEN_SIZE, each with its 62-byte verifier key.
    size = len(three_p(1)[0].packed()) + 62
    n = int(min(MAX_CAVEATS, (MAX_TOKEN_SIZE - 2000) // size) * scale)
    perm = permission(three_p(n))
    right = discharge(0, right=True)
    budget = MAX_HEADER_LENGTH - len(to_header(perm, right))
    k = MAX_CAVEATS
    wrong = fill(budget, lambda i: discharge(k, right=False, i=i), MAX_HEADER_TOKENS - 2)
    return [perm, *wrong, right]


def shape_wrong_discharges(scale: float) -> list[bytes]:
    perm = permission(three_p(1))
    right = discharge(0, right=True)
    budget = int((MAX_HEADER_LENGTH - len(to_header(perm, right))) * scale)
    k = MAX_CAVEATS
    wrong = fill(budget, lambda i: discharge(k, right=False, i=i), MAX_HEADER_TOKENS - 2)
    return [perm, *wrong, right]


def shape_bindings(scale: float) -> list[bytes]:
    perm = permission(
        [*three_p(1), *[UnregisteredCaveat(100, bytes([i % 128])) for i in range(MAX_CAVEATS - 1)]]
    )
    right = discharge(0, right=True)
    budget = int((MAX_HEADER_LENGTH - len(to_header(perm, right))) * scale)
    bind = BindToParentToken(b"\xff" * 16)  # a prefix of no tail's digest (checked below)
    k = MAX_CAVEATS
    wrong = fill(budget, lambda i: discharge(k, right=False, i=i, cav=bind), MAX_HEADER_TOKENS - 2)
    return [perm, *wrong, right]


SHAPES: dict[str, Callable[[float], list[bytes]]] = {
    "shared-ticket": shape_shared_ticket,
    "wrong-discharges": shape_wrong_discharges,
    "bindings": shape_bindings,
}


def check_limits(tokens: list[bytes], header: str) -> None:
    assert len(header) <= MAX_HEADER_LENGTH, len(header)
    assert len(tokens) <= MAX_HEADER_TOKENS
    for tok in tokens:
        assert len(tok) <= MAX_TOKEN_SIZE, len(tok)
        assert len(Macaroon.decode(tok).unsafe_caveats) <= MAX_CAVEATS


class MacCounter:
    """Counts HMAC operations by wrapping ``crypto.mac`` and ``crypto.chain``."""

    def __init__(self) -> None:
        self.count = 0
        self._mac, self._chain = crypto.mac, crypto.chain

    def __enter__(self) -> MacCounter:
        def mac(key: bytes, msg: bytes) -> bytes:
            self.count += 1
            return self._mac(key, msg)

        def chain(key: bytes, msgs: Iterable[bytes]) -> list[bytes]:
            msgs = list(msgs)
            self.count += len(msgs)
            return self._chain(key, msgs)

        crypto.mac, crypto.chain = mac, chain
        return self

    def __exit__(self, *exc: object) -> None:
        crypto.mac, crypto.chain = self._mac, self._chain


def run(name: str, scale: float) -> None:
    tokens = SHAPES[name](scale)
    header = to_header(*tokens)
    check_limits(tokens, header)
    verifier = Verifier(MemoryKeyring([KEY]), location=LOCATION)
    with MacCounter() as macs:
        start = time.perf_counter()
        try:
            verifier.verify(header)
            outcome = "verified"
        except VerificationError as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:60]}"
        seconds = time.perf_counter() - start
    n_3p = len(Macaroon.decode(tokens[0]).unsafe_caveats.of_type(Caveat3P))
    print(
        f"{name:17} scale={scale:<5} header={len(header):>8} chars tokens={len(tokens):>3} "
        f"3p-caveats={n_3p:>5} "
        f"macs={macs.count:>11,} seconds={seconds:9.3f}  {outcome}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", metavar="SHAPE", help=", ".join(SHAPES))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full attack")
    args = parser.parse_args()
    for name in args.shapes or SHAPES:
        run(name, args.scale)


if __name__ == "__main__":
    main()
