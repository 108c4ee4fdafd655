"""Authentication caveats and attestations (spec sections 8 and 9.6, package ``auth``).

The ``Confine*`` caveats and :class:`MaxValidity` sit in third-party tickets
and are checked by the authentication service against a
:class:`DischargeRequest`; any other access is invalid for them. The
attestations (:class:`FlyioUserID`, :class:`GitHubUserID`,
:class:`GoogleUserID`) are identity facts that the service adds to proof
discharges; validation skips them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import BadCaveatError, DecodeError, InvalidAccessError, UnauthorizedError
from ._base import (
    Caveat,
    Registry,
    attrs_fields,
    is_finite_time,
    json_object,
    json_string,
    json_uint,
    non_finite_time,
    string,
    struct,
    uint,
    uint64_field,
)
from ._fast import FastBuilders

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access

__all__ = [
    "ConfineGitHubOrg",
    "ConfineGoogleHD",
    "ConfineOrganization",
    "ConfineUser",
    "DischargeRequest",
    "FlyioIdentity",
    "FlyioUserID",
    "GitHubIdentity",
    "GitHubUserID",
    "GoogleIdentity",
    "GoogleUserID",
    "MaxValidity",
]


def _items(value: Iterable[Any]) -> tuple[Any, ...]:
    # A named converter: with ``converter=tuple`` mypy's attrs plugin types
    # the parameters as an unsolvable ``Iterable[_T_co]``.
    return tuple(value)


@attrs.frozen
class FlyioIdentity:
    """A verified Fly.io login: the user and the organizations they belong to."""

    user_id: int
    organization_ids: tuple[int, ...] = attrs.field(default=(), converter=_items)


@attrs.frozen
class GoogleIdentity:
    """A verified Google login: the subject id, hosted domain (``hd``) and email."""

    user_id: int
    hd: str = ""
    email: str = ""


@attrs.frozen
class GitHubIdentity:
    """A verified GitHub login: user id, login and ids of orgs with active membership."""

    user_id: int
    login: str = ""
    org_ids: tuple[int, ...] = attrs.field(default=(), converter=_items)


def _finite_time(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not is_finite_time(value):
        raise non_finite_time(f"{type(instance).__name__} {attribute.name}", value)


@attrs.frozen
class DischargeRequest:
    """What the authentication service knows of a caller (spec 9.6).

    It is the access that ticket caveats are validated against.

    Attributes:
        flyio, google, github: the caller's verified identities.
        expiry: when the discharge would expire (unix seconds).
        at: the current time (unix seconds); the wall clock by default.

    Raises:
        InvalidAccessError: *expiry* or *at* is NaN, infinite or not a number.
    """

    flyio: tuple[FlyioIdentity, ...] = attrs.field(default=(), converter=_items)
    google: tuple[GoogleIdentity, ...] = attrs.field(default=(), converter=_items)
    github: tuple[GitHubIdentity, ...] = attrs.field(default=(), converter=_items)
    expiry: float = attrs.field(default=0.0, validator=_finite_time)
    at: float = attrs.field(factory=time.time, kw_only=True, validator=_finite_time)

    def now(self) -> float:
        """The time the request is evaluated at."""
        return self.at

    def validate(self) -> None:
        """A discharge request is always well formed."""


def _request(access: object, caveat: Caveat) -> DischargeRequest | UnauthorizedError:
    if not isinstance(access, DischargeRequest):
        return InvalidAccessError(
            f"unauthorized: bad data for token verification: {caveat.name} "
            "is checked only against a discharge request",
            caveat=caveat,
        )
    return access


class _IdCaveat(Caveat):
    """A caveat whose body is ``[uint ID]`` and whose JSON is ``{"id": N}``."""

    __slots__ = ()
    id: int

    def to_msgpack(self) -> Any:
        return [self.id]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 1, cls.name)
        return cls(0 if fields is None else uint(fields[0], f"{cls.name} id"))  # type: ignore[call-arg]

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is list and len(body) == 1 and type(body[0]) is int and body[0] >= 0:
            return cls(body[0])  # type: ignore[call-arg]
        return None

    def to_json(self) -> Any:
        return {"id": self.id}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("id",))
        return cls(json_uint(obj.get("id"), f"{cls.name} id"))  # type: ignore[call-arg]


@attrs.frozen
class ConfineUser(_IdCaveat):
    """The caller must be logged in as the Fly.io user *id* (type 8)."""

    id: int

    type_number = 8
    name = "ConfineUser"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Some Fly.io identity of the request must have user id :attr:`id`."""
        req = _request(access, self)
        if isinstance(req, UnauthorizedError):
            return req
        if any(i.user_id == self.id for i in req.flyio):
            return None
        return UnauthorizedError(f"must authenticate with Fly.io account {self.id}", caveat=self)


@attrs.frozen
class ConfineOrganization(_IdCaveat):
    """The caller must be a Fly.io member of organization *id* (type 9)."""

    id: int

    type_number = 9
    name = "ConfineOrganization"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Some Fly.io identity of the request must belong to organization :attr:`id`."""
        req = _request(access, self)
        if isinstance(req, UnauthorizedError):
            return req
        if any(self.id in i.organization_ids for i in req.flyio):
            return None
        return UnauthorizedError(
            f"must authenticate with a Fly.io account with access to organization {self.id}",
            caveat=self,
        )


@attrs.frozen
class ConfineGoogleHD(Caveat):
    """The caller must log in with Google in the Workspace domain *hd* (type 19)."""

    hd: str

    type_number = 19
    name = "ConfineGoogleHD"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Some Google identity of the request must have hosted domain :attr:`hd`."""
        req = _request(access, self)
        if isinstance(req, UnauthorizedError):
            return req
        if any(i.hd == self.hd for i in req.google):
            return None
        return UnauthorizedError(
            f"must authenticate with a Google account in the {self.hd} domain", caveat=self
        )

    def to_msgpack(self) -> Any:
        return self.hd

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(string(body, "hosted domain"))

    def to_json(self) -> Any:
        return self.hd

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(json_string(body, "hosted domain"))


class _UintCaveat(Caveat):
    """A caveat whose body and JSON are one unsigned integer."""

    __slots__ = ()

    def _value(self) -> int:
        value: int = getattr(self, attrs_fields(type(self))[0].name)
        return value

    def to_msgpack(self) -> Any:
        return self._value()

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(uint(body, cls.name))  # type: ignore[call-arg]

    def to_json(self) -> Any:
        return self._value()

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(json_uint(body, cls.name))  # type: ignore[call-arg]


@attrs.frozen
class ConfineGitHubOrg(_UintCaveat):
    """The caller must log in with GitHub as a member of org *id* (type 20)."""

    id: int

    type_number = 20
    name = "ConfineGitHubOrg"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Some GitHub identity of the request must belong to org :attr:`id`."""
        req = _request(access, self)
        if isinstance(req, UnauthorizedError):
            return req
        if any(self.id in i.org_ids for i in req.github):
            return None
        return UnauthorizedError(
            f"must authenticate with a GitHub account with access to organization {self.id}",
            caveat=self,
        )


@attrs.frozen
class MaxValidity(_UintCaveat):
    """A discharge may be valid for at most *seconds* (type 21)."""

    seconds: int = attrs.field(validator=uint64_field)

    type_number = 21
    name = "MaxValidity"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """The request's expiry must be no more than :attr:`seconds` from now."""
        req = _request(access, self)
        if isinstance(req, UnauthorizedError):
            return req
        now, expiry = req.now(), req.expiry
        # A NaN on either side would make the comparison false, so pass.
        if not is_finite_time(now):
            return non_finite_time("the request's time", now, self)
        if not is_finite_time(expiry):
            return non_finite_time("the request's expiry", expiry, self)
        if expiry - now > self.seconds:
            return UnauthorizedError(
                f"unauthorized: discharges may be valid for at most {self.seconds}s", caveat=self
            )
        return None


class _Attestation(_UintCaveat):
    __slots__ = ()
    attestation = True

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Attestations are skipped by validation; checking one directly is an error."""
        return BadCaveatError(
            f"unauthorized: bad caveat: {self.name} is an attestation", caveat=self
        )


@attrs.frozen
class FlyioUserID(_Attestation):
    """Attests that the discharge's holder is Fly.io user *id* (type 23)."""

    id: int

    type_number = 23
    name = "FlyioUserID"


@attrs.frozen
class GitHubUserID(_Attestation):
    """Attests that the discharge's holder is GitHub user *id* (type 24)."""

    id: int

    type_number = 24
    name = "GitHubUserID"


#: The largest :class:`GoogleUserID`: 255 decimal digits.
MAX_GOOGLE_USER_ID = 10**255 - 1


def _google_user_id(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not (type(value) is int and 0 <= value <= MAX_GOOGLE_USER_ID):
        raise DecodeError("GoogleUserID must be an int from 0 to 10**255-1 (255 digits)")


@attrs.frozen
class GoogleUserID(_Attestation):
    """Attests that the discharge's holder is Google subject *id* (type 25).

    Google subject ids exceed 64 bits; the body is the big-endian magnitude
    in the fewest bytes (zero is the empty byte string). An id has at most
    255 decimal digits (``MAX_GOOGLE_USER_ID``, OpenID Connect's limit on
    a subject); Go takes any size, but the digits of a huge number cost
    time quadratic in its length to print, and Python refuses to print more
    than 4300 of them.
    """

    id: int = attrs.field(validator=_google_user_id)

    type_number = 25
    name = "GoogleUserID"

    def to_msgpack(self) -> Any:
        return self.id.to_bytes((self.id.bit_length() + 7) // 8, "big")

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        if body is None:
            return cls(0)
        if type(body) is str:
            body = body.encode("utf-8", "surrogateescape")
        if type(body) is not bytes:
            raise DecodeError("GoogleUserID must be bytes")
        return cls(int.from_bytes(body, "big"))

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        if body is None:
            return cls(0)
        if type(body) is not int or body < 0:
            raise DecodeError("GoogleUserID must be a non-negative integer")
        return cls(body)
