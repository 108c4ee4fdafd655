"""The ``scan`` command of ``python -m macaroons_authz``: its arguments and its run."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable
from typing import IO, Any, TextIO

from .._inspect import printable
from .baseline import Baseline
from .files import ScanStats, scan_paths, scan_stream
from .git import BlobFinding, scan_history, scan_staged, toplevel
from .redaction import redact_tokens
from .sarif import to_sarif
from .scanner import Finding

__all__ = ["DEFAULT_BASELINE", "ScanUsageError", "add_arguments", "run"]

#: Where ``--update-baseline`` writes when ``--baseline`` is not given.
DEFAULT_BASELINE = ".macaroons-authz-baseline.json"
_FAILING = ("token", "opaque")  # a live credential: exit 1
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)[bB]?")


class ScanUsageError(Exception):
    """A mistake in ``scan``'s arguments: one ``error:`` line, exit 2."""


def _size(text: str) -> int:
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500k, 10M)")
    return int(m.group(1)) << 10 * " kmg".index(m.group(2).lower() or " ")


def add_arguments(sub: argparse.ArgumentParser) -> None:
    """Add ``scan``'s arguments to its parser."""
    sub.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or directories to scan; '-' reads standard input",
    )
    sub.add_argument(
        "--format",
        choices=["text", "json", "sarif"],
        default="text",
        help="output: text (default), one JSON document, or SARIF 2.1.0",
    )
    sub.add_argument("--json", action="store_true", help="the same as --format json")
    sub.add_argument(
        "-v", "--verbose", action="store_true", help="list the files skipped (binary, too large)"
    )
    sub.add_argument(
        "--baseline",
        metavar="FILE",
        help="report only findings not in this baseline file",
    )
    sub.add_argument(
        "--update-baseline",
        action="store_true",
        help=f"write the findings to the baseline file (--baseline, else {DEFAULT_BASELINE})"
        " and exit 0",
    )
    sub.add_argument(
        "--no-ignore",
        action="store_true",
        help="read every file: not only git's files (or, outside git, what .gitignore keeps)",
    )
    sub.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip paths matching GLOB, relative to the PATH or by file name (repeatable)",
    )
    sub.add_argument(
        "--max-file-size",
        type=_size,
        metavar="SIZE",
        help="skip files larger than SIZE (bytes, or with k, M, G); skipped files are counted",
    )
    sub.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symbolic links inside the trees, to targets inside the PATHs only",
    )
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument(
        "--staged",
        action="store_true",
        help="scan the files staged for commit, as staged (for pre-commit hooks)",
    )
    mode.add_argument(
        "--git",
        nargs="?",
        const="",
        metavar="REV-RANGE",
        help="scan the history: every blob of REV-RANGE (default: all refs), each once",
    )


def _findings(
    args: argparse.Namespace, stdin: IO[bytes] | None, stats: ScanStats, errors: list[str]
) -> tuple[list[Finding | BlobFinding], str]:
    """The findings, and the directory SARIF paths are relative to."""

    def on_error(exc: OSError) -> None:
        errors.append(f"{exc.filename}: {exc.strerror}")

    if args.staged or args.git is not None:
        if args.paths:
            raise ScanUsageError("PATHs cannot be given with --staged or --git")
        top = toplevel(os.getcwd())  # the paths found are relative to it
        if args.staged:
            found: list[Finding | BlobFinding] = list(
                scan_staged(top, stats=stats, max_file_size=args.max_file_size)
            )
        else:
            found = list(
                scan_history(top, args.git or None, stats=stats, max_file_size=args.max_file_size)
            )
        return found, top
    if not args.paths:
        raise ScanUsageError("no PATH given (use '.' for the current directory)")
    for path in args.paths:
        if path != "-" and not os.path.exists(path):
            raise ScanUsageError(f"{path}: no such file or directory")
    found = []
    for path in args.paths:
        if path == "-":
            if stdin is None:
                raise ScanUsageError("standard input cannot be read")
            found.extend(scan_stream(stdin, "<stdin>", stats=stats))
        else:
            found.extend(
                scan_paths(
                    path,
                    on_error=on_error,
                    follow_symlinks=args.follow_symlinks,
                    ignore=not args.no_ignore,
                    exclude=args.exclude,
                    max_file_size=args.max_file_size,
                    stats=stats,
                )
            )
    return found, os.getcwd()


def _finding(item: Finding | BlobFinding) -> Finding:
    return item.finding if isinstance(item, BlobFinding) else item


def run(args: argparse.Namespace, out: TextIO, stdin: IO[bytes] | None, err: TextIO) -> int:
    """Run ``scan``; return its exit status (0 clean, 1 tokens found, 2 errors).

    Raises:
        ScanUsageError: the arguments make no sense together.
    """
    fmt = "json" if args.json else args.format
    if args.json and args.format not in ("text", "json"):
        raise ScanUsageError("--json and --format sarif contradict each other")
    baseline_path = args.baseline
    baseline = Baseline()
    if baseline_path is not None and not args.update_baseline:
        baseline = Baseline.load(baseline_path)
    stats = ScanStats()
    errors: list[str] = []
    found, base = _findings(args, stdin, stats, errors)
    allowed = [f for f in found if _finding(f).allowed]
    kept = [f for f in found if not _finding(f).allowed]
    if args.update_baseline:
        target = baseline_path or DEFAULT_BASELINE
        Baseline.of(_finding(f) for f in kept).save(target)
        err.write(f"wrote {len(kept)} finding(s) to {printable(target)}\n")
        return 2 if errors else 0
    reported = [f for f in kept if _finding(f) not in baseline]
    if fmt == "sarif":
        items = [_sarif_item(f) for f in reported]
        out.write(json.dumps(to_sarif(items, base=base), indent=2) + "\n")
    elif fmt == "json":
        doc = {
            "findings": [f.to_dict() for f in reported],
            "errors": errors,
            "suppressed": {"allowed": len(allowed), "baseline": len(kept) - len(reported)},
            "skipped": {"binary": stats.binary, "too_large": stats.too_large},
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        _text(out, reported, stats, args.verbose, len(allowed), len(kept) - len(reported))
    for e in errors:
        err.write(f"error: {printable(redact_tokens(e))}\n")
    if errors:
        return 2
    return 1 if any(_finding(f).kind in _FAILING for f in reported) else 0


def _sarif_item(item: Finding | BlobFinding) -> Finding | tuple[Finding, dict[str, Any]]:
    if isinstance(item, BlobFinding):
        commits = [{"commit": c, "path": p} for c, p in item.commits]
        return item.finding, {"blob": item.blob, "commits": commits}
    return item


def _text(
    out: TextIO,
    reported: Iterable[Finding | BlobFinding],
    stats: ScanStats,
    verbose: bool,
    allowed: int,
    baselined: int,
) -> None:
    findings = []
    for item in reported:
        f = _finding(item)
        findings.append(f)
        path = printable(f.path or "")
        out.write(f"{path}:{f.line}:{f.column}  {f.kind} {f.label} ({f.context})\n")
        tid = f.token_id
        if tid.kid and tid.rnd:
            out.write(f"    token id {tid.uuid}  fingerprint {tid.fingerprint}\n")
        elif tid.fingerprint:
            out.write(f"    fingerprint {tid.fingerprint}\n")
        if isinstance(item, BlobFinding):
            out.write(f"    blob {item.blob}\n")
            for commit, where in item.commits:
                out.write(f"    in commit {commit} at {printable(where)}\n")
    out.write(
        f"{sum(f.kind == 'token' for f in findings)} token(s), "
        f"{sum(f.kind == 'malformed' for f in findings)} malformed, "
        f"{sum(f.kind == 'opaque' for f in findings)} opaque (fo1_) found\n"
    )
    if allowed or baselined:
        out.write(f"not reported: {allowed} allowed inline, {baselined} in the baseline\n")
    skipped = len(stats.binary) + len(stats.too_large)
    if skipped:
        out.write(f"skipped {len(stats.binary)} binary, {len(stats.too_large)} too large file(s)\n")
        if verbose:
            for path in stats.binary:
                out.write(f"    binary: {printable(path)}\n")
            for path in stats.too_large:
                out.write(f"    too large: {printable(path)}\n")
