"""The caveat registry: type numbers and JSON names to classes (spec section 7).

:data:`DEFAULT_REGISTRY` holds every built-in caveat and cannot be changed.
An application with caveats of its own copies it and registers them on the
copy, then passes that registry wherever tokens are decoded::

    registry = DEFAULT_REGISTRY.copy()
    registry.register(MyCaveat)
    Macaroon.decode(data, registry=registry)

No global state changes, so tests and libraries cannot step on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import attrs

from ..errors import RegistrationError
from ._base import UNREGISTERED_TYPE, Caveat, MemoEntry, UnregisteredCaveat
from ._fast import FastBuilders
from .auth import (
    ConfineGitHubOrg,
    ConfineGoogleHD,
    ConfineOrganization,
    ConfineUser,
    FlyioUserID,
    GitHubUserID,
    GoogleUserID,
    MaxValidity,
)
from .core import BindToParentToken, Caveat3P, ValidityWindow
from .flyio import (
    AllowedRoles,
    AppFeatureSet,
    Apps,
    Clusters,
    Commands,
    FeatureSet,
    FlySrc,
    FromMachineSource,
    IsMember,
    IsUser,
    MachineFeatureSet,
    Machines,
    Mutations,
    Organization,
    StorageObjects,
    Volumes,
)
from .resset import ActionCaveat, IfPresent

__all__ = [
    "CAV_MAX_USER_DEFINED",
    "CAV_MAX_USER_REGISTERABLE",
    "CAV_MIN_USER_DEFINED",
    "CAV_MIN_USER_REGISTERABLE",
    "DEFAULT_REGISTRY",
    "CaveatRegistry",
    "UnregisteredCaveat",
]

#: Types below 2**32 are reserved for Fly.io (it uses 0-31 today);
#: 2**32 to 2**48-1 are registered with the Go library by pull request;
#: 2**48 to 2**64-2 are private to an application; 2**64-1 stands for an
#: unknown JSON type name.
CAV_MIN_USER_REGISTERABLE = 2**32
CAV_MAX_USER_REGISTERABLE = 2**48 - 1
CAV_MIN_USER_DEFINED = 2**48
CAV_MAX_USER_DEFINED = UNREGISTERED_TYPE - 1

_BUILTINS: tuple[type[Caveat], ...] = (
    Organization,
    Volumes,
    Apps,
    ValidityWindow,
    FeatureSet,
    Mutations,
    Machines,
    ConfineUser,
    ConfineOrganization,
    IsUser,
    Caveat3P,
    BindToParentToken,
    IfPresent,
    MachineFeatureSet,
    FromMachineSource,
    Clusters,
    ConfineGoogleHD,
    ConfineGitHubOrg,
    MaxValidity,
    IsMember,
    FlyioUserID,
    GitHubUserID,
    GoogleUserID,
    ActionCaveat,
    Commands,
    AppFeatureSet,
    StorageObjects,
    AllowedRoles,
    FlySrc,
)


class CaveatRegistry:
    """Maps caveat type numbers and JSON names (and aliases) to classes."""

    __slots__ = ("_by_name", "_by_number", "_frozen", "fast_builders", "memo")

    def __init__(self, caveats: tuple[type[Caveat], ...] = ()) -> None:
        """A registry holding *caveats* (none by default; see :meth:`copy`)."""
        self._by_number: dict[int, type[Caveat]] = {}
        self._by_name: dict[str, type[Caveat]] = {}
        self._frozen = False
        #: Decoded caveat sets by their plain encoding (see ``macaroons_authz._decode``).
        self.memo: dict[bytes, MemoEntry] = {}
        #: Each class's ``from_canonical`` by type number, where it is sound (see _fast_builder).
        self.fast_builders: FastBuilders = {}
        for cls in caveats:
            self._add(cls)

    def __repr__(self) -> str:
        return f"<CaveatRegistry of {len(self._by_number)} caveat types>"

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._by_number.get(getattr(cls, "type_number", -1)) is cls

    def lookup(self, type_number: int) -> type[Caveat] | None:
        """The class registered for *type_number*, or ``None``."""
        return self._by_number.get(type_number)

    def lookup_name(self, name: str) -> type[Caveat] | None:
        """The class registered under the JSON name or alias *name*, or ``None``."""
        return self._by_name.get(name)

    def copy(self) -> CaveatRegistry:
        """A new, changeable registry with the same caveats."""
        new = CaveatRegistry()
        new._by_number = dict(self._by_number)
        new._by_name = dict(self._by_name)
        new.fast_builders = dict(self.fast_builders)
        return new

    def register(self, cls: type[Caveat], *, allow_reserved: bool = False) -> type[Caveat]:
        """Register an application's caveat class; returns it (usable as a decorator).

        The class must subclass :class:`~macaroons_authz.Caveat`, be an attrs
        class, and have a ``type_number`` and a ``name``, neither already
        taken. The number is from 2**32 to 2**64-2 (2**48 and up for private
        types); a number below 2**32, in Fly.io's reserved range (such as
        32, the next one Fly.io may ship), needs ``allow_reserved=True``,
        which says you know that a later Fly.io caveat may take it.

        Raises:
            RegistrationError: the registry is frozen, or the class breaks a rule.
        """
        if self._frozen:
            raise RegistrationError("this registry cannot be changed; register on a copy()")
        if not (isinstance(cls, type) and issubclass(cls, Caveat) and attrs.has(cast(type, cls))):
            raise RegistrationError("a caveat must be an attrs class subclassing Caveat")
        number = getattr(cls, "type_number", None)
        if type(number) is not int or not 0 <= number <= CAV_MAX_USER_DEFINED:
            raise RegistrationError(f"type_number must be an int from 0 to {CAV_MAX_USER_DEFINED}")
        if number < CAV_MIN_USER_REGISTERABLE and not allow_reserved:
            raise RegistrationError(
                f"caveat type {number} is in Fly.io's reserved range (below 2**32): "
                "pass allow_reserved=True to register it anyway, or use a number "
                f"from {CAV_MIN_USER_REGISTERABLE} up"
            )
        self._add(cls)
        # What decoded as unregistered before may decode differently now.
        self.memo.clear()
        return cls

    def _add(self, cls: type[Caveat]) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistrationError("a caveat needs a non-empty str name")
        names = (name, *cls.aliases)
        if cls.type_number in self._by_number:
            raise RegistrationError(f"caveat type {cls.type_number} is already registered")
        taken = [n for n in names if n in self._by_name]
        if taken:
            raise RegistrationError(f"caveat name {taken[0]!r} is already registered")
        self._by_number[cls.type_number] = cls
        for n in names:
            self._by_name[n] = cls
        build = _fast_builder(cls)
        if build is not None:
            self.fast_builders[cls.type_number] = build

    def _freeze(self) -> CaveatRegistry:
        self._frozen = True
        return self


def _fast_builder(cls: type[Caveat]) -> Callable[[Any, FastBuilders, int], Caveat | None] | None:
    """``cls.from_canonical``, unless it cannot be trusted to agree with the general path.

    It must be defined by the class that defines how *cls* is decoded and
    encoded, or by a subclass of it: a subclass that changes
    ``from_msgpack``, ``to_msgpack`` or ``packed`` without writing its own
    ``from_canonical`` decodes by the general path only.
    """

    def definer(name: str) -> type:
        return next(k for k in cls.__mro__ if name in k.__dict__)

    own = definer("from_canonical")
    if own is Caveat:
        return None
    if not all(issubclass(own, definer(n)) for n in ("from_msgpack", "to_msgpack", "packed")):
        return None
    return cls.from_canonical


#: Every built-in caveat type (0-31). Frozen: register your own on a copy.
DEFAULT_REGISTRY = CaveatRegistry(_BUILTINS)._freeze()
