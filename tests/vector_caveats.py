"""The nine test-only caveat types of the Go vector generator (spec 14.6).

They live in the tests, registered on a copy of the default registry, never
in the library. Each allows every access.
"""

from __future__ import annotations

from typing import Any

import attrs

from macaroons_authz import (
    DEFAULT_REGISTRY,
    Caveat,
    CaveatRegistry,
    DecodeError,
    Prefix,
    ResourceSet,
)
from macaroons_authz.caveats import _base as fields

BASE = 2**48


class _AllowAll(Caveat):
    __slots__ = ()

    def prohibits(self, access: Any) -> None:
        return None


class _Scalar(_AllowAll):
    """A caveat whose body is one bare value."""

    __slots__ = ()

    def to_msgpack(self) -> Any:
        return attrs.astuple(self, recurse=False)[0]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Any, depth: int = 0) -> Any:
        return cls(cls._check(body))  # type: ignore[call-arg]

    @staticmethod
    def _check(body: Any) -> Any:
        return body


@attrs.frozen
class StringCaveat(_Scalar):
    value: str
    type_number = BASE + 0
    name = "String"

    @staticmethod
    def _check(body: Any) -> Any:
        return fields.string(body, "String")


@attrs.frozen
class Int64Caveat(_Scalar):
    value: int
    type_number = BASE + 1
    name = "Int64"

    @staticmethod
    def _check(body: Any) -> Any:
        return fields.int64(body, "Int64")


@attrs.frozen
class Uint64Caveat(_Scalar):
    value: int
    type_number = BASE + 2
    name = "Uint64"

    @staticmethod
    def _check(body: Any) -> Any:
        return fields.uint(body, "Uint64")


@attrs.frozen
class SliceCaveat(_Scalar):
    value: bytes
    type_number = BASE + 3
    name = "Slice"

    @staticmethod
    def _check(body: Any) -> Any:
        return fields.blob(body, "Slice")


def _string_map(body: Any) -> tuple[tuple[str, str], ...]:
    if type(body) is not dict:
        raise DecodeError("map expected")
    return tuple(sorted((fields.string(k, "k"), fields.string(v, "v")) for k, v in body.items()))


@attrs.frozen
class MapCaveat(_AllowAll):
    value: tuple[tuple[str, str], ...]
    type_number = BASE + 4
    name = "Map"

    def to_msgpack(self) -> Any:
        return dict(self.value)

    @classmethod
    def from_msgpack(cls, body: Any, registry: Any, depth: int = 0) -> Any:
        return cls(_string_map(body))


class _ResourceSetBody(_AllowAll):
    __slots__ = ()
    key_type: Any = int

    def to_msgpack(self) -> Any:
        return [attrs.astuple(self, recurse=False)[0].to_msgpack()]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Any, depth: int = 0) -> Any:
        (value,) = fields.struct(body, 1, cls.name) or [None]
        return cls(ResourceSet.from_msgpack(value, cls.key_type, cls.name))  # type: ignore[call-arg]


@attrs.frozen
class IntResourceSetCaveat(_ResourceSetBody):
    value: ResourceSet[int]
    type_number = BASE + 5
    name = "IntResourceSet"
    key_type = int


@attrs.frozen
class StringResourceSetCaveat(_ResourceSetBody):
    value: ResourceSet[str]
    type_number = BASE + 6
    name = "StringResourceSet"
    key_type = str


@attrs.frozen
class PrefixResourceSetCaveat(_ResourceSetBody):
    value: ResourceSet[str]
    type_number = BASE + 7
    name = "PrefixResourceSet"
    key_type = Prefix


@attrs.frozen
class StructCaveat(_AllowAll):
    text: str
    signed: int
    unsigned: int
    data: bytes | None
    mapping: tuple[tuple[str, str], ...]
    ints: ResourceSet[int] | None
    strings: ResourceSet[str] | None
    prefixes: ResourceSet[str] | None
    type_number = BASE + 8
    name = "Struct"

    def to_msgpack(self) -> Any:
        return [
            self.text,
            self.signed,
            self.unsigned,
            self.data,
            dict(self.mapping),
            *(
                None if rs is None else rs.to_msgpack()
                for rs in (self.ints, self.strings, self.prefixes)
            ),
        ]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Any, depth: int = 0) -> Any:
        f = fields.struct(body, 8, cls.name)
        assert f is not None
        return cls(
            fields.string(f[0], "s"),
            fields.int64(f[1], "i"),
            fields.uint(f[2], "u"),
            fields.blob(f[3], "b"),
            _string_map(f[4]),
            ResourceSet.from_msgpack(f[5], int, "ints"),
            ResourceSet.from_msgpack(f[6], str, "strings"),
            ResourceSet.from_msgpack(f[7], Prefix, "prefixes"),
        )


VECTOR_CAVEATS = (
    StringCaveat,
    Int64Caveat,
    Uint64Caveat,
    SliceCaveat,
    MapCaveat,
    IntResourceSetCaveat,
    StringResourceSetCaveat,
    PrefixResourceSetCaveat,
    StructCaveat,
)


def vector_registry() -> CaveatRegistry:
    """The default registry plus the nine test-only types."""
    registry = DEFAULT_REGISTRY.copy()
    for cls in VECTOR_CAVEATS:
        registry.register(cls)
    return registry
