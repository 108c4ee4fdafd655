"""Caveats of the token format itself: validity windows, third parties, binding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .. import _msgpack, crypto
from .._gojson import b64
from ..crypto import KEY_SIZE, check_key
from ..errors import BadCaveatError, InvalidAccessError, UnauthorizedError
from ._base import (
    BINDING,
    THIRD_PARTY,
    Caveat,
    Registry,
    blob,
    int64,
    int64_field,
    is_finite_time,
    json_blob,
    json_int64,
    json_object,
    json_string,
    non_finite_time,
    pack_set,
    string,
    struct,
)
from ._fast import FastBuilders, new_object, slot_setters

if TYPE_CHECKING:
    from typing import Self

    from ..access import Access

__all__ = ["BindToParentToken", "Caveat3P", "ValidityWindow"]


def _utc(ts: int) -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ts)


@attrs.frozen
class ValidityWindow(Caveat):
    """The token is valid from *not_before* to *not_after* (unix seconds, inclusive).

    An instant strictly after ``not_after`` (by any fraction of a second) or
    strictly before ``not_before`` fails. The time is the access's
    ``now()``; nothing here reads the wall clock. (Type 4.)
    """

    not_before: int = attrs.field(validator=int64_field)
    not_after: int = attrs.field(validator=int64_field)

    type_number = 4
    name = "ValidityWindow"

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Fail outside the window, and for an access whose time is not finite."""
        try:  # not getattr() with a default, which costs seven attribute reads
            now = access.now
        except AttributeError:
            now = None
        if now is None:
            return InvalidAccessError(
                "unauthorized: bad data for token verification: access has no clock", caveat=self
            )
        t = now()
        # NaN is neither before nor after anything: it would pass. For a
        # float, t - t is 0.0 (false) exactly when t is finite.
        if t - t if type(t) is float else type(t) is not int and not is_finite_time(t):
            return non_finite_time("the access's time", t, self)
        if t < self.not_before:
            return UnauthorizedError(
                f"unauthorized: token not valid before {_utc(self.not_before)}", caveat=self
            )
        if t > self.not_after:
            return UnauthorizedError(
                f"unauthorized: token expired at {_utc(self.not_after)}", caveat=self
            )
        return None

    def to_msgpack(self) -> Any:
        return [self.not_before, self.not_after]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 2, cls.name)
        if fields is None:
            return cls(0, 0)
        return cls(int64(fields[0], "not_before"), int64(fields[1], "not_after"))

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is list and len(body) == 2:
            not_before, not_after = body
            if (
                type(not_before) is int
                and type(not_after) is int
                and -(2**63) <= not_before < 2**63
                and -(2**63) <= not_after < 2**63
            ):
                if cls is not ValidityWindow:
                    return cls(not_before, not_after)
                # Checked here as the validators would: build without running them.
                obj = new_object(cls)
                _set_not_before(obj, not_before)
                _set_not_after(obj, not_after)
                return obj
        return None

    def to_json(self) -> Any:
        return {"not_before": self.not_before, "not_after": self.not_after}

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("not_before", "not_after"))
        return cls(
            json_int64(obj.get("not_before"), "not_before"),
            json_int64(obj.get("not_after"), "not_after"),
        )


_set_not_before, _set_not_after = slot_setters(ValidityWindow, "not_before", "not_after")


class _VerificationOnly(Caveat):
    __slots__ = ()

    def prohibits(self, access: Access) -> UnauthorizedError | None:
        """Always an error: this caveat is consumed by verification, never validated."""
        return BadCaveatError(
            f"unauthorized: bad caveat: {self.name} is checked by verification only", caveat=self
        )


@attrs.frozen
class Caveat3P(_VerificationOnly):
    """A third-party caveat: a discharge from *location* is required (type 11).

    *ticket* is sealed for the third party and carries the discharge root
    key and the third party's own caveats; *verifier_key* is that root key
    sealed under the token's tail at the moment the caveat was added. Make
    one with :meth:`Macaroon.add_3p <macaroons_authz.Macaroon.add_3p>`.
    """

    location: str
    verifier_key: bytes | None = attrs.field(repr=False)
    ticket: bytes | None = attrs.field(repr=False)
    #: The discharge root key ``rn``; only known to the caveat's creator and
    #: never encoded. Adding the caveat seals it under the token's tail.
    discharge_key: bytes | None = attrs.field(default=None, repr=False, eq=False, kw_only=True)

    type_number = 11
    name = "3P"
    verification_role = THIRD_PARTY

    @classmethod
    def new(cls, key: bytes, location: str, *caveats: Caveat) -> Caveat3P:
        """A new third-party caveat for *location*, sealed for the third party.

        *key* is the 32-byte key shared with the third party; *caveats* are
        the third party's instructions (e.g. ``ConfineOrganization``), which
        only it can read. The same object may be added to several tokens:
        each gets its own verifier key, all share the ticket, so one
        discharge satisfies them all.
        """
        check_key(key, "third-party key", KEY_SIZE)
        rn = crypto.random_bytes(KEY_SIZE)
        inner = pack_set((c.packed() for c in caveats), len(caveats))
        ticket = crypto.seal(key, b"\x92" + _msgpack.pack(rn) + inner)
        return cls(location, None, ticket, discharge_key=rn)

    def to_msgpack(self) -> Any:
        return [self.location, self.verifier_key, self.ticket]

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        fields = struct(body, 3, cls.name)
        if fields is None:
            return cls("", None, None)
        return cls(
            string(fields[0], "3P location"),
            blob(fields[1], "3P verifier key"),
            blob(fields[2], "3P ticket"),
        )

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        if type(body) is list and len(body) == 3:
            location, verifier_key, ticket = body
            if (
                type(location) is str
                and (verifier_key is None or type(verifier_key) is bytes)
                and (ticket is None or type(ticket) is bytes)
            ):
                return cls(location, verifier_key, ticket)
        return None

    def to_json(self) -> Any:
        return {
            "Location": self.location,
            "VerifierKey": b64(self.verifier_key),
            "Ticket": b64(self.ticket),
        }

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        obj = json_object(body, cls.name, ("Location", "VerifierKey", "Ticket"))
        return cls(
            json_string(obj.get("Location"), "3P Location"),
            json_blob(obj.get("VerifierKey"), "3P VerifierKey"),
            json_blob(obj.get("Ticket"), "3P Ticket"),
        )


@attrs.frozen
class BindToParentToken(_VerificationOnly):
    """Binds a discharge to its parent token (type 12).

    *binding_id* must be a prefix of ``SHA-256`` of one of the parent's
    intermediate tails; verification checks it. Added by
    :meth:`Macaroon.bind <macaroons_authz.Macaroon.bind>`.
    """

    binding_id: bytes | None

    type_number = 12
    name = "BindToParentToken"
    verification_role = BINDING

    def to_msgpack(self) -> Any:
        return self.binding_id

    @classmethod
    def from_msgpack(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(blob(body, "BindToParentToken"))

    @classmethod
    def from_canonical(cls, body: Any, builders: FastBuilders, depth: int) -> Self | None:
        return cls(body) if body is None or type(body) is bytes else None

    def to_json(self) -> Any:
        return b64(self.binding_id)

    @classmethod
    def from_json(cls, body: Any, registry: Registry, depth: int = 0) -> Self:
        return cls(json_blob(body, "BindToParentToken"))
