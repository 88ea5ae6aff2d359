"""The portal's own pages, registered like a plugin's (names start with ``portal.``).

* ``portal.start`` (``/``): the tenant's welcome page.
* ``portal.session-expired`` (``/session-expired``): why a form post could not be used and how to
  go on (``?reason=idle|absolute|invalid&page=ROUTE&next=PATH``; ``next`` is passed on to the
  page, the login's way back to where the visitor was).
* With ``demo_pages``: ``portal.contact`` (``/contact``), a form with validation that sends nothing,
  and ``portal.contact-done`` (``/contact/done``). They show how a plugin's form works end to end:
  a GET renders the form (with the CSRF token), the POST validates, stores in the session and
  redirects (303) to a GET page that only reads.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from siegel.addresses import Address, InvalidAddress
from siegel.plugin import PortalRoute
from siegel.portal.context import FormErrors, PortalContext
from siegel.portal.sessions import SessionProblem
from siegel.portal.settings import PortalSettings

MAX_NAME = 200
MAX_MESSAGE = 2000


def _portal(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


async def start(request: Request) -> Response:
    portal = _portal(request)
    contact = portal.path_for("portal.contact") if portal.settings.demo_pages else None
    return portal.render("start.html", {"contact_url": contact})


async def session_expired(request: Request) -> Response:
    portal = _portal(request)
    reason = request.query_params.get("reason", "")
    if reason not in {p.value for p in SessionProblem}:
        reason = SessionProblem.INVALID.value
    back_url = None
    page = portal.routes.get(request.query_params.get("page", ""))
    if (page is not None and "GET" in page.methods and "{" not in page.path
            and (not page.plugin or page.plugin in portal.tenant.enabled_plugins)):
        nxt = request.query_params.get("next")
        safe = portal.safe_next(nxt, default="portal.start") if nxt else None
        back_url = portal.path_for(page.name, _query={"next": safe} if safe else None)
    minutes = f"{portal.settings.session_idle_minutes:g}"
    hours = f"{portal.settings.session_absolute_hours:g}"
    return portal.render("session_expired.html", {
        "reason": reason, "back_url": back_url, "minutes": minutes, "hours": hours})


async def contact(request: Request) -> Response:
    portal = _portal(request)
    values = {"name": "", "email": "", "message": ""}
    errors = FormErrors()
    if request.method == "POST":
        form = await portal.form()
        for field in values:
            raw = form.get(field)
            values[field] = raw.strip() if isinstance(raw, str) else ""
        t = portal.t
        if not values["name"]:
            errors.add("name", t("contact.error.name_required"))
        elif len(values["name"]) > MAX_NAME:
            errors.add("name", t("contact.error.name_too_long", max=MAX_NAME))
        if not values["email"]:
            errors.add("email", t("contact.error.email_required"))
        else:
            try:
                Address.parse(values["email"])
            except InvalidAddress:
                errors.add("email", t("contact.error.email_invalid"))
        if not values["message"]:
            errors.add("message", t("contact.error.message_required"))
        elif len(values["message"]) > MAX_MESSAGE:
            errors.add("message", t("contact.error.message_too_long", max=MAX_MESSAGE))
        if not errors:
            portal.session["contact"] = {"name": values["name"],
                                         "reference": secrets.token_hex(4).upper()}
            return portal.redirect("portal.contact-done")
    return portal.render("contact.html", {"values": values, "errors": errors,
                                          "max_message": MAX_MESSAGE},
                         status=422 if errors else 200)


async def contact_done(request: Request) -> Response:
    portal = _portal(request)
    sent = portal.session.get("contact")
    if not isinstance(sent, dict):
        return portal.redirect("portal.contact")
    return portal.render("contact_done.html", {"sent": sent})


def routes(settings: PortalSettings) -> list[PortalRoute]:
    found = [
        PortalRoute(name="portal.start", path="/", endpoint=start,
                    description="the tenant's welcome page"),
        PortalRoute(name="portal.session-expired", path="/session-expired",
                    endpoint=session_expired, description="why a session ended, and how to go on"),
    ]
    if settings.demo_pages:
        found += [
            PortalRoute(name="portal.contact", path="/contact", endpoint=contact,
                        methods=("GET", "POST"), description="demonstration form (sends nothing)"),
            PortalRoute(name="portal.contact-done", path="/contact/done", endpoint=contact_done,
                        description="demonstration form: confirmation"),
        ]
    return found
