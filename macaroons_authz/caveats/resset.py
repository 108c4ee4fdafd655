"""Actions, resource sets and ``IfPresent`` (spec sections 9.2-9.4)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from .. import _msgpack
from .._gojson import go_text
from ..errors import (
    BadCaveatError,
    DecodeError,
    InvalidAccessError,
    ResourceUnspecifiedError,
    UnauthorizedError,
    UnauthorizedForActionError,
    UnauthorizedForResourceError,
)
from ._base import (
    Caveat,
    Registry,
    caveats_from_json,
    caveats_to_json,
    decode_set_bytes,
    decode_set_value,
    json_object,
    opt_tuple,
    pack_set,
    string,
    struct,
    uint,
)
from ._fast import FastBuilders, canonical_set, new_object, slot_setters

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access

__all__ = ["Action", "ActionCaveat", "IfPresent", "Prefix", "ResourceSet"]

_MISSING: Any = object()
_ACTION_LETTERS = (("r", 0x01), ("w", 0x02), ("c", 0x04), ("d", 0x08), ("C", 0x10))


class Action(enum.IntFlag, boundary=enum.KEEP):
    """A bit mask of actions on a resource (16 bits on the wire).

    ``r`` read, ``w`` write, ``c`` create, ``d`` delete, ``C`` control
    (start, stop, signal). An access's action is allowed by a mask when it is
    a subset of it.
    """

    NONE = 0
    READ = 0x01
    WRITE = 0x02
    CREATE = 0x04
    DELETE = 0x08
    CONTROL = 0x10
    ALL = 0x1F

    @classmethod
    def from_letters(cls, letters: str) -> Action:
        """Parse the JSON form: letters of ``rwcdC``, or ``"*"`` alone for every bit.

        Go ignores unknown letters, so ``"read"`` would mean ``rd`` (read and
        delete); here an unknown letter is an error, never a wider mask.

        Raises:
            DecodeError: a letter is not one of ``rwcdC``.
        """
        return cls(parse_action_letters(letters, "action"))

    @property
    def letters(self) -> str:
        """The JSON form: the letters of bits 0-4 in ``rwcdC`` order."""
        return action_letters(self)

    def is_subset_of(self, other: int) -> bool:
        """Whether every bit of this mask is set in *other*."""
        return self & other == self


def action_letters(mask: int) -> str:
    """The letters ``rwcdC`` of the set bits 0-4 of *mask*; higher bits are not shown."""
    return "".join(letter for letter, bit in _ACTION_LETTERS if mask & bit)


_LETTER_BITS = dict(_ACTION_LETTERS)


def parse_action_letters(letters: str, what: str) -> int:
    """The mask of the letters ``rwcdC`` (``"*"`` alone is every bit).

    Raises:
        DecodeError: a letter is not one of ``rwcdC``, naming it.
    """
    if letters == "*":
        return 0xFFFF
    mask = 0
    for letter in letters:
        bit = _LETTER_BITS.get(letter)
        if bit is None:
            raise DecodeError(
                f"{what}: unknown action letter {letter!r} "
                '(actions are letters of rwcdC, or "*" alone)'
            )
        mask |= bit
    return mask


def _json_action(value: Any, what: str) -> int:
    if value is None:
        return 0
    if type(value) is not str:
        raise DecodeError(f"{what} must be a string of action letters")
    return parse_action_letters(value, what)


def _msgpack_action(value: Any, what: str) -> int:
    return uint(value, what, 0xFFFF)


def access_action(access: object, caveat: Caveat) -> int | UnauthorizedError:
    """The action of *access*, or an error if it has none."""
    action = getattr(access, "action", _MISSING)
    if type(action) is not int and not isinstance(action, int):
        return InvalidAccessError(
            f"unauthorized: bad data for token verification: {caveat.name} needs an action",
            caveat=caveat,
        )
    return action


def action_error(
    caveat: Caveat, action: int, allowed: int, what: str
) -> UnauthorizedForActionError:
    """The error for an action that *allowed* does not cover."""
    return UnauthorizedForActionError(
        f"unauthorized for {action_letters(action & ~allowed) or hex(action & ~allowed)} "
        f"on {what} ({caveat.name})",
        caveat=caveat,
    )


class Prefix(str):
    """A resource id that matches every id starting with it (``StorageObjects``)."""

    __slots__ = ()


K = TypeVar("K", int, str)


def _sorted_entries(
    entries: Mapping[Any, int] | Iterable[tuple[Any, int]],
) -> tuple[tuple[Any, int], ...]:
    items = entries.items() if isinstance(entries, Mapping) else entries
    merged = dict(items)
    return _sort(merged, all(isinstance(k, int) for k in merged))


def _sort(entries: dict[Any, int], int_keys: bool) -> tuple[tuple[Any, int], ...]:
    # Go sorts string keys bytewise. Code point order is the same for ASCII,
    # and for any valid UTF-8; only strings holding escaped invalid bytes
    # (surrogates) need the slower byte key.
    if int_keys or "".join(entries).isascii():
        return tuple(sorted(entries.items()))
    return tuple(sorted(entries.items(), key=_byte_key))


def _index_of(entries: tuple[tuple[Any, int], ...]) -> dict[Any, int] | None:
    if any(not k or type(k) is Prefix for k, _ in entries):
        return None
    return {k: v & 0xFFFF for k, v in entries}


def _byte_key(item: tuple[Any, int]) -> Any:
    key = item[0]
    return key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key


@attrs.frozen
class ResourceSet(Generic[K]):
    """Resource ids, each with the actions allowed on it.

    A zero id (``0`` or ``""``) is a wildcard for every resource of the kind
    and must stand alone. Keys that are :class:`Prefix` match every id they
    begin; when several match, their actions intersect. An empty set allows
    nothing.

    >>> apps = ResourceSet({123: Action.READ, 456: Action.READ | Action.WRITE})
    >>> apps.prohibits(123, Action.READ, "app") is None
    True
    """

    entries: tuple[tuple[K, int], ...] = attrs.field(converter=_sorted_entries)
    # The entries as a dict when no key is a wildcard or a Prefix (else
    # None): then an id matches at most one key, and prohibits() finds it
    # with one lookup instead of a scan.
    _index: dict[K, int] | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", _index_of(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: K) -> int | None:
        """The actions allowed on exactly *key*, or ``None``."""
        for k, v in self.entries:
            if k == key:
                return v
        return None

    def keys(self) -> list[K]:
        """The ids, sorted."""
        return [k for k, _ in self.entries]

    def _mixes_wildcard(self) -> bool:
        # The zero id (0 or "") is the wildcard and must stand alone; entries
        # are sorted, so it can only be the first.
        entries = self.entries
        return len(entries) > 1 and not entries[0][0]

    def prohibits(
        self, resource: K | None, action: int, kind: str, caveat: Caveat | None = None
    ) -> UnauthorizedError | None:
        """Why *action* on *resource* is not allowed, or ``None`` if it is (spec 9.2)."""
        index = self._index
        # Only exact ints and strs: for them a dict lookup is exactly the
        # scan's ==, and they are what accesses hold.
        if index is not None and (type(resource) is int or type(resource) is str):
            perm = index.get(resource)
        else:
            if self._mixes_wildcard():
                return BadCaveatError(
                    "unauthorized: bad caveat: cannot specify zero ID along with other IDs",
                    caveat=caveat,
                )
            if resource is None:
                return ResourceUnspecifiedError(
                    f"unauthorized: bad data for token verification: must specify {kind}",
                    caveat=caveat,
                )
            perm = self._scan(resource)
        if perm is None:
            return UnauthorizedForResourceError(
                f"unauthorized for {kind} {resource}", caveat=caveat
            )
        if action & perm != action:
            return UnauthorizedForActionError(
                f"unauthorized for {action_letters(action & ~perm) or hex(action & ~perm)} "
                f"on {kind} {resource}",
                caveat=caveat,
            )
        return None

    def _scan(self, resource: object) -> int | None:
        # The actions of every key matching *resource*, intersected (as
        # 16-bit masks), or None if none matches.
        perm = 0xFFFF
        found = False
        for k, v in self.entries:
            if (
                not k
                or k == resource
                or (isinstance(k, Prefix) and isinstance(resource, str) and resource.startswith(k))
            ):
                perm &= v
                found = True
        return perm if found else None

    # -- coding ------------------------------------------------------------

    def to_msgpack(self) -> dict[Any, int]:
        """The canonical map (keys sorted)."""
        return dict(self.entries)

    def to_json(self) -> dict[str, str]:
        """The JSON object: ids as strings, actions as letters (keys sorted as Go does).

        Go sorts the keys' bytes: the same as code point order, except for
        ids holding bytes that are not UTF-8 (see ``_sort``).
        """
        return {
            str(k): action_letters(v)
            for k, v in sorted(self.entries, key=lambda kv: _byte_key((str(kv[0]), 0)))
        }

    @classmethod
    def from_msgpack(cls, value: Any, key_type: type, what: str) -> ResourceSet[Any] | None:
        """Decode a map (``None`` for nil) with keys of *key_type* (int, str or Prefix)."""
        if value is None:
            return None
        if type(value) is not dict:
            raise DecodeError(f"{what} must be a map")
        want = int if key_type is int else str
        if all(
            type(k) is want and type(v) is int and 0 <= v <= 0xFFFF for k, v in value.items()
        ) and (want is str or all(k >= 0 for k in value)):
            # The common case: keys and actions already of the right types.
            if key_type is Prefix:
                value = {Prefix(k): v for k, v in value.items()}
            return cls._of_sorted(_sort(value, want is int))
        entries: dict[Any, int] = {}
        for k, v in value.items():
            if key_type is int:
                key: Any = uint(k, f"{what} id")
            else:
                key = key_type(string(k, f"{what} id"))
            entries[key] = _msgpack_action(v, f"{what} actions")
        return cls._of_sorted(_sort(entries, key_type is int))

    @classmethod
    def from_canonical(cls, value: Any, key_type: type) -> ResourceSet[Any] | None:
        """The set of a decoded map that is already canonical, or ``None``.

        Canonical: keys of *key_type* (int or str, not :class:`Prefix`) in
        the order the encoder sorts them, actions 16-bit. The set's
        encoding is then the map's plain re-encoding; anything else goes
        to :meth:`from_msgpack`. Only ASCII string keys qualify, where
        code point order is byte order.
        """
        if type(value) is not dict:
            return None
        entries: tuple[tuple[Any, Any], ...] = tuple(value.items())
        # One pass of plain comparisons: the sets are small, and building
        # sets or sorted copies to check them costs more.
        if key_type is int:
            last = -1  # ids are unsigned
            for key, actions in entries:
                if type(key) is not int or key <= last:
                    return None
                if type(actions) is not int or not 0 <= actions <= 0xFFFF:
                    return None
                last = key
        elif key_type is str:
            previous = None
            for key, actions in entries:
                if type(key) is not str or not key.isascii():
                    return None
                if previous is not None and key <= previous:
                    return None
                if type(actions) is not int or not 0 <= actions <= 0xFFFF:
                    return None
                previous = key
        else:
            return None
        rs = new_object(cls)
        _set_entries(rs, entries)
        # A wildcard (0 or "") sorts first; then there is no index.
        _set_index(rs, value if not entries or entries[0][0] else None)
        return rs

    @classmethod
    def _of_sorted(cls, entries: tuple[tuple[Any, int], ...]) -> ResourceSet[Any]:
        # Decoding builds sorted, checked entries itself: skip the converter.
        rs = object.__new__(cls)
        object.__setattr__(rs, "entries", entries)
        object.__setattr__(rs, "_index", _index_of(entries))
        return rs

    @classmethod
    def from_json(cls, value: Any, key_type: type, what: str) -> ResourceSet[Any] | None:
        """Decode the JSON object form (``None`` for ``null``)."""
        if value is None:
            return None
        if type(value) is not dict:
            raise DecodeError(f"{what} must be an object")
        entries = []
        for k, v in value.items():
            if key_type is int:
                # The length first: int() refuses more than 4300 digits.
                if not (k.isascii() and k.isdigit()) or len(k.lstrip("0")) > 20 or int(k) >= 2**64:
                    raise DecodeError(f"{what} ids must be unsigned integers below 2**64")
                key: Any = int(k)
            else:
                key = key_type(go_text(k))
            entries.append((key, _json_action(v, f"{what} actions")))
        return cls(entries)


# The slots' own setters: building a decoded set without attrs' frozen
# __setattr__ or object.__setattr__'s look-up by name.
_set_entries = ResourceSet.__dict__["entries"].__set__
_set_index = ResourceSet.__dict__["_index"].__set__


# Converters of the resource-set field of each caveat. They are named
# functions with typed arguments so that type checkers (mypy's attrs plugin,
# pyright) accept the plain dicts the caveats are documented with, as in
# ``Apps({42: Action.READ})``. None is Go's nil set.


def int_resources(
    value: ResourceSet[int] | Mapping[int, int] | Iterable[tuple[int, int]] | None,
) -> ResourceSet[int] | None:
    """An optional set of integer ids, from a set, a mapping or pairs."""
    return value if value is None or isinstance(value, ResourceSet) else ResourceSet(value)


def str_resources(
    value: ResourceSet[str] | Mapping[str, int] | Iterable[tuple[str, int]] | None,
) -> ResourceSet[str] | None:
    """An optional set of string ids, from a set, a mapping or pairs."""
    return value if value is None or isinstance(value, ResourceSet) else ResourceSet(value)


def prefix_resources(
    value: ResourceSet[str]
    | Mapping[str, int]
    | Mapping[Prefix, int]
    | Iterable[tuple[str, int]]
    | None,
) -> ResourceSet[str] | None:
    """An optional set of :class:`Prefix` ids; plain strings given become prefixes."""
    if value is None or isinstance(value, ResourceSet):
        return value
    return ResourceSet({Prefix(k): v for k, v in dict(value).items()})


@attrs.frozen
class ActionCaveat(Caveat):
    """Restricts every access to a subset of *action* (type 26, JSON ``Action``)."""

    action: int

    type_number = 26
    name = "Action"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The access's action must be a subset of :attr:`action`."""
        action = access_action(access, self)
        if isinstance(action, UnauthorizedError):
            return action
        if action & self.action != action:
            return action_error(self, action, self.action, "this token")
        return None

    def to_msgpack(self) -> Any:
        return self.action

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(_msgpack_action(body, "Action"))

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        return cls(body) if type(body) is int and 0 <= body <= 0xFFFF else None

    def to_json(self) -> Any:
        return action_letters(self.action)

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(_json_action(body, "Action"))


@attrs.frozen
class IfPresent(Caveat):
    """Apply *ifs* when the access names their resources, else allow *else_*.

    Every inner caveat whose answer is not "resource unspecified" is
    relevant; if any is, their errors decide and *else_* is ignored. If none
    is, the access passes only if its action is a subset of *else_*. A nil
    ``ifs`` (``None``) never passes. (Type 13.)
    """

    ifs: tuple[Caveat, ...] | None = attrs.field(converter=opt_tuple)
    else_: int = 0

    type_number = 13
    name = "IfPresent"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """See the class docstring (spec 9.4)."""
        try:  # not getattr() with a default, which costs seven attribute reads
            action = access.action  # type: ignore[attr-defined]
        except AttributeError:
            action = None
        if type(action) is not int:  # the general check, for unusual accesses
            action = access_action(access, self)
            if isinstance(action, UnauthorizedError):
                return action
        if self.ifs is None:
            return BadCaveatError("unauthorized: bad caveat: IfPresent with nil ifs", caveat=self)
        relevant = False
        errors = []
        for cav in self.ifs:
            if cav._unspecified_by(access):
                continue
            err = cav.prohibits(access)
            if err is not None and err.contains(ResourceUnspecifiedError):
                continue
            relevant = True
            if err is not None:
                errors.append(err)
        if relevant:
            return UnauthorizedError.combine(errors)
        if action & self.else_ != action:
            return action_error(self, action, self.else_, "unspecified resources")
        return None

    def packed(self) -> bytes:
        inner = (
            b"\xc0" if self.ifs is None else pack_set((c.packed() for c in self.ifs), len(self.ifs))
        )
        return b"\x92\x0d\x92" + inner + _msgpack.pack(self.else_)

    def to_msgpack(self) -> Any:
        raise NotImplementedError("IfPresent is encoded by packed()")

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 2, "IfPresent")
        if fields is None:
            return cls(None, 0)
        ifs = None if fields[0] is None else decode_set_value(fields[0], registry, depth + 1)
        return cls(ifs, _msgpack_action(fields[1], "IfPresent else"))

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is not list or len(body) != 2:
            return None
        ifs, else_ = body
        if type(else_) is not int or not 0 <= else_ <= 0xFFFF:
            return None
        if ifs is not None:
            ifs = canonical_set(ifs, builders, depth + 1)
            if ifs is None:
                return None
        if cls is not IfPresent:
            return cls(ifs, else_)
        obj = new_object(cls)
        _set_ifs(obj, ifs)
        _set_else(obj, else_)
        return obj

    @classmethod
    def from_wire(cls, raw: bytes, registry: Registry, depth: int) -> Self:
        if raw[:1] == b"\xc0":
            return cls(None, 0)
        spans, _ = _msgpack.array_items(raw)
        if not spans:
            return cls(None, 0)
        if len(spans) != 2:
            raise DecodeError("IfPresent body must be an array of 2 fields")
        (i_start, i_end), (e_start, e_end) = spans
        ifs = (
            None
            if raw[i_start] == 0xC0
            else decode_set_bytes(raw[i_start:i_end], registry, depth + 1)[0]
        )
        return cls(ifs, _msgpack_action(_msgpack.unpack(raw[e_start:e_end]), "IfPresent else"))

    def to_json(self) -> Any:
        return {
            "ifs": None if self.ifs is None else caveats_to_json(self.ifs),
            "else": action_letters(self.else_),
        }

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, "IfPresent", ("ifs", "else"))
        ifs = obj.get("ifs")
        return cls(
            None if ifs is None else caveats_from_json(ifs, registry, depth + 1),
            _json_action(obj.get("else"), "IfPresent else"),
        )


_set_ifs, _set_else = slot_setters(IfPresent, "ifs", "else_")


# Reading an access's attributes, for the Fly.io caveats (flyio.py, fly_resources.py).


def _attr(access: object, name: str, caveat: Caveat) -> Any:
    value = getattr(access, name, _MISSING)
    if value is _MISSING:
        return InvalidAccessError(
            f"unauthorized: bad data for token verification: {caveat.name} needs {name}",
            caveat=caveat,
        )
    return value


def _unspecified(caveat: Caveat, kind: str) -> ResourceUnspecifiedError:
    return ResourceUnspecifiedError(
        f"unauthorized: bad data for token verification: must specify {kind}", caveat=caveat
    )
