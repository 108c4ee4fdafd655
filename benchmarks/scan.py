"""Throughput, recall and precision of the leaked-token scanner.

Generates, from a seed, a corpus of source-like lines (Python, Go, JS,
YAML, shell, JSON, logs) with a known set of planted real tokens, minted
with this library, in every supported context (bare, headers, comma
bundles, JSON escapes, URL escapes, backslash continuations, split string
literals, line starts and ends, legacy labels) and with decoys that must
never be reported as tokens (random base64 after a label, truncated tokens,
documentation placeholders, identifiers that contain a label).

Then it times :func:`find_tokens` on the corpus in memory and
:func:`scan_paths` on it written to a file (read in chunks), best of
``--repeat`` runs, in CPU time of this (single-threaded) process and in
wall-clock time, and checks every finding against what was planted::

    python benchmarks/scan.py [--size-mb N] [--seed S] [--repeat R] [--density D]
        [--adversarial-mb M] [--git-commits C]

Then an adversarial corpus, ``--adversarial-mb`` (default 10) MB of each of:
one chain of adjacent string literals after a label, and chains of 1 MB;
one long base64 run after a label, and runs of 1 MB (a candidate longer
than ``MAX_CANDIDATE_CHARS`` is skipped once that is known, so the 1 MB
ones show the cost of examining candidates whole); a label every 50
bytes, a token JSON-escaped again and again (deep backslash runs), long
lines of ``+`` after labels, and a Kubernetes Secret of base64-wrapped
values. Each is scanned in memory and from a file, with the same
findings, at 20 MB/s or more.

Last, ``scan --git``'s reader over a repository generated with ``git
fast-import`` (``--git-commits``, default 5,000 commits, each changing a few
files, tokens planted in some): MB/s of unique blob content, with every
planted token found once.

``--tree DIR`` instead scans real files: the ASCII Python files under DIR,
then its JavaScript, CSS and JSON, up to ``--size-mb`` each, as one text
each (``python benchmarks/scan.py --tree .venv``).

Recall is the share of planted tokens found as ``"token"`` findings with
the exact path, line, column, label, context and token id; precision the
share of ``"token"`` findings that were planted. The script exits non-zero
if either is below 1 or an ``fo1_`` token is missed.

Every real token found costs a full ``Macaroon.decode`` (tens of
microseconds), so throughput falls as tokens get denser: the default (a
plant or decoy every 1000 lines, about 17 real tokens per MB) is already
far denser than real source trees; ``--density 400`` (about 43 per MB)
shows the cost of very dense leaks.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from macaroons_authz import (
    Action,
    Apps,
    Finding,
    Macaroon,
    Organization,
    ValidityWindow,
    crypto,
    discharge_ticket,
    encode_token,
    find_tokens,
    kid_for_key,
    scan_paths,
)
from macaroons_authz.leaks import DEFAULT_CHUNK_SIZE, ScanStats, scan_history
from macaroons_authz.leaks.decoders import Labels, Wrapped
from macaroons_authz.leaks.files import _decoded_chunks, _raise

Key = tuple[str, int, int, str, str, str, str, str]  # path, line, column, label, context, id

# Common identifiers, with near misses of the labels (fm, fmt, fo, f1, ...)
# so that the label search is not flattered: the letter f is about as
# frequent as in real source (2-3%; 1.8% in CPython's standard library).
IDENTS = [
    "config", "value", "result", "items", "offset", "buffer", "format", "fmt",
    "self", "request", "response", "handler", "ctx", "err", "data", "path",
    "fly_app", "machine_id", "region", "flyctl", "deploy", "token_path",
    "from_env", "info", "of", "if_none", "fm", "fmap", "fo", "f1", "perf",
    "name", "index", "count", "key", "size", "user", "node", "start", "end",
    "cache", "client", "server", "status", "length", "parent", "child",
    "message", "timeout", "session", "token", "secret", "app_name", "machine",
    "volume", "org_slug", "api_url", "headers", "params", "args", "kwargs",
    "logger", "retry_count", "input", "output", "query", "schema", "table",
    "row", "column", "event", "state", "model", "view", "route", "port",
]  # fmt: skip
TEMPLATES = [
    "{i}def {a}_{b}({c}, {d}=None):",
    "{i}return {a}.{b}({c}, {n})",
    "{i}{a} = {b}.get({s!r}, {n})",
    "{i}if {a} is not None and {b} > {n}:",
    "{i}for {a} in {b}.{c}():",
    "{i}# {w} the {a} before {b} is {c}",
    "{i}{a}, err := {b}.{c}(ctx, {s!r})",
    "{i}if err != nil {{ return fmt.Errorf(\"{w}: %w\", err) }}",
    "{i}const {a} = await {b}.{c}({s!r});",
    "{i}{a}: {s}",
    "{i}- name: {a}-{b}",
    "export {A}_{B}={s}",
    '{i}"{a}": "{s}",',
    "{i}log.info(\"{w} {a}=%s {b}=%d\", {c}, {n})",
    "2024-05-{n2:02d}T12:{n2:02d}:00Z INFO {a}: {w} {b}={n} {c}={s}",
    "{i}raise ValueError(f\"{w} {{{a}!r}}\")",
    "",
]  # fmt: skip
WORDS = ["cannot", "failed", "update", "reading", "writing", "apply", "check", "retry"]


def source_lines(rng: random.Random, count: int) -> list[str]:
    """*count* distinct-ish lines of source-like text."""
    out = []
    for _ in range(count):
        t = rng.choice(TEMPLATES)
        a, b, c, d = (rng.choice(IDENTS) for _ in range(4))
        out.append(
            t.format(
                i="    " * rng.randint(0, 3),
                a=a,
                b=b,
                c=c,
                d=d,
                A=a.upper(),
                B=b.upper(),
                s=f"{rng.choice(IDENTS)}-{rng.randint(0, 9999)}",
                w=rng.choice(WORDS),
                n=rng.randint(0, 10**6),
                n2=rng.randint(0, 59),
            )
        )
    return out


def mint_pool(rng: random.Random, roots: int) -> list[str]:
    """Token strings: permission tokens, attenuations and bound discharges."""
    crypto.random_bytes = rng.randbytes  # deterministic tokens
    pool = []
    for r in range(roots):
        key = rng.randbytes(32)
        ka = rng.randbytes(32)
        tok = Macaroon.new(kid_for_key(key), "https://api.fly.io/v1", key)
        tok.add(Organization(1000 + r, Action.ALL))
        tok.add_3p(ka, "https://api.fly.io/aaa/v1")
        pool.append(encode_token(tok))
        tok.add(Apps({rng.randint(1, 10**6): Action.READ}), ValidityWindow(1700000000, 1800000000))
        pool.append(encode_token(tok))
        ticket = tok.third_party_tickets()["https://api.fly.io/aaa/v1"][0]
        _, dis = discharge_ticket(ka, "https://api.fly.io/aaa/v1", ticket)
        dis.add(ValidityWindow(1700000000, 1700000300))
        dis.bind(tok)
        pool.append(encode_token(dis))
    return pool


def escape_json(tok: str, plus: bool) -> str:
    body = tok.replace("/", "\\/")
    return body.replace("+", "\\u002b") if plus else body


# A plant returns its lines and, per real token in them: (line offset,
# column, context, token string as it must be reported).
Planted = tuple[list[str], list[tuple[int, int, str, str]]]
Plant = Callable[[random.Random, list[str]], Planted]


def _relabel(tok: str, label: str) -> str:
    return label + tok.partition("_")[2]


def plant_bare(rng: random.Random, pool: list[str]) -> Planted:
    tok = rng.choice(pool)
    if rng.random() < 0.2:
        tok = _relabel(tok, rng.choice(["fm1r_", "fm1a_"]))
    form = rng.randrange(5)
    if form == 0:
        prefix, suffix = '    FLY_API_TOKEN = "', '"'
    elif form == 1:
        prefix, suffix = "export FLY_API_TOKEN=", ""
    elif form == 2:
        prefix, suffix = "", ""  # alone on its line: at the start and the end
    elif form == 3:
        prefix, suffix = "# leaked: ", ""  # at the end of a line
    else:
        prefix, suffix = "", " # was the deploy token"  # at the start of a line
    return [prefix + tok + suffix], [(0, len(prefix) + 1, "bare", tok)]


def plant_header(rng: random.Random, pool: list[str]) -> Planted:
    toks = [rng.choice(pool) for _ in range(rng.randint(1, 4))]
    scheme = rng.choice(["FlyV1", "Bearer", "flyv1", "Bearer FlyV1"])
    prefix = rng.choice(['curl -H "Authorization: ', "Authorization: ", '{"authorization":"'])
    line = prefix + scheme + " "
    found = []
    for t in toks:
        found.append((0, len(line) + 1, "header", t))
        line += t + ","
    return [line[:-1] + '" https://api.machines.dev/v1/apps'], found


def plant_bundle(rng: random.Random, pool: list[str]) -> Planted:
    toks = [rng.choice(pool) for _ in range(rng.randint(2, 5))]
    sep = rng.choice([",", ", "])
    line = "tokens: "
    found = []
    for t in toks:
        found.append((0, len(line) + 1, "bundle", t))
        line += t + sep
    return [line[: -len(sep)]], found


def plant_json(rng: random.Random, pool: list[str]) -> Planted:
    tok = rng.choice(pool)
    prefix = '  {"name": "deploy", "token": "'
    line = prefix + escape_json(tok, rng.random() < 0.5) + '"},'
    return [line], [(0, len(prefix) + 1, "bare", tok)]


def plant_url(rng: random.Random, pool: list[str]) -> Planted:
    tok = rng.choice(pool)
    enc = tok.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    prefix = "GET /callback?state=xyz&token="
    return [prefix + enc + "&next=%2F HTTP/1.1"], [(0, len(prefix) + 1, "bare", tok)]


def plant_continued(rng: random.Random, pool: list[str]) -> Planted:
    tok = rng.choice(pool)
    cut = rng.randint(10, len(tok) - 10)
    prefix = 'FLY_TOKEN="'
    return [prefix + tok[:cut] + "\\", tok[cut:] + '"'], [(0, len(prefix) + 1, "bare", tok)]


def plant_split(rng: random.Random, pool: list[str]) -> Planted:
    tok = rng.choice(pool)
    cut = rng.randint(10, len(tok) - 10)
    if rng.random() < 0.5:
        prefix = "TOKEN = ("
        lines = [prefix + '"' + tok[:cut] + '"', '         "' + tok[cut:] + '")']
    else:
        prefix = "const token = "
        lines = [prefix + "'" + tok[:cut] + "' +", "    '" + tok[cut:] + "';"]
    return lines, [(0, len(prefix) + 2, "bare", tok)]


PLANTS: list[Plant] = [
    plant_bare, plant_bare, plant_header, plant_bundle, plant_json, plant_url,
    plant_continued, plant_split,
]  # fmt: skip


def decoy(rng: random.Random, pool: list[str]) -> str:
    """A line that holds something token-like that is not a token."""
    form = rng.randrange(8)
    if form == 0:
        n = rng.randint(8, 300) * 3
        return "token = fm2_" + base64.b64encode(rng.randbytes(n)).decode()
    if form == 1:
        tok = rng.choice(pool)
        return "FLY_API_TOKEN=" + tok[: rng.randint(8, len(tok) - 1)]
    if form == 2:
        return rng.choice(
            [
                "Authorization: FlyV1 fm2_<token>",
                "FLY_API_TOKEN=fm2_xxx",
                "# tokens look like fm2_... or fo1_...",
                'token = "fm2_${FLY_API_TOKEN}"',
                "fm2_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "fo1_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                "FlyV1 fm1r_REDACTED, fm1a_REDACTED",
            ]
        )
    if form == 3:
        return "    perfm2_count = fm2_value + fm1r_total  # fo1_legacy"
    if form == 4:
        tok = rng.choice(pool)
        cut = rng.randint(20, len(tok) - 20)
        return tok[:cut] + "!" + tok[cut:]  # damaged in the middle
    if form == 5:
        return "fm1a_" + base64.b64encode(rng.randbytes(rng.randint(30, 200))).decode()
    if form == 6:  # a msgpack array that is not a token
        return "fm2_" + base64.b64encode(b"\x94\x93\xc4\x01a" + rng.randbytes(60)).decode()
    return "fo1_" + base64.urlsafe_b64encode(rng.randbytes(40)).decode().rstrip("=")


def token_id(tok: str) -> tuple[str, str, str]:
    """(kid, rnd, fingerprint) of a token string: what its finding must say."""
    m = Macaroon.decode(base64.b64decode(tok.partition("_")[2]))
    fingerprint = hashlib.sha256(tok.encode()).hexdigest()[:16]
    return (m.nonce.kid or b"").hex(), (m.nonce.rnd or b"").hex(), fingerprint


def build_corpus(
    size: int, seed: int, density: int, path: str = "corpus.txt"
) -> tuple[str, set[Key], int, int]:
    """The corpus, the expected token findings, the number of decoys, the fo1_ tokens."""
    rng = random.Random(seed)
    pool = mint_pool(rng, 24)
    base = source_lines(rng, 20000)
    lines: list[str] = []
    expected: set[Key] = set()
    total = decoys = opaque = 0
    while total < size:
        for line in rng.choices(base, k=density):
            lines.append(line)
            total += len(line) + 1
        roll = rng.random()
        if roll < 0.5:
            plant_lines, found = rng.choice(PLANTS)(rng, pool)
            for off, col, ctx, tok in found:
                label = tok.partition("_")[0] + "_"
                expected.add((path, len(lines) + off + 1, col, label, ctx, *token_id(tok)))
            lines.extend(plant_lines)
            total += sum(len(x) + 1 for x in plant_lines)
        elif roll < 0.55:
            tok = "fo1_" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
            lines.append("FLY_ACCESS_TOKEN=" + tok)
            opaque += 1
        else:
            lines.append(decoy(rng, pool))
            decoys += 1
    return "\n".join(lines) + "\n", expected, decoys, opaque


def evaluate(findings: list, expected: set[Key]) -> tuple[float, float, int, int, int]:  # type: ignore[type-arg]
    """Recall, precision, token findings, decoys found as tokens, malformed findings."""
    found: set[Key] = set()
    tokens = 0
    for f in findings:
        if f.kind == "token":
            tokens += 1
            t = f.token_id
            found.add((f.path, f.line, f.column, f.label, f.context, t.kid, t.rnd, t.fingerprint))
    hits = len(found & expected)
    recall = hits / len(expected) if expected else 1.0
    precision = hits / tokens if tokens else 1.0
    malformed = sum(f.kind == "malformed" for f in findings)
    return recall, precision, tokens, tokens - hits, malformed


def best_of(repeat: int, fn: Callable[[], list]) -> tuple[float, float, list]:  # type: ignore[type-arg]
    """The best wall-clock and CPU (this process, one thread) times of *repeat* runs."""
    wall = cpu = float("inf")
    result: list = []  # type: ignore[type-arg]
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return wall, cpu, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=32.0, help="corpus size (default 32)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts")
    ap.add_argument("--adversarial-mb", type=float, default=10.0, help="per adversarial input")
    ap.add_argument("--git-commits", type=int, default=5000, help="commits of the history run")
    ap.add_argument(
        "--density",
        type=int,
        default=1000,
        help="ordinary lines between plants or decoys (default 1000: about 17 tokens per MB)",
    )
    ap.add_argument(
        "--tree",
        metavar="DIR",
        help="instead: scan the ASCII source files under DIR, up to --size-mb, by extension",
    )
    args = ap.parse_args()
    if args.tree:
        return tree(args.tree, int(args.size_mb * 1e6), args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.txt")
        ok = run(args, path) == 0
        ok = adversarial(args) and ok
        ok = history(args, tmp) and ok
        return 0 if ok else 1


TREE_GROUPS = {"Python": (".py",), "JavaScript, CSS, JSON": (".js", ".css", ".json")}


def tree(root: str, limit: int, repeat: int) -> int:
    """find_tokens over real files: the ASCII ones of each group under *root*, up to *limit*."""
    for name, suffixes in TREE_GROUPS.items():
        parts, size = [], 0
        for path in sorted(Path(root).rglob("*")):
            if size >= limit or path.suffix not in suffixes or not path.is_file():
                continue
            try:
                parts.append(path.read_text("ascii"))
            except (OSError, UnicodeDecodeError):
                continue
            size += len(parts[-1])
        text = "".join(parts)
        if not text:
            continue

        def scan_it(t: str = text) -> list[Finding]:
            return list(find_tokens(t))

        _, cpu, found = best_of(repeat, scan_it)
        anchor = "_" if Labels.choose(text) else "f"
        print(
            f"{name}: {len(text) / 1e6:.1f} MB, {len(found)} findings, labels searched from "
            f"{anchor}: {len(text) / cpu / 1e6:.0f} MB/s on CPU time"
        )
    return 0


def run(args: argparse.Namespace, path: str) -> int:
    t0 = time.perf_counter()
    size_wanted = int(args.size_mb * 1e6)
    text, expected, decoys, opaque = build_corpus(size_wanted, args.seed, args.density, path)
    size = len(text.encode())
    print(
        f"corpus: {size / 1e6:.1f} MB, {text.count(chr(10))} lines, {len(expected)} planted "
        f"tokens ({len(expected) / (size / 1e6):.1f}/MB), {opaque} fo1_ tokens, "
        f"{decoys} decoy lines "
        f"(built in {time.perf_counter() - t0:.1f}s)"
    )
    ok = True
    Path(path).write_text(text)
    runs = [
        ("find_tokens (in memory)", lambda: list(find_tokens(text, path))),
        ("scan_paths (file, chunked)", lambda: list(scan_paths(path))),
    ]
    for name, fn in runs:
        wall, cpu, findings = best_of(args.repeat, fn)
        recall, precision, tokens, decoys_as_tokens, malformed = evaluate(findings, expected)
        opaque_found = sum(f.kind == "opaque" for f in findings)
        print(
            f"{name}: {size / cpu / 1e6:.0f} MB/s on CPU time, "
            f"{size / wall / 1e6:.0f} MB/s wall; recall {recall:.4f}, precision "
            f"{precision:.4f} ({tokens} token findings, {decoys_as_tokens} decoys taken "
            f"for tokens, {opaque_found}/{opaque} fo1_ found; {malformed} malformed "
            "candidates reported separately)"
        )
        ok = ok and recall == 1.0 and precision == 1.0 and opaque_found == opaque
    parts(text, path, args.repeat)
    return 0 if ok else 1


def _wrapped_values(text: str) -> int:
    found, pos, wrapped = 0, 0, Wrapped(text)
    while (start := wrapped.next(pos)) >= 0:
        found, pos = found + 1, start + 1
    return found


def _labels(text: str) -> list[int]:
    found, pos, labels = [], 0, Labels(text, Labels.choose(text))
    while (label := labels.next(pos)) is not None:
        found.append(label[0])
        pos = label[0] + len(label[1])
    return found


def _read_file(path: str) -> list[int]:
    with open(path, "rb") as f:
        first = f.read(DEFAULT_CHUNK_SIZE)
        chunks = _decoded_chunks(f, first, DEFAULT_CHUNK_SIZE, _raise, "utf-8-sig", None)
        return [len(chunk) for chunk in chunks]


def parts(text: str, path: str, repeat: int) -> None:
    """Time alone each pass over the whole corpus that a scan makes, and the rest."""
    size = len(text.encode())
    passes: list[tuple[str, Callable[[], list[int]]]] = [
        (f"label search, from {'_' if Labels.choose(text) else 'f'}", lambda: _labels(text)),
        ("line counting (str.count up to each finding)", lambda: [text.count("\n")]),
        ("base64-wrapped value search", lambda: [_wrapped_values(text)]),
    ]
    whole, _, _ = best_of(repeat, lambda: list(find_tokens(text, path)))
    print(
        f"where an in-memory scan's {whole * 1e3:.1f} ms go "
        f"(each pass timed alone, best of {repeat}):"
    )
    total = 0.0
    for name, fn in passes:
        _, cpu, _ = best_of(repeat, fn)
        total += cpu
        print(f"  {name}: {cpu * 1e3:.1f} ms")
    print(f"  candidates and bookkeeping (the rest): {(whole - total) * 1e3:.1f} ms")
    print(f"  the passes alone allow at most {size / total / 1e6:.0f} MB/s")
    _, cpu, _ = best_of(repeat, lambda: _read_file(path))
    print(
        f"  from a file, reading and decoding it ({DEFAULT_CHUNK_SIZE // 1024} KiB chunks): "
        f"{cpu * 1e3:.1f} ms more"
    )


# -- adversarial inputs -------------------------------------------------------------

ADVERSARIAL_FLOOR = 20.0  # MB/s


def adversarial_inputs(size: int, rng: random.Random, token: str) -> list[tuple[str, str]]:
    """(name, text) of about *size* characters each."""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def rand_b64(n: int) -> str:
        return "".join(rng.choices(b64, k=n))

    def chain(n: int) -> str:
        return 'x = ("fm2_' + '" "'.join(rand_b64(4) for _ in range(n // 7)) + '")\n'

    # One candidate of the whole size passes MAX_CANDIDATE_CHARS and is skipped
    # as oversized once that is known; candidates of 1 MB are examined whole.
    part = min(size, 1_000_000)
    copies = max(1, size // part)
    literals = chain(size)
    literals_1mb = "".join(chain(part) for _ in range(copies))
    run = "fm2_" + rand_b64(size) + "\n"
    runs_1mb = "".join("fm2_" + rand_b64(part) + "\n" for _ in range(copies))
    every50 = "".join("fm2_" + rand_b64(45) + " " for _ in range(size // 50))
    escaped = token
    for _ in range(6):  # each round doubles the backslashes
        escaped = json.dumps(escaped)[1:-1].replace("/", "\\/")
    deep = ('{"t": "' + escaped + '"}\n') * max(1, size // (len(escaped) + 9))
    plus = ("fm2_" + "+" * 99_995 + "\n") * max(1, size // 100_000)
    value = base64.b64encode(("FlyV1 " + token).encode()).decode()
    secret = ("  FLY_API_TOKEN: " + value + "\n") * max(1, size // (len(value) + 18))
    return [
        ("adjacent literals (one chain)", literals),
        ("adjacent literals (chains of 1 MB)", literals_1mb),
        ("one long base64 run", run),
        ("base64 runs of 1 MB", runs_1mb),
        ("a label every 50 bytes", every50),
        ("deeply escaped JSON", deep),
        ("long lines of '+'", plus),
        ("base64-wrapped values", secret),
        ("labels back to back", "fm2_," * (size // 5)),
        # Labels' endings without their "f", after a start that makes the
        # label search look for "_".
        ("label endings, after text rich in 'f'", "f" * 8192 + "xm2_" * (size // 4)),
    ]


def decode_bound_inputs(size: int, rng: random.Random) -> list[tuple[str, str]]:
    """(name, text) where every candidate needs a decode: the scan runs at decode speed."""
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    shaped = "".join("fm2_l" + "".join(rng.choices(b64, k=44)) + " " for _ in range(size // 50))
    key = rng.randbytes(32)
    lines: list[str] = []
    total = 0
    while total < size:
        tok = Macaroon.new(kid_for_key(key), "https://api.fly.io/v1", key)
        tok.add(Organization(len(lines), Action.READ))
        lines.append(f"TOKEN={encode_token(tok)}\n")
        total += len(lines[-1])
    return [
        ("text shaped like tokens every 50 bytes", shaped),
        ("distinct real tokens, one a line", "".join(lines)),
    ]


def adversarial(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    token = mint_pool(rng, 1)[1]
    size = int(args.adversarial_mb * 1e6)
    ok = True
    print(
        f"adversarial inputs, {args.adversarial_mb:g} MB each (floor {ADVERSARIAL_FLOOR} MB/s), "
        "in memory and from a file:"
    )
    held = adversarial_inputs(size, rng, token)
    inputs = [(True, name, text) for name, text in held]
    inputs += [(False, name, text) for name, text in decode_bound_inputs(size, rng)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "adversarial.txt")
        for i, (floor_holds, name, text) in enumerate(inputs):
            if i == len(held):
                print("where every candidate needs a decode, as real tokens do (no floor):")
            n = len(text.encode())
            Path(path).write_text(text)

            def in_memory(t: str = text) -> list[Finding]:
                return list(find_tokens(t))

            def from_file() -> list[Finding]:
                return list(scan_paths(path))

            _, cpu, findings = best_of(max(1, args.repeat // 2), in_memory)
            _, file_cpu, file_findings = best_of(max(1, args.repeat // 2), from_file)
            rate, file_rate = n / cpu / 1e6, n / file_cpu / 1e6
            kinds = {k: sum(f.kind == k for f in findings) for k in ("token", "malformed")}
            same = [f.token_id for f in findings] == [f.token_id for f in file_findings]
            print(
                f"  {name}: {rate:.0f} MB/s in memory, {file_rate:.0f} MB/s from a file, "
                f"on CPU time ({n / 1e6:.1f} MB; {kinds['token']} tokens, "
                f"{kinds['malformed']} malformed{'' if same else '; THE FILE SCAN DIFFERS'})"
            )
            ok = ok and same and (min(rate, file_rate) >= ADVERSARIAL_FLOOR or not floor_holds)
    return ok


# -- history ----------------------------------------------------------------------


def make_history(repo: str, commits: int, rng: random.Random, pool: list[str]) -> set[str]:
    """A repository of *commits* commits made with git fast-import; the tokens planted."""
    subprocess.run(["git", "init", "-q", repo], check=True)
    lines = source_lines(rng, 5000)
    files = {f"src/mod{i:03d}.py": "\n".join(rng.choices(lines, k=200)) for i in range(200)}
    planted: set[str] = set()
    out = []
    for c in range(commits):
        out.append(f"commit refs/heads/main\nmark :{c + 1}\n")
        out.append(f"committer t <t@example.com> {1700000000 + c} +0000\n")
        msg = f"change {c}"
        out.append(f"data {len(msg)}\n{msg}\n")
        if c:
            out.append(f"from :{c}\n")
        for path in rng.sample(sorted(files), 3) if c else sorted(files):
            body = files[path].split("\n")
            body[rng.randrange(len(body))] = rng.choice(lines)
            if c and rng.random() < 0.01:
                tok = rng.choice(pool)
                planted.add(tok)
                body[rng.randrange(len(body))] = f'TOKEN = "{tok}"'
            files[path] = "\n".join(body)
            data = files[path].encode()
            out.append(f"M 100644 inline {path}\ndata {len(data)}\n")
            out.append(data.decode() + "\n")
    subprocess.run(
        ["git", "-C", repo, "fast-import", "--quiet"],
        input="".join(out).encode(),
        check=True,
    )
    return planted


def history(args: argparse.Namespace, tmp: str) -> bool:
    rng = random.Random(args.seed)
    pool = mint_pool(rng, 8)
    repo = os.path.join(tmp, "history")
    t0 = time.perf_counter()
    planted = make_history(repo, args.git_commits, rng, pool)
    built = time.perf_counter() - t0
    stats = ScanStats()
    wall, cpu, found = best_of(1, lambda: list(scan_history(repo, stats=stats)))
    blob_bytes, blobs = stats.bytes, stats.files
    tokens = {f.finding.token_id.fingerprint for f in found if f.finding.kind == "token"}
    want = {hashlib.sha256(t.encode()).hexdigest()[:16] for t in planted}
    print(
        f"scan --git: {args.git_commits} commits, {blobs} unique blobs, {blob_bytes / 1e6:.1f} MB "
        f"(built with fast-import in {built:.1f}s): {blob_bytes / wall / 1e6:.0f} MB/s wall "
        f"({wall:.1f}s), {blob_bytes / cpu / 1e6:.0f} MB/s on this process's CPU; "
        f"{len(found)} findings, "
        f"{len(tokens & want)}/{len(want)} planted tokens found"
    )
    return tokens >= want


if __name__ == "__main__":
    sys.exit(main())
