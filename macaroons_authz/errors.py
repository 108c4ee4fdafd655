"""The error tree.

Catch :class:`MacaroonError` to catch everything this library raises on bad
input. Authentication failures (:class:`VerificationError`) say little, so a
verifier is no oracle for forgers; authorization failures
(:class:`UnauthorizedError` and its subclasses) say exactly which caveat
denied which part of an access. No message ever contains a key, a tail or a
whole token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "AttenuationError",
    "BadCaveatError",
    "DecodeError",
    "InvalidAccessError",
    "MacaroonError",
    "RegistrationError",
    "ResourceUnspecifiedError",
    "ResourcesMutuallyExclusiveError",
    "UnauthorizedError",
    "UnauthorizedForActionError",
    "UnauthorizedForResourceError",
    "UnauthorizedForRoleError",
    "VerificationCostError",
    "VerificationError",
]


class MacaroonError(Exception):
    """Base of every error this library raises on bad input or bad tokens."""


class DecodeError(MacaroonError, ValueError):
    """A token, header, caveat or JSON document is malformed.

    Raised for bad labels, bad base64, truncated or malformed MessagePack,
    values of the wrong type or shape, and inputs over the documented size
    limits. Also a :class:`ValueError`, so callers may catch either.
    """


class AttenuationError(MacaroonError, ValueError):
    """A caveat cannot be added to this token.

    An attestation added to a token that is not a proof, any caveat added to
    a finalized proof, or a second third-party caveat for one location.
    """


class VerificationError(MacaroonError):
    """A token is not authentic.

    Bad signature, missing or forged discharge, unknown key id, a revoked
    token, or an attestation outside a proof. The message names the reason
    in general terms and never includes key material.
    """


class VerificationCostError(VerificationError):
    """Verifying would take more work than any header within the limits needs.

    Raised before the HMAC operation that would pass
    :data:`~macaroons_authz.MAX_VERIFY_MACS`; the token is refused.
    """


class RegistrationError(MacaroonError, ValueError):
    """A caveat class cannot be registered (bad or duplicate number or name)."""


class UnauthorizedError(MacaroonError):
    """The token is authentic but does not allow the access.

    One access can fail several caveats at once; such an error holds every
    cause in :attr:`causes` and :meth:`contains` answers for each of them, as
    Go's ``errors.Is`` does for a joined error.

    Attributes:
        caveat: the caveat that denied the access, when one did.
        causes: the individual errors of a combined error (empty otherwise).
    """

    default_message = "unauthorized"

    def __init__(
        self,
        message: str | None = None,
        *,
        caveat: Any = None,
        causes: Iterable[UnauthorizedError] = (),
    ) -> None:
        self.message = self.default_message if message is None else message
        self.caveat = caveat
        self.causes: tuple[UnauthorizedError, ...] = tuple(causes)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def contains(self, cls: type[BaseException]) -> bool:
        """Whether this error, or any error it combines, is an instance of *cls*."""
        if not self.causes:
            return isinstance(self, cls)
        return any(isinstance(e, cls) for e in self.leaves()) or isinstance(self, cls)

    def leaves(self) -> Iterator[UnauthorizedError]:
        """Yield the individual errors this one combines (itself if it is one)."""
        if not self.causes:
            yield self
            return
        for cause in self.causes:
            yield from cause.leaves()

    @classmethod
    def combine(cls, errors: Iterable[UnauthorizedError]) -> UnauthorizedError | None:
        """Join errors into one: ``None`` for none, the error itself for one.

        The message of a joined error is the messages of its parts joined by
        ``"; "``, as Go's multi-errors print.
        """
        flat = [leaf for e in errors for leaf in e.leaves()]
        if not flat:
            return None
        if len(flat) == 1:
            return flat[0]
        return UnauthorizedError("; ".join(e.message for e in flat), causes=flat)


class InvalidAccessError(UnauthorizedError):
    """The access itself is malformed or lacks what a caveat needs."""

    default_message = "unauthorized: bad data for token verification"


class ResourceUnspecifiedError(InvalidAccessError):
    """The access does not name a resource that a caveat constrains.

    Inside :class:`~macaroons_authz.IfPresent` this means "not relevant".
    """

    default_message = "unauthorized: bad data for token verification: must specify"


class ResourcesMutuallyExclusiveError(InvalidAccessError):
    """The access names resources that cannot be combined."""

    default_message = (
        "unauthorized: bad data for token verification: resources are mutually exclusive"
    )


class BadCaveatError(UnauthorizedError):
    """A caveat is malformed, unregistered, or may not be validated at all."""

    default_message = "unauthorized: bad caveat"


class UnauthorizedForResourceError(UnauthorizedError):
    """The access's resource is not among those a caveat allows."""

    default_message = "unauthorized for"


class UnauthorizedForActionError(UnauthorizedError):
    """The access's action is not within what a caveat allows."""

    default_message = "unauthorized for"


class UnauthorizedForRoleError(UnauthorizedError):
    """The role the access needs is not among those a caveat allows."""

    default_message = "unauthorized for role"
