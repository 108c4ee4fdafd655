"""The caveat base class and the coding of caveat sets (spec sections 3.3, 7).

A caveat set is a flat MessagePack array ``[type1, body1, type2, body2, ...]``.
Each caveat is MACed as a one-caveat set, ``92 <type> <body>``, built from
the caveat's canonical body (spec 4.3); an unregistered caveat keeps the
exact wire bytes of its body instead.

Decoding has two paths. The fast one builds caveats from the value that
``msgpack`` already decoded. A caveat of an unknown type needs its raw wire
bytes, which that value no longer has; on meeting one, decoding starts
again on the raw bytes (:func:`decode_set_bytes`), which is slower but
exact. Tokens with only known caveats never take the slow path.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import attrs

from .. import _msgpack
from .._gojson import go_text, unb64
from ..errors import BadCaveatError, DecodeError, InvalidAccessError, UnauthorizedError

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access
    from ._fast import FastBuilders

#: The largest number of caveats one caveat set may hold.
MAX_CAVEATS = 4096
#: How deeply caveats may nest inside each other (``IfPresent``).
MAX_NESTING = 16

U64_MAX = 2**64 - 1
#: Type number of a JSON caveat whose type name is unknown (Go's ``CavUnregistered``).
UNREGISTERED_TYPE = U64_MAX

#: Values of :attr:`Caveat.verification_role`: what verification does with a caveat.
ORDINARY, THIRD_PARTY, BINDING = 0, 1, 2


class Registry(Protocol):
    """What decoding needs from a :class:`~macaroons_authz.CaveatRegistry`."""

    def lookup(self, type_number: int) -> type[Caveat] | None: ...

    def lookup_name(self, name: str) -> type[Caveat] | None: ...


def attrs_fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    """The attrs fields of a caveat class, in declaration order."""
    return tuple(attrs.fields(cast(Any, cls)))


class Caveat:
    """Base of every caveat.

    A caveat is a frozen attrs class with two class attributes,
    ``type_number`` and ``name`` (its JSON ``type``), and a check,
    :meth:`prohibits`. By default its MessagePack body is the array of its
    fields in declaration order and its JSON body the object of its fields
    by name; classes whose wire form differs override the four coding
    methods. Fields may only ever be appended, never reordered.
    """

    __slots__ = ()

    type_number: ClassVar[int]
    name: ClassVar[str]
    #: Other JSON names accepted when parsing.
    aliases: ClassVar[tuple[str, ...]] = ()
    #: Attestations state facts (identities); only proofs may carry them.
    attestation: ClassVar[bool] = False
    #: How verification treats the caveat: kept (``ORDINARY``), matched to a
    #: discharge (``THIRD_PARTY``) or checked against the parent (``BINDING``).
    verification_role: ClassVar[int] = ORDINARY

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Return why *access* is not allowed, or ``None`` if it is.

        The error is returned rather than raised: validation collects the
        errors of every caveat. Subclasses must override this; the base
        refuses everything, so a forgotten check fails closed.
        """
        return BadCaveatError(f"{self.name} caveats cannot be validated", caveat=self)

    def _unspecified_by(self, access: Access) -> bool:
        """Whether *access* leaves this caveat's resource unspecified (a shortcut).

        ``True`` only if :meth:`prohibits` would answer *access* with a lone
        ``ResourceUnspecifiedError``, which ``IfPresent`` then skips without
        building it. ``False`` means "ask :meth:`prohibits`": always safe.
        """
        return False

    # -- MessagePack -----------------------------------------------------

    def to_msgpack(self) -> Any:
        """The body as a value for the canonical MessagePack encoder."""
        return [getattr(self, f.name) for f in attrs_fields(type(self))]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        """Build the caveat from its decoded MessagePack body.

        Raises:
            DecodeError: the body does not have the caveat's shape.
        """
        fields = attrs_fields(cls)
        values = struct(body, len(fields), cls.name)
        if values is None:
            raise DecodeError(f"{cls.name} body must be an array of {len(fields)} fields")
        try:
            return cls(*values)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"bad {cls.name} body: {exc}") from None

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        """The caveat of a decoded *body* that is exactly canonical, or ``None``.

        The decoding fast path (see ``macaroons_authz._decode``): it returns
        a caveat only when :meth:`from_msgpack` would return an equal one
        whose :meth:`packed` is the plain re-encoding of ``[type, body]``,
        having checked the body's shape once, without the per-field checks
        of building it from arbitrary input. ``None`` sends the body to
        :meth:`from_msgpack`, which decides. *builders* are the registry's
        such methods, for caveats nested at *depth*. The base has no fast
        path.
        """
        return None

    @classmethod
    def from_wire(cls, raw: bytes, registry: Registry, depth: int) -> Self:
        """Build the caveat from the exact wire bytes of its body."""
        return cls.from_msgpack(_msgpack.unpack(raw), registry, depth)

    def packed(self) -> bytes:
        """The caveat as a one-caveat set: ``92 <type> <body>``, the MAC input."""
        return _msgpack.pack([self.type_number, self.to_msgpack()])

    # -- JSON --------------------------------------------------------------

    def to_json(self) -> Any:
        """The JSON body, as ``flyctl tokens debug`` shows it."""
        return {f.name: getattr(self, f.name) for f in attrs_fields(type(self))}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        """Build the caveat from its JSON body.

        Raises:
            DecodeError: the body does not have the caveat's shape.
        """
        names = [f.name for f in attrs_fields(cls)]
        obj = json_object(body, cls.name, names)
        try:
            return cls(**obj)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"bad {cls.name} body: {exc}") from None

    @property
    def json_type(self) -> str:
        """The JSON ``type``: the name, or the decimal number for private types."""
        if self.type_number >= 2**48:
            return str(self.type_number)
        return self.name


@attrs.frozen
class UnregisteredCaveat(Caveat):
    """A caveat of a type the registry does not know.

    Read from MessagePack it keeps the exact bytes of its body, so the token
    re-encodes and verifies byte for byte; read from JSON it keeps the JSON
    body and cannot be encoded to MessagePack. Either way it always fails
    validation: an unknown restriction is never ignored.
    """

    type_number: int  # type: ignore[misc]
    raw: bytes | None = attrs.field(default=None, repr=False)
    json_body: Any = attrs.field(default=None, repr=False)

    name = "Unregistered"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Always an error: an unknown caveat fails closed."""
        return BadCaveatError(f"unregistered caveat type {self.type_number}", caveat=self)

    def packed(self) -> bytes:
        """The one-caveat set, with the body's original bytes."""
        if self.raw is None:
            raise DecodeError("cannot convert unregistered caveats from JSON to msgpack")
        return b"\x92" + _msgpack.pack(self.type_number) + self.raw

    def to_msgpack(self) -> Any:
        """Unregistered caveats have no value form; see :meth:`packed`."""
        raise DecodeError("unregistered caveats have no MessagePack value form")

    def to_json(self) -> Any:
        """The JSON body it was read with."""
        if self.raw is not None:
            raise DecodeError("cannot convert unregistered caveats from msgpack to JSON")
        return self.json_body

    @property
    def json_type(self) -> str:
        """The decimal type number."""
        return str(self.type_number)


class NeedsRawBytes(Exception):
    """Internal: the fast decoding path met a caveat it cannot re-emit."""


def _type_number(value: object) -> int:
    if type(value) is not int or value < 0:
        raise DecodeError("caveat type must be an unsigned integer")
    return value


def check_set(items: Any, depth: int) -> int:
    """The length of a caveat-set value (two per caveat); refuses what Go refuses.

    Raises:
        DecodeError: not an array of pairs, too many caveats, or nested too deeply.
    """
    if depth > MAX_NESTING:
        raise DecodeError("caveats nested too deeply")
    if type(items) is not list:
        raise DecodeError("caveat set must be an array")
    n = len(items)
    if n % 2:
        raise DecodeError("bad caveat container")
    if n > 2 * MAX_CAVEATS:
        raise DecodeError(f"more than {MAX_CAVEATS} caveats")
    return n


#: A decode memo entry (see ``macaroons_authz._decode``): the caveats of a
#: set, their canonical one-caveat encodings, and whether the key is
#: exactly the set's canonical encoding (nothing more; ``None``: not yet known).
MemoEntry = tuple[tuple["Caveat", ...], tuple[bytes, ...], "bool | None"]


def decode_set_value(items: Any, registry: Registry, depth: int = 0) -> list[Caveat]:
    """Caveats from a decoded caveat-set value (the fast path).

    Raises:
        NeedsRawBytes: the set holds an unregistered caveat.
    """
    n = check_set(items, depth)
    lookup = registry.lookup
    out = []
    for i in range(0, n, 2):
        cls = lookup(_type_number(items[i]))
        if cls is None:
            raise NeedsRawBytes
        out.append(cls.from_msgpack(items[i + 1], registry, depth))
    return out


def decode_set_bytes(data: bytes, registry: Registry, depth: int = 0) -> tuple[list[Caveat], int]:
    """Caveats from the wire bytes of a caveat set (the exact path).

    Returns the caveats and the length of the set's encoding.
    """
    if depth > MAX_NESTING:
        raise DecodeError("caveats nested too deeply")
    spans, end = _msgpack.array_items(data)
    if len(spans) % 2:
        raise DecodeError("bad caveat container")
    if len(spans) > 2 * MAX_CAVEATS:
        raise DecodeError(f"more than {MAX_CAVEATS} caveats")
    out: list[Caveat] = []
    for i in range(0, len(spans), 2):
        t_start, t_end = spans[i]
        type_number = _type_number(_msgpack.unpack(data[t_start:t_end]))
        b_start, b_end = spans[i + 1]
        raw = data[b_start:b_end]
        cls = registry.lookup(type_number)
        if cls is None:
            out.append(UnregisteredCaveat(type_number, raw))
        else:
            out.append(cls.from_wire(raw, registry, depth))
    return out, end


def pack_set(packed: Iterable[bytes], count: int) -> bytes:
    """A caveat set's encoding from its caveats' one-caveat encodings."""
    return _msgpack.array_header(2 * count) + b"".join([p[1:] for p in packed])


def caveats_to_json(caveats: Iterable[Caveat]) -> list[dict[str, Any]]:
    """The JSON value of a caveat list: ``[{"type": ..., "body": ...}, ...]``."""
    return [{"type": c.json_type, "body": c.to_json()} for c in caveats]


def caveats_from_json(value: Any, registry: Registry, depth: int = 0) -> list[Caveat]:
    """Caveats from the JSON value of a caveat list."""
    if depth > MAX_NESTING:
        raise DecodeError("caveats nested too deeply")
    if type(value) is not list:
        raise DecodeError("caveat list JSON must be an array")
    if len(value) > MAX_CAVEATS:
        raise DecodeError(f"more than {MAX_CAVEATS} caveats")
    out: list[Caveat] = []
    for item in value:
        obj = json_object(item, "caveat", ("type", "body"))
        type_name = obj.get("type")
        if type(type_name) is not str:
            raise DecodeError('caveat JSON needs a string "type"')
        if "body" not in obj:
            # Go fails to unmarshal a missing body; "body": null is the zero value.
            raise DecodeError('caveat JSON needs a "body"')
        cls = registry.lookup_name(type_name)
        body = obj["body"]
        if cls is not None:
            out.append(cls.from_json(body, registry, depth))
            continue
        number = _parse_type_number(type_name)
        cls = registry.lookup(number)
        if cls is None:
            out.append(UnregisteredCaveat(number, json_body=body))
        else:
            out.append(cls.from_json(body, registry, depth))
    return out


def _parse_type_number(name: str) -> int:
    # Go's strconv.ParseUint: decimal digits, leading zeros allowed. The
    # length is checked first: int() refuses more than 4300 digits.
    if name.isascii() and name.isdigit() and len(name.lstrip("0")) <= 20:
        number = int(name)
        if number <= U64_MAX:
            return number
    return UNREGISTERED_TYPE


# -- times -----------------------------------------------------------------


def is_finite_time(value: object) -> bool:
    """Whether *value* is a usable time in seconds: an int, or a finite number.

    NaN compares false with everything, so a NaN "now" would pass every
    window check; infinities would pass one side of it. Anything that is
    not a number is refused too.
    """
    if type(value) is float:
        return value - value == 0.0  # NaN and infinities give NaN
    if type(value) is int:
        return True
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False


def non_finite_time(what: str, value: object, caveat: Caveat | None = None) -> InvalidAccessError:
    """The error for a time that :func:`is_finite_time` refuses."""
    return InvalidAccessError(
        f"unauthorized: bad data for token verification: {what} must be a finite "
        f"number of unix seconds, not {_shown(value)}",
        caveat=caveat,
    )


# -- field helpers: MessagePack -------------------------------------------


def struct(body: Any, n: int, what: str) -> Sequence[Any] | None:
    """The fields of a struct body, or ``None`` for Go's zero value.

    Go decodes nil or an empty array into a zero-valued struct.
    """
    if body is None or (type(body) is list and not body):
        return None
    if type(body) is not list or len(body) != n:
        raise DecodeError(f"{what} body must be an array of {n} fields")
    return body


def uint(value: Any, what: str, limit: int = U64_MAX) -> int:
    """An unsigned integer no larger than *limit*."""
    if type(value) is not int or not 0 <= value <= limit:
        raise DecodeError(f"{what} must be an unsigned integer up to {limit}")
    return value


def int64(value: Any, what: str) -> int:
    """A signed 64-bit integer."""
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise DecodeError(f"{what} must be a 64-bit integer")
    return value


def int64_field(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An attrs validator: the field is a signed 64-bit int (a float is refused).

    Raises:
        DecodeError: naming the caveat and the field.
    """
    if not (isinstance(value, int) and type(value) is not bool and -(2**63) <= value < 2**63):
        raise DecodeError(
            f"{type(instance).__name__} {attribute.name} must be an int from -2**63 to "
            f"2**63-1, not {_shown(value)}"
        )


def uint64_field(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An attrs validator: the field is an unsigned 64-bit int (a float is refused).

    Raises:
        DecodeError: naming the caveat and the field.
    """
    if not (isinstance(value, int) and type(value) is not bool and 0 <= value <= U64_MAX):
        raise DecodeError(
            f"{type(instance).__name__} {attribute.name} must be an int from 0 to "
            f"2**64-1, not {_shown(value)}"
        )


def _shown(value: object) -> str:
    # Never the digits of a huge int: converting one costs time quadratic in its size.
    if type(value) is int and abs(value) < 10**30:
        return str(value)
    return repr(value) if type(value) is float else f"a {type(value).__name__}"


def string(value: Any, what: str) -> str:
    """A string; bytes are accepted, as Go's decoder does."""
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "surrogateescape")
    raise DecodeError(f"{what} must be a string")


def blob(value: Any, what: str) -> bytes | None:
    """Bytes, or ``None`` for Go's nil slice; strings are accepted."""
    if value is None or type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    raise DecodeError(f"{what} must be bytes")


def opt_tuple(value: Iterable[Any] | None) -> tuple[Any, ...] | None:
    """Convert to a tuple, keeping ``None`` (Go's nil slice)."""
    return None if value is None else tuple(value)


def string_list(value: Any, what: str) -> tuple[str, ...] | None:
    """A list of strings, or ``None`` for Go's nil slice."""
    if value is None:
        return None
    if type(value) is not list:
        raise DecodeError(f"{what} must be an array of strings")
    return tuple(string(v, what) for v in value)


# -- field helpers: JSON --------------------------------------------------


def json_object(value: Any, what: str, keys: Iterable[str]) -> dict[str, Any]:
    """A JSON object whose keys are all among *keys*; ``null`` is ``{}``.

    Unknown keys are refused rather than ignored (Go ignores them): a typo in
    a restriction must not silently change what it restricts.
    """
    if value is None:
        return {}
    if type(value) is not dict:
        raise DecodeError(f"{what} JSON must be an object")
    unknown = set(value) - set(keys)
    if unknown:
        raise DecodeError(f"{what} JSON has unknown keys: {', '.join(map(repr, sorted(unknown)))}")
    return value


def json_uint(value: Any, what: str, limit: int = U64_MAX) -> int:
    """A JSON number that is an unsigned integer no larger than *limit*."""
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= limit:
        raise DecodeError(f"{what} must be an unsigned integer up to {limit}")
    return value


def json_int64(value: Any, what: str) -> int:
    """A JSON number that is a signed 64-bit integer."""
    if value is None:
        return 0
    return int64(value, what)


def json_string(value: Any, what: str) -> str:
    """A JSON string (``null`` is the empty string), read as Go reads it (:func:`go_text`)."""
    if value is None:
        return ""
    if type(value) is not str:
        raise DecodeError(f"{what} must be a string")
    return go_text(value)


def json_blob(value: Any, what: str) -> bytes | None:
    """A JSON base64 string (Go's form of a byte slice), or ``null``."""
    if value is None:
        return None
    if type(value) is not str:
        raise DecodeError(f"{what} must be a base64 string")
    try:
        return unb64(value)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what} must be a base64 string") from None


def json_string_list(value: Any, what: str) -> tuple[str, ...] | None:
    """A JSON array of strings, or ``null``."""
    if value is None:
        return None
    if type(value) is not list:
        raise DecodeError(f"{what} must be an array of strings")
    return tuple(json_string(v, what) for v in value)
