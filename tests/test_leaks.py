"""Leaked-token scanning (find_tokens, scan_paths) and GitHub secret-scanning alerts."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st

import macaroons_authz
import macaroons_authz.leaks as leaks_package
from macaroons_authz import (
    Action,
    AlertVerificationError,
    Apps,
    Finding,
    GitHubFeedback,
    GitHubPublicKeys,
    GitHubTokenMatch,
    Macaroon,
    MacaroonError,
    Organization,
    TokenId,
    ValidityWindow,
    VerificationError,
    classify_github_alert,
    crypto,
    discharge_ticket,
    encode_token,
    extract_tokens,
    find_tokens,
    handle_github_alert,
    kid_for_key,
    scan_paths,
    verify_github_alert,
)
from macaroons_authz.leaks import decoders, scanner
from macaroons_authz.leaks.redaction import redact_tokens as redact_tokens_home
from macaroons_authz.macaroon import _ticket_fields

AUTH = "https://api.fly.io/aaa/v1"
API = "https://api.fly.io/v1"


@attrs.frozen
class Minted:
    key: bytes
    ka: bytes
    root: Macaroon  # with a third-party caveat
    perm: str  # the root token's string
    attenuated: str  # perm, further restricted
    discharge: str  # a bound proof discharge for perm
    expired: str  # a token whose window has long passed
    other: str  # minted with a key the keyring does not know


@pytest.fixture(scope="module")
def minted() -> Minted:
    rng = random.Random(20240501)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crypto, "random_bytes", rng.randbytes)
        key, ka = rng.randbytes(32), rng.randbytes(32)
        root = Macaroon.new(kid_for_key(key), API, key)
        root.add(Organization(1234, Action.ALL))
        root.add_3p(ka, AUTH)
        perm = encode_token(root)
        att = root.copy()
        att.add(Apps({42: Action.READ}))
        ticket = root.third_party_tickets()[AUTH][0]
        _, dis = discharge_ticket(ka, AUTH, ticket)
        dis.bind(root)
        expired = Macaroon.new(kid_for_key(key), API, key)
        expired.add(ValidityWindow(1, 2))
        other_key = rng.randbytes(32)
        other = Macaroon.new(kid_for_key(other_key), API, other_key)
        return Minted(
            key,
            ka,
            root,
            perm,
            encode_token(att),
            encode_token(dis),
            encode_token(expired),
            encode_token(other),
        )


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tid(token: str) -> TokenId:
    """The token id a token string must get."""
    m = Macaroon.decode(base64.b64decode(token.partition("_")[2]))
    return TokenId((m.nonce.kid or b"").hex(), (m.nonce.rnd or b"").hex(), fp(token))


def relabel(token: str, label: str) -> str:
    return label + token.partition("_")[2]


def key_tuple(f: Finding) -> tuple[Any, ...]:
    return (f.path, f.line, f.column, f.label, f.context, f.kind, f.token_id)


def fo1(rng: random.Random) -> str:
    return "fo1_" + base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")


# -- the planted corpus ---------------------------------------------------------


@attrs.frozen
class Corpus:
    text: str
    expected: list[tuple[Any, ...]]  # key_tuple of every token/opaque finding, in order


def build_corpus(t: Minted) -> Corpus:
    rng = random.Random(7)
    lines: list[str] = []
    expected: list[tuple[Any, ...]] = []

    def add(line: str | list[str], *found: tuple[int, str, str, str, str]) -> None:
        """found: (column, label, context, kind, token as reported)."""
        first = len(lines) + 1
        lines.extend([line] if isinstance(line, str) else line)
        for col, label, ctx, kind, tok in found:
            token_id = tid(tok) if kind == "token" else TokenId(None, None, fp(tok))
            expected.append(("c.py", first, col, label, ctx, kind, token_id))

    perm, att, dis = t.perm, t.attenuated, t.discharge
    add("import os")
    add(perm, (1, "fm2_", "bare", "token", perm))  # alone: at the start and end of a line
    add(f"{perm} # start of a line", (1, "fm2_", "bare", "token", perm))
    add(f"# end of a line: {att}", (18, "fm2_", "bare", "token", att))
    add(f"export FLY_API_TOKEN={perm}", (22, "fm2_", "bare", "token", perm))
    hdr = f"Authorization: FlyV1 {perm},{dis}"
    add(
        hdr,
        (22, "fm2_", "header", "token", perm),
        (22 + len(perm) + 1, "fm2_", "header", "token", dis),
    )
    add(f"curl -H 'authorization: bearer {att}'", (32, "fm2_", "header", "token", att))
    add(f"Authorization: Bearer FlyV1 {dis}", (29, "fm2_", "header", "token", dis))
    oauth = fo1(rng)
    add(
        f"FlyV1 {oauth},{perm}",
        (7, "fo1_", "header", "opaque", oauth),
        (7 + len(oauth) + 1, "fm2_", "header", "token", perm),
    )
    add(
        f"tokens: {perm}, {att},{dis}",
        (9, "fm2_", "bundle", "token", perm),
        (9 + len(perm) + 2, "fm2_", "bundle", "token", att),
        (9 + len(perm) + 2 + len(att) + 1, "fm2_", "bundle", "token", dis),
    )
    # Legacy labels: the same kid and rnd, another fingerprint.
    r, a = relabel(perm, "fm1r_"), relabel(dis, "fm1a_")
    add(f"legacy = {r!r}", (11, "fm1r_", "bare", "token", r))
    add(f"X-Token:{a}", (9, "fm1a_", "bare", "token", a))
    # JSON escapes.
    slashed = perm.replace("/", "\\/")
    add(f'{{"token": "{slashed}"}}', (12, "fm2_", "bare", "token", perm))
    uplus = att.replace("+", "\\u002B").replace("/", "\\u002f").replace("=", "\\u003d")
    add(f'{{"t":"{uplus}"}}', (7, "fm2_", "bare", "token", att))
    # URL escapes.
    pct = dis.replace("+", "%2B").replace("/", "%2f").replace("=", "%3D")
    add(f"GET /cb?token={pct}&x=1", (15, "fm2_", "bare", "token", dis))
    # Backslash-newline continuation.
    add([f'TOKEN="{perm[:100]}\\', f'{perm[100:]}"'], (8, "fm2_", "bare", "token", perm))
    add([f"{att[:50]}\\", f"{att[50:200]}\\", att[200:]], (1, "fm2_", "bare", "token", att))
    # Adjacent string literals.
    add([f'T = ("{perm[:77]}"', f'     "{perm[77:]}")'], (7, "fm2_", "bare", "token", perm))
    add([f"const t = '{dis[:5]}' +", f"  '{dis[5:120]}'", f"  + '{dis[120:]}';"],
        (12, "fm2_", "bare", "token", dis))  # fmt: skip
    add([f'T="{att[:30]}" \\', f'  "{att[30:]}"'], (4, "fm2_", "bare", "token", att))
    # Non-ASCII before a token: columns count characters.
    add(f"# clé → {perm}", (9, "fm2_", "bare", "token", perm))
    add(f"\t{oauth}", (2, "fo1_", "bare", "opaque", oauth))
    add(f"token:{perm}", (7, "fm2_", "bare", "token", perm))
    add("")
    add(perm, (1, "fm2_", "bare", "token", perm))  # the very end, without a newline
    return Corpus("\n".join(lines), expected)


def test_planted_corpus_exact_findings(minted: Minted) -> None:
    corpus = build_corpus(minted)
    got = [key_tuple(f) for f in find_tokens(corpus.text, "c.py") if f.kind != "malformed"]
    assert got == corpus.expected
    assert not [f for f in find_tokens(corpus.text) if f.kind == "malformed"]


@pytest.mark.parametrize(("filler", "from_end"), [("a_b ", False), ("aFb ", True)])
def test_labels_are_found_alike_from_either_end(
    minted: Minted, filler: str, from_end: bool
) -> None:
    # A first line of snake_case text makes the scanner search labels from
    # their "f"; one without "_" from their "_". Both find every label.
    first = filler.replace("F", "f") * 10000 + "fm2_ fo1_ fm1r_"
    corpus = build_corpus(minted)
    text = first + "\n" + corpus.text
    assert decoders.Labels.choose(text) is from_end
    # A short text is searched from "f": sampling it would cost a pass over it.
    assert decoders.Labels.choose(first[:30000]) is False
    got = [key_tuple(f) for f in find_tokens(text, "c.py") if f.kind != "malformed"]
    assert got == [(path, line + 1, *rest) for path, line, *rest in corpus.expected]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["f", "m", "o", "1", "2", "r", "a", "_", "fm", "fo1", "m1", "fm2_", "m2_", "1a_", "x"]
        ),
        max_size=40,
    ),
    st.integers(0, 8),
    st.booleans(),
)
def test_either_search_finds_the_labels_the_pattern_does(
    parts: list[str], pos: int, from_end: bool
) -> None:
    text = "".join(parts)
    expected = [(m.start(), m.group()) for m in decoders.LABEL_RE.finditer(text, pos)]
    labels = decoders.Labels(text, from_end)
    got, at = [], pos
    while (found := labels.next(at)) is not None:
        got.append(found)
        at = found[0] + len(found[1])
    assert got == expected


# How the scanner once found a header's scheme, kept as the oracle of its replacement.
SCHEME_ORACLE = re.compile(r"(?<![A-Za-z0-9])(?i:flyv1|bearer)[ \t]{1,64}\Z")


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "FlyV1",
                "flyv1",
                "FLYV1",
                "Bearer",
                "bEARER",
                "bearer",
                "lyv1",
                "earer",
                " ",
                "\t",
                " " * 60,
                "x",
                "_",
                "9",
                "-",
                ",",
                "\u0130",
                "\u212a",
                ":",
            ]
        ),
        max_size=12,
    ),
    st.sampled_from(["", "x" * 40, "y" * 95]),
)
@example(["Bearer", " " * 64], "")
@example(["Bearer", " " * 65], "")
@example(["FlyV1", "\t", " " * 63], "")
@example(["FlyV1", "\t"], "")
def test_the_scheme_before_a_label_is_read_as_the_pattern_reads_it(
    parts: list[str], before: str
) -> None:  # fmt: skip
    text = before + "".join(parts)
    p = len(text)
    buf = text + "fm2_"
    want = SCHEME_ORACLE.search(buf, max(0, p - scanner._LOOKBEHIND), p) is not None
    assert scanner._after_scheme(buf, p) is want


def test_crlf_lines(minted: Minted) -> None:
    corpus = build_corpus(minted)
    crlf = corpus.text.replace("\n", "\r\n")
    got = [key_tuple(f) for f in find_tokens(crlf, "c.py")]
    # A continuation may be "\\\r\n"; only columns on the first line of a
    # finding matter, and those do not move.
    assert got == corpus.expected


def test_attenuations_share_kid_and_rnd(minted: Minted) -> None:
    a, b = (next(find_tokens(t)).token_id for t in (minted.perm, minted.attenuated))
    assert (a.kid, a.rnd) == (b.kid, b.rnd) and a.fingerprint != b.fingerprint
    assert a.kid == kid_for_key(minted.key).hex()
    assert a.uuid == b.uuid == str(minted.root.nonce.uuid)
    d = next(find_tokens(minted.discharge))
    assert d.location == AUTH and d.token_id.rnd != a.rnd
    assert TokenId(None, None, "ab").uuid is None


def test_location_is_reported(minted: Minted) -> None:
    (f,) = find_tokens(minted.perm)
    assert f.location == API and f.path is None and str(f).startswith("<text>:1:1: token fm2_")


def test_extract_tokens_gives_the_unescaped_strings(minted: Minted) -> None:
    corpus = build_corpus(minted)
    got = list(extract_tokens(corpus.text, "c.py"))
    assert [key_tuple(f) for f, _ in got] == corpus.expected
    for f, tok in got:
        assert fp(tok) == f.token_id.fingerprint
        assert tok.startswith(f.label)
    text = f"{minted.perm[:-10]} {minted.perm}"
    assert [t for _, t in extract_tokens(text)] == [minted.perm]  # malformed ones are left out


def test_type_checks() -> None:
    with pytest.raises(TypeError):
        list(find_tokens(b"fm2_"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        list(extract_tokens(None))  # type: ignore[arg-type]


# -- false positives ------------------------------------------------------------


PLACEHOLDERS = [
    "fm2_xxx",
    "fm2_...",
    "FlyV1 fm2_<token>",
    "Authorization: FlyV1 fm2_...,fm2_...",
    'FLY_API_TOKEN="fm2_${FLY_API_TOKEN}"',
    "fm2_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "fm2_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
    "fo1_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "fo1_" + "-" * 43,
    "fm1r_REDACTED,fm1a_REDACTED",
    "perfm2_count = fm2_value + fm1r_total  # fo1_legacy",
    "fm2_",
    "fm1a_=",
    "fm2_abc\\",
    "fm2_abc%2",
    "fm2_abc\\u00",
    "fm2_" + "/" * 100,
]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_placeholders_are_not_reported(text: str) -> None:
    assert list(find_tokens(text)) == []
    assert list(find_tokens(f"x = '{text}'\n{text}\n")) == []


def test_random_base64_is_never_a_token() -> None:
    rng = random.Random(99)
    for _ in range(400):
        n = rng.randint(24, 600)
        payload = base64.b64encode(rng.randbytes(n)).decode()
        label = rng.choice(["fm2_", "fm1r_", "fm1a_"])
        found = list(find_tokens(f"token = {label}{payload}\n"))
        assert [f.kind for f in found] == ["malformed"]
        assert found[0].token_id == TokenId(None, None, fp(label + payload))
    # MessagePack that is a 4-element array but not a token.
    fake = "fm2_" + base64.b64encode(b"\x94\x93\xc4\x01a" + rng.randbytes(80)).decode()
    assert [f.kind for f in find_tokens(fake)] == ["malformed"]


def test_truncated_tokens_are_never_tokens(minted: Minted) -> None:
    for tok in (minted.perm, minted.discharge):
        for cut in range(len("fm2_") + 1, len(tok)):
            kinds = {f.kind for f in find_tokens(f"T={tok[:cut]}\n")}
            assert kinds <= {"malformed"}, cut
            # Long enough prefixes are reported, as malformed.
            if cut - 4 >= 64:
                assert kinds == {"malformed"}


def test_damaged_tokens(minted: Minted) -> None:
    tok = minted.perm
    damaged = tok[:100] + "!" + tok[100:]
    assert [f.kind for f in find_tokens(damaged)] == ["malformed"]
    padded = [
        t
        for t in (minted.perm, minted.attenuated, minted.discharge, minted.expired, minted.other)
        if t.endswith("=")
    ]
    assert padded
    for t in padded:
        assert [f.kind for f in find_tokens(t.rstrip("="))] == ["malformed"]
    # Extra padding is refused, as Go's decoder does (a run takes at most
    # two padding characters, so a third one ends it).
    tested = 0
    for t in (minted.perm, minted.attenuated, minted.discharge, minted.expired, minted.other):
        if not t.endswith("=="):
            tested += 1
            extra = t + "=" if t.endswith("=") else t + "=="
            assert [f.kind for f in find_tokens(extra)] == ["malformed"]
    assert tested


def test_malformed_fo1_lengths() -> None:
    rng = random.Random(3)
    long = "fo1_" + base64.urlsafe_b64encode(rng.randbytes(48)).decode().rstrip("=")
    assert [f.kind for f in find_tokens(long)] == ["malformed"]
    short = fo1(rng)[:30]
    assert list(find_tokens(short)) == []


def test_a_token_after_a_decoy_in_a_header(minted: Minted) -> None:
    text = f"Authorization: FlyV1 fm2_xxx,{minted.perm}"
    (f,) = find_tokens(text)
    assert (f.column, f.context, f.kind) == (30, "header", "token")


def test_join_keeps_a_complete_first_piece(minted: Minted) -> None:
    # A complete (padded or not) token followed by another literal is not joined.
    text = f'args = ["{minted.perm}" "{minted.attenuated}"]'
    assert [f.token_id for f in find_tokens(text)] == [tid(minted.perm), tid(minted.attenuated)]
    unpadded = [t for t in (minted.perm, minted.attenuated, minted.discharge) if "=" not in t]
    for tok in unpadded:
        text = f'print("{tok}" "Zm9vYmFy")'
        assert [f.token_id for f in find_tokens(text)] == [tid(tok)]


def unpadded_token(key: bytes) -> str:
    """A token string whose base64 has no padding (its bytes a multiple of 3 long)."""
    for n in range(3):
        tok = encode_token(Macaroon.new(kid_for_key(key), API + "x" * n, key))
        if not tok.endswith("="):
            return tok
    raise AssertionError("unreachable: one of three lengths is a multiple of 3")


@pytest.mark.parametrize("label", ["fm2_", "fm1r_", "fm1a_", "fo1_"])
def test_members_glued_without_a_comma(minted: Minted, label: str) -> None:
    # "...AAAfm2_BBB": the next label ends the run, even after unpadded base64.
    first = unpadded_token(minted.key)
    second = fo1(random.Random(7)) if label == "fo1_" else relabel(minted.perm, label)
    kind = "opaque" if label == "fo1_" else "token"
    for text, want in [
        (first + second, [("token", first), (kind, second)]),
        (f"FlyV1 {first}{second}", [("token", first), (kind, second)]),
        (f"x={second}{first}{first}", [(kind, second), ("token", first), ("token", first)]),
    ]:
        got = [(f.kind, f.token_id) for f in find_tokens(text)]
        assert got == [(k, tid(t) if k == "token" else TokenId(None, None, fp(t))) for k, t in want]


def test_a_token_ending_in_a_labels_letters_is_kept_whole(minted: Minted) -> None:
    # Its last three base64 characters spell "fm2": the run is cut before
    # them only when the whole run is not a token.
    data = base64.b64decode(unpadded_token(minted.key)[4:])
    data = data[:-3] + base64.b64decode("Afm2")
    tok = encode_token(data)
    assert tok.endswith("Afm2")
    assert [(f.kind, f.token_id) for f in find_tokens(tok + "_x")] == [("token", tid(tok))]


# -- secrets stay out of findings -------------------------------------------------


def test_findings_never_reveal_the_token(minted: Minted) -> None:
    corpus = build_corpus(minted)
    text = corpus.text + f"\nfm2_{base64.b64encode(bytes(range(200))).decode()}\n"
    findings = list(find_tokens(text, "c.py"))
    assert {f.kind for f in findings} == {"token", "opaque", "malformed"}
    secrets = []
    for tok in (minted.perm, minted.attenuated, minted.discharge):
        m = Macaroon.decode(base64.b64decode(tok[4:]))
        secrets += [tok, tok[-40:], tok[-20:], m._tail.hex(), base64.b64encode(m._tail).decode()]
    oauth = [t for f, t in extract_tokens(text) if f.kind == "opaque"]
    secrets += [t[4:] for t in oauth] + [t[-20:] for t in oauth]
    for f in findings:
        shown = [repr(f), str(f), f.to_json(), json.dumps(f.to_dict()), repr(f.token_id)]
        for s in secrets:
            for out in shown:
                assert s not in out
    # The token text is not stored at all.
    for f in findings:
        values = [*attrs.astuple(f, recurse=True)]
        assert f.label in values
        longer = [v for v in values if isinstance(v, str) and v != f.label]
        assert not any(v.startswith(f.label) for v in longer)


def test_finding_json_shape(minted: Minted) -> None:
    (f,) = find_tokens(f"FlyV1 {minted.perm}", "x.txt")
    assert json.loads(f.to_json()) == {
        "path": "x.txt",
        "line": 1,
        "column": 7,
        "label": "fm2_",
        "context": "header",
        "kind": "token",
        "token_id": {"kid": f.token_id.kid, "rnd": f.token_id.rnd, "fingerprint": fp(minted.perm)},
        "location": API,
        "allowed": False,
    }
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        f.line = 2  # type: ignore[misc]
    assert not hasattr(f, "__dict__")


# -- files, trees and chunks ------------------------------------------------------


def test_scan_paths_tree(tmp_path: Path, minted: Minted) -> None:
    tok = minted.perm
    (tmp_path / "a.py").write_text(f"T = '{tok}'\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text(f"\n\nFlyV1 {tok},{minted.discharge}\n")
    (tmp_path / "sub" / "empty").write_text("")
    (tmp_path / "bin.dat").write_bytes(b"\x89PNG\x00\x01" + tok.encode())
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(tok)
    (tmp_path / "sub" / ".git").mkdir()
    (tmp_path / "sub" / ".git" / "HEAD").write_text(tok)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + tok.encode())
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 " + tok.encode())
    got = [(f.path, f.line, f.column, f.context) for f in scan_paths(tmp_path)]
    base = str(tmp_path)
    assert got == [
        (os.path.join(base, "a.py"), 1, 6, "bare"),
        (os.path.join(base, "bom.txt"), 1, 1, "bare"),
        (os.path.join(base, "latin1.txt"), 1, 6, "bare"),  # one character per bad byte
        (os.path.join(base, "sub", "b.txt"), 3, 7, "header"),
        (os.path.join(base, "sub", "b.txt"), 3, 8 + len(tok), "header"),
    ]
    # Several roots, a file among them; a str path.
    got2 = [f.path for f in scan_paths([str(tmp_path / "a.py"), tmp_path / "sub"])]
    assert got2 == [str(tmp_path / "a.py"), *[os.path.join(base, "sub", "b.txt")] * 2]
    assert list(scan_paths(str(tmp_path / "bin.dat"))) == []


def test_scan_paths_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError):
        list(scan_paths(missing))
    errors: list[OSError] = []
    assert list(scan_paths([missing], on_error=errors.append)) == []
    assert len(errors) == 1 and isinstance(errors[0], FileNotFoundError)
    with pytest.raises(ValueError, match="chunk_size"):
        list(scan_paths(tmp_path, chunk_size=0))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_scan_paths_skips_special_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    assert list(scan_paths(tmp_path)) == []


def _planted_text(minted: Minted, rng: random.Random, size: int) -> str:
    parts = []
    total = 0
    toks = [minted.perm, minted.attenuated, minted.discharge]
    while total < size:
        filler = "".join(rng.choice("abcdef fm_\n\t{}é€😀") for _ in range(rng.randint(0, 300)))
        tok = rng.choice(toks)
        form = rng.randrange(4)
        if form == 0:
            piece = f"{filler}FlyV1 {tok},{rng.choice(toks)}\n"
        elif form == 1:
            piece = f'{filler}"{tok[:60]}"\n  "{tok[60:]}"'
        elif form == 2:
            piece = filler + tok.replace("/", "\\/")
        else:
            piece = f"{filler}{tok[:-30]}\n"  # truncated
        parts.append(piece)
        total += len(piece)
    return "".join(parts)


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 700, 4096])
def test_chunks_straddling_tokens(tmp_path: Path, minted: Minted, chunk_size: int) -> None:
    text = _planted_text(minted, random.Random(chunk_size), 30_000)
    whole = list(find_tokens(text, "f"))
    assert sum(f.kind == "token" for f in whole) > 20
    path = tmp_path / "f"
    path.write_text(text, encoding="utf-8")
    streamed = list(scan_paths(path, chunk_size=chunk_size))
    assert [key_tuple(f)[1:] for f in streamed] == [key_tuple(f)[1:] for f in whole]


def test_large_file_token_on_every_chunk_boundary(tmp_path: Path, minted: Minted) -> None:
    chunk = 64 * 1024
    tok = minted.perm
    line = "x = compute(value, offset) + fmt.format(y)  # filler\n"
    parts: list[str] = []
    size = 0
    expected = []
    lineno = 1
    for k in range(24):
        boundary = (k + 1) * chunk
        # Fill up to just before the boundary, then put the token across it.
        while size + len(line) < boundary - len(tok) // 2 - (k * 37) % len(tok):
            parts.append(line)
            size += len(line)
            lineno += 1
        pad = boundary - len(tok) // 2 - (k * 37) % len(tok) - size
        parts.append("#" * pad + tok + "\n")
        expected.append((lineno, pad + 1))
        size += pad + len(tok) + 1
        lineno += 1
    path = tmp_path / "big.txt"
    path.write_text("".join(parts))
    assert path.stat().st_size > 1_500_000
    got = [(f.line, f.column, f.token_id) for f in scan_paths(path, chunk_size=chunk)]
    assert got == [(ln, col, tid(tok)) for ln, col in expected]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12_000), max_size=40))
def test_any_chunking_gives_the_same_findings(cuts: list[int]) -> None:
    text = _CHUNK_TEXT
    assert sum(f.kind == "token" for f in _CHUNK_WHOLE) > 10
    bounds = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    got = [h.finding for h in scanner._scan(pieces, None)]
    assert got == _CHUNK_WHOLE


def _chunk_corpus() -> tuple[str, list[Finding]]:
    rng = random.Random(11)
    key = rng.randbytes(32)
    toks = []
    for i in range(3):
        m = Macaroon.new(kid_for_key(key), API, key)
        m.add(Organization(i, Action.READ))
        toks.append(encode_token(m))
    text = ""
    while len(text) < 12_000:
        t = rng.choice(toks)
        text += rng.choice(["é\n", "ab ", "\r\n", "€😀", "fm2"]) * rng.randint(0, 40)
        text += rng.choice([t, f"FlyV1 {t},{t}", f'"{t[:50]}"\n"{t[50:]}"', t[:-9]])
    return text, list(find_tokens(text))


_CHUNK_TEXT, _CHUNK_WHOLE = _chunk_corpus()


def test_no_length_cap(tmp_path: Path, minted: Minted) -> None:
    m = Macaroon.new(kid_for_key(minted.key), API, minted.key)
    m.add(*[Apps({i: Action.READ}) for i in range(3000)])
    big = encode_token(m)
    assert len(big) > 20_000
    header = "FlyV1 " + ",".join([minted.perm] * 300 + [big])
    text = f"x\n{header}\n"
    found = list(find_tokens(text, "h"))
    assert len(found) == 301 and {f.context for f in found} == {"header"}
    assert found[-1].token_id == tid(big) and found[-1].column == 7 + 300 * (len(minted.perm) + 1)
    (tmp_path / "h").write_text(text)
    streamed = list(scan_paths(tmp_path / "h", chunk_size=7))
    assert [key_tuple(f)[1:] for f in streamed] == [key_tuple(f)[1:] for f in found]


@pytest.mark.parametrize("pieces", [1, 7])
def test_oversized_candidates_are_skipped(minted: Minted, pieces: int) -> None:
    run = "fm2_" + "QUJD" * 2000 + "\\\n" + "QUJD" * 10
    text = f"a\n{run}\n{minted.perm}\n"
    size = -(-len(text) // pieces)
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    got = [h.finding for h in scanner._scan(chunks, "p", max_candidate=1000)]
    assert [(f.line, f.column, f.kind, f.token_id) for f in got] == [
        (2, 1, "malformed", TokenId(None, None, None)),
        (4, 1, "token", tid(minted.perm)),
    ]


@pytest.mark.parametrize("pieces", [1, 3])
@pytest.mark.parametrize("split", ["", "\\\n", '" "'])
def test_a_candidate_as_long_as_the_cap_is_examined(
    minted: Minted, pieces: int, split: str
) -> None:
    # The cap counts the candidate's text from its label: its escapes and joins too.
    tok = minted.perm
    cut = len(tok) // 2
    written = tok[:cut] + split + tok[cut:]
    text = f'a\nx = "{written}"\n'
    size = -(-len(text) // pieces)
    chunks = [text[i : i + size] for i in range(0, len(text), size)]

    def scan(cap: int) -> list[tuple[str, TokenId]]:
        return [(h.finding.kind, h.finding.token_id) for h in scanner._scan(chunks, "p", cap)]

    assert scan(len(written)) == [("token", tid(tok))]
    assert scan(len(written) - 1) == [("malformed", TokenId(None, None, None))]


# -- GitHub secret-scanning alerts ------------------------------------------------

# The sample request and public key of GitHub's documentation for the secret
# scanning partner program ("Implement signature verification").
SAMPLE_KEY_ID = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"
SAMPLE_SIGNATURE = (
    "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4Xa"
    "eSt/AO1RtBY66YcAdjxji410VQV4xg=="
)
SAMPLE_BODY = (
    b'[{"source":"commit","token":"some_token","type":"some_type",'
    b'"url":"https://example.com/base-repo-url/"}]'
)
SAMPLE_KEYS = {
    "public_keys": [
        {
            "key_identifier": SAMPLE_KEY_ID,
            "key": "-----BEGIN PUBLIC KEY-----\n"
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\n"
            "AjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n"
            "-----END PUBLIC KEY-----\n",
            "is_current": True,
        }
    ]
}


def test_github_published_sample_verifies() -> None:
    headers = {
        "Github-Public-Key-Identifier": SAMPLE_KEY_ID,
        "Github-Public-Key-Signature": SAMPLE_SIGNATURE,
    }
    assert len(SAMPLE_BODY) == 104  # the sample's Content-Length
    (match,) = verify_github_alert(SAMPLE_BODY, headers, json.dumps(SAMPLE_KEYS))
    assert match == GitHubTokenMatch(
        "some_token", "some_type", "https://example.com/base-repo-url/", "commit"
    )
    feedback = classify_github_alert([match], lambda kid: None)
    assert feedback == [
        GitHubFeedback(hashlib.sha256(b"some_token").hexdigest(), "some_type", "false_positive")
    ]
    with pytest.raises(AlertVerificationError, match="bad alert signature"):
        verify_github_alert(SAMPLE_BODY.replace(b"some_token", b"some_tokem"), headers, SAMPLE_KEYS)


class GitHub:
    """A stand-in for GitHub: signs alerts with its own P-256 keys."""

    def __init__(self) -> None:
        self.keys = {f"id-{i}": ec.generate_private_key(ec.SECP256R1()) for i in range(2)}

    def document(self) -> dict[str, Any]:
        return {
            "public_keys": [
                {
                    "key_identifier": ident,
                    "key": k.public_key()
                    .public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    )
                    .decode(),
                    "is_current": ident == "id-1",
                }
                for ident, k in self.keys.items()
            ]
        }

    def sign(self, body: bytes, ident: str = "id-1") -> dict[str, str]:
        sig = self.keys[ident].sign(body, ec.ECDSA(hashes.SHA256()))
        return {
            "GITHUB-PUBLIC-KEY-IDENTIFIER": ident,
            "github-public-key-signature": base64.b64encode(sig).decode(),
        }


def alert(*tokens: str, token_type: str = "fly_token") -> bytes:
    return json.dumps(
        [
            {
                "token": t,
                "type": token_type,
                "url": f"https://github.com/o/r/blob/x/{i}",
                "source": "content",
            }
            for i, t in enumerate(tokens)
        ]
    ).encode()


@pytest.fixture
def github() -> GitHub:
    return GitHub()


def test_github_good_signature(github: GitHub) -> None:
    body = alert("fm2_abc", "other")
    keys = GitHubPublicKeys.from_json(github.document())
    assert keys.current == frozenset({"id-1"}) and set(keys.keys) == {"id-0", "id-1"}
    assert "id-0" in repr(keys)
    for ident in ("id-0", "id-1"):  # a key that is no longer current still verifies
        matches = verify_github_alert(body, github.sign(body, ident), keys)
        assert [(m.token, m.token_type, m.source) for m in matches] == [
            ("fm2_abc", "fly_token", "content"),
            ("other", "fly_token", "content"),
        ]
    # The document may also be given as JSON text or bytes.
    doc = json.dumps(github.document())
    assert len(verify_github_alert(body, github.sign(body), doc)) == 2
    assert len(verify_github_alert(body, github.sign(body), doc.encode())) == 2


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda b, h: (b + b" ", h), "bad alert signature"),
        (lambda b, h: (b, {**h, "github-public-key-signature": "AAAA"}), "bad alert signature"),
        (lambda b, h: (b, {**h, "github-public-key-signature": "!!"}), "not base64"),
        (lambda b, h: (b, {**h, "GITHUB-PUBLIC-KEY-IDENTIFIER": "id-9"}), "unknown"),
        (
            lambda b, h: (b, {k: v for k, v in h.items() if "SIGNATURE" not in k.upper()}),
            "missing Github-Public-Key-Signature",
        ),
        (
            lambda b, h: (b, {k: v for k, v in h.items() if "IDENTIFIER" not in k.upper()}),
            "missing Github-Public-Key-Identifier",
        ),
        (lambda b, h: (b, {**h, "Github-Public-Key-Identifier": "id-1"}), "malformed"),  # twice
        (lambda b, h: (b, {**h, "github-public-key-signature": "  "}), "malformed"),
        (lambda b, h: (b, {}), "missing"),
    ],
)
def test_github_refused(github: GitHub, tamper: Any, message: str) -> None:
    body = alert("fm2_abc")
    b, h = tamper(body, github.sign(body))
    with pytest.raises(AlertVerificationError, match=message) as info:
        verify_github_alert(b, h, github.document())
    assert isinstance(info.value, VerificationError) and isinstance(info.value, MacaroonError)


def test_github_signature_by_the_wrong_key(github: GitHub) -> None:
    body = alert("fm2_abc")
    headers = github.sign(body, "id-0")
    headers["GITHUB-PUBLIC-KEY-IDENTIFIER"] = "id-1"
    with pytest.raises(AlertVerificationError, match="bad alert signature"):
        verify_github_alert(body, headers, github.document())


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b'{"token": "fm2_x", "type": "t"}',
        b"[1]",
        b'[{"type": "t"}]',
        b'[{"token": "", "type": "t"}]',
        b'[{"token": "fm2_secretsecret", "type": 3}]',
        b'[{"token": "fm2_secretsecret", "type": "t", "url": 5}]',
    ],
)
def test_github_malformed_body(github: GitHub, body: bytes) -> None:
    with pytest.raises(AlertVerificationError) as info:
        verify_github_alert(body, github.sign(body), github.document())
    assert "secret" not in str(info.value)


def test_github_body_checked_before_parsing(github: GitHub) -> None:
    body = b"not json"
    with pytest.raises(AlertVerificationError, match="bad alert signature"):
        verify_github_alert(body, github.sign(b"other"), github.document())
    with pytest.raises(TypeError):
        verify_github_alert("[]", github.sign(b"[]"), github.document())  # type: ignore[arg-type]


def test_github_empty_alert_and_optional_fields(github: GitHub) -> None:
    assert verify_github_alert(b"[]", github.sign(b"[]"), github.document()) == []
    body = b'[{"token": "fm2_a", "type": "t", "url": null}]'
    (m,) = verify_github_alert(body, github.sign(body), github.document())
    assert (m.url, m.source) == ("", "")


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        {},
        {"public_keys": {}},
        {"public_keys": [1]},
        {"public_keys": [{"key_identifier": "a"}]},
        {"public_keys": [{"key_identifier": "", "key": "x"}]},
        {"public_keys": [{"key_identifier": "a", "key": "-----BEGIN PUBLIC KEY-----\nAA==\n"}]},
    ],
)
def test_github_malformed_key_documents(document: Any) -> None:
    with pytest.raises(AlertVerificationError):
        GitHubPublicKeys.from_json(document)


def test_github_keys_must_be_p256() -> None:
    for private in (ec.generate_private_key(ec.SECP384R1()), rsa.generate_private_key(65537, 2048)):
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        doc = {"public_keys": [{"key_identifier": "k", "key": pem.decode()}]}
        with pytest.raises(AlertVerificationError, match="P-256"):
            GitHubPublicKeys.from_json(doc)


def test_github_classification_and_revocation(github: GitHub, minted: Minted) -> None:
    forged = Macaroon.decode(base64.b64decode(minted.perm[4:]))
    forged._tail = bytes(32)  # structurally fine, signature wrong
    reported = [
        minted.perm,  # true
        f"FlyV1 {minted.attenuated},{minted.discharge}",  # true: the attenuated token verifies
        minted.other,  # a key the keyring does not know
        encode_token(forged),  # forged
        minted.expired,  # expired, but genuine: true
        minted.perm,  # again: revoked once only
        fo1(random.Random(1)),  # cannot be checked
        "fm2_" + base64.b64encode(os.urandom(120)).decode(),  # noise
        minted.perm.replace("/", "\\/"),  # escaped as found in JSON
    ]
    body = alert(*reported)
    revoked: list[tuple[TokenId, bytes]] = []
    asked: list[bytes] = []

    def key_for_kid(kid: bytes) -> bytes | None:
        asked.append(kid)
        return minted.key if kid == kid_for_key(minted.key) else None

    feedback = handle_github_alert(
        body,
        github.sign(body),
        github.document(),
        key_for_kid,
        revoke=lambda token_id, data: revoked.append((token_id, data)),
    )
    labels = [f.label for f in feedback]
    assert labels == [
        "true_positive",
        "true_positive",
        "false_positive",
        "false_positive",
        "true_positive",
        "true_positive",
        "false_positive",
        "false_positive",
        "true_positive",
    ]
    assert [f.token_hash for f in feedback] == [
        hashlib.sha256(t.encode()).hexdigest() for t in reported
    ]
    assert {f.token_type for f in feedback} == {"fly_token"}
    # Each distinct verified token is revoked once, with its id and bytes.
    assert [(t, d) for t, d in revoked] == [
        (tid(minted.perm), base64.b64decode(minted.perm[4:])),
        (tid(minted.attenuated), base64.b64decode(minted.attenuated[4:])),
        (tid(minted.expired), base64.b64decode(minted.expired[4:])),
    ]
    assert kid_for_key(minted.key) in asked
    # The feedback body GitHub accepts.
    sent = json.loads(GitHubFeedback.to_json(feedback))
    assert sent[0] == {
        "token_hash": hashlib.sha256(minted.perm.encode()).hexdigest(),
        "token_type": "fly_token",
        "label": "true_positive",
    }
    assert all(set(item) == {"token_hash", "token_type", "label"} for item in sent)
    for tok in reported:
        assert tok[-30:] not in GitHubFeedback.to_json(feedback)


def test_github_discharge_verifies_with_its_key(minted: Minted) -> None:
    # A third party can classify discharges: their KID is the ticket, which
    # it opens to the discharge's root key.
    dis = Macaroon.decode(base64.b64decode(minted.discharge[4:]))

    def key_for_ticket(kid: bytes) -> bytes | None:
        plain = crypto.unseal(minted.ka, kid)
        return None if plain is None else _ticket_fields(plain)[0]

    match = GitHubTokenMatch(minted.discharge, "fly_token")
    assert classify_github_alert([match], key_for_ticket)[0].label == "true_positive"
    assert dis.is_proof


def test_github_keyring_errors_propagate(minted: Minted) -> None:
    def broken(kid: bytes) -> bytes | None:
        raise RuntimeError("keyring down")

    with pytest.raises(RuntimeError, match="keyring down"):
        classify_github_alert([GitHubTokenMatch(minted.perm, "t")], broken)


def test_github_match_repr_hides_the_token(minted: Minted) -> None:
    m = GitHubTokenMatch(minted.perm, "fly_token", "u", "commit")
    assert minted.perm[-30:] not in repr(m) and "fly_token" in repr(m)
    assert m.token_hash == hashlib.sha256(minted.perm.encode()).hexdigest()


# -- the subpackage's layout ---------------------------------------------------------

# Every name the single module macaroons_authz.leaks had, and its new home.
LEAKS_HOMES = {
    "DEFAULT_CHUNK_SIZE": "files",
    "scan_paths": "files",
    "scan_stream": "files",
    "ScanStats": "files",
    "GITHUB_KEY_IDENTIFIER_HEADER": "github",
    "GITHUB_SIGNATURE_HEADER": "github",
    "AlertVerificationError": "github",
    "GitHubFeedback": "github",
    "GitHubPublicKeys": "github",
    "GitHubTokenMatch": "github",
    "classify_github_alert": "github",
    "handle_github_alert": "github",
    "verify_github_alert": "github",
    "REDACTED": "redaction",
    "redact_tokens": "redaction",
    "MAX_CANDIDATE_CHARS": "scanner",
    "Context": "scanner",
    "Kind": "scanner",
    "Finding": "scanner",
    "TokenId": "scanner",
    "extract_tokens": "scanner",
    "find_tokens": "scanner",
    # Added with issue 19.
    "ALLOW_MARKER": "scanner",
    "MAX_MALFORMED": "scanner",
    "Baseline": "baseline",
    "BaselineError": "baseline",
    "BlobFinding": "git",
    "GitError": "git",
    "scan_history": "git",
    "scan_staged": "git",
    "RedactingFilter": "redaction",
    "redact": "redaction",
    "to_sarif": "sarif",
}


@pytest.mark.parametrize("name", sorted(LEAKS_HOMES))
def test_leaks_names_are_their_new_modules_objects(name: str) -> None:
    home = importlib.import_module(f"macaroons_authz.leaks.{LEAKS_HOMES[name]}")
    assert getattr(leaks_package, name) is getattr(home, name)
    if name in macaroons_authz.__all__:
        assert getattr(macaroons_authz, name) is getattr(home, name)


def test_leaks_all_keeps_its_names_and_redact_tokens_is_at_the_top() -> None:
    assert sorted(leaks_package.__all__) == sorted(
        set(LEAKS_HOMES) - {"REDACTED", "Context", "Kind"}
    )
    assert macaroons_authz.redact_tokens is redact_tokens_home
    assert "redact_tokens" in macaroons_authz.__all__


def test_leaks_imports_without_a_warning() -> None:
    # The old path is still the right one: importing it must not warn.
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from macaroons_authz.leaks import find_tokens, redact_tokens, scan_paths\n"
        "from macaroons_authz.leaks import GitHubPublicKeys, REDACTED\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
