"""Fly.io's authentication discharges: fetch, refresh, outage, background thread, write-back.

The project's own DischargeService plays Fly.io's authentication service on
127.0.0.1 (a wsgiref server in a thread), once for each of its locations
(https://api.fly.io/aaa/v1 and https://auth.fly.io). The tokens name the
real locations; the client's opener sends requests for those hosts to the
local server instead, keeping their Host header (what a resolver pointing
the names at 127.0.0.1 would do), so nothing reaches Fly.io. Discharges
expire on a fake clock shared by the service and the tests.
"""

from __future__ import annotations

import os
import stat
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import pytest
import yaml
from fly_helpers import AUTH_KEY, KEY, NOW, OAUTH, ORG, fly_tokens

from macaroons_authz import (
    DischargeRequest,
    DischargeService,
    FlyioIdentity,
    FlyioUserID,
    MemoryKeyring,
    TicketRequest,
    decode_token,
    deploy_token,
    to_header,
)
from macaroons_authz.fly import (
    AUTH_LOCATIONS,
    LOCATION_AUTHENTICATION,
    LOCATION_NEW_AUTHENTICATION,
    ConfigChangedError,
    Discharger,
    FlyConfigError,
    Refresher,
    TokenSet,
    unverified_expiration,
    write_access_token,
)
from macaroons_authz.macaroon import Macaroon
from macaroons_authz.thirdparty import DischargeError, Refuse
from macaroons_authz.thirdparty._http import build_opener
from macaroons_authz.thirdparty.client import _NoRedirects

VALIDITY = 3600
USER = 77
HOSTS = {"api.fly.io": LOCATION_AUTHENTICATION, "auth.fly.io": LOCATION_NEW_AUTHENTICATION}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlyAuth:
    """Fly.io's authentication service, both locations, played by DischargeService."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seen: list[tuple[str, str | None]] = []
        self.services = {
            host: DischargeService(
                location, AUTH_KEY, self._authorize, clock=clock, validity=VALIDITY
            )
            for host, location in HOSTS.items()
        }
        self._host = ""

    def _authorize(self, request: TicketRequest) -> DischargeRequest | Refuse:
        self.seen.append((self._host, request.authorization))
        if request.authorization != f"Bearer {OAUTH}":
            return Refuse("unauthorized", 401)
        identity = FlyioIdentity(USER, (ORG,))
        return DischargeRequest(flyio=[identity], expiry=0, at=self.clock())

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        self._host = environ.get("HTTP_HOST", "")
        service = self.services.get(self._host)
        if service is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        return service(environ, start_response)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ToLocal(urllib.request.BaseHandler):
    """Sends https requests for Fly.io's hosts to 127.0.0.1:port, keeping the Host header."""

    handler_order = 100  # before the HTTPS handler sets the Host header

    def __init__(self, port: int) -> None:
        self.port = port
        self.hosts: list[str] = []

    def https_request(self, req: urllib.request.Request) -> urllib.request.Request:
        parts = urllib.parse.urlsplit(req.full_url)
        host = parts.hostname or ""
        self.hosts.append(host)
        req.full_url = f"http://127.0.0.1:{self.port}{parts.path}"
        req.add_unredirected_header("Host", host)
        return req


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def auth(clock: Clock) -> Iterator[tuple[FlyAuth, int]]:
    app = FlyAuth(clock)
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield app, server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def discharger(port: int, **kwargs: Any) -> tuple[Discharger, ToLocal]:
    route = ToLocal(port)
    return Discharger(opener=build_opener(_NoRedirects, route), **kwargs), route


def closed_port() -> int:
    server = make_server("127.0.0.1", 0, lambda e, s: [], handler_class=_Quiet)
    port = server.server_port
    server.server_close()
    return port


def undischarged(location: str = LOCATION_NEW_AUTHENTICATION) -> TokenSet:
    """A session whose discharge is missing: the permission token and the OAuth token."""
    return TokenSet.parse(to_header(fly_tokens(auth_location=location).permission, OAUTH))


def trusted() -> dict[str, list[bytes]]:
    return {loc: [AUTH_KEY] for loc in AUTH_LOCATIONS}


def decoded(piece: str) -> Macaroon:
    return Macaroon.decode(decode_token(piece))


# -- fetching -----------------------------------------------------------------------


@pytest.mark.parametrize("location", sorted(AUTH_LOCATIONS))
def test_fetches_the_missing_discharge_with_the_oauth_token_as_bearer(
    auth: tuple[FlyAuth, int], clock: Clock, location: str
) -> None:
    app, port = auth
    tokens = undischarged(location)
    d, route = discharger(port)
    assert list(d.missing(tokens)) == [location]
    result = d.refresh(tokens, now=clock())
    assert (result.fetched, result.dropped, result.error, result.changed) == (1, 0, None, True)
    host = urllib.parse.urlsplit(location).hostname
    assert app.seen == [(host, f"Bearer {OAUTH}")]
    assert route.hosts == [host]
    new = result.tokens
    assert new.oauth == (OAUTH,) and new.macaroons[0] == tokens.macaroons[0]
    assert d.missing(new) == {}
    discharge = decoded(new.macaroons[1])
    assert discharge.location == location
    assert unverified_expiration(discharge) == NOW + VALIDITY
    assert FlyioUserID(USER) in discharge.unsafe_caveats
    # The set verifies with Fly.io's (here: the test's) keys.
    bundle = new.bundle()
    bundle.verify(MemoryKeyring([KEY]), trusted_3ps=trusted())
    assert not bundle.failed


def test_token_set_refresh_is_the_dischargers(auth: tuple[FlyAuth, int], clock: Clock) -> None:
    _, port = auth
    d, _ = discharger(port)
    result = undischarged().refresh(clock(), discharger=d)
    assert (result.fetched, result.error) == (1, None)
    assert d.missing(result.tokens) == {}


def test_nothing_is_fetched_while_the_discharge_is_fresh(
    auth: tuple[FlyAuth, int], clock: Clock
) -> None:
    app, port = auth
    tokens = TokenSet.parse(fly_tokens(discharge_until=NOW + 3600).header)
    d, route = discharger(port)
    result = d.refresh(tokens, now=NOW + 3600 - 121)
    assert (result.tokens, result.changed, app.seen, route.hosts) == (tokens, False, [], [])
    assert d.next_refresh(tokens) == NOW + 3600 - 120


def test_refreshes_before_expiry_and_drops_the_old_discharge(
    auth: tuple[FlyAuth, int], clock: Clock
) -> None:
    app, port = auth
    session = fly_tokens(discharge_until=NOW + 3600)
    tokens = TokenSet.parse(session.header)
    d, _ = discharger(port, margin=120)
    clock.now = NOW + 3600 - 119  # within the margin, not yet expired
    assert d.due(tokens, clock()) == [tokens.macaroons[1]]
    result = d.refresh(tokens, now=clock())
    assert (result.fetched, result.dropped, result.error) == (1, 1, None)
    assert len(result.tokens.macaroons) == 2
    assert result.tokens.macaroons[0] == tokens.macaroons[0]
    assert unverified_expiration(decoded(result.tokens.macaroons[1])) == clock.now + VALIDITY
    assert len(app.seen) == 1
    assert d.due(result.tokens, clock()) == []


def test_an_outage_keeps_the_old_set_and_reports_the_error(clock: Clock) -> None:
    tokens = TokenSet.parse(fly_tokens(discharge_until=NOW + 3600).header)
    d, _ = discharger(closed_port(), margin=120)
    result = d.refresh(tokens, now=NOW + 3600 - 60)
    assert result.tokens == tokens  # the old discharge is still good for a minute
    assert (result.fetched, result.changed) == (0, False)
    assert isinstance(result.error, DischargeError)
    assert "third-party request failed" in str(result.error)
    # Once it has expired, it goes; the error is reported all the same.
    late = d.refresh(tokens, now=NOW + 3601)
    assert late.tokens.macaroons == tokens.macaroons[:1]
    assert (late.dropped, isinstance(late.error, DischargeError)) == (1, True)


def test_the_service_refusing_is_an_error_without_the_token(
    auth: tuple[FlyAuth, int], clock: Clock
) -> None:
    app, port = auth
    perm = fly_tokens().permission
    tokens = TokenSet.parse(to_header(perm))  # no OAuth token: no credential
    d, _ = discharger(port)
    result = d.refresh(tokens, now=clock())
    assert result.tokens == tokens
    assert result.error is not None and result.error.status == 401
    assert app.seen == [("auth.fly.io", None)]
    assert "fm2_" not in str(result.error)


def test_tickets_of_other_third_parties_are_not_sent(
    auth: tuple[FlyAuth, int], clock: Clock
) -> None:
    app, port = auth
    perm = deploy_token(KEY, ORG, 42)
    perm.add_3p(bytes(32), "https://other.example/3p")
    tokens = TokenSet.parse(to_header(perm, OAUTH))
    d, route = discharger(port)
    result = d.refresh(tokens, now=clock())
    assert (result.tokens, result.changed, route.hosts, app.seen) == (tokens, False, [], [])


def test_discharger_refuses_bad_settings() -> None:
    with pytest.raises(TypeError):
        Discharger(locations="https://auth.fly.io")
    with pytest.raises(ValueError, match="not an http"):
        Discharger(locations=["file:///etc/passwd"])
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="margin"):
            Discharger(margin=bad)
    with pytest.raises(ValueError, match="timeout"):
        Discharger(timeout=0)


# -- write-back -----------------------------------------------------------------------


CONFIG = {
    "access_token": "",
    "metrics_token": "m-token",
    "send_metrics": True,
    "wire_guard_state": {"personal": {"region": "ams", "peerip": "fdaa::2"}},
}


def config_file(home: Path, tokens: TokenSet) -> Path:
    path = home / ".fly" / "config.yml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({**CONFIG, "access_token": tokens.text()}))
    path.chmod(0o600)
    return path


def test_write_access_token_replaces_the_file_and_keeps_other_keys(tmp_path: Path) -> None:
    path = config_file(tmp_path, TokenSet.parse("fm2_old,fo1_x"))
    path.chmod(0o644)
    inode = path.stat().st_ino
    write_access_token(path, "fm2_new,fo1_x", expect="FlyV1 fm2_old, fo1_x")
    doc = yaml.safe_load(path.read_text())
    assert doc == {**CONFIG, "access_token": "fm2_new,fo1_x"}
    assert list(doc) == list(CONFIG)  # order kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # a new file moved over the old one
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yml"]


def test_write_access_token_refuses_when_the_file_changed(tmp_path: Path) -> None:
    path = config_file(tmp_path, TokenSet.parse("fm2_newer"))
    before = path.read_bytes()
    with pytest.raises(ConfigChangedError, match="changed since it was read"):
        write_access_token(path, "fm2_mine", expect="fm2_old")
    assert path.read_bytes() == before


def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path, TokenSet.parse("fm2_old"))
    before = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(FlyConfigError, match="cannot write: No space left"):
        write_access_token(path, "fm2_new")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yml"]


def test_write_access_token_follows_a_symlink_and_creates_a_missing_file(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "fly.yml"
    real.parent.mkdir()
    real.write_text("access_token: fm2_old\nkeep: 1\n")
    link = tmp_path / "config.yml"
    link.symlink_to(real)
    write_access_token(link, "fm2_new")
    assert link.is_symlink()
    assert yaml.safe_load(real.read_text()) == {"access_token": "fm2_new", "keep": 1}
    fresh = tmp_path / "new" / "config.yml"
    write_access_token(fresh, "fm2_x", expect="")
    assert yaml.safe_load(fresh.read_text()) == {"access_token": "fm2_x"}
    with pytest.raises(ValueError, match="one line"):
        write_access_token(fresh, "fm2_x\nevil: 1")


# -- the refresher ------------------------------------------------------------------------


def test_refresh_now_writes_the_refreshed_set_back(
    auth: tuple[FlyAuth, int], clock: Clock, tmp_path: Path
) -> None:
    _, port = auth
    path = config_file(tmp_path, undischarged())
    tokens = TokenSet.parse(yaml.safe_load(path.read_text())["access_token"], from_file=path)
    updates: list[TokenSet] = []
    d, _ = discharger(port)
    refresher = Refresher(tokens, d, clock=clock, write_back=True, on_update=updates.append)
    result = refresher.refresh_now()
    assert result.fetched == 1 and refresher.last_error is None
    assert updates == [refresher.tokens] and refresher.tokens == result.tokens
    doc = yaml.safe_load(path.read_text())
    assert doc == {**CONFIG, "access_token": result.tokens.text()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Another program logs in meanwhile: the refresher does not overwrite it.
    write_access_token(path, "fm2_someone_else")
    clock.now = NOW + VALIDITY - 60
    errors: list[Exception] = []
    refresher._on_error = errors.append
    again = refresher.refresh_now()
    assert again.fetched == 1
    assert isinstance(refresher.last_error, ConfigChangedError) and errors == [refresher.last_error]
    assert yaml.safe_load(path.read_text())["access_token"] == "fm2_someone_else"


def test_the_thread_refreshes_and_stops(auth: tuple[FlyAuth, int], clock: Clock) -> None:
    _, port = auth
    d, _ = discharger(port)
    updated = threading.Event()
    refresher = Refresher(
        undischarged(), d, clock=clock, interval=0.05, on_update=lambda _: updated.set()
    )
    with refresher:
        assert updated.wait(10)
    assert refresher.stop(5)
    assert d.missing(refresher.tokens) == {}
    assert refresher.last_error is None
    assert "fm2_" not in repr(refresher) and "fo1_" not in repr(refresher)


def test_the_thread_reports_an_outage_and_keeps_the_tokens(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = TokenSet.parse(fly_tokens(discharge_until=NOW + 3600).header)
    clock.now = NOW + 3600 - 60
    d, _ = discharger(closed_port())
    failed = threading.Event()
    errors: list[Exception] = []

    def on_error(exc: Exception) -> None:
        errors.append(exc)
        if len(errors) >= 2:
            failed.set()

    refresher = Refresher(tokens, d, clock=clock, backoff=0.01, on_error=on_error)
    with caplog.at_level("WARNING", logger="macaroons_authz.fly"):
        refresher.start()
        assert failed.wait(10)
        assert refresher.stop(5)
    assert refresher.tokens == tokens
    assert isinstance(refresher.last_error, DischargeError)
    assert all(isinstance(e, DischargeError) for e in errors)
    assert "refreshing Fly.io tokens failed: DischargeError" in caplog.text
    assert "fm2_" not in caplog.text and "fo1_" not in caplog.text


def test_waits_back_off_then_fall_back_to_the_interval() -> None:
    refresher = Refresher(
        TokenSet(), clock=lambda: NOW, interval=60, backoff=1, max_backoff=5, max_retries=4
    )
    assert [refresher._wait(None) for _ in range(6)] == [1, 2, 4, 5, 60, 1]
    fresh = TokenSet.parse(fly_tokens(discharge_until=NOW + 1000).header)
    assert refresher._wait(fresh) == 60  # due in 880 s: the interval comes first
    soon = TokenSet.parse(fly_tokens(discharge_until=NOW + 150).header)
    assert refresher._wait(soon) == 30
    # Still due right after a success: the interval, not a busy loop.
    assert refresher._wait(TokenSet.parse(fly_tokens(discharge_until=NOW + 60).header)) == 60
    with pytest.raises(RuntimeError, match="started already"):
        refresher.start().start()
    assert refresher.stop(5)
