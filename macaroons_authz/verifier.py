"""``Verifier``: "may this header do this?" in one call.

The verifier parses an ``Authorization`` header, picks the permission token
for its location, finds the root key by the token's KID, verifies the token
with the header's discharges, and validates accesses against the caveats it
can then trust. Nothing here reads the wall clock: time comes from the
access.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .access import Access
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .errors import DecodeError, VerificationError
from .header import parse_header
from .keyring import Keyring
from .macaroon import Macaroon

__all__ = ["FLY_PERMISSION_LOCATION", "Verifier"]

#: The location of Fly.io's permission tokens.
FLY_PERMISSION_LOCATION = "https://api.fly.io/v1"


class Verifier:
    """Verifies headers of tokens minted for one location.

    Args:
        keyring: root keys by KID (see :class:`~macaroons_authz.MemoryKeyring`).
        location: the location of the permission tokens this verifier
            accepts; other tokens in a header are discharge candidates.
        trusted_3ps: for each third-party location, the keys shared with it;
            only discharges proven genuine by one of them contribute
            attestations (identities).
        registry: the caveat registry to decode with (the default one if
            ``None``).
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        location: str = FLY_PERMISSION_LOCATION,
        trusted_3ps: Mapping[str, Sequence[bytes]] | None = None,
        registry: CaveatRegistry | None = None,
    ) -> None:
        self._keyring = keyring
        self.location = location
        self._trusted_3ps = {loc: tuple(keys) for loc, keys in (trusted_3ps or {}).items()}
        self._registry = registry

    def __repr__(self) -> str:
        return f"<Verifier location={self.location!r} trusted_3ps={sorted(self._trusted_3ps)}>"

    def split(self, header: str) -> tuple[Macaroon, list[Macaroon]]:
        """The permission token of *header* for this location, and the other tokens.

        Tokens that do not decode are dropped, as Go does.

        Raises:
            DecodeError: the header is malformed, or holds no or several
                permission tokens for this location.
        """
        permission: list[Macaroon] = []
        others: list[Macaroon] = []
        for data in parse_header(header):
            try:
                token = Macaroon.decode(data, self._registry)
            except DecodeError:
                continue
            (permission if token.location == self.location else others).append(token)
        if not permission:
            raise DecodeError("no permission token")
        if len(permission) > 1:
            raise DecodeError("multiple permission tokens")
        return permission[0], others

    def verify(self, header: str) -> CaveatSet:
        """Verify the header's permission token and its discharges.

        Returns:
            The trusted caveats, to validate accesses against.

        Raises:
            DecodeError: the header is malformed.
            VerificationError: unknown KID, bad signature, missing or bad
                discharge.
        """
        token, discharges = self.split(header)
        kid = token.nonce.kid or b""
        key = self._keyring.key_for(kid)
        if key is None:
            raise VerificationError(f"unknown KID {kid.hex()}")
        return token.verify(key, discharges, self._trusted_3ps)

    def authorize(self, header: str, access: Access) -> CaveatSet:
        """Verify the header, then allow *access* or raise why not.

        Returns:
            The trusted caveats that allowed the access.

        Raises:
            DecodeError: the header is malformed.
            VerificationError: the header is not authentic.
            UnauthorizedError: it is authentic but does not allow *access*;
                ask the error which kinds of failure it holds with
                :meth:`~macaroons_authz.UnauthorizedError.contains`.
        """
        caveats = self.verify(header)
        caveats.validate(access)
        return caveats
