"""Fly.io's resource caveats (spec sections 7.2 and 8, package ``flyio``).

The caveats of one resource set (``Apps``, ``Machines``, ...) are in
:mod:`~macaroons_authz.caveats.fly_resources` and re-exported here.

Each check reads the access's attributes by name (``org_id``, ``app_id``,
``machine``, ...; see :class:`~macaroons_authz.FlyAccess`). An access that
lacks an attribute a caveat needs is an invalid access; one that has it set
to ``None`` leaves that resource unspecified.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import (
    DecodeError,
    InvalidAccessError,
    UnauthorizedError,
    UnauthorizedForResourceError,
    UnauthorizedForRoleError,
)
from ._base import (
    Caveat,
    Registry,
    json_object,
    json_string,
    json_string_list,
    json_uint,
    opt_tuple,
    string,
    string_list,
    struct,
    uint,
)
from ._fast import FastBuilders, new_object, slot_setters
from .fly_resources import (
    AppFeatureSet,
    Apps,
    Clusters,
    FeatureSet,
    MachineFeatureSet,
    Machines,
    StorageObjects,
    Volumes,
)
from .resset import (
    _attr,
    _json_action,
    _msgpack_action,
    _unspecified,
    access_action,
    action_error,
    action_letters,
)

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access

__all__ = [
    "AllowedRoles",
    "AppFeatureSet",
    "Apps",
    "Clusters",
    "Command",
    "Commands",
    "FeatureSet",
    "FlySrc",
    "FromMachineSource",
    "IsMember",
    "IsUser",
    "MachineFeatureSet",
    "Machines",
    "Mutations",
    "Organization",
    "Role",
    "StorageObjects",
    "Volumes",
]


class Role(enum.IntFlag, boundary=enum.KEEP):
    """Organization roles for :class:`AllowedRoles` (a 32-bit mask)."""

    MEMBER = 0x1
    BILLING_MANAGER = 0x2
    ADMIN = 0xFFFFFFFF

    @property
    def label(self) -> str:
        """Fly's name of the role mask, e.g. ``"admin"`` or ``"billing_manager+member"``."""
        if self == Role.ADMIN:
            return "admin"
        if not self:
            return "none"
        named = [(name, bit) for name, bit in _ROLE_NAMES if self & bit == bit]
        if sum(bit for _, bit in named) != self:
            # Some bits name no role; Go's Role.String shows the mask so.
            return f"invalid({int(self)})"
        return "+".join(name for name, _ in named)

    @classmethod
    def from_label(cls, label: str) -> Role:
        """Parse :attr:`label`; ``ValueError`` on an unknown name."""
        if label == "admin":
            return cls.ADMIN
        if label == "none":
            return cls(0)
        mask = 0
        for part in label.split("+"):
            bits = dict(_ROLE_NAMES).get(part)
            if bits is None:
                raise ValueError(f"unknown role {part!r}")
            mask |= bits
        return cls(mask)


_ROLE_NAMES = (("billing_manager", 0x2), ("member", 0x1))


@attrs.frozen
class Organization(Caveat):
    """Restricts to one organization and an action mask (type 0).

    ``id == 0`` matches any organization.
    """

    id: int
    mask: int

    type_number = 0
    name = "Organization"
    aliases = ("DeprecatedOrganization",)

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The access's organization must be :attr:`id` and its action within :attr:`mask`."""
        try:
            org = access.org_id  # type: ignore[attr-defined]
        except AttributeError:
            missing: UnauthorizedError = _attr(access, "org_id", self)
            return missing
        if org is None:
            return _unspecified(self, "an org")
        if self.id != 0 and org != self.id:
            return UnauthorizedForResourceError(f"unauthorized for org {org}", caveat=self)
        try:  # not getattr() with a default, which costs seven attribute reads
            action = access.action  # type: ignore[attr-defined]
        except AttributeError:
            action = None
        if type(action) is not int:  # the general check, for unusual accesses
            action = access_action(access, self)
            if isinstance(action, UnauthorizedError):
                return action
        if action & self.mask != action:
            return action_error(self, action, self.mask, f"org {org}")
        return None

    def to_msgpack(self) -> Any:
        return [self.id, self.mask]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 2, cls.name)
        if fields is None:
            return cls(0, 0)
        return cls(uint(fields[0], "org id"), _msgpack_action(fields[1], "org mask"))

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is list and len(body) == 2:
            org, mask = body
            # MessagePack holds no int above 2**64-1.
            if type(org) is int and org >= 0 and type(mask) is int and 0 <= mask <= 0xFFFF:
                if cls is not Organization:
                    return cls(org, mask)
                obj = new_object(cls)
                _set_org_id(obj, org)
                _set_org_mask(obj, mask)
                return obj
        return None

    def to_json(self) -> Any:
        return {"id": self.id, "mask": action_letters(self.mask)}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("id", "mask"))
        return cls(json_uint(obj.get("id"), "org id"), _json_action(obj.get("mask"), "org mask"))


_set_org_id, _set_org_mask = slot_setters(Organization, "id", "mask")


@attrs.frozen
class Mutations(Caveat):
    """Restricts to GraphQL mutations by name (type 6)."""

    mutations: tuple[str, ...] | None = attrs.field(converter=opt_tuple)

    type_number = 6
    name = "Mutations"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The access's mutation must be one of :attr:`mutations`."""
        mutation = _attr(access, "mutation", self)
        if isinstance(mutation, UnauthorizedError):
            return mutation
        if mutation is None:
            return _unspecified(self, "a mutation")
        if mutation not in (self.mutations or ()):
            return UnauthorizedForResourceError(
                f"unauthorized for mutation {mutation}", caveat=self
            )
        return None

    def to_msgpack(self) -> Any:
        return [None if self.mutations is None else list(self.mutations)]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 1, cls.name)
        return cls(None if fields is None else string_list(fields[0], "mutations"))

    def to_json(self) -> Any:
        return {"mutations": None if self.mutations is None else list(self.mutations)}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("mutations",))
        return cls(json_string_list(obj.get("mutations"), "mutations"))


@attrs.frozen
class IsUser(Caveat):
    """Names the user a token was issued to (type 10, deprecated); never restricts."""

    id: int

    type_number = 10
    name = "IsUser"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Never an error: this caveat is metadata."""
        return None

    def to_msgpack(self) -> Any:
        return [self.id]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 1, cls.name)
        return cls(0 if fields is None else uint(fields[0], "user id"))

    def to_json(self) -> Any:
        return {"uint64": self.id}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("uint64",))
        return cls(json_uint(obj.get("uint64"), "user id"))


@attrs.frozen
class FromMachineSource(Caveat):
    """The request must come from the Machine *id* (type 15)."""

    id: str

    type_number = 15
    name = "FromMachineSource"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The access's ``source_machine`` must be present and equal :attr:`id`."""
        source = _attr(access, "source_machine", self)
        if isinstance(source, UnauthorizedError):
            return source
        if source is None:
            return InvalidAccessError(
                "unauthorized: bad data for token verification: must specify a source machine",
                caveat=self,
            )
        if source != self.id:
            # Go wraps the plain ErrUnauthorized here, not ErrUnauthorizedForResource.
            return UnauthorizedError(
                f"unauthorized: unauthorized source, expected from machine {self.id}, "
                f"but got {source}",
                caveat=self,
            )
        return None

    def to_msgpack(self) -> Any:
        return [self.id]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 1, cls.name)
        return cls("" if fields is None else string(fields[0], "machine id"))

    def to_json(self) -> Any:
        return {"id": self.id}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("id",))
        return cls(json_string(obj.get("id"), "machine id"))


@attrs.frozen
class AllowedRoles(Caveat):
    """The access must need no more than the roles in *roles* (type 30).

    Passes if some role the access permits, ``p``, satisfies
    ``roles & p == p``. The access supplies its permitted roles through a
    ``permitted_roles()`` method.
    """

    roles: int

    type_number = 30
    name = "AllowedRoles"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """See the class docstring."""
        permitted = getattr(access, "permitted_roles", None)
        if permitted is None:
            return InvalidAccessError(
                f"unauthorized: bad data for token verification: {self.name} needs roles",
                caveat=self,
            )
        for role in permitted():
            if self.roles & role == role:
                return None
        return UnauthorizedForRoleError(
            f"unauthorized for role: token allows {Role(self.roles).label}", caveat=self
        )

    def to_msgpack(self) -> Any:
        return self.roles

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(uint(body, "roles", 0xFFFFFFFF))

    def to_json(self) -> Any:
        return self.roles

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(json_uint(body, "roles", 0xFFFFFFFF))


# What IsMember checks; its prohibits() makes a new error on every call.
_MEMBER_ONLY = AllowedRoles(Role.MEMBER)


@attrs.frozen
class IsMember(Caveat):
    """The access must be one a plain member may make (type 22); ``AllowedRoles(MEMBER)``."""

    type_number = 22
    name = "IsMember"
    aliases = ("NoAdminFeatures",)

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """As :class:`AllowedRoles` with only the member role."""
        err = _MEMBER_ONLY.prohibits(access)
        if err is not None:
            err.caveat = self
        return err

    def to_msgpack(self) -> Any:
        return []

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        struct(body, 0, cls.name)
        return cls()

    def to_json(self) -> Any:
        return {}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        json_object(body, cls.name, ())
        return cls()


@attrs.frozen
class FlySrc(Caveat):
    """The request must come from this organization, app and Machine (type 31).

    Empty fields are wildcards.
    """

    organization: str = ""
    app: str = ""
    instance: str = ""

    type_number = 31
    name = "FlySrc"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Each non-empty field must equal the access's source of that kind."""
        for want, attr in (
            (self.organization, "source_organization"),
            (self.app, "source_app"),
            (self.instance, "source_machine"),
        ):
            if not want:
                continue
            have = _attr(access, attr, self)
            if isinstance(have, UnauthorizedError):
                return have
            if have is None:
                return InvalidAccessError(
                    f"unauthorized: bad data for token verification: must specify {attr}",
                    caveat=self,
                )
            if have != want:
                return UnauthorizedError(f"unauthorized: {attr} {have} not allowed", caveat=self)
        return None

    def to_msgpack(self) -> Any:
        return [self.organization, self.app, self.instance]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 3, cls.name)
        if fields is None:
            return cls()
        return cls(*(string(f, "FlySrc field") for f in fields))

    def to_json(self) -> Any:
        return {"organization": self.organization, "app": self.app, "instance": self.instance}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("organization", "app", "instance"))
        return cls(*(json_string(obj.get(k), k) for k in ("organization", "app", "instance")))


@attrs.frozen
class Command:
    """One allowed command: *args* is a prefix of the argv, or all of it if *exact*."""

    args: tuple[str, ...] | None = attrs.field(converter=opt_tuple)
    exact: bool = False

    def allows(self, argv: tuple[str, ...] | list[str]) -> bool:
        """Whether this entry allows *argv*."""
        args = self.args or ()
        if self.exact and len(argv) != len(args):
            return False
        return len(argv) >= len(args) and tuple(argv[: len(args)]) == args


@attrs.frozen
class Commands(Caveat):
    """Restricts the commands that may be run on a Machine (type 27).

    An empty list allows nothing; an entry with no args that is not exact
    allows any command.
    """

    commands: tuple[Command, ...] | None = attrs.field(converter=opt_tuple)

    type_number = 27
    name = "Commands"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Some entry must allow the access's ``command``."""
        argv = _attr(access, "command", self)
        if isinstance(argv, UnauthorizedError):
            return argv
        if argv is None:
            return _unspecified(self, "a command")
        for command in self.commands or ():
            if command.allows(argv):
                return None
        return UnauthorizedForResourceError(f"unauthorized for command {list(argv)}", caveat=self)

    def to_msgpack(self) -> Any:
        if self.commands is None:
            return None
        return [[None if c.args is None else list(c.args), c.exact] for c in self.commands]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        if body is None:
            return cls(None)
        if type(body) is not list:
            raise DecodeError("Commands body must be an array")
        commands = []
        for entry in body:
            fields = struct(entry, 2, "command")
            if fields is None:
                commands.append(Command(None))
                continue
            exact = fields[1]
            if type(exact) is not bool:
                raise DecodeError("command exact flag must be a bool")
            commands.append(Command(string_list(fields[0], "command args"), exact))
        return cls(commands)

    def to_json(self) -> Any:
        if self.commands is None:
            return None
        out = []
        for c in self.commands:
            entry: dict[str, Any] = {"args": None if c.args is None else list(c.args)}
            if c.exact:
                entry["exact"] = True
            out.append(entry)
        return out

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        if body is None:
            return cls(None)
        if type(body) is not list:
            raise DecodeError("Commands JSON must be an array")
        commands = []
        for entry in body:
            obj = json_object(entry, "command", ("args", "exact"))
            exact = obj.get("exact", False)
            if type(exact) is not bool:
                raise DecodeError("command exact must be a boolean")
            commands.append(Command(json_string_list(obj.get("args"), "command args"), exact))
        return cls(commands)
