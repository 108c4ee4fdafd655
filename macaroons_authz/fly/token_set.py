"""``TokenSet``: a user's Fly.io tokens, macaroons and OAuth tokens apart.

The equivalent of fly-go's ``tokens.Tokens``. A token set holds the
macaroons (``fm2_``/``fm1r_``/``fm1a_``: permission tokens and their
discharges) and the other tokens (Fly.io OAuth ``fo1_`` tokens) of a token
string such as ``fly auth token`` prints or ``config.yml`` stores. It makes
the headers Fly.io's services take, reads when its tokens expire (from
their *unverified* caveats: only the issuer can verify them), and prunes
expired tokens and discharges nothing needs.

It is an immutable value: :meth:`TokenSet.prune` returns a new set. Its
repr and str name counts, never a token.

>>> ts = TokenSet.parse("FlyV1 fm2_AAAA,fo1_secret")
>>> ts
<TokenSet macaroons=1 oauth=1>
>>> ts.header()
'FlyV1 fm2_AAAA'
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ..caveats.core import Caveat3P, ValidityWindow
from ..errors import DecodeError
from ..header import MACAROON_LABELS, decode_token, split_header, trim_space
from ..macaroon import Macaroon
from ..thirdparty.bundle import Bundle
from .locations import AUTH_LOCATIONS, LOCATION_PERMISSION

if TYPE_CHECKING:
    from .discharges import Discharger, RefreshResult

__all__ = ["DEFAULT_ADVANCE_PRUNE", "TokenSet", "unverified_expiration"]

#: How long before it expires an authentication discharge is pruned (fly-go's default).
DEFAULT_ADVANCE_PRUNE = 60.0


def unverified_expiration(token: Macaroon) -> int | None:
    """The earliest ``not_after`` (unix seconds) of *token*'s own validity windows.

    Read from :attr:`Macaroon.unsafe_caveats
    <macaroons_authz.Macaroon.unsafe_caveats>`, windows inside ``IfPresent``
    included, as Go's ``Macaroon.Expiration`` does: the token is not
    verified, so this says when it stops being worth sending, never that it
    is valid until then. ``None`` when it has no window (Go's far-future
    time).
    """
    windows = token.unsafe_caveats.of_type(ValidityWindow)
    return min((w.not_after for w in windows), default=None)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _is_macaroon(piece: str) -> bool:
    label, sep, _ = piece.partition("_")
    return bool(sep) and label in MACAROON_LABELS


def _decoded(piece: str) -> Macaroon | None:
    try:
        return Macaroon.decode(decode_token(piece))
    except DecodeError:
        return None


@attrs.frozen(repr=False)
class TokenSet:
    """A user's Fly.io tokens.

    Attributes:
        macaroons: the macaroon token strings, in order.
        oauth: the other token strings (``fo1_`` OAuth tokens), in order.
        from_file: the config file the tokens came from, if any.
    """

    macaroons: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    oauth: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    from_file: Path | None = None

    @classmethod
    def parse(cls, text: str, *, from_file: Path | None = None) -> TokenSet:
        """Split a token string: ``FlyV1``/``Bearer`` scheme optional, tokens comma-separated.

        Each piece is trimmed; empty pieces are dropped (fly-go keeps an
        empty "user token" for an empty string). Pieces labelled
        ``fm2``/``fm1r``/``fm1a`` are macaroons, all others OAuth tokens, as
        fly-go sorts them; nothing is decoded here.

        Raises:
            DecodeError: the text is over the header size limits.
        """
        macaroons: list[str] = []
        oauth: list[str] = []
        for piece in split_header(text):
            piece = trim_space(piece)
            if piece:
                (macaroons if _is_macaroon(piece) else oauth).append(piece)
        return cls(macaroons, oauth, from_file)

    def __repr__(self) -> str:
        source = f" from_file={str(self.from_file)!r}" if self.from_file else ""
        return f"<TokenSet macaroons={len(self.macaroons)} oauth={len(self.oauth)}{source}>"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self.macaroons or self.oauth)

    # -- subsets and additions -------------------------------------------

    def macaroons_only(self) -> TokenSet:
        """A copy without the OAuth tokens."""
        return attrs.evolve(self, oauth=())

    def oauth_only(self) -> TokenSet:
        """A copy without the macaroons."""
        return attrs.evolve(self, macaroons=())

    def with_tokens(self, *tokens: str) -> TokenSet:
        """A copy with *tokens* (token strings, or headers) added after its own."""
        more = [TokenSet.parse(t) for t in tokens]
        return attrs.evolve(
            self,
            macaroons=self.macaroons + tuple(m for s in more for m in s.macaroons),
            oauth=self.oauth + tuple(o for s in more for o in s.oauth),
        )

    # -- headers ---------------------------------------------------------

    def text(self, *, include_oauth: bool = True) -> str:
        """The tokens comma-joined, without a scheme (what ``config.yml`` stores).

        Without *include_oauth*, the macaroons, or the OAuth tokens if there
        is no macaroon (fly-go's ``Flaps()``).
        """
        if include_oauth:
            return ",".join(self.macaroons + self.oauth)
        return ",".join(self.macaroons or self.oauth)

    def header(self, *, include_oauth: bool = False) -> str:
        """The ``Authorization`` header for Fly.io's APIs.

        ``FlyV1`` and the macaroons when there are any, else ``Bearer`` and
        the OAuth tokens (fly-go's ``FlapsHeader``). With *include_oauth*,
        both kinds together, as only Fly.io's GraphQL API takes them
        (``GraphQLHeader``).

        Raises:
            ValueError: the set is empty.
        """
        if not self:
            raise ValueError("no tokens to make a header of")
        scheme = "FlyV1" if self.macaroons else "Bearer"
        return f"{scheme} {self.text(include_oauth=include_oauth)}"

    def bearer_header(self) -> str:
        """``Bearer`` and the tokens :meth:`header` would send, for services that want it.

        Raises:
            ValueError: the set is empty.
        """
        if not self:
            raise ValueError("no tokens to make a header of")
        return f"Bearer {self.text(include_oauth=False)}"

    def bundle(self, location: str = LOCATION_PERMISSION) -> Bundle:
        """The macaroons as a :class:`~macaroons_authz.Bundle` for *location*.

        Raises:
            ValueError: the set holds no macaroon.
        """
        if not self.macaroons:
            raise ValueError("no macaroons to make a bundle of")
        return Bundle.parse(",".join(self.macaroons), location)

    # -- expiry ----------------------------------------------------------

    def unverified_expiration(self) -> int | None:
        """The earliest :func:`unverified_expiration` of its macaroons; ``None`` if none expires.

        Discharges included: the set needs attention by then. Unverified:
        see :func:`unverified_expiration`.
        """
        ends = []
        for piece in self.macaroons:
            token = _decoded(piece)
            end = None if token is None else unverified_expiration(token)
            if end is not None:
                ends.append(end)
        return min(ends, default=None)

    def prune(self, now: float, *, advance: float = DEFAULT_ADVANCE_PRUNE) -> TokenSet:
        """A set without the macaroons that are no use any more (fly-go's ``pruneBadMacaroons``).

        Dropped: macaroons that do not decode; macaroons past their
        :func:`unverified_expiration` at *now*; discharges whose ticket no
        kept permission token (location :data:`LOCATION_PERMISSION`) holds;
        and discharges from Fly.io's authentication service that expire
        within *advance* seconds of *now*, so they are fetched again before
        requests fail. OAuth tokens are kept.

        Args:
            now: the current time, unix seconds.
            advance: seconds of warning for authentication discharges.
        """
        decoded: list[tuple[str, Macaroon]] = []
        tickets: set[bytes] = set()
        for piece in self.macaroons:
            token = _decoded(piece)
            if token is None or _expired(token, now):
                continue
            decoded.append((piece, token))
            if token.location == LOCATION_PERMISSION:
                caveats = token.unsafe_caveats.of_type(Caveat3P)
                tickets.update(c.ticket for c in caveats if c.ticket is not None)
        kept = [piece for piece, token in decoded if _keep(token, tickets, now + advance)]
        return attrs.evolve(self, macaroons=kept)

    def refresh(self, now: float, *, discharger: Discharger | None = None) -> RefreshResult:
        """Prune, and fetch the authentication discharges missing or due (fly-go's ``Update``).

        :meth:`Discharger.refresh <macaroons_authz.fly.Discharger.refresh>`
        with *discharger*, or a default one; the new set is the result's
        ``tokens``. This sends the set's OAuth tokens to Fly.io's
        authentication service.
        """
        from .discharges import Discharger  # discharges imports this module

        return (discharger or Discharger()).refresh(self, now=now)


def _expired(token: Macaroon, at: float) -> bool:
    end = unverified_expiration(token)
    return end is not None and at > end


def _keep(token: Macaroon, tickets: set[bytes], soon: float) -> bool:
    if token.location == LOCATION_PERMISSION:
        return True
    if token.nonce.kid is None or token.nonce.kid not in tickets:
        return False
    return not (token.location in AUTH_LOCATIONS and _expired(token, soon))
