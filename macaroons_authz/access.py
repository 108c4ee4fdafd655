"""Accesses: what a request wants to do (spec section 9).

An access is anything with ``now()`` (the time caveats are judged at, in
unix seconds) and ``validate()`` (a structural self-check that raises
:class:`~macaroons_authz.UnauthorizedError`). Caveats read the attributes
they need by name. :class:`FlyAccess` is Fly.io's access, ``flyio.Access``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, runtime_checkable

import attrs

from ._gojson import go_text, load_json
from .caveats._base import is_finite_time, non_finite_time
from .caveats.flyio import Role
from .caveats.resset import Action, action_letters, parse_action_letters
from .errors import (
    DecodeError,
    InvalidAccessError,
    ResourcesMutuallyExclusiveError,
    ResourceUnspecifiedError,
)

__all__ = ["MEMBER_FEATURES", "Access", "FlyAccess"]

#: Organization features a plain member may use, with the actions allowed.
MEMBER_FEATURES: dict[str, int] = {
    "wg": Action.ALL,
    "domain": Action.ALL,
    "site": Action.ALL,
    "builder": Action.ALL,
    "addon": Action.ALL,
    "checks": Action.ALL,
    "litefs-cloud": Action.ALL,
    "membership": Action.READ,
    "billing": Action.READ,
    "authentication": Action.READ,
    "deletion": Action.NONE,
    "document_signing": Action.NONE,
}

_LITEFS_CLOUD = "litefs-cloud"


@runtime_checkable
class Access(Protocol):
    """What every access provides."""

    def now(self) -> float:
        """The time (unix seconds) at which time-based caveats are judged."""
        ...

    def validate(self) -> None:
        """Raise :class:`~macaroons_authz.UnauthorizedError` if the access is malformed."""
        ...


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_argv(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("command must be a sequence of arguments, not a str")
    return tuple(str(v) for v in value)


def _finite_time(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not is_finite_time(value):
        raise non_finite_time(f"the access's {attribute.name}", value)


# (python attribute, JSON key, kind) in the order of spec 9.5.
_JSON_FIELDS = (
    ("org_id", "orgid", int),
    ("app_id", "appid", int),
    ("app_feature", "app_feature", str),
    ("feature", "feature", str),
    ("volume", "volume", str),
    ("machine", "machine", str),
    ("machine_feature", "machine_feature", str),
    ("mutation", "mutation", str),
    ("source_machine", "sourceMachine", str),
    ("source_app", "sourceApp", str),
    ("source_organization", "sourceOrganization", str),
    ("cluster", "cluster", str),
    ("command", "command", list),
    ("storage_object", "storage_object", str),
)


@attrs.frozen(kw_only=True)
class FlyAccess:
    """An access to Fly.io resources (Go's ``flyio.Access``).

    Every resource is optional; ``None`` leaves it unspecified. ``at`` is
    the time the access happens (unix seconds); it defaults to the wall
    clock when the access is made, and tests pass it explicitly. A time
    that is NaN, infinite or not a number raises
    :class:`~macaroons_authz.InvalidAccessError`.

    >>> access = FlyAccess(org_id=1, app_id=2, action=Action.READ, at=1700000000)
    >>> access.validate()
    """

    # A plain int: IntFlag arithmetic is slow on the validation hot path.
    action: int = attrs.field(default=0, converter=int)
    org_id: int | None = attrs.field(default=None, converter=_opt_int)
    app_id: int | None = attrs.field(default=None, converter=_opt_int)
    app_feature: str | None = attrs.field(default=None, converter=_opt_str)
    feature: str | None = attrs.field(default=None, converter=_opt_str)
    volume: str | None = attrs.field(default=None, converter=_opt_str)
    machine: str | None = attrs.field(default=None, converter=_opt_str)
    machine_feature: str | None = attrs.field(default=None, converter=_opt_str)
    mutation: str | None = attrs.field(default=None, converter=_opt_str)
    source_machine: str | None = attrs.field(default=None, converter=_opt_str)
    source_app: str | None = attrs.field(default=None, converter=_opt_str)
    source_organization: str | None = attrs.field(default=None, converter=_opt_str)
    cluster: str | None = attrs.field(default=None, converter=_opt_str)
    command: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_argv)
    storage_object: str | None = attrs.field(default=None, converter=_opt_str)
    at: float = attrs.field(factory=time.time, validator=_finite_time)

    def now(self) -> float:
        """The time of the access."""
        return self.at

    def validate(self) -> None:
        """Check the access names one resource, with its parents (spec 9.5).

        Raises:
            ResourceUnspecifiedError: a required parent resource is missing.
            ResourcesMutuallyExclusiveError: two resources of one level are named.
            InvalidAccessError: clusters without the ``litefs-cloud`` feature.
        """
        if self.org_id is None:
            raise ResourceUnspecifiedError(
                "unauthorized: bad data for token verification: must specify org"
            )
        # The common, well-formed access pays only for these None checks.
        if (self.feature is not None) + (self.storage_object is not None) + (
            self.app_id is not None
        ) > 1:
            _at_most_one(app=self.app_id, feature=self.feature, storage_object=self.storage_object)
        app_level = (
            (self.machine is not None) + (self.volume is not None) + (self.app_feature is not None)
        )
        if app_level > 1 or (app_level and self.app_id is None):
            _needs(
                "app",
                self.app_id,
                machine=self.machine,
                volume=self.volume,
                app_feature=self.app_feature,
            )
        if self.cluster is not None:
            if self.feature is None:
                raise ResourceUnspecifiedError(
                    "unauthorized: bad data for token verification: "
                    f"must specify the {_LITEFS_CLOUD} feature with a cluster"
                )
            if self.feature != _LITEFS_CLOUD:
                raise InvalidAccessError(
                    "unauthorized: bad data for token verification: "
                    f"clusters require the {_LITEFS_CLOUD} feature"
                )
        if self.command is not None or self.machine_feature is not None:
            _needs(
                "machine", self.machine, command=self.command, machine_feature=self.machine_feature
            )

    def permitted_roles(self) -> list[int]:
        """The least roles that may make this access (for ``AllowedRoles``)."""
        if self.feature is None:
            return [Role.MEMBER]
        allowed = MEMBER_FEATURES.get(self.feature)
        if allowed is not None and self.action & allowed == self.action:
            return [Role.MEMBER]
        return [Role.ADMIN]

    def to_json(self) -> str:
        """The JSON form, with the keys of Go's ``flyio.Access``; unset fields are omitted."""
        obj: dict[str, Any] = {}
        if self.action:
            obj["action"] = action_letters(self.action)
        for attr, key, _ in _JSON_FIELDS:
            value = getattr(self, attr)
            if value is not None:
                obj[key] = list(value) if attr == "command" else value
        return json.dumps(obj, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: str | bytes | dict[str, Any], *, now: float | None = None) -> FlyAccess:
        """Parse the JSON form (text or parsed); *now* is the access's time.

        Strings are read as Go reads them: invalid UTF-8 and lone surrogates
        become U+FFFD.

        Raises:
            DecodeError: malformed or too deeply nested JSON, unknown keys,
                unknown action letters or values of the wrong type.
            InvalidAccessError: *now* is NaN, infinite or not a number.
        """
        if isinstance(obj, (str, bytes)):
            obj = load_json(obj, "access")
        if not isinstance(obj, dict):
            raise DecodeError("access JSON must be an object")
        keys = {key: (attr, kind) for attr, key, kind in _JSON_FIELDS}
        kwargs: dict[str, Any] = {}
        for key, value in obj.items():
            if key == "action":
                # Go reads a JSON null action as no action, like the other keys.
                if value is not None and not isinstance(value, str):
                    raise DecodeError("access action must be a string of letters")
                kwargs["action"] = parse_action_letters(value or "", "access action")
                continue
            if key not in keys:
                raise DecodeError(f"unknown access key {key!r}")
            attr, kind = keys[key]
            if value is not None and not _json_kind_ok(value, kind):
                raise DecodeError(f"access {key} has the wrong type")
            if kind is str and value is not None:
                value = go_text(value)
            elif kind is list and value is not None:
                value = [go_text(v) for v in value]
            kwargs[attr] = value
        if now is not None:
            kwargs["at"] = now
        return cls(**kwargs)


def _json_kind_ok(value: Any, kind: type) -> bool:
    if kind is int:
        return type(value) is int and 0 <= value < 2**64
    if kind is list:
        return type(value) is list and all(type(v) is str for v in value)
    return type(value) is str


def _at_most_one(**resources: object) -> None:
    named = [k for k, v in resources.items() if v is not None]
    if len(named) > 1:
        raise ResourcesMutuallyExclusiveError(
            "unauthorized: bad data for token verification: resources are mutually exclusive: "
            + ", ".join(named)
        )


def _needs(parent: str, parent_value: object, **children: object) -> None:
    named = [k for k, v in children.items() if v is not None]
    if named and parent_value is None:
        raise ResourceUnspecifiedError(
            f"unauthorized: bad data for token verification: must specify {parent} with {named[0]}"
        )
    _at_most_one(**children)
