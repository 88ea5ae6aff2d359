"""The recipient portal: the web pages recipients of protected mail use (choose a password, read a
message, answer a clerk). Plugins add pages with ``siegel_register_portal_routes``; the portal
wraps each of them with one security and accessibility layer.

Writing a portal page
=====================

A route is a :class:`siegel.PortalRoute`; its endpoint is an async Starlette endpoint that finds
the portal's context in ``request.state.portal`` (:class:`PortalContext`)::

    from datetime import timedelta
    from siegel import PortalRoute, hookimpl
    from siegel.portal import FormErrors

    async def code(request):
        portal = request.state.portal
        errors = FormErrors()
        if request.method == "POST":                 # CSRF is checked before this runs
            form = await portal.form()
            throttle = portal.throttle("code", form.get("address", ""), limit=5,
                                       per=timedelta(minutes=15))
            # Counted before the check, atomically: parallel requests cannot pass the limit.
            if not (status := await throttle.attempt()).allowed:
                return portal.too_many_attempts(status)
            async with portal.uniform_timing(0.5):   # known and unknown take as long
                ok = await check_code(form)
            if ok:
                await throttle.succeeded()           # a success is not a failure
                await portal.session.rotate()        # privileges changed: new session id
                portal.session["recipient"] = ...
                return portal.redirect("my_plugin.done")   # 303: refresh does not re-post
            errors.add("code", portal.t("uniform.code_wrong"))
        return portal.render("code.html", {"errors": errors}, status=422 if errors else 200)

    @hookimpl
    def siegel_register_portal_routes():
        return [PortalRoute(name="my_plugin.code", path="/code", endpoint=code,
                            methods=("GET", "POST"))]

Rules the portal enforces, and what they mean for plugin authors:

* **Tenants come from the link.** Every route is served as ``/t/{tenant}{path}`` for each tenant
  that enables the plugin, and is a 404 for the others. ``portal.tenant`` is that tenant;
  ``portal.url_for(name, **params)`` builds the absolute link for a mail (from
  ``public_base_url``), ``portal.path_for`` a link within pages. The path parameter ``tenant`` and
  route names starting with ``portal.`` are reserved.
* **No state change on GET.** Mail scanners, link previews and browser prefetchers follow links.
  On GET and HEAD, ``portal.session`` and ``portal.state(namespace)`` are read-only and raise
  :class:`StateChangeOnGet` on writes. A link in a mail leads to a page with a form; the form's
  POST does the work.
* **CSRF on every other method.** Before the endpoint runs, the portal checks that the request
  carries the session's synchronizer token (form field ``csrf_token``, added by the ``forms.form``
  macro, or header ``X-CSRF-Token``) and, if the browser says so, comes from the portal's own
  origin. A failing check shows a 403 page that explains and links back; a post with an expired
  session redirects to ``portal.session-expired``.
* **Sessions** live in plugin state (``portal.sessions``); the cookie holds only a random 256-bit
  id. They end after ``session_idle_minutes`` without a request and ``session_absolute_hours``
  after they began. Call ``await portal.session.rotate()`` when privileges change (login) and
  ``await portal.session.end()`` to log out. Values must be JSON. Data is kept per tenant.
* **Uniform answers.** Whether an address is known must not show: give the same page, the same
  status and the same wording (``uniform.*`` texts) for both cases, do the same work (or wrap it
  in ``portal.uniform_timing(seconds)``), and count attempts with ``portal.throttle(...)`` per
  account *and* per client address: ``attempt()`` before the check, ``succeeded()`` after a
  right answer.
* **Texts** come from catalogs: ``portal.t("key", name=value)``; the portal's own are in
  ``siegel/portal/locales/{de,en}.json``. A plugin puts its own in ``portal_locales/de.json`` and
  ``en.json`` next to the module that defines its endpoints (both with the same keys), or passes
  :class:`siegel.Text` values. German is the default; ``?lang=en``, the language cookie and the
  browser's ``Accept-Language`` choose English.
* **Files.** Uploads are checked by content, not by name (``read_uploads`` with
  :class:`UploadLimits`, signatures in ``FILE_SIGNATURES``); downloads go out through
  ``download_response``: always saved, never rendered (``attachment``, ``nosniff``, safe types
  only).
* **Templates** are Jinja2 with autoescaping; a plugin's live in ``portal_templates/`` next to
  the module that defines its endpoints, extend ``base.html`` and import ``forms.html`` (form
  macros with labels, hints, errors and an error summary). No inline script or style: the
  Content-Security-Policy forbids both; put styling needs into ``portal.css``.
"""

from siegel.portal.app import Portal, PortalError, create_app
from siegel.portal.context import (
    FormErrors,
    LanguageLink,
    PortalContext,
    TenantBranding,
    uniform_timing,
)
from siegel.portal.files import (
    FILE_SIGNATURES,
    Upload,
    UploadLimits,
    UploadRefused,
    content_type_of,
    download_response,
    read_uploads,
    safe_filename,
)
from siegel.portal.i18n import CatalogError, Language, Translator, negotiate_language
from siegel.portal.security import CONTENT_SECURITY_POLICY, SECURITY_HEADERS
from siegel.portal.server import PortalServer, serve_portal
from siegel.portal.sessions import Session, SessionProblem, StateChangeOnGet
from siegel.portal.settings import PortalSettings
from siegel.throttle import Throttle, ThrottleStatus

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "FILE_SIGNATURES",
    "SECURITY_HEADERS",
    "CatalogError",
    "FormErrors",
    "Language",
    "LanguageLink",
    "Portal",
    "PortalContext",
    "PortalError",
    "PortalServer",
    "PortalSettings",
    "Session",
    "SessionProblem",
    "StateChangeOnGet",
    "TenantBranding",
    "Throttle",
    "ThrottleStatus",
    "Translator",
    "Upload",
    "UploadLimits",
    "UploadRefused",
    "content_type_of",
    "create_app",
    "download_response",
    "negotiate_language",
    "read_uploads",
    "safe_filename",
    "serve_portal",
    "uniform_timing",
]
