"""Tokens the scanner missed or mishandled (issue 19), each on a token minted here.

Every token comes from the library on a throw-away key; each test names the
shape of text a real user puts a token in.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macaroons_authz import (
    Action,
    Macaroon,
    Organization,
    TokenId,
    discharge_ticket,
    encode_token,
    find_tokens,
    kid_for_key,
    scan_paths,
)
from macaroons_authz.leaks import ScanStats, scanner
from tests.test_attack_cli_scan import call

API = "https://api.fly.io/v1"
AUTH = "https://api.fly.io/aaa/v1"
KEY = bytes(range(32))
KA = bytes(range(100, 132))


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tid(token: str) -> TokenId:
    m = Macaroon.decode(base64.b64decode(token.partition("_")[2]))
    return TokenId((m.nonce.kid or b"").hex(), (m.nonce.rnd or b"").hex(), fp(token))


def unpadded_pair() -> tuple[str, str]:
    """A permission token with no '=' padding, and a discharge bound to it."""
    for n in range(3):
        root = Macaroon.new(kid_for_key(KEY), API + "x" * n, KEY)
        root.add(Organization(1234, Action.READ))
        root.add_3p(KA, AUTH)
        perm = encode_token(root)
        if not perm.endswith("="):
            ticket = root.third_party_tickets()[AUTH][0]
            _, dis = discharge_ticket(KA, AUTH, ticket)
            dis.bind(root)
            return perm, encode_token(dis)
    raise AssertionError("unreachable: one of three lengths is a multiple of 3")


PERM, DIS = unpadded_pair()
PADDED = encode_token(Macaroon.new(kid_for_key(KEY), API + "/padded", KEY))
assert PADDED.endswith("=")
FO1 = "fo1_" + base64.urlsafe_b64encode(random.Random(3).randbytes(32)).decode().rstrip("=")


def kinds(text: str) -> list[tuple[str, TokenId]]:
    return [(f.kind, f.token_id) for f in find_tokens(text)]


# -- exit status -------------------------------------------------------------------


def test_an_fo1_token_alone_exits_1(tmp_path: Path) -> None:
    # fo1_ is a live credential (flyctl's bearer to the auth service).
    (tmp_path / "ci.env").write_text(f"FLY_ACCESS_TOKEN={FO1}\n")
    code, out, err = call(["scan", str(tmp_path)])
    assert (code, err) == (1, "")
    assert "0 token(s), 0 malformed, 1 opaque (fo1_) found" in out
    assert FO1[4:] not in out


def test_a_malformed_candidate_alone_exits_0(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("fm2_" + base64.b64encode(bytes(range(60))).decode() + "\n")
    code, out, _ = call(["scan", str(tmp_path)])
    assert code == 0
    assert "0 token(s), 1 malformed, 0 opaque (fo1_) found" in out


def test_a_flood_of_malformed_candidates_is_capped_but_tokens_are_not() -> None:
    rng = random.Random(5)
    # Payloads starting "A": no token's does (its first byte is an array header).
    flood = [f"fm2_A{base64.b64encode(rng.randbytes(33)).decode()} " for _ in range(3000)]
    text = "".join(flood[:1500]) + f"FlyV1 {PERM} " + "".join(flood[1500:]) + FO1
    found = list(find_tokens(text))
    assert sum(f.kind == "malformed" for f in found) == scanner.MAX_MALFORMED
    assert [(f.kind, f.token_id) for f in found if f.kind != "malformed"] == [
        ("token", tid(PERM)),
        ("opaque", TokenId(None, None, fp(FO1))),
    ]


def test_token_like_malformed_candidates_are_capped_too() -> None:
    # Payloads that start as a token's does ("l") must be examined, but a
    # flood of them yields no more malformed findings than any other.
    rng = random.Random(6)
    flood = [f"fm2_l{base64.b64encode(rng.randbytes(33)).decode()} " for _ in range(3000)]
    text = "".join(flood[:2000]) + f"FlyV1 {PERM} " + "".join(flood[2000:])
    found = list(find_tokens(text))
    assert sum(f.kind == "malformed" for f in found) == scanner.MAX_MALFORMED
    assert [(f.kind, f.token_id) for f in found if f.kind != "malformed"] == [("token", tid(PERM))]


@pytest.mark.parametrize("sep", ["", ",", " ", "A "])
def test_labels_packed_back_to_back_are_passed_over_in_bulk(sep: str) -> None:
    # Labels with nothing worth reporting after them, by the tens of thousands:
    # past the flood's threshold they cost one match, and a token among them
    # is still found.
    text = ("fm2_" + sep) * 30_000 + f"\nFlyV1 {PERM}\n" + ("fm2_" + sep) * 30_000 + FO1
    found = [(f.kind, f.token_id) for f in find_tokens(text)]
    assert found == [("token", tid(PERM)), ("opaque", TokenId(None, None, fp(FO1)))]


@pytest.mark.parametrize("chunk", [5, 997, 1 << 17])
def test_a_flooded_text_in_chunks_finds_what_it_finds_whole(chunk: int) -> None:
    # The bulk skip stops short of a buffer's end (a label may be cut there)
    # and of a base64-wrapped value.
    wrapped = base64.b64encode(f"FlyV1 {PERM}".encode()).decode()
    flood = "fm2_," * 12_000
    text = f"{flood}x: {wrapped}\n{flood}{PERM} {flood}{FO1}\n"
    whole = [(f.line, f.column, f.kind, f.token_id) for f in find_tokens(text)]
    assert [k for _, _, k, _ in whole] == ["token", "token", "opaque"]
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    got = [h.finding for h in scanner._scan(chunks, None)]
    assert [(f.line, f.column, f.kind, f.token_id) for f in got] == whole


@pytest.mark.parametrize("chunk", [7, 97, 4096])
def test_an_allow_marker_long_before_its_token_is_seen_in_chunks_too(chunk: int) -> None:
    # The marker may stand up to 512 characters before a token on its line;
    # a chunked scan kept only 96 of them, so scan_paths and find_tokens
    # disagreed on a long line.
    text = f"# macaroons-authz: allow {'x' * 400} {PERM}\nx = {PERM}\n"
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    got = [(h.finding.line, h.finding.allowed) for h in scanner._scan(chunks, None)]
    assert got == [(f.line, f.allowed) for f in find_tokens(text)] == [(1, True), (2, False)]


def _pieces() -> list[str]:
    wrapped = base64.b64encode(f"FlyV1 {PERM}".encode()).decode()
    cut = len(PERM) // 2
    return [
        PERM, DIS, FO1, f"FlyV1 {PERM}", f"Bearer  {DIS},{PERM}", PERM.replace("/", "\\/"),
        f'"{PERM[:cut]}" "{PERM[cut:]}"', f"{PERM[:cut]}\\\n{PERM[cut:]}", wrapped,
        PERM.replace("+", "%2B").replace("=", "%3D"), PERM[:cut], "fm2_", "fo1_", "fm1r_",
        "fm2_" + "QUJD" * 12, "# macaroons-authz: allow", "\n", " ", ",", "\n    ", "x" * 90,
        "snake_case", "Zm0yX", "_", "f",
    ]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_pieces()), max_size=40), st.sampled_from([7, 64, 997]))
def test_a_text_in_chunks_has_the_findings_it_has_whole(parts: list[str], chunk: int) -> None:
    # Every chunk boundary is a place where state must carry over: line
    # counts, lists of members, the scheme and allow marker before a label,
    # candidates that the next chunk extends.
    text = "".join(parts)
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    got = [h.finding for h in scanner._scan(chunks, None)]
    assert got == list(find_tokens(text))


def test_tokens_found_again_are_the_same_and_the_memo_of_them_is_bounded() -> None:
    # Tokens lately found are remembered (a token repeated across a history
    # is decoded once): repeats must be reported as the first time, and the
    # memo must stay within its bound of tokens, however many there are.
    toks = []
    for n in range(scanner._RECENT_ENTRIES + 20):
        m = Macaroon.new(kid_for_key(KEY), f"{API}/{n}", KEY)
        toks.append(encode_token(m))
    long = Macaroon.new(kid_for_key(KEY), API + "/" + "x" * scanner._RECENT_CHARS, KEY)
    toks.append(encode_token(long))
    text = "\n".join(toks + toks) + "\n"
    got = [(f.line, f.kind, f.location, f.token_id) for f in find_tokens(text)]
    want = [
        (i + 1, "token", Macaroon.decode(base64.b64decode(t[4:])).location, tid(t))
        for i, t in enumerate(toks + toks)
    ]
    assert got == want
    assert 0 < len(scanner._RECENT) <= scanner._RECENT_ENTRIES
    assert all(len(t) <= scanner._RECENT_CHARS for t in scanner._RECENT)


# -- glued members ----------------------------------------------------------------


def test_an_unpadded_permission_token_glued_to_its_discharge() -> None:
    # No comma: the discharge's label follows the permission token's base64.
    assert not PERM.endswith("=")
    want = [("token", tid(PERM)), ("token", tid(DIS))]
    assert kinds(PERM + DIS) == want
    assert kinds(f"Authorization: FlyV1 {PERM}{DIS}") == want
    assert [f.context for f in find_tokens(f"FlyV1 {PERM}{DIS}")] == ["header", "header"]


# -- adjacent string literals --------------------------------------------------------


def split(token: str, size: int) -> list[str]:
    """*token* in pieces of *size* characters, the label kept whole in the first."""
    cut = len(token.partition("_")[0]) + 1 + size
    return [token[:cut]] + [token[i : i + size] for i in range(cut, len(token), size)]


@pytest.mark.parametrize(
    ("joiner", "quote"),
    [('" "', '"'), ("' + '", "'"), ('"\n    "', '"'), ("' . '", "'")],
)
def test_many_adjacent_literals_are_joined(joiner: str, quote: str) -> None:
    for token in (PERM, PADDED, DIS):
        text = f"t = ({quote}" + joiner.join(split(token, 3)) + f"{quote})"
        assert kinds(text) == [("token", tid(token))]


def test_joining_literals_decodes_each_candidate_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Was one decode of the whole join per literal: quadratic in the pieces.
    calls = []
    real = scanner._classify_macaroon

    def counting(label: str, payload: str) -> scanner._Classified:
        calls.append(len(payload))
        return real(label, payload)

    monkeypatch.setattr(scanner, "_classify_macaroon", counting)
    pieces = split(PERM, 2)
    assert len(pieces) > 100
    tail = "\n" + " " * 600  # the candidate is decided in one pass
    assert kinds('x = ("' + '" "'.join(pieces) + '")' + tail) == [("token", tid(PERM))]
    assert calls == [len(PERM) - 4]
    junk = ["AbCdEfGhIjKlMnOp"[i % 16] * 2 for i in range(2000)]
    calls.clear()
    found = list(find_tokens('y = ("fm2_' + '" "'.join(junk) + '")' + tail))
    assert [f.kind for f in found] == ["malformed"]
    assert calls == [4000]


def test_literal_joins_stop_at_a_complete_token_and_at_another_label() -> None:
    assert kinds(f'a = ("{PERM}" "Zm9vYmFyYmF6")') == [("token", tid(PERM))]
    assert kinds(f'a = ("{PERM}" "{DIS}")') == [("token", tid(PERM)), ("token", tid(DIS))]


# -- UTF-16 and binary files ----------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
    ],
)
def test_utf16_files_are_scanned_decoded(tmp_path: Path, codec: str, bom: bytes) -> None:
    # PowerShell 5.1's Out-File and ">" write UTF-16 LE with a BOM.
    text = f'# café\r\n$env:FLY_API_TOKEN = "FlyV1 {PERM},{DIS}"\r\n'
    path = tmp_path / "profile.ps1"
    path.write_bytes(bom + text.encode(codec))
    stats = ScanStats()
    got = [(f.line, f.column, f.context, f.token_id) for f in scan_paths(path, stats=stats)]
    col = len('$env:FLY_API_TOKEN = "FlyV1 ') + 1
    assert got == [(2, col, "header", tid(PERM)), (2, col + len(PERM) + 1, "header", tid(DIS))]
    assert (stats.files, stats.binary) == (1, [])


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_utf16_across_chunks(tmp_path: Path, chunk_size: int) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + ("x\n" * 5000 + PERM).encode("utf-16-le"))
    got = [(f.line, f.token_id) for f in scan_paths(path, chunk_size=chunk_size)]
    assert got == [(5001, tid(PERM))]


def test_binary_files_are_counted_and_listed_with_v(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + PERM.encode())
    (tmp_path / "ok.txt").write_text("nothing\n")
    stats = ScanStats()
    assert list(scan_paths(tmp_path, stats=stats)) == []
    assert stats.binary == [str(tmp_path / "logo.png")]
    assert stats.files == 1
    code, out, _ = call(["scan", str(tmp_path)])
    assert code == 0
    assert out.splitlines()[-1] == "skipped 1 binary, 0 too large file(s)"
    code, out, _ = call(["scan", "-v", str(tmp_path)])
    assert out.splitlines()[-1] == f"    binary: {tmp_path / 'logo.png'}"


# -- hard-wrapped lines ---------------------------------------------------------------


def wrap(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)]


def test_a_header_hard_wrapped_in_markdown() -> None:
    lines = wrap(f"Authorization: FlyV1 {PERM}", 76)
    text = "Use this header:\n\n" + "\n".join(lines) + "\n\nThen deploy.\n"
    got = [(f.line, f.column, f.context, f.token_id) for f in find_tokens(text)]
    assert got == [(3, 22, "header", tid(PERM))]


def test_a_yaml_folded_scalar() -> None:
    body = "\n".join("  " + line for line in wrap(f"FlyV1 {PADDED}", 70))
    text = f"env:\n  FLY_API_TOKEN: >-\n{body}\nother: 1\n"
    got = [(f.line, f.column, f.context, f.token_id) for f in find_tokens(text)]
    assert got == [(3, 9, "header", tid(PADDED))]


@pytest.mark.parametrize(("cont", "indent"), [("^", ""), ("^", "  "), ("\\", "    "), ("\\", "")])
def test_windows_and_shell_continuations(cont: str, indent: str) -> None:
    first, rest = PERM[:60], wrap(PERM[60:], 70)
    text = f"set T=FlyV1 {first}{cont}\r\n" + f"{cont}\r\n".join(indent + r for r in rest)
    assert kinds(text + "\r\necho done\r\n") == [("token", tid(PERM))]


def test_wrapped_lines_are_joined_only_into_a_token() -> None:
    # A complete token is not extended by the next line's words...
    assert kinds(f"{PERM}\nreturn value\n") == [("token", tid(PERM))]
    # Nor by an indented one; what follows on it is scanned on its own.
    text = f"  t: {PERM}\n    return value, {PADDED}\n"
    got = [(f.line, f.column, f.kind, f.token_id) for f in find_tokens(text)]
    assert got == [(1, 6, "token", tid(PERM)), (2, 19, "token", tid(PADDED))]
    # ...and a malformed first line is reported as it stands.
    junk = "fm2_" + base64.b64encode(bytes(range(40))).decode().rstrip("=")
    assert kinds(f"{junk}\n  moreBase64Text\n") == [("malformed", TokenId(None, None, fp(junk)))]


# -- HTML entities and base64-wrapped values -------------------------------------------


def test_html_entities() -> None:
    token = PADDED
    assert "+" in token or "/" in token
    for plus, slash, eq in [("&#43;", "&#x2F;", "&#61;"), ("&#x2b;", "&#47;", "&#x3D;")]:
        html = token.replace("+", plus).replace("/", slash).replace("=", eq)
        text = f"<pre>Authorization: FlyV1 {html}</pre>"
        got = [(f.kind, f.context, f.column, f.token_id) for f in find_tokens(text)]
        assert got == [("token", "header", 27, tid(token))]


def test_a_kubernetes_secret_holding_base64_of_a_header() -> None:
    header = f"FlyV1 {PERM},{DIS}"
    value = base64.b64encode(header.encode()).decode()
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: fly\ndata:\n"
        f"  FLY_API_TOKEN: {value}\n  BARE: {base64.b64encode(PADDED.encode()).decode()}\n"
    )
    got = [(f.line, f.column, f.context, f.kind, f.token_id) for f in find_tokens(text)]
    assert got == [
        (6, 18, "header", "token", tid(PERM)),
        (6, 18, "header", "token", tid(DIS)),
        (7, 9, "bare", "token", tid(PADDED)),
    ]


@pytest.mark.parametrize(
    "filler",
    [
        "",
        ("2024-05-01T12:00:00Z INFO " + "ok " * 100 + "\n") * 100,  # sparse "Z"s: one by one
        "ZZZZ ZmZm Zm0 Zm8x\n" * 300,  # dense ones: the regular expression takes over
    ],
)
def test_base64_wrapped_values_after_many_zs(filler: str) -> None:
    value = base64.b64encode(f"FlyV1 {PADDED}".encode()).decode()
    bare = base64.b64encode(PERM.encode()).decode()
    text = f"{filler}a: {value}\n{filler}b: {bare}\n"
    lines = filler.count("\n")
    got = [(f.line, f.column, f.context, f.token_id) for f in find_tokens(text)]
    assert got == [
        (lines + 1, 4, "header", tid(PADDED)),
        (2 * lines + 2, 4, "bare", tid(PERM)),
    ]


@pytest.mark.parametrize("header", [f"FlyV1 {PERM}", f"flyv1 {PADDED}", PADDED])
def test_a_base64_wrapped_value_cut_by_a_chunk_boundary(tmp_path: Path, header: str) -> None:
    # The first read is 8 KiB: a value starting just before that boundary
    # has its encoded scheme and label cut at every place.
    value = base64.b64encode(header.encode()).decode()
    path = tmp_path / "secret.yaml"
    for pad in range(8192 - 20, 8192):
        text = "#" * (pad - 7) + "\ndata: " + value + "\n"
        path.write_text(text)
        found = [(f.line, f.column, f.token_id) for f in scan_paths(path, chunk_size=4096)]
        assert found[:1] == [(2, 7, tid(header.split()[-1]))], pad


def test_base64_that_does_not_decode_to_text_is_left_alone() -> None:
    # "Zm0yX" starts a value that is not UTF-8 / not base64: nothing reported.
    assert kinds("data: Zm0yX" + "w" * 7 + "\x00 Zm0yX!!\n") == []
    assert kinds("xZm0yX2FiYw== " + base64.b64encode(b"\xff\xfe" * 30).decode()) == []


# -- standard input, pipes and devices ------------------------------------------------


def run_cli(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "macaroons_authz", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_scan_dash_reads_standard_input() -> None:
    done = run_cli("scan", "-", stdin=f"log: FlyV1 {PERM}\n".encode())
    assert done.returncode == 1, done.stderr
    assert b"<stdin>:1:12  token fm2_ (header)" in done.stdout
    assert PERM[4:].encode() not in done.stdout
    clean = run_cli("scan", "-", stdin=b"nothing here\n")
    assert clean.returncode == 0


def test_scan_dev_stdin_from_a_pipe(tmp_path: Path) -> None:
    # `cat f | scan /dev/stdin`: a FIFO named explicitly is read.
    (tmp_path / "f.txt").write_text(f"T={PERM}\n")
    done = subprocess.run(
        f"cat {tmp_path / 'f.txt'} | {sys.executable} -m macaroons_authz scan /dev/stdin",
        shell=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert b"/dev/stdin:1:3  token fm2_ (bare)" in done.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_explicitly_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as f:
            for _ in range(3):
                f.write("x" * 10000 + "\n")
            f.write(f"{PERM}\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        got = [(f.line, f.token_id) for f in scan_paths(fifo)]
    finally:
        writer.join(timeout=30)
    assert got == [(4, tid(PERM))]
    # Met inside a directory, a FIFO is still skipped (reading it would block).
    assert list(scan_paths(tmp_path)) == []


def test_a_character_device_named_explicitly_is_read() -> None:
    stats = ScanStats()
    assert list(scan_paths(os.devnull, stats=stats)) == []
    assert (stats.files, stats.bytes, stats.binary) == (1, 0, [])


# -- the allow marker ----------------------------------------------------------------


def test_an_allow_comment_keeps_a_fixture_out_of_the_exit_status(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        f'FIXTURE = "{PERM}"  # macaroons-authz: allow\nOTHER = 1\n'
    )
    (f,) = find_tokens((tmp_path / "test_x.py").read_text())
    assert f.allowed and f.kind == "token"
    code, out, _ = call(["scan", str(tmp_path)])
    assert code == 0
    assert out == "0 token(s), 0 malformed, 0 opaque (fo1_) found\n" + (
        "not reported: 1 allowed inline, 0 in the baseline\n"
    )
    # The marker on another line allows nothing.
    (tmp_path / "test_x.py").write_text(f'# macaroons-authz: allow\nFIXTURE = "{PERM}"\n')
    assert call(["scan", str(tmp_path)])[0] == 1
