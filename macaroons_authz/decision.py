"""The decision of a header, written once for the blocking and the async verifier.

Deciding is microseconds of CPU around at most two kinds of I/O: finding a
root key by KID, and asking the revocation store whether a token is
revoked. The steps here do everything but that I/O: they are a generator
that *yields* each look-up it needs (a KID, as ``bytes``: "its root key?";
token ids, as a ``tuple``: "is any revoked?") and is *sent* the answer. The
:class:`~macaroons_authz.Verifier` answers by calling its stores; the
:class:`~macaroons_authz.AsyncVerifier` by awaiting its async ones. Nothing
else differs, so the two faces cannot decide differently.

Headers with several permission tokens (``fly tokens create ssh`` emits
two; flyctl's sessions hold one per organization) are decided as Go's
bundles are: the access is allowed if any permission token that verifies
allows it. Each token is verified with the discharges that match its
tickets, as its own cache entry; the reasons of the tokens that did not
allow are kept, in header order, in the error (:class:`NoTokenVerifiedError`
or :class:`NoTokenAllowedError`).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._verification import RUN, _Run
from .access import Access
from .caveats.caveat_set import CaveatSet
from .caveats.registry import CaveatRegistry
from .errors import DecodeError, MacaroonError, UnauthorizedError, VerificationError
from .header import parse_header
from .macaroon import Macaroon
from .stores._sqlite import StoreError

if TYPE_CHECKING:
    from .cache import VerificationCache

__all__ = [
    "MAX_PERMISSION_TOKENS",
    "NoTokenAllowedError",
    "NoTokenVerifiedError",
    "TokenRefusal",
    "VerifiedToken",
]

#: The most distinct permission tokens one header may hold. Each costs a
#: revocation check and, once per KID, a key look-up: I/O, which the HMAC
#: budget does not bound. flyctl sends one per organization of a user.
MAX_PERMISSION_TOKENS = 64


@attrs.frozen
class VerifiedToken:
    """A permission token that verified: who it is, and the caveats it may be trusted for.

    Attributes:
        token_id: the token's id (its nonce UUID), for logs and revocation.
        kid: the KID of the root key it was minted with.
        caveats: the trusted caveats (the token's and its discharges').
    """

    token_id: str
    kid: bytes
    caveats: CaveatSet


@attrs.frozen
class TokenRefusal:
    """Why one permission token of a header did not allow the access.

    Attributes:
        token_id: the token's id (its nonce UUID).
        kid: the KID in its nonce.
        error: a :class:`~macaroons_authz.VerificationError` if the token
            is not authentic (forged, revoked, unknown KID, missing
            discharge), an :class:`~macaroons_authz.UnauthorizedError` if
            it is but its caveats refuse the access. Neither names a secret.
    """

    token_id: str
    kid: bytes
    error: MacaroonError

    @property
    def verified(self) -> bool:
        """Whether the token verified (and so was refused by its caveats)."""
        return isinstance(self.error, UnauthorizedError)


def _summary(refusals: Sequence[TokenRefusal]) -> str:
    return "; ".join(f"token {r.token_id}: {r.error}" for r in refusals)


class NoTokenVerifiedError(VerificationError):
    """No permission token of a header with several verified.

    Attributes:
        refusals: each permission token's reason, in header order.
    """

    def __init__(self, refusals: Sequence[TokenRefusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__(f"no permission token verified: {_summary(self.refusals)}")


class NoTokenAllowedError(UnauthorizedError):
    """Permission tokens of a header verified, but none allows the access.

    :meth:`contains` and :meth:`leaves` answer for the caveat failures of
    every verified token.

    Attributes:
        refusals: each permission token's reason, in header order, those
            that did not verify included.
    """

    default_message = "no permission token allows the access"

    def __init__(self, refusals: Sequence[TokenRefusal]) -> None:
        self.refusals = tuple(refusals)
        causes = [r.error for r in self.refusals if isinstance(r.error, UnauthorizedError)]
        super().__init__(f"{self.default_message}: {_summary(self.refusals)}", causes=causes)


# -- the look-ups the steps ask for ------------------------------------------


#: A look-up: a KID (``bytes``) asks for its root key, or ``None``; token
#: ids (a ``tuple``) ask whether any of them is revoked. Plain values: a
#: request object would cost a tenth of the steps' own overhead.
_Request = bytes | tuple[str, ...]
_Steps = Generator[_Request, Any, Any]


def store_error(store: str, exc: Exception) -> StoreError:
    """The :class:`StoreError` for a failure *exc* of *store*.

    It names the exception's type only: a driver's message may hold a
    connection string.
    """
    return StoreError(f"cannot read the {store} ({type(exc).__name__})")


@attrs.frozen(eq=False)
class Policy:
    """What a verifier decides with, besides its stores; shared by both faces."""

    location: str
    trusted_3ps: Mapping[str, Sequence[bytes]]
    registry: CaveatRegistry | None
    cache: VerificationCache | None
    revocations: bool  # whether a revocation store is consulted

    def parse(self, header: str) -> tuple[list[Macaroon], list[Macaroon]]:
        """The distinct permission tokens of *header* and its other tokens, in order.

        Tokens that do not decode are dropped, as Go does.

        Raises:
            DecodeError: the header is malformed, holds no permission token,
                or more than :data:`MAX_PERMISSION_TOKENS`.
        """
        datas = parse_header(header)
        if len(datas) == 1:
            # The common header: one token, nothing to tell apart.
            try:
                token = Macaroon.decode(datas[0], self.registry)
            except DecodeError:
                token = None
            if token is None or token.location != self.location:
                raise DecodeError("no permission token")
            return [token], []
        permissions: dict[bytes, Macaroon] = {}
        others: list[Macaroon] = []
        for data in datas:
            try:
                token = Macaroon.decode(data, self.registry)
            except DecodeError:
                continue
            if token.location != self.location:
                others.append(token)
            elif data not in permissions:
                permissions[data] = token
        if not permissions:
            raise DecodeError("no permission token")
        if len(permissions) > MAX_PERMISSION_TOKENS:
            raise DecodeError(f"more than {MAX_PERMISSION_TOKENS} permission tokens")
        return list(permissions.values()), others


#: What verifying one token gives: its caveats, and its
#: :class:`VerifiedToken` when asked for or cached (building one costs a
#: tenth of an uncached decision, which plain ``authorize`` does not need).
_Result = tuple[CaveatSet, VerifiedToken | None]


class _Several:
    """What the tokens of one header of several share: look-ups already answered, one budget.

    A KID looked up, or a token id found not revoked, is not asked again;
    all the tokens spend one HMAC budget and check a shared discharge once,
    as in :meth:`Bundle.verify <macaroons_authz.Bundle.verify>`.
    """

    __slots__ = ("keys", "not_revoked", "run")

    def __init__(self) -> None:
        self.keys: dict[bytes, bytes | None] = {}
        self.not_revoked: set[str] = set()
        # A header inside a verification run (Bundle.verify) stays in it.
        self.run = RUN.get() or _Run()


def _verify_token(
    policy: Policy,
    token: Macaroon,
    discharges: Sequence[Macaroon],
    ids: Sequence[str],
    *,
    header: str | None,
    stamp: int,
    identify: bool,
    several: _Several | None,
) -> _Steps:
    """The steps of verifying *token* with *discharges*; return its :data:`_Result`.

    *ids* are the token ids checked against the revocation store;
    *header*, if given, is remembered by the cache as leading here; *stamp*
    is the cache's, taken before any revocation check (see
    :meth:`VerificationCache.put`).
    """
    cache = policy.cache
    if policy.revocations:
        checked = None if several is None else several.not_revoked
        unchecked = tuple(ids) if checked is None else tuple(i for i in ids if i not in checked)
        if unchecked:
            if (yield unchecked):
                raise VerificationError("token revoked")
            if checked is not None:
                checked.update(unchecked)
    if cache is not None:
        key, size = cache._key(token, discharges)
        hit = cache._get(key, header=header, token_ids=ids, stamp=stamp)
        if hit is not None and hit.token is not None:
            return hit.caveats, hit.token
    kid = token._kid or b""
    if several is None:
        root_key = yield kid
    elif kid in several.keys:
        root_key = several.keys[kid]
    else:
        root_key = several.keys[kid] = yield kid
    if several is None:
        caveats = _verified(policy, token, discharges, kid, root_key)
    else:
        previous = RUN.set(several.run)
        try:
            caveats = _verified(policy, token, discharges, kid, root_key)
        finally:
            RUN.reset(previous)
    if not (identify or cache is not None):
        return caveats, None
    verified = VerifiedToken(_token_id(token), kid, caveats)
    if cache is not None:
        cache.put(key, caveats, ids, stamp=stamp, header=header, size=size, token=verified)
    return caveats, verified


def _verified(
    policy: Policy,
    token: Macaroon,
    discharges: Sequence[Macaroon],
    kid: bytes,
    root_key: bytes | None,
) -> CaveatSet:
    """The trusted caveats of *token*, the keyring having answered *root_key* for *kid*."""
    if root_key is None:
        raise VerificationError(f"unknown KID {kid.hex()}")
    return token.verify(root_key, discharges, policy.trusted_3ps)


#: Token ids of verified tokens by their nonce's KID and random bytes:
#: computing one (two SHA-1s and a UUID's formatting) costs more than a
#: cached decision, and a verifier without a cache sees the same tokens again
#: and again. Only tokens that verified enter it; it is cleared when full
#: (4,096 entries, under 2 MiB).
_VERIFIED_IDS: dict[tuple[bytes | None, bytes | None], str] = {}
_VERIFIED_IDS_MAX = 4096


def _token_id(token: Macaroon) -> str:
    """The token id of a token that verified (memoized)."""
    nonce = token.nonce
    key = (nonce.kid, nonce.rnd)
    found = _VERIFIED_IDS.get(key)
    if found is None:
        found = str(nonce.uuid)
        if len(_VERIFIED_IDS) >= _VERIFIED_IDS_MAX:
            _VERIFIED_IDS.clear()
        _VERIFIED_IDS[key] = found
    return found


def _ids(tokens: Sequence[Macaroon]) -> list[str]:
    return [str(t.nonce.uuid) for t in tokens]


def _matched(token: Macaroon, others: Sequence[Macaroon]) -> list[Macaroon]:
    """The discharges among *others* whose KID is one of *token*'s tickets, in order."""
    tickets = {t for ts in token.third_party_tickets().values() for t in ts}
    return [d for d in others if d._kid in tickets]


def decide(policy: Policy, header: str, access: Access | None, *, identify: bool) -> _Steps:
    """The steps of deciding *header*; return the :data:`_Result` of the token that decided.

    With *access* ``None``, only a header with one permission token is
    verified (several raise :class:`~macaroons_authz.DecodeError`: there is
    no one answer without an access; :func:`verify_all` gives each).
    Otherwise the first permission token, in header order, that verifies
    and allows *access* decides. With *identify*, the result holds its
    :class:`VerifiedToken`.

    A header with one permission token raises that token's own error; one
    with several raises :class:`NoTokenVerifiedError` or
    :class:`NoTokenAllowedError`. A store that cannot answer raises
    :class:`~macaroons_authz.StoreError` whatever the other tokens would do.
    """
    permissions, others = policy.parse(header)
    cache = policy.cache
    if len(permissions) == 1 and cache is None and not policy.revocations and not identify:
        # The plainest decision (one token, the keyring the only store,
        # nothing remembered or reported): _verify_token's steps, inline,
        # which spares a nested generator (a tenth of a one-caveat check).
        token = permissions[0]
        kid = token._kid or b""
        caveats = _verified(policy, token, others, kid, (yield kid))
        if access is not None:
            caveats.validate(access)
        return caveats, None
    # Taken before any revocation check: see VerificationCache.put.
    stamp = 0 if cache is None else cache.stamp()
    if len(permissions) == 1:
        token = permissions[0]
        # Every token of the header is checked for revocation, as before
        # headers of several tokens were accepted.
        ids = _ids([token, *others]) if policy.revocations or cache is not None else []
        result: _Result = yield from _verify_token(
            policy, token, others, ids, header=header, stamp=stamp, identify=identify, several=None
        )
        if access is not None:
            result[0].validate(access)
        return result
    if access is None:
        raise DecodeError(
            "multiple permission tokens: verify_all() verifies each, authorize() "
            "accepts the header if one of them allows the access"
        )
    several = _Several()
    refusals: list[TokenRefusal] = []
    for token in permissions:
        discharges = _matched(token, others)
        ids = _ids([token, *discharges])
        # Never remember this header: which token allows depends on the access.
        try:
            result = yield from _verify_token(
                policy,
                token,
                discharges,
                ids,
                header=None,
                stamp=stamp,
                identify=identify,
                several=several,
            )
            result[0].validate(access)
        except (VerificationError, UnauthorizedError) as exc:
            refusals.append(TokenRefusal(str(token.nonce.uuid), token._kid or b"", exc))
            continue
        return result
    if any(r.verified for r in refusals):
        raise NoTokenAllowedError(refusals)
    raise NoTokenVerifiedError(refusals)


def verify_all(policy: Policy, header: str) -> _Steps:
    """The steps of verifying every permission token of *header*; return those that verify.

    Raises:
        NoTokenVerifiedError: none verified, with each one's reason.
    """
    permissions, others = policy.parse(header)
    stamp = 0 if policy.cache is None else policy.cache.stamp()
    several = _Several()
    verified: list[VerifiedToken] = []
    refusals: list[TokenRefusal] = []
    for token in permissions:
        discharges = _matched(token, others)
        ids = _ids([token, *discharges])
        try:
            _, one = yield from _verify_token(
                policy,
                token,
                discharges,
                ids,
                header=None,
                stamp=stamp,
                identify=True,
                several=several,
            )
        except VerificationError as exc:
            refusals.append(TokenRefusal(str(token.nonce.uuid), token._kid or b"", exc))
            continue
        assert one is not None  # identify=True
        verified.append(one)
    if not verified:
        raise NoTokenVerifiedError(refusals)
    return verified
