"""The portal application: routes, the layer around every page, error pages.

Tenants are told apart by the link: every page lives under ``/t/{tenant}/``, and a plugin's route
``/password/{token}`` is served as ``/t/{tenant}/password/{token}`` for each tenant that enables the
plugin (404 for the others). The tenant decides branding (name, logo) and the fallback language;
the session's data is kept per tenant. Links in mails come from ``url_for`` and
``public_base_url``; they never depend on the Host header of a request.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from siegel.config import Tenant
from siegel.plugin import PortalRoute
from siegel.portal import pages
from siegel.portal.context import SAFE_METHODS, PortalContext, TenantBranding, language_links
from siegel.portal.i18n import (
    LOCALES,
    Catalogs,
    Language,
    Translator,
    as_language,
    load_catalogs,
    merge_catalogs,
    negotiate_language,
)
from siegel.portal.security import SECURE_KEY, PortalMiddleware
from siegel.portal.sessions import (
    COOKIE,
    NAMESPACE,
    SECURE_COOKIE,
    SessionLost,
    SessionManager,
    SessionProblem,
)
from siegel.portal.settings import PortalSettings
from siegel.portal.templates import (
    PLUGIN_LOCALES,
    PLUGIN_STATIC,
    PLUGIN_TEMPLATES,
    Templates,
    asset_folder,
)
from siegel.throttle import KEYS_NAMESPACE, shared_secret

if TYPE_CHECKING:
    from siegel.runtime import Runtime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LANGUAGE_COOKIE = "siegel_lang"
SECURE_LANGUAGE_COOKIE = "__Host-siegel_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
_TENANT_PATH = re.compile(r"^/t/([^/]+)(/|$)")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Endpoint = Callable[[Request], Awaitable[Response]]


class PortalError(Exception):
    """The portal cannot be built as configured (conflicting routes, a missing logo, ...)."""


@attrs.frozen
class CsrfFailure:
    #: "origin" (posted from another site), "no-session" (no cookie came back), "token" (missing or
    #: wrong token: an old form, or one from elsewhere).
    reason: str


class Portal:
    """Everything the pages of one app share; reachable as ``app.state.portal``."""

    def __init__(self, runtime: Runtime, settings: PortalSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.config = runtime.config
        self.registry = runtime.registry
        base = urlsplit(settings.base_url)
        self.origin = f"{base.scheme}://{base.netloc}"
        self.prefix = base.path.rstrip("/")
        self.sessions = SessionManager(runtime.state(NAMESPACE), runtime.clock,
                                       idle=settings.session_idle, absolute=settings.session_absolute)
        self._secret: bytes | None = None
        self.routes = self._collect_routes()
        core = load_catalogs(LOCALES)
        self.catalogs: dict[str, Catalogs] = {"": core}
        folders: dict[str, list[Path]] = {}
        #: Each plugin's ``portal_static/`` folder, served under ``/static/plugins/PLUGIN/``.
        self.plugin_static: dict[str, Path] = {}
        for route in self.routes.values():
            if not route.plugin:
                continue
            static = asset_folder(route.endpoint, PLUGIN_STATIC)
            if static is not None:
                self.plugin_static.setdefault(route.plugin, static)
            templates = asset_folder(route.endpoint, PLUGIN_TEMPLATES)
            if templates is not None and templates not in folders.setdefault(route.plugin, []):
                folders[route.plugin].append(templates)
            locales = asset_folder(route.endpoint, PLUGIN_LOCALES)
            if locales is not None:
                self.catalogs[route.plugin] = merge_catalogs(
                    self.catalogs.get(route.plugin, core), load_catalogs(locales))
        self.templates = Templates(folders)
        self.logos = self._check_logos()
        self.router: Router | None = None

    # -- set-up ------------------------------------------------------------------------------

    def _collect_routes(self) -> dict[str, PortalRoute]:
        routes: dict[str, PortalRoute] = {}
        seen: dict[tuple[str, str], str] = {}
        for route in (*pages.routes(self.settings), *self.registry.portal_routes.values()):
            owner = f"plugin {route.plugin!r}" if route.plugin else "the portal"
            if route.name in routes:
                raise PortalError(f"portal route {route.name!r} of {owner} is already registered by "
                                  f"{routes[route.name].plugin or 'the portal'}")
            if route.plugin and route.name.startswith("portal."):
                raise PortalError(f"portal route {route.name!r} of {owner}: names starting with "
                                  "'portal.' are reserved for the portal's own pages")
            if "{tenant" in route.path:
                raise PortalError(f"portal route {route.name!r} of {owner}: the path parameter "
                                  "'tenant' is the portal's (every route is served per tenant)")
            for method in route.methods:
                key = (route.path, method.upper())
                if key in seen:
                    raise PortalError(f"portal route {route.name!r} of {owner}: {method} "
                                      f"{route.path} is already served by route {seen[key]!r}")
                seen[key] = route.name
            routes[route.name] = route
        return routes

    def _check_logos(self) -> dict[str, tuple[Path, str]]:
        logos: dict[str, tuple[Path, str]] = {}
        for tenant_id, value in self.settings.logos.items():
            path = self.config.path(value)
            where = f"portal logos.{tenant_id}"
            if tenant_id not in self.config.tenants:
                raise PortalError(f"{where}: there is no tenant {tenant_id!r}")
            media_type = _LOGO_TYPES.get(path.suffix.lower())
            if media_type is None:
                raise PortalError(f"{where}: {path.name} is not a PNG, JPEG, GIF, WebP or SVG file")
            if not path.is_file():
                raise PortalError(f"{where}: file {path} not found")
            logos[tenant_id] = (path, media_type)
        return logos

    def starlette_routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/", self.root, name="portal.root"),
            Route("/favicon.ico", self.favicon),
            Route("/t/{tenant}/logo", self.logo, name="portal.logo"),
            *(Mount(f"/static/plugins/{plugin}", StaticFiles(directory=folder))
              for plugin, folder in sorted(self.plugin_static.items())),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        for route in self.routes.values():
            routes.append(Route(f"/t/{{tenant}}{route.path}", self.wrap(route),
                                methods=list(route.methods), name=route.name))
        return routes

    async def throttle_secret(self) -> bytes:
        if self._secret is None:
            self._secret = await shared_secret(self.runtime.state(KEYS_NAMESPACE))
        return self._secret

    # -- links -------------------------------------------------------------------------------

    def path_for(self, name: str, *, tenant: str, query: Mapping[str, str] | None = None,
                 **params: str) -> str:
        assert self.router is not None, "the portal app is not built yet"
        path = self.prefix + str(self.router.url_path_for(name, tenant=tenant, **params))
        return path + ("?" + urlencode(dict(query)) if query else "")

    def url_for(self, name: str, *, tenant: str, query: Mapping[str, str] | None = None,
                **params: str) -> str:
        return self.origin + self.path_for(name, tenant=tenant, query=query, **params)

    def static_url(self, path: str) -> str:
        return f"{self.prefix}/static/{path}"

    def plugin_static_url(self, plugin: str, path: str) -> str:
        return f"{self.prefix}/static/plugins/{plugin}/{path}"

    # -- per request -------------------------------------------------------------------------

    def branding(self, tenant: Tenant) -> TenantBranding:
        logo = self.path_for("portal.logo", tenant=tenant.id) if tenant.id in self.logos else None
        return TenantBranding(name=tenant.name, logo_url=logo)

    def tenant_from_path(self, request: Request) -> Tenant | None:
        tenant_id = request.path_params.get("tenant")
        if tenant_id is None:
            match = _TENANT_PATH.match(request.url.path)
            tenant_id = match.group(1) if match else None
        return self.config.tenants.get(tenant_id) if tenant_id else None

    @staticmethod
    def secure(request: Request) -> bool:
        return bool(request.scope.get(SECURE_KEY, False))

    def language_for(self, request: Request, tenant: Tenant | None) -> Language:
        cookie = LANGUAGE_COOKIE if not self.secure(request) else SECURE_LANGUAGE_COOKIE
        return negotiate_language(
            query=request.query_params.get("lang"), cookie=request.cookies.get(cookie),
            accept_language=request.headers.get("accept-language"),
            fallback=tenant.language if tenant is not None else "de")

    def translator(self, language: Language, plugin: str = "") -> Translator:
        return Translator(self.catalogs.get(plugin, self.catalogs[""]), language)

    @staticmethod
    def session_notice(problem: SessionProblem | None) -> str | None:
        return None if problem is None else f"session.notice.{problem.value}"

    def session_cookie(self, request: Request) -> str:
        return SECURE_COOKIE if self.secure(request) else COOKIE

    async def context_for(self, request: Request, route: PortalRoute) -> PortalContext:
        tenant = self.tenant_from_path(request)
        if tenant is None or (route.plugin and route.plugin not in tenant.enabled_plugins):
            raise HTTPException(404)
        language = self.language_for(request, tenant)
        loaded = await self.sessions.load(request.cookies.get(self.session_cookie(request)),
                                          tenant=tenant.id,
                                          writable=request.method not in SAFE_METHODS)
        client = request.client.host if request.client else "unknown"
        return PortalContext(
            request=request, tenant=tenant, branding=self.branding(tenant), language=language,
            t=self.translator(language, route.plugin), session=loaded.session,
            services=self.runtime, clock=self.runtime.clock, settings=self.settings,
            client=client, route=route, session_problem=loaded.problem, portal=self)

    def allowed_origins(self, request: Request) -> set[str]:
        origins = {self.origin}
        host = request.headers.get("host")
        if host:
            origins.add(f"{request.url.scheme}://{host}")
        return origins

    def cross_origin(self, request: Request) -> bool:
        """Whether the browser says the request comes from another site."""
        origin = request.headers.get("origin")
        if origin not in (None, "null") and origin not in self.allowed_origins(request):
            return True
        return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")

    async def csrf_failure(self, request: Request, context: PortalContext) -> CsrfFailure | None:
        """Why a state-changing request is refused, or ``None`` when it carries this session's
        token and comes from the portal's own pages."""
        # With "Referrer-Policy: no-referrer" browsers send "Origin: null" for form posts, so
        # "null" says nothing; Sec-Fetch-Site is unaffected by the referrer policy.
        if self.cross_origin(request):
            return CsrfFailure("origin")
        if context.session.is_new:
            return CsrfFailure("no-session")
        token = request.headers.get(CSRF_HEADER)
        content_type = request.headers.get("content-type", "")
        if token is None and content_type.split(";")[0].strip().lower() in _FORM_TYPES:
            value = (await context.form()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        expected = context.session.csrf_token
        if not token or not hmac.compare_digest(token.encode("utf-8"), expected.encode("ascii")):
            return CsrfFailure("token")
        return None

    def wrap(self, route: PortalRoute) -> Endpoint:
        """The portal's layer around one route's endpoint."""

        async def endpoint(request: Request) -> Response:
            context = await self.context_for(request, route)
            request.state.portal = context
            if context.may_change_state:
                if route.keeps_expired_posts and (context.session_problem is not None
                                                  or context.session.is_new):
                    if self.cross_origin(request):
                        return await self.finish(context, self.csrf_page(
                            context, CsrfFailure("origin")))
                    return await self.finish(context, await route.endpoint(request))
                if context.session_problem is not None:
                    response: Response = context.redirect(
                        "portal.session-expired",
                        _query={"reason": context.session_problem.value, "page": route.name})
                    return await self.finish(context, response)
                failure = await self.csrf_failure(request, context)
                if failure is not None:
                    log.info("portal: refused %s %s (%s)", request.method, request.url.path,
                             failure.reason)
                    return await self.finish(context, self.csrf_page(context, failure))
            result = await route.endpoint(request)
            if not isinstance(result, Response):
                raise TypeError(f"portal route {route.name!r} of plugin {route.plugin!r} returned "
                                f"{type(result).__name__}, not a Starlette Response")
            return await self.finish(context, result)

        endpoint.__name__ = f"portal_{route.name}"
        return endpoint

    async def finish(self, context: PortalContext, response: Response) -> Response:
        """Store the session and set or clear cookies on the way out."""
        request = context.request
        secure = self.secure(request)
        name = self.session_cookie(request)
        try:
            send_cookie = await context.session.save()
        except SessionLost:
            log.info("portal: session ended elsewhere during %s %s", request.method,
                     request.url.path)
            response = context.redirect("portal.session-expired",
                                        _query={"reason": SessionProblem.INVALID.value})
            send_cookie = False
        if send_cookie:
            value = context.session.cookie_value
            assert value is not None
            response.set_cookie(name, value, path="/", secure=secure, httponly=True,
                                samesite="strict")
        elif name in request.cookies and (context.session_problem is not None
                                          or context.session.ended):
            response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")
        language = as_language(request.query_params.get("lang"))
        if language is not None:
            response.set_cookie(SECURE_LANGUAGE_COOKIE if secure else LANGUAGE_COOKIE, language,
                                max_age=365 * 24 * 3600, path="/", secure=secure, httponly=True,
                                samesite="strict")
        return response

    # -- pages without a tenant context, and error pages ----------------------------------------

    def neutral_variables(self, request: Request, tenant: Tenant | None) -> dict[str, Any]:
        language = self.language_for(request, tenant)
        t = self.translator(language)
        branding = self.branding(tenant) if tenant else TenantBranding(name=t("portal.name"))
        home = self.path_for("portal.start", tenant=tenant.id) if tenant else self.prefix + "/"
        return {"portal": None, "t": t, "lang": language, "branding": branding, "tenant": tenant,
                "home_url": home, "static_url": self.static_url,
                "lang_links": language_links(request, language), "notice": None}

    def csrf_page(self, context: PortalContext, failure: CsrfFailure) -> Response:
        request = context.request
        reload_url = None
        if "GET" in context.route.methods:
            reload_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            reload_url = self.prefix + reload_url
        return context.render("csrf.html", {"reason": failure.reason, "reload_url": reload_url},
                              status=403)

    async def error_page(self, request: Request, status: int) -> Response:
        tenant = self.tenant_from_path(request)
        variables = self.neutral_variables(request, tenant)
        catalog = self.catalogs[""][variables["lang"]]
        key = f"error.{status}" if f"error.{status}.title" in catalog else "error.other"
        variables.update({"status": status, "key": key})
        html = self.templates.render("error.html", variables)
        return HTMLResponse(html, status_code=status)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = await self.error_page(request, exc.status_code)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def root(self, request: Request) -> Response:
        tenants = list(self.config.tenants.values())
        if len(tenants) == 1:
            return RedirectResponse(self.path_for("portal.start", tenant=tenants[0].id),
                                    status_code=303)
        html = self.templates.render("root.html", self.neutral_variables(request, None))
        return HTMLResponse(html)

    async def favicon(self, request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    async def logo(self, request: Request) -> Response:
        tenant = self.tenant_from_path(request)
        if tenant is None or tenant.id not in self.logos:
            raise HTTPException(404)
        path, media_type = self.logos[tenant.id]
        return FileResponse(path, media_type=media_type)


def create_app(runtime: Runtime, *, settings: PortalSettings) -> Starlette:
    """The recipient portal as an ASGI app, with the routes of every loaded plugin.

    Raises :class:`PortalError` when routes conflict or a configured logo is missing, and
    :class:`siegel.portal.i18n.CatalogError` when a text catalog is incomplete.
    """
    portal = Portal(runtime, settings)
    app = Starlette(
        routes=portal.starlette_routes(),
        middleware=[Middleware(PortalMiddleware, settings=settings, error_page=portal.error_page)],
        exception_handlers={HTTPException: portal.http_exception},
    )
    portal.router = app.router
    app.state.portal = portal
    return app

