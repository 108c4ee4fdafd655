"""Findings as SARIF 2.1.0, the format GitHub code scanning uploads: :func:`to_sarif`."""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

from .scanner import Finding

__all__ = ["SARIF_SCHEMA", "to_sarif"]

#: The schema a SARIF log written by :func:`to_sarif` names (and follows).
SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
_FINGERPRINT_KEY = "macaroonsAuthzToken/v1"
_HELP = "https://github.com/macaroons-authz/macaroons_authz/blob/main/docs/guides/leaked-tokens.rst"

# One rule per kind of finding: (id, name, level, security-severity, description).
_RULES: Final = {
    "token": (
        "MA001",
        "LeakedFlyMacaroon",
        "error",
        "9.0",
        "A Fly.io macaroon token (fm2_, fm1r_ or fm1a_) that parses: a bearer credential "
        "anyone who reads it can use until it expires. Revoke it, then remove it.",
    ),
    "opaque": (
        "MA002",
        "LeakedFlyOAuthToken",
        "error",
        "9.0",
        "A Fly.io OAuth token (fo1_): a live credential that cannot be checked offline. "
        "Revoke it, then remove it.",
    ),
    "malformed": (
        "MA003",
        "MalformedFlyToken",
        "warning",
        "5.0",
        "Looks like a Fly.io token but does not parse: a damaged or truncated token, worth a look.",
    ),
}


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "id": rule_id,
            "name": name,
            "shortDescription": {"text": f"{kind} finding of macaroons-authz scan"},
            "fullDescription": {"text": text},
            "helpUri": _HELP,
            "help": {"text": text},
            "defaultConfiguration": {"level": level},
            "properties": {"tags": ["security", "secret"], "security-severity": severity},
        }
        for kind, (rule_id, name, level, severity, text) in _RULES.items()
    ]


def _uri(path: str | None, base: str | None) -> str:
    """*path* as a URI reference relative to *base* where it is inside it."""
    if path is None:
        return "<text>"
    if base is not None and os.path.isabs(path):
        rel = os.path.relpath(path, base)
        if not rel.startswith(os.pardir):
            path = rel
    path = os.path.normpath(path)  # "./a.py" is "a.py"
    return urllib.parse.quote(path.replace(os.sep, "/"), safe="/")


def _fingerprint(finding: Finding) -> str:
    """A stable id for the result: the token's fingerprint, never the token."""
    if finding.token_id.fingerprint is not None:
        return finding.token_id.fingerprint
    # An oversized candidate has none: its place stands in for it.
    where = f"{finding.kind}:{finding.path}:{finding.line}:{finding.column}"
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _result(finding: Finding, base: str | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    rule_id, _, level, _, _ = _RULES[finding.kind]
    tid = finding.token_id
    ident = f"token id {tid.uuid}, " if tid.uuid else ""
    message = (
        f"{finding.kind} {finding.label} ({finding.context}): {ident}"
        f"fingerprint {_fingerprint(finding)}"
    )
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": list(_RULES).index(finding.kind),
        "level": level,
        "message": {"text": message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(finding.path, base), "uriBaseId": "SRCROOT"},
                    "region": {"startLine": finding.line, "startColumn": finding.column},
                }
            }
        ],
        "partialFingerprints": {_FINGERPRINT_KEY: _fingerprint(finding)},
        "properties": {"tokenId": tid.to_dict(), "location": finding.location, **(extra or {})},
    }
    return result


def to_sarif(
    findings: Iterable[Finding | tuple[Finding, dict[str, Any]]],
    *,
    base: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log (as a JSON-ready dict) of *findings*, with one run.

    Each kind of finding is one rule (``MA001`` token, ``MA002`` opaque
    ``fo1_``, ``MA003`` malformed); each result's ``partialFingerprints``
    is the token's fingerprint, so GitHub follows an alert across commits
    without the token ever being written. Paths become URIs relative to
    *base* (the repository's root, ``SRCROOT``) when under it. An item may
    be ``(finding, properties)`` to add properties to its result (the
    command line adds the commits of a history finding).
    """
    from .. import __version__

    base_s = os.path.abspath(os.fspath(base)) if base is not None else None
    results = []
    for item in findings:
        finding, extra = item if isinstance(item, tuple) else (item, None)
        results.append(_result(finding, base_s, extra))
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "macaroons-authz",
                "semanticVersion": __version__,
                "informationUri": _HELP,
                "rules": _rules(),
            }
        },
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    if base_s is not None:
        uri = urllib.parse.quote(base_s.replace(os.sep, "/").rstrip("/") + "/", safe="/:")
        run["originalUriBaseIds"] = {"SRCROOT": {"uri": "file://" + uri}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
