"""An inline plugin that adds portal pages, as a plugin author would write one.

Its templates are in ``portal_templates/`` and its texts in ``portal_locales/`` next to this
module, where the portal finds them.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from siegel import PortalRoute, hookimpl
from siegel.portal import FormErrors, PortalContext


def _portal(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


class DemoPlugin:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.contexts: list[PortalContext] = []

    @hookimpl
    def siegel_register_portal_routes(self) -> list[PortalRoute]:
        return [
            PortalRoute(name="demo.hello", path="/hello", endpoint=self.hello),
            PortalRoute(name="demo.login", path="/demo/login", endpoint=self.login,
                        methods=("GET", "POST")),
            PortalRoute(name="demo.whoami", path="/whoami", endpoint=self.whoami),
            PortalRoute(name="demo.logout", path="/demo/logout", endpoint=self.logout, methods=("POST",)),
            PortalRoute(name="demo.write-on-get", path="/write-on-get", endpoint=self.write_on_get),
            PortalRoute(name="demo.state-on-get", path="/state-on-get", endpoint=self.state_on_get),
            PortalRoute(name="demo.guess", path="/guess", endpoint=self.guess,
                        methods=("GET", "POST")),
            PortalRoute(name="demo.api", path="/api", endpoint=self.api, methods=("POST",)),
            PortalRoute(name="demo.crash", path="/crash", endpoint=self.crash),
            PortalRoute(name="demo.not-a-response", path="/not-a-response",
                        endpoint=self.not_a_response),
            PortalRoute(name="demo.link", path="/link/{code}", endpoint=self.link),
        ]

    async def hello(self, request: Request) -> Response:
        portal = _portal(request)
        self.calls.append("hello")
        self.contexts.append(portal)
        return portal.render("demo_hello.html", {
            "mail_link": portal.url_for("demo.link", code="abc123"),
            "page_link": portal.path_for("demo.link", code="abc123", _query={"x": "1"}),
        })

    async def login(self, request: Request) -> Response:
        portal = _portal(request)
        errors = FormErrors()
        if request.method == "POST":
            self.calls.append("login")
            form = await portal.form()
            user = str(form.get("user", ""))
            if user:
                await portal.session.rotate()
                portal.session["user"] = user
                return portal.redirect("demo.whoami")
            errors.add("user", portal.t("demo.user_required"))
        return portal.render("demo_login.html", {"errors": errors},
                             status=422 if errors else 200)

    async def whoami(self, request: Request) -> Response:
        portal = _portal(request)
        return PlainTextResponse(f"user={portal.session.get('user')}")

    async def logout(self, request: Request) -> Response:
        portal = _portal(request)
        await portal.session.end()
        return portal.redirect("demo.whoami")

    async def write_on_get(self, request: Request) -> Response:
        portal = _portal(request)
        portal.session["sneaky"] = True
        return PlainTextResponse("written")

    async def state_on_get(self, request: Request) -> Response:
        portal = _portal(request)
        await portal.state("demo").put("sneaky", b"1")
        return PlainTextResponse("written")

    async def guess(self, request: Request) -> Response:
        """A code check: 3 failures per account per hour, 5 per client address."""
        portal = _portal(request)
        if request.method == "GET":
            return portal.render("demo_login.html", {"errors": FormErrors()})
        form = await portal.form()
        account = str(form.get("account", ""))
        throttle = portal.throttle("demo-code", account, limit=3, per=timedelta(hours=1),
                                   client_limit=5)
        status = await throttle.check()
        if not status.allowed:
            return portal.too_many_attempts(status)
        if form.get("code") == "right":
            await throttle.reset()
            return PlainTextResponse("ok")
        status = await throttle.record_failure()
        return PlainTextResponse(f"wrong failures={status.failures}", status_code=400)

    async def api(self, request: Request) -> Response:
        self.calls.append("api")
        return JSONResponse({"ok": True})

    async def crash(self, request: Request) -> Response:
        raise RuntimeError("secret internal detail")

    async def not_a_response(self, request: Request) -> Response:
        return "just a string"  # type: ignore[return-value]

    async def link(self, request: Request) -> Response:
        return PlainTextResponse(f"code={request.path_params['code']}")
