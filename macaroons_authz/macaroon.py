"""``Macaroon``: minting, attenuating, encoding, decoding and verifying tokens.

The HMAC chain (spec section 4)::

    T0      = HMAC(root_key, msgpack(nonce))
    T(i+1)  = HMAC(T(i), 92 <type> <body>)      for each caveat
    tail    = T(n), or HMAC("proof-signature-finalization", T(n)) for a proof

Verification recomputes the chain from canonical re-encodings of what it
decoded, never from raw token slices (unknown caveats excepted: they keep
their bytes), so the bytes that are MACed are always the bytes that mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import _decode, _msgpack, crypto
from ._decode import MAX_TOKEN_SIZE as MAX_TOKEN_SIZE
from ._gojson import go_json
from ._verification import (
    _ORDINARY_TYPES,
    MAX_VERIFY_MACS,
    RUN,
    _BindingIds,
    _distinct_by_ticket,
    _holds_attestation,
    _Run,
    _ticket_fields,
    _verify_3p,
)

# Re-exported: callers (bundle, tests) import them from here.
from ._verification import TrustedThirdParties as TrustedThirdParties
from ._verification import verification_run as verification_run
from .caveats._base import (
    MAX_CAVEATS,
    THIRD_PARTY,
    Caveat,
    NeedsRawBytes,
    UnregisteredCaveat,
    decode_set_bytes,
    decode_set_value,
    pack_set,
)
from .caveats.caveat_set import CaveatSet
from .caveats.core import BindToParentToken, Caveat3P
from .caveats.registry import DEFAULT_REGISTRY, CaveatRegistry
from .caveats.resset import IfPresent
from .errors import AttenuationError, DecodeError, VerificationError
from .nonce import Nonce

__all__ = ["MAX_TOKEN_SIZE", "MAX_VERIFY_MACS", "Macaroon", "discharge_ticket"]

_RND_SIZE = 16
_BINDING_ID_SIZE = 16


class Macaroon:
    """A macaroon token.

    Make one with :meth:`new` or :meth:`decode`. :meth:`add` attenuates it
    in place; :meth:`encode` gives its bytes. The caveats it carries are
    :attr:`unsafe_caveats` until :meth:`verify` returns the trusted set.

    The tail (the token's signature, which is also the key to attenuate it)
    is never shown by ``repr``.
    """

    __slots__ = (
        "_caveats",
        "_finalized",
        "_kid",
        "_nonce",
        "_nonce_packed",
        "_packed",
        "_proof",
        "_tail",
        "location",
    )

    location: str

    def __init__(
        self,
        nonce: Nonce,
        location: str,
        caveats: Sequence[Caveat],
        tail: bytes,
        *,
        finalized: bool,
    ) -> None:
        """Internal: use :meth:`new`, :meth:`decode` or :func:`discharge_ticket`."""
        self._nonce: Nonce | None = nonce
        # What verification reads of the nonce, kept apart from it so that a
        # decoded token need not build its Nonce (see _from_canonical).
        self._kid = nonce.kid
        self._proof = nonce.proof
        # The nonce's canonical bytes: the first MAC input, and in encodings.
        self._nonce_packed = nonce.encode()
        self.location = location
        # Tuples, never changed in place: add() replaces them, so they can be
        # shared with the decode memo and with CaveatSet without copies.
        self._caveats = tuple(caveats)
        # The caveats' one-caveat encodings (the MAC inputs), made when first needed.
        self._packed: tuple[bytes, ...] | None = None
        self._tail = tail
        self._finalized = finalized

    @classmethod
    def _from_canonical(
        cls,
        nonce_packed: bytes,
        kid: bytes | None,
        proof: bool,
        location: str,
        caveats: tuple[Caveat, ...],
        packs: tuple[bytes, ...] | None,
        tail: bytes,
    ) -> Macaroon:
        """A decoded token whose nonce bytes *nonce_packed* are canonical.

        Its :class:`Nonce` is decoded from them only if :attr:`nonce` is
        read: verifying needs only *kid* and *proof*, and building the
        frozen nonce cost a quarter of decoding a known token.
        """
        token = cls.__new__(cls)
        token._nonce = None
        token._kid = kid
        token._proof = proof
        token._nonce_packed = nonce_packed
        token.location = location
        token._caveats = caveats
        token._packed = packs
        token._tail = tail
        token._finalized = proof
        return token

    @property
    def nonce(self) -> Nonce:
        """The token's nonce: its key id, random bytes and proof flag."""
        nonce = self._nonce
        if nonce is None:
            nonce = self._nonce = Nonce.decode(self._nonce_packed)
        return nonce

    def __repr__(self) -> str:
        kind = "proof" if self.nonce.proof else "token"
        return (
            f"<Macaroon {kind} location={self.location!r} id={self.nonce.uuid} "
            f"caveats={len(self._caveats)}>"
        )

    # -- minting -----------------------------------------------------------

    @classmethod
    def new(cls, kid: bytes, location: str, key: bytes) -> Macaroon:
        """Mint a token with no caveats.

        Args:
            kid: the key id, in clear in the token, that tells a verifier
                which root key to use (see :func:`~macaroons_authz.kid_for_key`).
            location: the token's location, normally the URL of its verifier
                (Fly.io's permission tokens use ``https://api.fly.io/v1``).
            key: the root signing key.
        """
        crypto.check_key(kid, "kid")
        crypto.check_key(key, "key")
        if not isinstance(location, str):
            raise TypeError("location must be a str")
        return cls._mint(Nonce(kid, crypto.random_bytes(_RND_SIZE), False), location, key)

    @classmethod
    def _mint(cls, nonce: Nonce, location: str, key: bytes) -> Macaroon:
        token = cls(nonce, location, (), b"", finalized=False)
        token._tail = crypto.mac(key, token._nonce_packed)  # the nonce is encoded once
        return token

    # -- attenuation -------------------------------------------------------

    @property
    def unsafe_caveats(self) -> CaveatSet:
        """The caveats as decoded, *not verified*: never authorize from these."""
        return CaveatSet(self._caveats)

    @property
    def is_proof(self) -> bool:
        """Whether this token is a proof (a discharge whose tail is finalized)."""
        return self._proof

    def add(self, *caveats: Caveat) -> None:
        """Attenuate: append *caveats*; anyone holding the token can do this.

        A caveat whose encoding equals one already present (or earlier in
        the same call) is dropped, as Go does, before any rule is checked
        (a new third-party caveat compares by its encoding before sealing).
        All caveats are checked before any is added, so a failing call
        changes nothing (Go adds the ones before the failure).

        Raises:
            AttenuationError: the token is a finalized proof, an attestation
                (at any depth of ``IfPresent``) was added to a token that is
                not a proof, or a second third-party caveat names a location
                or carries a ticket already used (by a third-party caveat
                anywhere in the token, ``IfPresent`` included), or the token
                would no longer decode: a caveat nested past
                ``MAX_NESTING`` or holding too many elements, more than
                ``MAX_CAVEATS`` caveats, or more than :data:`MAX_TOKEN_SIZE`
                bytes.
            DecodeError: a caveat cannot be encoded (an unregistered caveat
                read from JSON).
        """
        if self._finalized:
            raise AttenuationError("can't add caveats to finalized proof")
        # As Go: duplicates are dropped first, then the rules are checked on
        # what is left; third-party caveats already present count wherever
        # they sit (Go's GetCaveats descends into IfPresent).
        seen = set(self._packs())
        present = self.unsafe_caveats.of_type(Caveat3P)
        locations = {c.location for c in present}
        # Verification refuses two third-party caveats with one ticket (each
        # would try every discharge of it), so they are never made.
        tickets = {c.ticket for c in present}
        todo: list[tuple[Caveat, bytes]] = []
        for cav in caveats:
            if not isinstance(cav, Caveat):
                raise TypeError(f"not a caveat: {type(cav).__name__}")
            packed = cav.packed()  # fails now, not halfway through, if it cannot be encoded
            if packed in seen:
                continue
            seen.add(packed)
            if not self._proof and _holds_attestation(cav):
                raise AttenuationError("cannot add attestations to non-proof macaroons")
            if isinstance(cav, Caveat3P):
                if cav.location in locations:
                    raise AttenuationError(f"attempting to add multiple 3ps for {cav.location}")
                if cav.ticket in tickets:
                    raise AttenuationError("attempting to add multiple 3ps with one ticket")
                locations.add(cav.location)
                tickets.add(cav.ticket)
            _check_decodable(cav, packed)
            todo.append((cav, packed))
        if len(self._caveats) + len(todo) > MAX_CAVEATS:
            raise AttenuationError(f"a token holds at most {MAX_CAVEATS} caveats")
        added: list[Caveat] = []
        packs = list(self._packs())
        tail = self._tail
        for cav, packed in todo:
            if isinstance(cav, Caveat3P) and cav.discharge_key is not None:
                # Each token gets its own sealing of the discharge key under
                # its current tail; the ticket is shared.
                cav = Caveat3P(
                    cav.location,
                    crypto.seal(tail, cav.discharge_key),
                    cav.ticket,
                    discharge_key=cav.discharge_key,
                )
                packed = cav.packed()
            added.append(cav)
            packs.append(packed)
            tail = crypto.mac(tail, packed)
        # Each caveat is its one-caveat set less the 0x92 byte; 34 is the tail's encoding.
        size = (
            1
            + len(self._nonce_packed)
            + len(_msgpack.pack(self.location))
            + len(_msgpack.array_header(2 * len(packs)))
            + sum(map(len, packs))
            - len(packs)
            + 34
        )
        if size > MAX_TOKEN_SIZE:
            raise AttenuationError(f"the token would be larger than {MAX_TOKEN_SIZE} bytes")
        self._caveats += tuple(added)
        self._packed = tuple(packs)
        self._tail = tail

    def add_3p(self, key: bytes, location: str, *caveats: Caveat) -> None:
        """Add a third-party caveat: a discharge from *location* becomes required.

        *key* is the 32-byte key shared with the third party; *caveats* are
        instructions only it can read (see :meth:`Caveat3P.new
        <macaroons_authz.Caveat3P.new>`).
        """
        self.add(Caveat3P.new(key, location, *caveats))

    def bind(self, parent: Macaroon | bytes) -> None:
        """Bind this discharge to *parent* (spec 6.4).

        The binding holds for *parent* and every attenuation of it, but not
        for a less attenuated version. Only the third party can bind, before
        the discharge is first encoded.
        """
        if isinstance(parent, bytes):
            parent = Macaroon.decode(parent)
        self.add(BindToParentToken(crypto.sha256(parent._tail)[:_BINDING_ID_SIZE]))

    def third_party_tickets(self, *discharges: Macaroon | bytes) -> dict[str, list[bytes]]:
        """Tickets of the third-party caveats, by location, less those already discharged.

        Includes third-party caveats nested inside ``IfPresent``. *discharges*
        are discharges at hand; their tickets are left out.
        """
        done = set()
        for d in discharges:
            if isinstance(d, Macaroon):
                done.add(d._kid)
                continue
            if not isinstance(d, bytes):
                raise TypeError(f"expected a Macaroon or bytes, not {type(d).__name__}")
            try:  # only the nonce is read, as Go does
                done.add(_decode.nonce_kid(d))
            except DecodeError:
                continue
        out: dict[str, list[bytes]] = {}
        for cav in self.unsafe_caveats.of_type(Caveat3P):
            if cav.ticket is not None and cav.ticket not in done:
                out.setdefault(cav.location, []).append(cav.ticket)
        return out

    def _packs(self) -> tuple[bytes, ...]:
        packs = self._packed
        if packs is None:
            packs = self._packed = tuple(c.packed() for c in self._caveats)
        return packs

    def copy(self) -> Macaroon:
        """An independent copy (attenuating one does not change the other)."""
        return Macaroon(
            self.nonce, self.location, self._caveats, self._tail, finalized=self._finalized
        )

    # -- encoding ----------------------------------------------------------

    def encode(self) -> bytes:
        """The token's canonical MessagePack bytes.

        Encoding a proof finalizes it: its tail becomes the finalized one
        and no caveat can be added after.
        """
        if self._proof and not self._finalized:
            self._tail = crypto.finalize(self._tail)
            self._finalized = True
        return b"".join(
            (
                b"\x94",
                self._nonce_packed,
                _msgpack.pack(self.location),
                pack_set(self._packs(), len(self._caveats)),
                _msgpack.pack(self._tail),
            )
        )

    def to_json(self) -> str:
        """``{"location": ..., "caveats": [...]}`` as Go writes it (no nonce, no tail)."""
        return go_json({"location": self.location, "caveats": self.unsafe_caveats.to_json_value()})

    # One call less for every token than a method calling it (see _decode.decode).
    decode = classmethod(_decode.decode)

    # -- verification ------------------------------------------------------

    def verify(
        self,
        key: bytes,
        discharges: Iterable[Macaroon | bytes] = (),
        trusted_3ps: TrustedThirdParties | None = None,
    ) -> CaveatSet:
        """Check the signature and every third-party caveat; return the trusted caveats.

        The work is linear in the size of the token and its discharges:
        byte-identical discharges are tried once, each discharge under the
        one key of the caveat whose ticket it carries, and at most
        :data:`MAX_VERIFY_MACS` HMAC operations are spent.

        Args:
            key: the root key this token was minted with.
            discharges: discharge tokens (decoded, or as bytes); they are
                matched to third-party caveats by ticket. Bytes that do not
                decode are skipped.
            trusted_3ps: for each third-party location, the keys shared with
                it. Attestations (identity caveats) are kept only from
                discharges that one of these keys proves genuine; from
                other discharges they are dropped, and a discharge holding
                one inside ``IfPresent`` fails.

        Returns:
            The caveats of this token and of its discharges, without
            third-party and binding caveats. Validate accesses against it.

        Raises:
            VerificationError: the token or a discharge is not authentic, or
                two third-party caveats of the token carry one ticket.
            VerificationCostError: verifying would take more than
                :data:`MAX_VERIFY_MACS` HMAC operations.
        """
        crypto.check_key(key, "key")
        decoded = []
        for d in discharges:
            try:
                decoded.append(_as_macaroon(d, None))
            except DecodeError:
                continue
        return CaveatSet(self._verify(key, decoded, trusted_3ps or {}, RUN.get()))

    def _verify(
        self,
        key: bytes,
        discharges: Sequence[Macaroon],
        trusted_3ps: TrustedThirdParties,
        run: _Run | None,
    ) -> Sequence[Caveat]:
        """Verify this token as the permission token, with its *discharges*.

        *run* is the verification run this is part of, if any.
        """
        result, pending, bindings = self._sort_caveats(trust_attestations=True)
        if pending:
            if len({cav.ticket for _, cav in pending}) < len(pending):
                # Each would try every discharge of the ticket: refused before
                # any work, as add() never makes such a token.
                raise VerificationError("two third-party caveats carry one ticket")
            run = run or _Run()
            tails = self._tails(key, run)
            end = tails[-1]
        else:
            end = self._chain_end(key, run)
        # The token's own signature is checked before anything about its
        # discharges is said, so a forger learns only "invalid".
        if not self._signed_by(end):
            raise VerificationError("macaroon verify: invalid")
        if bindings:  # a permission token has no parent to be bound to
            raise VerificationError("discharge bound to different parent token")
        if not pending:
            return result
        assert run is not None  # set with the tails
        result = list(result)
        by_ticket = _distinct_by_ticket(discharges, {cav.ticket for _, cav in pending})
        # A discharge may bind to any of this token's intermediate tails.
        binding_ids = _BindingIds([crypto.sha256(t) for t in tails])
        for i, cav in pending:
            result.extend(
                _verify_3p(
                    cav, tails[i], by_ticket.get(cav.ticket, ()), binding_ids, trusted_3ps, run
                )
            )
        return result

    def _verify_discharge(
        self, rn: bytes, binding_ids: _BindingIds, trusted: bool, run: _Run
    ) -> Sequence[Caveat]:
        """Verify this token as a discharge signed with *rn*.

        Its attestations are kept if *trusted* (see :meth:`_sort_caveats`).
        """
        result, pending, bindings = self._sort_caveats(trust_attestations=trusted)
        if not run.signed(self, rn):
            raise VerificationError("macaroon verify: invalid")
        if not all(binding_ids.match(b) for b in set(bindings)):
            raise VerificationError("discharge bound to different parent token")
        if pending:  # discharges of a discharge are never looked for
            raise VerificationError(f"no matching discharge token for {pending[0][1].location}")
        return result

    def _sort_caveats(
        self, *, trust_attestations: bool
    ) -> tuple[Sequence[Caveat], list[tuple[int, Caveat3P]], list[bytes]]:
        """The caveats to return, the third-party caveats (with their index) and binding ids.

        Attestations, at any depth of ``IfPresent``, are kept only when
        *trust_attestations*: a top-level one is dropped otherwise (as Go
        does), a nested one fails, since dropping the ``IfPresent`` that
        holds it would drop a restriction.

        Raises:
            VerificationError: the token is an unfinalized proof, or holds
                an attestation where it cannot be trusted.
        """
        if self._proof and not self._finalized:
            raise VerificationError("can't verify unfinalized proof")
        for cav in self._caveats:
            if type(cav) not in _ORDINARY_TYPES and (
                type(cav) is not IfPresent or _holds_attestation(cav)
            ):
                break
        else:
            # The common token: every caveat is kept as it is (the tuple is
            # never changed in place, so it is shared).
            return self._caveats, [], []
        result: list[Caveat] = []
        pending: list[tuple[int, Caveat3P]] = []
        bindings: list[bytes] = []
        proof = self._proof
        for i, cav in enumerate(self._caveats):
            role = cav.verification_role
            if role == 0:
                if cav.attestation:
                    if not proof:
                        raise VerificationError("attestation in non-proof macaroon")
                    if trust_attestations:
                        result.append(cav)
                elif type(cav) is IfPresent and _holds_attestation(cav):
                    if not proof:
                        raise VerificationError("attestation in non-proof macaroon")
                    if not trust_attestations:
                        raise VerificationError("attestation in IfPresent of untrusted discharge")
                    result.append(cav)
                else:
                    result.append(cav)
            elif role == THIRD_PARTY:
                pending.append((i, cav))  # type: ignore[arg-type]
            else:
                bindings.append(cav.binding_id or b"")  # type: ignore[attr-defined]
        return result, pending, bindings

    def _tails(self, key: bytes, run: _Run | None = None) -> list[bytes]:
        """The chain under *key*: ``tails[i]`` is the tail before caveat *i*, then the last.

        Its operations are counted in *run*, if given.
        """
        return crypto.chain(key, self._chain_input(run))

    def _chain_end(self, key: bytes, run: _Run | None = None) -> bytes:
        """The last of :meth:`_tails`, all that a token without third-party caveats needs."""
        return crypto.chain_end(key, self._chain_input(run))

    def _chain_input(self, run: _Run | None) -> tuple[bytes, ...]:
        """The chain's messages (the nonce, then each caveat), counted in *run* if given."""
        packs = self._packs()
        if run is not None:
            run.spend(len(packs) + 1 + self._proof)
        return (self._nonce_packed, *packs)

    def _signed_by(self, end: bytes) -> bool:
        """Whether the chain ending in *end* (see :meth:`_tails`) ends in this token's tail."""
        cur = crypto.finalize(end) if self._proof else end
        return crypto.equal(cur, self._tail)

    def _identity(self) -> tuple[bytes, str, tuple[bytes, ...], bytes]:
        """What makes two tokens byte-identical (their encodings are equal iff this is)."""
        return self._nonce_packed, self.location, self._packs(), self._tail


def _check_decodable(cav: Caveat, packed: bytes) -> None:
    """Refuse a caveat that :meth:`Macaroon.decode` would refuse (nesting, element counts).

    Only ``IfPresent`` nests caveats, and a container of more elements than
    decoding allows takes more bytes than that; other caveats are skipped
    without decoding them, as they can hold neither.

    Raises:
        AttenuationError: decoding the caveat fails.
    """
    if (
        type(cav) is not IfPresent
        and type(cav) is not UnregisteredCaveat
        and len(packed) <= _msgpack.MAX_CONTAINER_LENGTH
    ):
        return
    try:
        CaveatSet.decode(packed)
    except DecodeError as exc:
        raise AttenuationError(f"the token would not decode: {exc}") from None


def _as_macaroon(token: Macaroon | bytes, registry: CaveatRegistry | None) -> Macaroon:
    if isinstance(token, Macaroon):
        return token
    if isinstance(token, bytes):
        return Macaroon.decode(token, registry)
    raise TypeError(f"expected a Macaroon or bytes, not {type(token).__name__}")


def discharge_ticket(
    key: bytes, location: str, ticket: bytes, registry: CaveatRegistry | None = None
) -> tuple[CaveatSet, Macaroon]:
    """Open a ticket and start its discharge (run by the third party).

    Returns the caveats the ticket carries, which the third party must check
    against what it knows of the caller, and a new proof discharge that it
    may attenuate (a short ``ValidityWindow``, attestations) and
    :meth:`~Macaroon.bind` before encoding it.

    Raises:
        VerificationError: the ticket was not sealed with *key* or was altered.
        DecodeError: the ticket opens but its contents are malformed.
    """
    crypto.check_key(key, "third-party key", crypto.KEY_SIZE)
    crypto.check_key(ticket, "ticket")
    plain = crypto.unseal(key, ticket)
    if plain is None:
        raise VerificationError("bad ticket: cannot decrypt")
    rn, caveats_value = _ticket_fields(plain)
    reg = DEFAULT_REGISTRY if registry is None else registry
    try:
        caveats = decode_set_value(caveats_value, reg)
    except NeedsRawBytes:
        spans, _ = _msgpack.array_items(plain)
        start, end = spans[1]
        caveats = decode_set_bytes(plain[start:end], reg)[0]
    nonce = Nonce(ticket, crypto.random_bytes(_RND_SIZE), True)
    return CaveatSet(caveats), Macaroon._mint(nonce, location, rn)
