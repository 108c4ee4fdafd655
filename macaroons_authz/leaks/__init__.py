r"""Leaked-token detection and GitHub secret-scanning alerts.

Every public name of the subpackage's modules is importable from
``macaroons_authz.leaks`` (the older ones from :mod:`macaroons_authz` too):

* :mod:`~macaroons_authz.leaks.scanner`: :func:`find_tokens` searches a
  string for Fly.io token strings (spec section 5) and yields a
  :class:`Finding` for each: where it stood, under which label and in what
  context, whether it is a real token, and a :class:`TokenId` that names the
  token without revealing it. A finding never holds the token text, so
  printing or logging one is safe; :func:`extract_tokens` is the one,
  explicit, way to get the token strings themselves (to revoke them).
* :mod:`~macaroons_authz.leaks.decoders`: the spellings a token takes in
  text (escapes, joined pieces, base64-wrapped values).
* :mod:`~macaroons_authz.leaks.files`: :func:`scan_paths` does the same
  for files and directory trees (chosen by
  :mod:`~macaroons_authz.leaks.selection`: ``.gitignore``, git's file list,
  excludes) and :func:`scan_stream` for standard input, in bounded memory.
* :mod:`~macaroons_authz.leaks.git`: :func:`scan_staged` and
  :func:`scan_history` read a repository's index and history through git.
* :mod:`~macaroons_authz.leaks.sarif` and
  :mod:`~macaroons_authz.leaks.baseline`: SARIF output and baselines of
  accepted findings, for CI.
* :mod:`~macaroons_authz.leaks.redaction`: :func:`redact` and
  :func:`redact_tokens` take tokens out of a message, and
  :class:`RedactingFilter` out of log records.
* :mod:`~macaroons_authz.leaks.github`: GitHub's secret-scanning partner
  program. :func:`verify_github_alert` checks the ECDSA signature GitHub
  puts on an alert and parses it; :func:`classify_github_alert` decides
  which reported tokens are real (true positives) under the caller's keys,
  optionally revokes them, and builds the feedback GitHub accepts;
  :func:`handle_github_alert` does both.

What counts as a token
----------------------

A *candidate* is a label (``fm2_``, ``fm1r_``, ``fm1a_`` or ``fo1_``)
followed by token characters. Labels are found with one compiled regular
expression; everything else is done per candidate, so the cost of a scan is
that of the label search plus a little per candidate. A candidate may start
anywhere (a token glued to an identifier is still leaked) and has no length
limit short of :data:`MAX_CANDIDATE_CHARS`.

Each candidate gets a :attr:`Finding.kind`:

``"token"``
    A macaroon label whose payload decodes as base64 and then parses as a
    token (:meth:`Macaroon.decode <macaroons_authz.Macaroon.decode>`):
    structurally valid. Nothing checks its signature, which needs the root
    key; :func:`classify_github_alert` does that for callers that have it.
``"opaque"``
    A ``fo1_`` token: a Fly.io OAuth token, which is not a macaroon and
    cannot be checked offline. It is reported when it has the shape public
    scanners use for it (``fo1_`` and exactly 43 base64url characters) and
    does not look like a placeholder. Being unverifiable, it is kept apart
    from both real macaroons and malformed ones.
``"malformed"``
    Looks like a token (at least 32 payload characters, at least 12 of them
    distinct) but does not parse: random base64 after a label, a truncated
    or damaged token, an ``fo1_`` string of the wrong length. Reported so a
    damaged leak is not missed, and always kept apart from real tokens.

Shorter or low-variety candidates, such as the placeholders ``fm2_xxx``,
``fm2_...``, ``FlyV1 fm2_<token>`` or ``fm2_${TOKEN}``, are not reported.

Escaped and split tokens
------------------------

The payload may be written with these escapes, which are undone before
decoding (the token id is of the unescaped token string):

* JSON: ``\/`` for ``/``, and ``\u002b``, ``\u002f``, ``\u003d`` (any case)
  for ``+``, ``/``, ``=``;
* URLs: ``%2B``, ``%2F``, ``%3D`` (any case);
* HTML: ``&#43;``, ``&#47;``, ``&#61;`` and ``&#x2B;``, ``&#x2F;``,
  ``&#x3D;`` (any case);
* a backslash immediately followed by a line break (C, shell and Python
  line continuation).

A token split into adjacent string literals is joined when the piece
before the split is not already a complete token: a closing quote (``"`` or
``'``), then optional spaces or tabs with at most one line break, optionally
one ``+`` or ``.`` operator or a backslash line continuation (again with
spaces and one line break around it), then an opening quote of the same
kind. This covers Python and C implicit concatenation, ``+``-concatenation
in JavaScript, Java, Go and Python, PHP's ``.``, and shell continuation.
After them, a token hard-wrapped over several lines (Markdown, a YAML
folded scalar, a Windows ``^`` or shell ``\`` continuation, the next line
indented or not) is joined, but only if the join is a token. Joins are
matched as one chain each, in time linear in their length; the result is
the shortest join that is a token.

A base64 value whose text starts with a label or with ``FlyV1`` (a
Kubernetes Secret's ``data:``, say) is decoded and its text scanned, one
level deep; its findings point at the value. Other encodings (``\u``
escapes of letters, tokens split by anything else) are not undone.

Context
-------

:attr:`Finding.context` is ``"header"`` when the token follows a ``FlyV1``
or ``Bearer`` scheme (any case), directly or as a later member of the
comma-separated list that follows it; ``"bundle"`` when it is a member of a
comma-separated list of token strings (commas optionally followed by
spaces) with no scheme in front; ``"bare"`` otherwise.

Positions
---------

Lines and columns are 1-based and point at the first character of the
label. Lines are ended by ``\n`` (so ``\r\n`` files count correctly; a lone
``\r`` does not end a line). Columns count characters (code points) of the
text; files are read as UTF-8 with undecodable bytes counted one character
each (or as UTF-16, see :func:`scan_paths`).
"""

from .baseline import Baseline, BaselineError
from .files import DEFAULT_CHUNK_SIZE, ScanStats, scan_paths, scan_stream
from .git import BlobFinding, GitError, scan_history, scan_staged
from .github import (
    GITHUB_KEY_IDENTIFIER_HEADER,
    GITHUB_SIGNATURE_HEADER,
    AlertVerificationError,
    GitHubFeedback,
    GitHubPublicKeys,
    GitHubTokenMatch,
    classify_github_alert,
    handle_github_alert,
    verify_github_alert,
)
from .redaction import REDACTED as REDACTED
from .redaction import RedactingFilter, redact, redact_tokens
from .sarif import to_sarif
from .scanner import (
    ALLOW_MARKER,
    MAX_CANDIDATE_CHARS,
    MAX_MALFORMED,
    Finding,
    TokenId,
    extract_tokens,
    find_tokens,
)
from .scanner import Context as Context
from .scanner import Kind as Kind

# The names of the single module this package was (REDACTED, Context and Kind
# were importable but not in __all__, and still are), and the new ones.
__all__ = [
    "ALLOW_MARKER",
    "Baseline",
    "BaselineError",
    "BlobFinding",
    "DEFAULT_CHUNK_SIZE",
    "GitError",
    "RedactingFilter",
    "GITHUB_KEY_IDENTIFIER_HEADER",
    "GITHUB_SIGNATURE_HEADER",
    "MAX_CANDIDATE_CHARS",
    "MAX_MALFORMED",
    "AlertVerificationError",
    "Finding",
    "GitHubFeedback",
    "GitHubPublicKeys",
    "GitHubTokenMatch",
    "ScanStats",
    "TokenId",
    "classify_github_alert",
    "extract_tokens",
    "find_tokens",
    "handle_github_alert",
    "redact",
    "redact_tokens",
    "scan_history",
    "scan_paths",
    "scan_staged",
    "scan_stream",
    "to_sarif",
    "verify_github_alert",
]
