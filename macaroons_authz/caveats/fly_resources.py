"""Fly.io's caveats of one resource set: volumes, apps, features, Machines, and more.

Each is a :class:`~macaroons_authz.ResourceSet` of ids (or, for storage
objects, URL prefixes) with the actions allowed on each; the access names
the resource it reaches by attribute (``app_id``, ``machine``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..errors import UnauthorizedError
from ._base import Caveat, Registry, json_object, struct
from ._fast import FastBuilders, new_object, slot_setters
from .resset import (
    _MISSING,
    Prefix,
    ResourceSet,
    _attr,
    access_action,
    int_resources,
    prefix_resources,
    str_resources,
)

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access

__all__ = [
    "AppFeatureSet",
    "Apps",
    "Clusters",
    "FeatureSet",
    "MachineFeatureSet",
    "Machines",
    "StorageObjects",
    "Volumes",
]


_EMPTY: ResourceSet[Any] = ResourceSet(())


class _ResourceSetCaveat(Caveat):
    """A caveat whose body is one resource set (``[RS]``)."""

    __slots__ = ()

    _key_type: ClassVar[type] = str
    _json_key: ClassVar[str]
    _access_attr: ClassVar[str]
    _kind: ClassVar[str]

    @property
    def resources(self) -> ResourceSet[Any] | None:
        """The resource set (``None`` is Go's nil set, which allows nothing)."""
        # Each subclass names its one field like its JSON key.
        value: ResourceSet[Any] | None = getattr(self, self._json_key)
        return value

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The access's resource must be in the set with its action allowed (spec 9.2)."""
        rs = getattr(self, self._json_key)
        try:
            resource = getattr(access, self._access_attr)
            action = access.action  # type: ignore[attr-defined]
        except AttributeError:
            pass
        else:
            # When the set allows the access, ResourceSet.prohibits answers
            # with this one lookup; any other case asks it, for its error.
            index = None if rs is None or type(action) is not int else rs._index
            if index is not None and (type(resource) is int or type(resource) is str):
                perm = index.get(resource)
                if perm is not None and action & perm == action:
                    return None
        resource = getattr(access, self._access_attr, _MISSING)
        if resource is _MISSING:
            missing: UnauthorizedError = _attr(access, self._access_attr, self)
            return missing
        try:  # not getattr() with a default, which costs seven attribute reads
            action = access.action  # type: ignore[attr-defined]
        except AttributeError:
            action = None
        if type(action) is not int:  # the general check, for unusual accesses
            action = access_action(access, self)
            if isinstance(action, UnauthorizedError):
                return action
        if rs is None:
            rs = _EMPTY
        result: UnauthorizedError | None = rs.prohibits(resource, action, self._kind, self)
        return result

    def _unspecified_by(self, access: Access) -> bool:
        # Mirrors prohibits(): the access has the attribute, set to None, and
        # an integer action, and the set is well formed.
        if getattr(access, self._access_attr, _MISSING) is not None:
            return False
        try:
            action = access.action  # type: ignore[attr-defined]
        except AttributeError:
            return False
        if not isinstance(action, int):
            return False
        rs: ResourceSet[Any] | None = getattr(self, self._json_key)
        # A set with an index has no wildcard key, so none mixed with others.
        return rs is None or rs._index is not None or not rs._mixes_wildcard()

    def to_msgpack(self) -> Any:
        rs = self.resources
        return [None if rs is None else rs.to_msgpack()]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 1, cls.name)
        value = None if fields is None else fields[0]
        return cls(ResourceSet.from_msgpack(value, cls._key_type, cls.name))  # type: ignore[call-arg]

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is not list or len(body) != 1:
            return None
        value = body[0]
        if value is not None:
            value = ResourceSet.from_canonical(value, cls._key_type)
            if value is None:
                return None
        set_resources = _SET_RESOURCES.get(cls)
        if set_resources is None:  # a subclass: its own checks run
            return cls(value)  # type: ignore[call-arg]
        obj = new_object(cls)
        set_resources(obj, value)
        return obj

    def to_json(self) -> Any:
        rs = self.resources
        return {self._json_key: None if rs is None else rs.to_json()}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, (cls._json_key,))
        rs = ResourceSet.from_json(obj.get(cls._json_key), cls._key_type, cls.name)
        return cls(rs)  # type: ignore[call-arg]


@attrs.frozen
class Volumes(_ResourceSetCaveat):
    """Restricts to volumes by id (type 2)."""

    volumes: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 2
    name = "Volumes"
    _json_key = "volumes"
    _access_attr = "volume"
    _kind = "volume"


@attrs.frozen
class Apps(_ResourceSetCaveat):
    """Restricts to apps by numeric id (type 3); id ``0`` is every app."""

    apps: ResourceSet[int] | None = attrs.field(converter=int_resources)

    type_number = 3
    name = "Apps"
    aliases = ("DeprecatedApps",)
    _key_type = int
    _json_key = "apps"
    _access_attr = "app_id"
    _kind = "app"


@attrs.frozen
class FeatureSet(_ResourceSetCaveat):
    """Restricts to organization features, e.g. ``wg``, ``builder`` (type 5)."""

    features: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 5
    name = "FeatureSet"
    _json_key = "features"
    _access_attr = "feature"
    _kind = "feature"


@attrs.frozen
class Machines(_ResourceSetCaveat):
    """Restricts to Machines by id (type 7)."""

    machines: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 7
    name = "Machines"
    _json_key = "machines"
    _access_attr = "machine"
    _kind = "machine"


@attrs.frozen
class MachineFeatureSet(_ResourceSetCaveat):
    """Restricts to Machine features, e.g. ``metadata`` (type 14)."""

    features: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 14
    name = "MachineFeatureSet"
    _json_key = "features"
    _access_attr = "machine_feature"
    _kind = "machine feature"


@attrs.frozen
class Clusters(_ResourceSetCaveat):
    """Restricts to LiteFS Cloud clusters by name (type 16)."""

    clusters: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 16
    name = "Clusters"
    _json_key = "clusters"
    _access_attr = "cluster"
    _kind = "cluster"


@attrs.frozen
class AppFeatureSet(_ResourceSetCaveat):
    """Restricts to app features, e.g. ``images`` (type 28)."""

    features: ResourceSet[str] | None = attrs.field(converter=str_resources)

    type_number = 28
    name = "AppFeatureSet"
    _json_key = "features"
    _access_attr = "app_feature"
    _kind = "app feature"


@attrs.frozen
class StorageObjects(_ResourceSetCaveat):
    """Restricts to storage objects by URL prefix (type 29); matching prefixes intersect."""

    storage_objects: ResourceSet[str] | None = attrs.field(converter=prefix_resources)

    type_number = 29
    name = "StorageObjects"
    _key_type = Prefix
    _json_key = "storage_objects"
    _access_attr = "storage_object"
    _kind = "storage object"


# The setter of the one slot of each caveat of one resource set.
_SET_RESOURCES: dict[type, Callable[[Any, Any], None]] = {
    cls: slot_setters(cls, cls._json_key)[0]
    for cls in (
        Volumes,
        Apps,
        FeatureSet,
        Machines,
        MachineFeatureSet,
        Clusters,
        AppFeatureSet,
        StorageObjects,
    )
}
