"""``CaveatSet``: an ordered, immutable list of caveats and its two forms."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import _msgpack
from .._gojson import go_json, load_json
from ..errors import UnauthorizedError
from ._base import (
    Caveat,
    NeedsRawBytes,
    caveats_from_json,
    caveats_to_json,
    decode_set_bytes,
    decode_set_value,
    pack_set,
)
from .registry import DEFAULT_REGISTRY, CaveatRegistry
from .resset import IfPresent

if TYPE_CHECKING:
    from ..access import Access

__all__ = ["CaveatSet"]

C = TypeVar("C", bound=Caveat)


class CaveatSet(Sequence[Caveat]):
    """An immutable sequence of caveats.

    The set that :meth:`Macaroon.verify <macaroons_authz.Macaroon.verify>`
    returns is the trusted one: it holds the caveats of the token and of
    its discharges, and :meth:`validate` decides accesses against it.
    """

    __slots__ = ("_caveats",)

    def __init__(self, caveats: Sequence[Caveat] = ()) -> None:
        """A set of *caveats*, in order."""
        self._caveats: tuple[Caveat, ...] = tuple(caveats)

    @overload
    def __getitem__(self, index: int) -> Caveat: ...
    @overload
    def __getitem__(self, index: slice) -> CaveatSet: ...
    def __getitem__(self, index: int | slice) -> Caveat | CaveatSet:
        if isinstance(index, slice):
            return CaveatSet(self._caveats[index])
        return self._caveats[index]

    def __len__(self) -> int:
        return len(self._caveats)

    def __iter__(self) -> Iterator[Caveat]:
        return iter(self._caveats)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaveatSet):
            return NotImplemented
        return self._caveats == other._caveats

    def __hash__(self) -> int:
        return hash(self._caveats)

    def __repr__(self) -> str:
        return f"CaveatSet({list(self._caveats)!r})"

    # -- authorization -----------------------------------------------------

    def validate(self, *accesses: Access) -> None:
        """Allow the accesses or raise why not (spec 9.1).

        Each access is first asked to :meth:`validate` itself; if it is well
        formed, every caveat that is not an attestation is asked whether it
        prohibits it. Every failure of every access is collected. No
        accesses at all is allowed.

        Raises:
            UnauthorizedError: holding every cause; ask it with
                :meth:`~macaroons_authz.UnauthorizedError.contains`.
        """
        errors: list[UnauthorizedError] = []
        for access in accesses:
            try:
                access.validate()
            except UnauthorizedError as exc:
                errors.append(exc)
                continue
            for caveat in self._caveats:
                if caveat.attestation:
                    continue
                err = caveat.prohibits(access)
                if err is not None:
                    errors.append(err)
        combined = UnauthorizedError.combine(errors) if errors else None
        if combined is not None:
            raise combined

    def of_type(self, cls: type[C]) -> list[C]:
        """The caveats that are instances of *cls*, including inside ``IfPresent``."""
        return _of_type(self._caveats, cls)

    # -- MessagePack -------------------------------------------------------

    def encode(self) -> bytes:
        """The MessagePack encoding: ``[type1, body1, type2, body2, ...]``."""
        return pack_set((c.packed() for c in self._caveats), len(self._caveats))

    @classmethod
    def decode(cls, data: bytes, registry: CaveatRegistry | None = None) -> CaveatSet:
        """Decode a MessagePack caveat set; unknown types become unregistered caveats.

        Raises:
            DecodeError: *data* is not a caveat set.
        """
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        reg = DEFAULT_REGISTRY if registry is None else registry
        try:
            return cls(decode_set_value(_msgpack.unpack(data), reg))
        except NeedsRawBytes:
            return cls(decode_set_bytes(data, reg)[0])

    # -- JSON --------------------------------------------------------------

    def to_json(self) -> str:
        """The JSON list ``flyctl tokens debug`` prints, byte for byte as Go writes it."""
        return go_json(self.to_json_value())

    def to_json_value(self) -> list[dict[str, Any]]:
        """The JSON list as Python values (for embedding in a larger document)."""
        return caveats_to_json(self._caveats)

    @classmethod
    def from_json(
        cls, text: str | bytes | list[Any], registry: CaveatRegistry | None = None
    ) -> CaveatSet:
        """Parse the JSON caveat list that ``flyctl tokens attenuate -f`` reads.

        *text* is JSON text or an already parsed list.

        Types are names or aliases; a decimal number names a type by number.
        A type the registry does not know becomes an unregistered caveat,
        which can be shown but not added to a token.

        Raises:
            DecodeError: the JSON is malformed or a body has the wrong shape.
        """
        value: Any = text
        if isinstance(text, (str, bytes)):
            value = load_json(text, "caveats")
        reg = DEFAULT_REGISTRY if registry is None else registry
        return cls(caveats_from_json(value, reg))


def _of_type(caveats: Sequence[Caveat], cls: type[C]) -> list[C]:
    out: list[C] = []
    for c in caveats:
        if isinstance(c, cls):
            out.append(c)
        if isinstance(c, IfPresent) and c.ifs:
            out.extend(_of_type(c.ifs, cls))
    return out
