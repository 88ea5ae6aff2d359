"""Plugins add pages through siegel_register_portal_routes; the portal wraps and mounts them."""

from __future__ import annotations

import httpx
import pytest
from portal_demo_plugin import DemoPlugin
from starlette.responses import PlainTextResponse

from siegel import PortalRoute, hookimpl
from siegel.portal import PortalContext, PortalError, PortalSettings, create_app
from siegel.portal.sessions import Session


async def test_plugin_pages_get_the_portal_context(portal):
    plugin = DemoPlugin()
    settings = PortalSettings(public_base_url="https://portal.kreis.example/")
    async with portal(plugins=[("demo", plugin)], settings=settings) as p:
        response = await p.client.get("/t/test/hello?lang=en")
        assert response.status_code == 200
        [context] = plugin.contexts
        assert isinstance(context, PortalContext)
        assert context.language == "en"
        assert context.tenant.id == "test"
        assert context.branding.name == "Testbehörde" and context.branding.logo_url is None
        assert isinstance(context.session, Session)
        assert context.services is p.harness.runtime
        assert context.clock is p.harness.clock
        assert context.client == "192.0.2.10"
        assert context.route.name == "demo.hello" and context.route.plugin == "demo"
        assert context.t("demo.greeting", tenant="X") == "Hello from X"   # plugin catalog
        assert context.t("contact.submit") == "Send message"                 # portal catalog


async def test_plugin_templates_extend_the_base_and_links_are_built(portal):
    settings = PortalSettings(public_base_url="https://portal.kreis.example/")
    async with portal(plugins=[("demo", DemoPlugin())], settings=settings) as p:
        html = (await p.client.get("/t/test/hello")).text
        assert "<h1>Hallo von Testbehörde</h1>" in html
        assert 'class="skip-link"' in html        # from base.html
        assert '<p id="mail-link">https://portal.kreis.example/t/test/link/abc123</p>' in html
        assert 'href="/t/test/link/abc123?x=1"' in html
        assert (await p.client.get("/t/test/link/abc123")).text == "code=abc123"


async def test_links_keep_a_path_prefix_of_the_public_address(portal):
    settings = PortalSettings(public_base_url="https://www.kreis.example/portal")
    async with portal(plugins=[("demo", DemoPlugin())], settings=settings) as p:
        html = (await p.client.get("/t/test/hello")).text
        assert "https://www.kreis.example/portal/t/test/link/abc123" in html
        assert 'href="/portal/static/portal.css"' in html


async def test_plugin_routes_exist_only_for_tenants_that_enable_the_plugin(portal):
    config = {"tenants": {"other": {"name": "Andere Stadt", "domains": ["stadt.example"],
                                    "plugin_set": "baseline", "disabled_plugins": ["demo"]}}}
    async with portal(plugins=[("demo", DemoPlugin())], config=config) as p:
        assert (await p.client.get("/t/test/hello")).status_code == 200
        assert (await p.client.get("/t/other/hello")).status_code == 404
        assert (await p.client.get("/t/other/")).status_code == 200   # the portal's own pages
        root = await p.client.get("/")
        assert root.status_code == 200 and "Link aus der E-Mail" in root.text


class Conflicting:
    def __init__(self, *routes: PortalRoute) -> None:
        self.routes = list(routes)

    @hookimpl
    def siegel_register_portal_routes(self) -> list[PortalRoute]:
        return self.routes


async def _page(request: object) -> PlainTextResponse:
    return PlainTextResponse("x")


@pytest.mark.parametrize(("route", "message"), [
    (PortalRoute(name="portal.mine", path="/mine", endpoint=_page), "reserved"),
    (PortalRoute(name="x.start", path="/", endpoint=_page), "already served"),
    (PortalRoute(name="x.t", path="/a/{tenant}", endpoint=_page), "'tenant'"),
])
async def test_conflicting_routes_are_refused_with_the_plugin_named(siegel_harness, route, message):
    async with siegel_harness(plugins=[("bad", Conflicting(route))]) as h:
        with pytest.raises(PortalError, match=message) as info:
            create_app(h.runtime, settings=PortalSettings())
        assert "plugin 'bad'" in str(info.value)


async def test_a_plugin_without_templates_uses_the_portal_ones(siegel_harness):
    async def page(request):
        portal = request.state.portal
        return portal.render("start.html", {"contact_url": None})

    plugin = Conflicting(PortalRoute(name="bare.page", path="/bare", endpoint=page))
    async with siegel_harness(plugins=[("bare", plugin)]) as h:
        app = create_app(h.runtime, settings=PortalSettings())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://portal.test") as client:
            response = await client.get("/t/test/bare")
            assert response.status_code == 200 and "Willkommen" in response.text


async def test_tenant_logo_is_served_and_shown(portal, tmp_path):
    logo = tmp_path / "wappen.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    settings = PortalSettings(logos={"test": str(logo)})
    async with portal(settings=settings) as p:
        page = await p.client.get("/t/test/")
        assert '<img class="brand-logo" src="/t/test/logo" alt="">' in page.text
        served = await p.client.get("/t/test/logo")
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("image/svg+xml")
        assert "default-src 'none'" in served.headers["content-security-policy"]


@pytest.mark.parametrize(("logos", "message"), [
    ({"nobody": "x.png"}, "no tenant 'nobody'"),
    ({"test": "x.bmp"}, "not a PNG"),
    ({"test": "missing.png"}, "not found"),
])
async def test_bad_logos_are_refused(siegel_harness, logos, message):
    async with siegel_harness() as h:
        with pytest.raises(PortalError, match=message):
            create_app(h.runtime, settings=PortalSettings(logos=logos))
