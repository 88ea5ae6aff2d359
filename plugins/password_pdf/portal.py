"""The password-PDF pages of the recipient portal.

* ``/register/TOKEN``: choose the password on first contact (link in the invitation); releases
  every held message.
* ``/password``: ask for a reset link (link in every carrier mail). The answer is the same whether
  or not the address has a password; requests are throttled per address and per client.
* ``/reset/TOKEN``: choose a new password (link in the reset mail, valid for minutes, once).
* ``/reply/TOKEN``: answer the sender (link in every carrier mail). The page shows nothing of the
  message; the link can only send.

Login, log-out and the account page (changing the password) are the ``accounts`` plugin's
(``accounts.login``, ``accounts.logout``, ``accounts.account``); a password changed there reaches
this plugin's key material through ``siegel_account_password_set`` (:mod:`.plugin`).

Every form is CSRF-checked and posts back to itself; a GET never changes anything. The session id
changes after a password is set.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from siegel import Address, InvalidAddress, PortalRoute, Text
from siegel.portal import FormErrors, PortalContext, UploadLimits, UploadRefused, read_uploads

from .accounts import Purpose, TokenInvalid, TokenRecord
from .encrypt import MAX_PASSWORD_BYTES
from .workflow import SECTION, PasswordPdfSettings, Workflow, password_problems

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 10_000
MAX_REPLY_FILES = 5


#: Wrong (unknown, used, expired) invitation, reset and reply links, per client network.
LINK_FAILURES_PER_HOUR = 30
LINK_THROTTLE = "pdf.link"


def _portal(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


def _workflow(portal: PortalContext) -> Workflow:
    return Workflow(portal.services, portal.tenant)


def _settings(portal: PortalContext) -> PasswordPdfSettings:
    settings: PasswordPdfSettings = portal.tenant.settings[SECTION]
    return settings


def _link_invalid(portal: PortalContext) -> Response:
    return portal.render("pdf_link_invalid.html", status=404)


async def _read_link(portal: PortalContext, token: str, purpose: Purpose) -> TokenRecord | Response:
    """The token's record, or the page to show: every link opened counts against the client's
    network until it proves right, so links cannot be guessed faster than passwords."""
    throttle = portal.throttle(LINK_THROTTLE, None, limit=LINK_FAILURES_PER_HOUR,
                               per=timedelta(hours=1))
    status = await throttle.attempt()
    if not status.allowed:
        log.warning("password_pdf: portal links of tenant %s blocked for a client after %d "
                    "wrong links", portal.tenant.id, status.failures)
        return portal.too_many_attempts(status)
    try:
        record = await _workflow(portal).read_token(token, purpose)
    except TokenInvalid:
        return _link_invalid(portal)
    await throttle.succeeded()
    return record


def _field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""


def _password_errors(portal: PortalContext, password: str, repeated: str,
                     problems: list[Text], errors: FormErrors | None = None) -> FormErrors:
    """The new-password fields' errors, added to ``errors`` (or to a new one)."""
    errors = FormErrors() if errors is None else errors
    if not password:
        errors.add("password", portal.t("pdf.error.password_required"))
    elif problems:
        errors.add("password", " ".join(portal.t(p) for p in problems))
    if password and password != repeated:
        errors.add("password_repeat", portal.t("pdf.error.password_mismatch"))
    return errors


async def _choose_password(request: Request, *, purpose: str) -> Response:
    """The register and reset pages: the same form, a different token and action."""
    portal = _portal(request)
    workflow = _workflow(portal)
    token = request.path_params["token"]
    record = await _read_link(portal, token, "register" if purpose == "register" else "reset")
    if isinstance(record, Response):
        return record
    errors = FormErrors()
    if request.method == "POST":
        form = await portal.form()
        password, repeated = _field(form, "password"), _field(form, "password_repeat")
        problems: list[Text] = []
        if password and password != repeated:
            problems = password_problems(password, Address.parse(record.recipient),
                                         _settings(portal).minimum_password_length)
        elif password:
            try:
                if purpose == "register":
                    _recipient, problems = await workflow.register(token, password)
                else:
                    _recipient, problems = await workflow.reset(token, password)
            except TokenInvalid:
                return _link_invalid(portal)
        errors = _password_errors(portal, password, repeated, problems)
        if not errors:
            await portal.session.rotate()
            portal.session["pdf.done"] = purpose
            return portal.redirect("password_pdf.done")
    settings = _settings(portal)
    return portal.render("pdf_choose_password.html", {
        "purpose": purpose, "errors": errors, "recipient": record.recipient,
        "minimum": settings.minimum_password_length, "maximum": MAX_PASSWORD_BYTES,
    }, status=422 if errors else 200)


async def register(request: Request) -> Response:
    return await _choose_password(request, purpose="register")


async def reset(request: Request) -> Response:
    return await _choose_password(request, purpose="reset")


async def done(request: Request) -> Response:
    portal = _portal(request)
    purpose = portal.session.get("pdf.done")
    if purpose not in ("register", "reset", "change"):
        return portal.redirect("portal.start")
    return portal.render("pdf_done.html", {"purpose": purpose})


async def request_reset(request: Request) -> Response:
    portal = _portal(request)
    errors = FormErrors()
    address_text = ""
    if request.method == "POST":
        form = await portal.form()
        address_text = _field(form, "address").strip()
        try:
            address = Address.parse(address_text)
        except InvalidAddress:
            errors.add("address", portal.t("pdf.error.address_invalid"))
        else:
            throttle = portal.throttle("pdf.reset-request", address.key, limit=5,
                                       per=timedelta(hours=1), client_limit=30)
            status = await throttle.attempt()  # every request counts towards the limit
            if not status.allowed:
                return portal.too_many_attempts(status)
            # Known or not, the same work, the same time, the same answer.
            async with portal.uniform_timing(0.4):
                await _workflow(portal).request_reset(address)
            portal.session["pdf.reset-requested"] = True
            return portal.redirect("password_pdf.password-sent")
    return portal.render("pdf_request_reset.html", {"errors": errors, "address": address_text},
                         status=422 if errors else 200)


async def password_sent(request: Request) -> Response:
    portal = _portal(request)
    if not portal.session.get("pdf.reset-requested"):
        return portal.redirect("password_pdf.password")
    minutes = f"{_settings(portal).reset_link_minutes:g}"
    return portal.render("pdf_password_sent.html", {"minutes": minutes})


async def _attachments(portal: PortalContext, uploads: list[object],
                       errors: FormErrors) -> list[tuple[str, str, bytes]]:
    limits = UploadLimits(max_files=MAX_REPLY_FILES, max_bytes=portal.settings.max_form_bytes)
    try:
        found = await read_uploads(uploads, limits)
    except UploadRefused as refused:
        errors.add("attachments", portal.t(refused.text))
        return []
    return [(f.filename, f.content_type, f.content) for f in found]


async def reply(request: Request) -> Response:
    portal = _portal(request)
    workflow = _workflow(portal)
    token = request.path_params["token"]
    record = await _read_link(portal, token, "reply")
    if isinstance(record, Response):
        return record
    errors = FormErrors()
    text = ""
    if request.method == "POST":
        form = await portal.form()
        text = _field(form, "text").strip()
        if not text:
            errors.add("text", portal.t("pdf.error.text_required"))
        elif len(text) > MAX_REPLY_CHARS:
            errors.add("text", portal.t("pdf.error.text_too_long", max=MAX_REPLY_CHARS))
        attachments = await _attachments(portal, list(form.getlist("attachments")), errors)
        if not errors:
            throttle = portal.throttle("pdf.reply", token[:16], limit=20, per=timedelta(days=1))
            status = await throttle.attempt()  # counts replies per link and client
            if not status.allowed:
                return portal.too_many_attempts(status)
            try:
                await workflow.reply(token, text, attachments)
            except TokenInvalid:
                return _link_invalid(portal)
            portal.session["pdf.replied"] = True
            return portal.redirect("password_pdf.reply-sent")
    return portal.render("pdf_reply.html", {
        "errors": errors, "text": text, "max_chars": MAX_REPLY_CHARS, "max_files": MAX_REPLY_FILES,
        "max_kb": portal.settings.max_form_bytes // 1024, "secure": portal.secure,
    }, status=422 if errors else 200)


async def reply_sent(request: Request) -> Response:
    portal = _portal(request)
    if not portal.session.get("pdf.replied"):
        return portal.redirect("portal.start")
    return portal.render("pdf_reply_sent.html")


def routes() -> list[PortalRoute]:
    both = ("GET", "POST")
    return [
        PortalRoute(name="password_pdf.register", path="/register/{token}", endpoint=register,
                    methods=both, description="choose the password on first contact"),
        PortalRoute(name="password_pdf.reset", path="/reset/{token}", endpoint=reset,
                    methods=both, description="choose a new password"),
        PortalRoute(name="password_pdf.done", path="/password/done", endpoint=done,
                    description="the password is set"),
        PortalRoute(name="password_pdf.password", path="/password", endpoint=request_reset,
                    methods=both, description="ask for a password reset link"),
        PortalRoute(name="password_pdf.password-sent", path="/password/sent",
                    endpoint=password_sent, description="the reset link is on its way"),
        PortalRoute(name="password_pdf.reply", path="/reply/{token}", endpoint=reply,
                    methods=both, description="answer the sender"),
        PortalRoute(name="password_pdf.reply-sent", path="/reply-sent", endpoint=reply_sent,
                    description="the answer was sent"),
    ]
