"""Accepted findings: :class:`Baseline`, read from and written to a JSON file.

A baseline lists findings a team has looked at and accepted (a revoked
token left in an old fixture, say), so that a scan reports only new ones.
It holds each finding's token fingerprint, path, line and kind: nothing
that lets anyone use a token. A finding matches an entry with the same
fingerprint and path, wherever the line moved; a finding without a
fingerprint (an oversized candidate) matches on path, line and kind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any, Final

import attrs

from ..errors import MacaroonError
from .scanner import Finding

__all__ = ["BASELINE_VERSION", "Baseline", "BaselineError"]

#: The ``version`` of the baseline file format written.
BASELINE_VERSION: Final = 1
_MAX_BASELINE = 64 * 1024 * 1024


class BaselineError(MacaroonError):
    """A baseline file cannot be read: missing, unreadable, not a baseline."""


def _key(path: str | None, fingerprint: str | None, line: int, kind: str) -> tuple[Any, ...]:
    path = os.path.normpath(path) if path else path  # "./a.py" is "a.py"
    if fingerprint is not None:
        return (path, fingerprint)
    return (path, line, kind)


@attrs.frozen
class Baseline:
    """A set of accepted findings.

    Attributes:
        entries: ``{"fingerprint", "path", "line", "kind"}`` dicts, sorted.
    """

    entries: tuple[dict[str, Any], ...] = ()
    _keys: frozenset[tuple[Any, ...]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        keys = frozenset(
            _key(e["path"], e["fingerprint"], e["line"], e["kind"]) for e in self.entries
        )
        object.__setattr__(self, "_keys", keys)

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> Baseline:
        """The baseline accepting *findings*."""
        entries = {
            (f.path or "", f.line, f.kind, f.token_id.fingerprint or ""): {
                "fingerprint": f.token_id.fingerprint,
                "path": f.path,
                "line": f.line,
                "kind": f.kind,
            }
            for f in findings
        }
        return cls(tuple(entries[k] for k in sorted(entries)))

    def __contains__(self, finding: object) -> bool:
        if not isinstance(finding, Finding):
            return False
        f = finding
        return _key(f.path, f.token_id.fingerprint, f.line, f.kind) in self._keys

    def to_json(self) -> str:
        """The file's text: ``{"version": 1, "findings": [...]}``, one entry a line."""
        lines = [json.dumps(e, sort_keys=True) for e in self.entries]
        body = ",\n    ".join(lines)
        findings = f"[\n    {body}\n  ]" if lines else "[]"
        return f'{{\n  "version": {BASELINE_VERSION},\n  "findings": {findings}\n}}\n'

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline to *path* (replaced atomically)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        """Read a baseline file.

        Raises:
            BaselineError: the file is missing, unreadable, too large, or
                not a baseline of a known version.
        """
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(_MAX_BASELINE + 1)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise BaselineError(f"cannot read baseline {os.fspath(path)}: {why}") from None
        if len(text) > _MAX_BASELINE:
            raise BaselineError(f"baseline {os.fspath(path)} is over {_MAX_BASELINE} bytes")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise BaselineError(f"baseline {os.fspath(path)} is not JSON") from None
        return cls(_entries(doc, os.fspath(path)))


def _entries(doc: Any, name: str) -> tuple[dict[str, Any], ...]:
    bad = BaselineError(f"{name} is not a version {BASELINE_VERSION} baseline")
    if not isinstance(doc, dict) or doc.get("version") != BASELINE_VERSION:
        raise bad
    findings = doc.get("findings")
    if not isinstance(findings, list):
        raise bad
    out = []
    for e in findings:
        if not isinstance(e, dict):
            raise bad
        fp, path, line, kind = (e.get(k) for k in ("fingerprint", "path", "line", "kind"))
        if not (
            (fp is None or isinstance(fp, str))
            and (path is None or isinstance(path, str))
            and type(line) is int
            and kind in ("token", "opaque", "malformed")
        ):
            raise bad
        out.append({"fingerprint": fp, "path": path, "line": line, "kind": kind})
    return tuple(out)
