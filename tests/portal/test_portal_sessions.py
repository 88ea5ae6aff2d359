"""Server-side sessions: lazy creation, no state change on GET, rotation, idle and absolute
timeouts with a frozen clock, broken cookies, per-tenant data, logout."""

from __future__ import annotations

from datetime import timedelta

import pytest
from portal_demo_plugin import DemoPlugin
from portal_helpers import COOKIE, csrf_token, set_cookies

from siegel.clock import FrozenClock
from siegel.portal import PortalSettings
from siegel.portal.sessions import NAMESPACE, SessionManager, StateChangeOnGet


async def login(p, user: str = "erika") -> None:
    token = csrf_token((await p.client.get("/t/test/demo/login")).text)
    response = await p.client.post("/t/test/demo/login", data={"user": user, "csrf_token": token})
    assert response.status_code == 303


async def test_a_page_without_a_form_creates_no_session(portal):
    async with portal() as p:
        response = await p.client.get("/t/test/")
        assert set_cookies(response) == []
        assert await p.state() == {}


async def test_get_creates_a_session_for_the_form_but_changes_no_state(portal):
    async with portal() as p:
        response = await p.client.get("/t/test/contact")
        [cookie] = set_cookies(response)
        assert cookie.startswith(f"{COOKIE}=")
        state = await p.state()
        assert list(state) == [NAMESPACE]
        [(key, version)] = state[NAMESPACE]
        assert version == 1
        assert p.session_cookie not in key   # the store holds a hash, not the cookie
        for _ in range(3):
            await p.client.get("/t/test/contact")
            await p.client.get("/t/test/contact/done")   # reads only (and redirects)
        assert await p.state() == state   # nothing written by further GETs within a minute


async def test_writes_on_get_are_refused(portal, caplog):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        await p.client.get("/t/test/contact")
        before = await p.state()
        session_write = await p.client.get("/t/test/write-on-get")
        assert session_write.status_code == 500
        state_write = await p.client.get("/t/test/state-on-get")
        assert state_write.status_code == 500
        refused = [r for r in caplog.records
                   if r.exc_info and isinstance(r.exc_info[1], StateChangeOnGet)]
        assert len(refused) == 2
        assert await p.state() == before


async def test_rotation_changes_the_id_keeps_the_data_and_kills_the_old_id(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        await p.client.get("/t/test/demo/login")
        before = p.session_cookie
        await login(p)
        after = p.session_cookie
        assert after and before and after != before
        assert (await p.client.get("/t/test/whoami")).text == "user=erika"
        assert len((await p.state())[NAMESPACE]) == 1   # the old record is gone

        # the old id (a planted or stolen one) gives nothing, and the user is told
        p.set_session_cookie(before)
        stale = await p.client.get("/t/test/demo/login")
        assert "nicht mehr gültig" in stale.text
        assert p.session_cookie != before
        assert (await p.client.get("/t/test/whoami")).text == "user=None"


async def test_rotation_gives_a_new_csrf_token(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        old_token = csrf_token((await p.client.get("/t/test/demo/login")).text)
        await p.client.post("/t/test/demo/login", data={"user": "erika", "csrf_token": old_token})
        response = await p.client.post("/t/test/demo/logout", data={"csrf_token": old_token})
        assert response.status_code == 403


async def test_logout_deletes_the_session_and_the_cookie(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        await login(p)
        token = csrf_token((await p.client.get("/t/test/demo/login")).text)
        response = await p.client.post("/t/test/demo/logout", data={"csrf_token": token})
        assert response.status_code == 303
        assert any("Max-Age=0" in c or "expires=" in c.lower() for c in set_cookies(response))
        assert p.session_cookie is None
        assert await p.state() == {}
        assert (await p.client.get("/t/test/whoami")).text == "user=None"


async def test_idle_timeout_on_a_post_explains_and_starts_over(portal):
    async with portal() as p:
        token = await p.contact_form()
        p.harness.clock.advance(minutes=15, seconds=1)
        response = await p.post_contact(token)
        assert response.status_code == 303
        assert response.headers["location"] == (
            "/t/test/session-expired?reason=idle&page=portal.contact")
        assert p.session_cookie is None   # the dead cookie is deleted
        page = await p.client.get(response.headers["location"])
        assert page.status_code == 200
        assert "Sitzung abgelaufen" in page.text
        assert "länger als 15 Minuten nicht aktiv" in page.text
        assert 'href="/t/test/contact"' in page.text     # back to the form
        assert 'href="/t/test/"' in page.text
        # and starting over works at once
        token = await p.contact_form()
        assert (await p.post_contact(token)).status_code == 303


async def test_idle_timeout_on_a_get_shows_a_notice_and_a_fresh_session(portal):
    async with portal() as p:
        await p.contact_form()
        old = p.session_cookie
        p.harness.clock.advance(minutes=16)
        response = await p.client.get("/t/test/contact")
        assert response.status_code == 200
        assert 'role="status"' in response.text
        assert "ohne Aktivität zu Ihrem Schutz beendet" in response.text
        assert p.session_cookie not in (None, old)
        again = await p.client.get("/t/test/contact")
        assert 'role="status"' not in again.text   # explained once


async def test_activity_keeps_a_session_alive_until_the_absolute_timeout(portal):
    async with portal() as p:
        token = await p.contact_form()
        cookie = p.session_cookie
        for _ in range(47):   # 47 * 10 minutes = 7 h 50 min of activity
            p.harness.clock.advance(minutes=10)
            response = await p.client.get("/t/test/contact")
            assert 'role="status"' not in response.text
        assert p.session_cookie == cookie
        assert (await p.post_contact(token)).status_code == 303
        p.harness.clock.advance(minutes=10)   # 8 h after the start
        expired = await p.post_contact(token)
        assert expired.headers["location"].startswith("/t/test/session-expired?reason=absolute")
        page = await p.client.get(expired.headers["location"])
        assert "Höchstdauer von 8 Stunden" in page.text


async def test_timeouts_follow_the_settings(portal):
    settings = PortalSettings(demo_pages=True, session_idle_minutes=5, session_absolute_hours=1)
    async with portal(settings=settings) as p:
        form = await p.client.get("/t/test/contact?lang=en")
        assert "the session ends after 5 minutes without activity" in form.text  # told in advance
        token = await p.contact_form()
        p.harness.clock.advance(minutes=5)
        response = await p.post_contact(token)
        assert "reason=idle" in response.headers["location"]
        page = await p.client.get(response.headers["location"] + "&lang=en")
        assert "more than 5 minutes" in page.text


@pytest.mark.parametrize("cookie", [
    "garbage",                                   # malformed
    "A" * 43,                                    # well-formed but unknown
    "A" * 42 + "!",                              # tampered characters
    "../../etc/passwd",
])
async def test_a_broken_cookie_never_traps_the_user(portal, cookie):
    async with portal() as p:
        p.set_session_cookie(cookie)
        page = await p.client.get("/t/test/contact")
        assert page.status_code == 200
        assert "nicht mehr gültig" in page.text
        fresh = p.session_cookie
        assert fresh not in (None, cookie)
        assert (await p.post_contact(csrf_token(page.text))).status_code == 303

        p.set_session_cookie(cookie)
        posted = await p.post_contact("whatever")
        assert posted.status_code == 303
        assert "reason=invalid" in posted.headers["location"]
        explained = await p.client.get(posted.headers["location"])
        assert "Ihre Sitzung ist nicht mehr gültig" in explained.text


async def test_session_data_is_kept_per_tenant(portal):
    config = {"tenants": {"other": {"name": "Andere Stadt", "domains": ["stadt.example"],
                                    "plugin_set": "baseline"}}}
    async with portal(plugins=[("demo", DemoPlugin())], config=config) as p:
        await login(p)
        assert (await p.client.get("/t/test/whoami")).text == "user=erika"
        assert (await p.client.get("/t/other/whoami")).text == "user=None"


async def test_concurrent_changes_to_one_session_are_merged():
    """Two requests of one browser (two tabs) store different keys at the same time."""
    from siegel.state import PluginState

    class MemoryStore:
        def __init__(self) -> None:
            self.rows: dict[tuple[str, str], tuple[bytes, int, object]] = {}

        async def state_get(self, namespace, key):
            from siegel.store import StateRecord
            row = self.rows.get((namespace, key))
            if row is None:
                return None
            return StateRecord(namespace=namespace, key=key, value=row[0], version=row[1],
                               updated_at=clock.now(), expires_at=row[2])

        async def state_put(self, namespace, key, value, *, expires_at=None, expect_version=None):
            from siegel.store import StateConflict
            current = self.rows.get((namespace, key), (b"", 0, None))[1]
            if expect_version is not None and expect_version != current:
                raise StateConflict("conflict")
            self.rows[(namespace, key)] = (value, current + 1, expires_at)
            return current + 1

        async def state_delete(self, namespace, key):
            return self.rows.pop((namespace, key), None) is not None

    clock = FrozenClock()
    state = PluginState(MemoryStore(), NAMESPACE, clock)  # type: ignore[arg-type]
    manager = SessionManager(state, clock, idle=timedelta(minutes=15), absolute=timedelta(hours=8))
    first = (await manager.load(None, tenant="t", writable=True)).session
    first["a"] = 1
    assert await first.save()
    cookie = first.cookie_value
    tab_one = (await manager.load(cookie, tenant="t", writable=True)).session
    tab_two = (await manager.load(cookie, tenant="t", writable=True)).session
    tab_one["b"] = 2
    tab_two["c"] = 3
    del tab_two["a"]
    await tab_one.save()
    await tab_two.save()
    merged = (await manager.load(cookie, tenant="t", writable=False)).session
    assert dict((k, merged[k]) for k in merged) == {"b": 2, "c": 3}
