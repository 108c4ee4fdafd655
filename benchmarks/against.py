"""The issue 18 targets of this tree and of an earlier revision, run by turns.

"No worse than today" compares two versions of the code, which cannot be
imported into one process; this runs ``benchmarks/run.py`` (this tree's
copy, so both are measured alike) in a detached ``git worktree`` of *REV*
and here, alternately, and prints each target's ratio of every run::

    python benchmarks/against.py d0a0220 --rounds 3

The earlier revision must have the names ``run.py`` imports (any revision
since the 0.1.0 release does). Each run takes about half a minute.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = re.compile(r"^- (.+): ([0-9.]+) (held|MISSED)$", re.MULTILINE)


def targets(tree: Path) -> dict[str, float]:
    """Each target's ratio in one ``run.py --quick --no-scan`` of *tree*."""
    script = tree / "benchmarks" / "run.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--no-scan"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: float(value) for name, value, _ in TARGET.findall(done.stdout)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree")
    args = parser.parse_args(argv)
    repo = HERE.parent
    scratch = Path(tempfile.mkdtemp(prefix="against-"))
    before = scratch / "tree"
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(before), args.rev],
        capture_output=True,
        check=True,
    )
    try:
        shutil.copy(HERE / "run.py", before / "benchmarks" / "run.py")
        runs: dict[str, list[list[float]]] = {}
        for _ in range(args.rounds):
            for label, tree in (("this tree", repo), (args.rev, before)):
                for name, value in targets(tree).items():
                    runs.setdefault(name, [[], []])[label != "this tree"].append(value)
        print(f"target | this tree | {args.rev}")
        print("---|---|---")
        for name, (now, then) in runs.items():
            cells = [", ".join(f"{v:.2f}" for v in vs) for vs in (now, then)]
            print(f"{name} | {cells[0]} | {cells[1]}")
    finally:
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(before)],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
