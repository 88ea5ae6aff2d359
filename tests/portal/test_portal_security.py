"""Security by default: headers on every response, CSRF on every post, body limits, error pages
that explain and never leak internals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from portal_demo_plugin import DemoPlugin
from portal_helpers import assert_security_headers, csrf_token, set_cookies

from siegel.portal import PortalSettings


async def test_every_response_carries_the_security_headers(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        token = await p.contact_form()
        responses = [
            await p.client.get("/"),                          # redirect to the only tenant
            await p.client.get("/t/test/"),
            await p.client.get("/t/test/contact"),
            await p.post_contact(token, email="not an address"),   # 422 with errors
            await p.post_contact("wrong"),                    # 403 CSRF page
            await p.client.get("/static/portal.css"),
            await p.client.get("/static/favicon.svg"),
            await p.client.get("/favicon.ico"),
            await p.client.get("/static/missing.css"),         # 404 from the static files
            await p.client.get("/t/test/nowhere"),             # 404
            await p.client.get("/t/unknown/"),                 # 404 unknown tenant
            await p.client.put("/t/test/contact"),             # 405
            await p.client.get("/t/test/crash"),               # 500
            await p.client.post("/t/test/contact", content=b"x" * 2_000_000,
                                headers={"content-type": "application/x-www-form-urlencoded"}),
        ]
        statuses = [r.status_code for r in responses]
        assert statuses == [303, 200, 200, 422, 403, 200, 200, 200, 404, 404, 404, 405, 500, 413]
        for response in responses:
            assert_security_headers(response)


async def test_csp_forbids_inline_script_and_style_and_the_pages_use_none(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        csp = (await p.client.get("/t/test/")).headers["content-security-policy"]
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        for path in ("/t/test/", "/t/test/contact", "/t/test/hello", "/t/test/nowhere"):
            html = (await p.client.get(path)).text
            assert "<script" not in html.replace("&lt;script", "")
            assert "style=" not in html and "<style" not in html


async def test_templates_escape_everything(portal):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        html = (await p.client.get("/t/test/hello")).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        token = await p.contact_form()
        response = await p.post_contact(token, name='"><img src=x onerror=alert(1)>', email="x")
        assert response.status_code == 422
        assert "<img src=x" not in response.text
        assert 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in response.text


async def test_hsts_and_host_cookies_when_behind_tls(portal):
    settings = PortalSettings(demo_pages=True, behind_tls=True,
                              public_base_url="https://portal.example")
    async with portal(settings=settings, base_url="https://portal.example") as p:
        response = await p.client.get("/t/test/contact")
        assert_security_headers(response, tls=True)
        assert response.headers["strict-transport-security"] == "max-age=63072000"
        [cookie] = set_cookies(response)
        assert cookie.startswith("__Host-siegel_session=")
        for attribute in ("Secure", "HttpOnly", "Path=/", "SameSite=strict"):
            assert attribute in cookie
        assert "Domain" not in cookie
        # and the secure cookie is what the portal reads back: the form post works
        token = csrf_token(response.text)
        done = await p.post_contact(token)
        assert done.status_code == 303


async def test_plain_http_cookies_are_httponly_and_strict_but_not_secure(portal):
    async with portal() as p:
        [cookie] = set_cookies(await p.client.get("/t/test/contact"))
        assert cookie.startswith("siegel_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie


@pytest.mark.parametrize(("client", "proxies", "tls"), [
    ("10.0.0.5", ("10.0.0.0/8",), True),     # trusted proxy says https
    ("192.0.2.99", ("10.0.0.0/8",), False),  # anyone else may not
    ("10.0.0.5", (), False),                  # no proxies configured
])
async def test_forwarded_proto_counts_only_from_trusted_proxies(portal, client, proxies, tls):
    settings = PortalSettings(demo_pages=True, trusted_proxies=proxies)
    async with portal(settings=settings, client_address=client) as p:
        response = await p.client.get("/t/test/contact", headers={"x-forwarded-proto": "https"})
        assert_security_headers(response, tls=tls)
        [cookie] = set_cookies(response)
        assert cookie.startswith("__Host-") is tls


async def test_csrf_post_without_token_gets_an_explaining_403_with_ways_out(portal):
    async with portal() as p:
        await p.contact_form()
        response = await p.post_contact(None)
        assert response.status_code == 403
        assert "Das Formular konnte nicht angenommen werden" in response.text
        assert "veraltet" in response.text
        assert 'href="/t/test/contact"' in response.text   # reload the form
        assert 'href="/t/test/"' in response.text          # or start over
        assert "nichts versendet" in response.text


async def test_csrf_wrong_token_is_refused_and_the_endpoint_never_runs(portal):
    plugin = DemoPlugin()
    async with portal(plugins=[("demo", plugin)]) as p:
        token = await p.contact_form()
        assert (await p.post_contact(token[:-2] + "xx")).status_code == 403
        assert (await p.client.post("/t/test/demo/login", data={"user": "x",
                                                            "csrf_token": "nope"})).status_code == 403
        assert plugin.calls == []
        # the session survives a refused post: the right token still works
        assert (await p.post_contact(token)).status_code == 303


async def test_csrf_post_without_a_session_explains_cookies(portal):
    async with portal() as p:
        response = await p.post_contact("a" * 43)
        assert response.status_code == 403
        assert "Cookies" in response.text


async def test_csrf_correct_token_is_accepted_and_redirects(portal):
    async with portal() as p:
        token = await p.contact_form()
        response = await p.post_contact(token)
        assert response.status_code == 303
        assert response.headers["location"] == "/t/test/contact/done"
        done = await p.client.get("/t/test/contact/done")
        assert "Vielen Dank, Erika Mustermann" in done.text


async def test_csrf_refuses_a_post_from_another_origin_even_with_the_token(portal):
    async with portal() as p:
        token = await p.contact_form()
        foreign = await p.client.post("/t/test/contact", data={"csrf_token": token},
                                      headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403
        for site in ("cross-site", "same-site"):   # another site, or a sibling subdomain
            cross = await p.client.post("/t/test/contact", data={"csrf_token": token},
                                        headers={"sec-fetch-site": site})
            assert cross.status_code == 403
        own = await p.post_contact(token)
        assert own.status_code == 303
        same = await p.client.post("/t/test/contact", data={
            "csrf_token": token, "name": "A", "email": "a@example.net", "message": "m"},
            headers={"origin": "http://portal.test", "sec-fetch-site": "same-origin"})
        assert same.status_code == 303
        # what a browser sends under "Referrer-Policy: no-referrer": the token decides
        opaque = await p.client.post("/t/test/contact", data={
            "csrf_token": token, "name": "A", "email": "a@example.net", "message": "m"},
            headers={"origin": "null", "sec-fetch-site": "same-origin"})
        assert opaque.status_code == 303
        forged = await p.client.post("/t/test/contact", data={"csrf_token": "forged"},
                                     headers={"origin": "null"})
        assert forged.status_code == 403


async def test_csrf_token_in_a_header_for_script_free_clients(portal):
    plugin = DemoPlugin()
    async with portal(plugins=[("demo", plugin)]) as p:
        token = await p.contact_form()
        assert (await p.client.post("/t/test/api", json={})).status_code == 403
        ok = await p.client.post("/t/test/api", json={}, headers={"x-csrf-token": token})
        assert ok.status_code == 200 and ok.json() == {"ok": True}
        assert plugin.calls == ["api"]


async def test_body_over_the_limit_gets_a_413_page_unread(portal):
    async with portal(settings=PortalSettings(demo_pages=True, max_form_bytes=1000)) as p:
        token = await p.contact_form()
        response = await p.post_contact(token, message="x" * 2000)
        assert response.status_code == 413
        assert "Zu viele Daten" in response.text
        assert response.headers["connection"] == "close"
        assert_security_headers(response)


async def test_chunked_body_over_the_limit_is_cut_off(portal):
    async with portal(settings=PortalSettings(demo_pages=True, max_form_bytes=1000)) as p:
        token = await p.contact_form()

        async def chunks() -> AsyncIterator[bytes]:
            yield f"csrf_token={token}&message=".encode()
            for _ in range(10):
                yield b"x" * 200

        response = await p.client.post(
            "/t/test/contact", content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413
        assert "Zu viele Daten" in response.text
        assert_security_headers(response)


async def test_a_crashing_page_shows_a_500_page_without_internals(portal, caplog):
    async with portal(plugins=[("demo", DemoPlugin())]) as p:
        response = await p.client.get("/t/test/crash")
        assert response.status_code == 500
        assert "Technischer Fehler" in response.text
        assert "secret internal detail" not in response.text
        assert "Traceback" not in response.text
        assert "secret internal detail" in caplog.text   # but the log has it
        wrong = await p.client.get("/t/test/not-a-response")
        assert wrong.status_code == 500
        assert "returned str, not a Starlette Response" in caplog.text


async def test_error_pages_are_branded_and_translated(portal):
    async with portal() as p:
        german = await p.client.get("/t/test/nowhere")
        assert "Seite nicht gefunden" in german.text and "Testbehörde" in german.text
        assert '<html lang="de">' in german.text
        english = await p.client.get("/t/test/nowhere?lang=en")
        assert "Page not found" in english.text and '<html lang="en">' in english.text
        unknown = await p.client.get("/t/nobody/", headers={"accept-language": "en"})
        assert unknown.status_code == 404
        assert "Secure recipient portal" in unknown.text
        not_allowed = await p.client.delete("/t/test/contact")
        assert not_allowed.status_code == 405
        assert set(not_allowed.headers["allow"].split(", ")) >= {"GET", "POST"}
