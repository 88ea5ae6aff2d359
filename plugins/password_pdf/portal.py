"""The password-PDF pages of the recipient portal.

* ``/register/TOKEN``: choose the password on first contact (link in the invitation); releases
  every held message.
* ``/password``: ask for a reset link (link in every carrier mail). The answer is the same whether
  or not the address has a password; requests are throttled per address and per client.
* ``/reset/TOKEN``: choose a new password (link in the reset mail, valid for minutes, once).
* ``/reply/TOKEN``: answer the sender (link in every carrier mail). The page shows nothing of the
  message; the link can only send.
* ``/login``: log in with the address and the password (Argon2id hash, see :mod:`.login`). Failed
  attempts are counted per account and per client (:data:`LOGIN_FAILURES_PER_HOUR` each); an
  unknown address, an account without a login hash and a wrong password get the same answer in
  the same time.
* ``/account``: for a logged-in recipient: the address, when the password was set, a form to
  change it (current password, new one twice) and the log-out button.
* ``/logout``: ends the session (form post only).

Every form is CSRF-checked and posts back to itself (the log-out button posts to ``/logout``); a
GET never changes anything. The session id changes at login, at log-out and after a password
change.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta

import attrs
from starlette.requests import Request
from starlette.responses import Response

from siegel import Address, InvalidAddress, PortalRoute, Text
from siegel.portal import (
    FormErrors,
    PortalContext,
    Throttle,
    UploadLimits,
    UploadRefused,
    read_uploads,
)

from .accounts import PortalAccount, Purpose, TokenInvalid, TokenRecord
from .encrypt import MAX_PASSWORD_BYTES
from .workflow import SECTION, PasswordPdfSettings, Workflow, password_problems

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 10_000
MAX_REPLY_FILES = 5


#: Failed logins (and wrong current passwords on the account page) allowed per hour, counted per
#: account and, separately, per client address (issue 3: at most 100 per hour and account). A
#: successful login does not clear the count: it runs out an hour after the first failure.
LOGIN_FAILURES_PER_HOUR = 100
LOGIN_THROTTLE = "pdf.login"
#: Wrong (unknown, used, expired) invitation, reset and reply links, per client network.
LINK_FAILURES_PER_HOUR = 30
LINK_THROTTLE = "pdf.link"
#: Every login answer takes at least this long, known account or not (an Argon2id check takes
#: about 0.1 s; the rest hides the difference between reading an account and finding none).
LOGIN_SECONDS = 0.5
#: Session keys of this module.
SESSION_LOGIN = "pdf.login"
SESSION_LOGGED_OUT = "pdf.logged-out"


@attrs.frozen(kw_only=True)
class _Login:
    """Who is logged in, as kept in the session (JSON)."""

    tenant: str
    recipient: str
    #: :attr:`PortalAccount.password_version` at login: a later password change ends the login.
    password_version: str

    @classmethod
    def of(cls, portal: PortalContext, account: PortalAccount) -> _Login:
        return cls(tenant=portal.tenant.id, recipient=str(account.recipient),
                   password_version=account.password_version)

    @classmethod
    def from_session(cls, value: object) -> _Login | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(tenant=str(value["tenant"]), recipient=str(value["recipient"]),
                       password_version=str(value["password_version"]))
        except KeyError:
            return None


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


def _login_throttle(portal: PortalContext, address: Address) -> Throttle:
    return portal.throttle(LOGIN_THROTTLE, address.key, limit=LOGIN_FAILURES_PER_HOUR,
                           per=timedelta(hours=1), client_limit=LOGIN_FAILURES_PER_HOUR)


async def _logged_in(portal: PortalContext) -> PortalAccount | None:
    """The account this session is logged in to, or ``None``: never logged in, logged in for
    another tenant, or the password changed since (a reset by mail ends every login)."""
    login = _Login.from_session(portal.session.get(SESSION_LOGIN))
    if login is None or login.tenant != portal.tenant.id:
        return None
    try:
        recipient = Address.parse(login.recipient)
    except InvalidAddress:
        return None
    account = await _workflow(portal).portal_account(recipient)
    if account is None or not hmac.compare_digest(account.password_version.encode(),
                                                  login.password_version.encode()):
        return None
    return account


async def login(request: Request) -> Response:
    portal = _portal(request)
    errors = FormErrors()
    address_text = ""
    if request.method == "GET" and await _logged_in(portal) is not None:
        return portal.redirect("password_pdf.account")
    if request.method == "POST":
        form = await portal.form()
        address_text = _field(form, "address").strip()
        password = _field(form, "password")
        address: Address | None = None
        try:
            address = Address.parse(address_text)
        except InvalidAddress:
            errors.add("address", portal.t("pdf.error.address_invalid"))
        if not password:
            errors.add("password", portal.t("pdf.error.login_password_required"))
        if address is not None and password:
            throttle = _login_throttle(portal, address)
            # Counted before the password is checked: parallel attempts cannot pass the limit.
            status = await throttle.attempt()
            if not status.allowed:
                log.warning("password_pdf: portal logins for an account of tenant %s blocked "
                            "after %d failures", portal.tenant.id, status.failures)
                return portal.too_many_attempts(status)
            async with portal.uniform_timing(LOGIN_SECONDS):
                account = await _workflow(portal).verify_login(address, password)
            if account is None:
                log.info("password_pdf: portal login refused (tenant %s)", portal.tenant.id)
                errors.add("password", portal.t("pdf.error.login_failed"))
            else:
                await throttle.succeeded()
                await portal.session.rotate()
                portal.session.pop(SESSION_LOGGED_OUT)
                portal.session[SESSION_LOGIN] = attrs.asdict(_Login.of(portal, account))
                log.info("password_pdf: portal login (tenant %s)", portal.tenant.id)
                return portal.redirect("password_pdf.account")
    return portal.render("pdf_login.html", {
        "errors": errors, "address": address_text,
        "logged_out": bool(portal.session.get(SESSION_LOGGED_OUT)),
    }, status=422 if errors else 200)


def _when(portal: PortalContext, moment: datetime) -> str:
    return portal.tenant.format_time(moment, portal.language)


async def account(request: Request) -> Response:
    portal = _portal(request)
    current = await _logged_in(portal)
    if current is None:
        if portal.session_problem is not None:  # explain why the login ended, then start over
            return portal.redirect("portal.session-expired", _query={
                "reason": portal.session_problem.value, "page": "password_pdf.login"})
        return portal.redirect("password_pdf.login")
    workflow = _workflow(portal)
    errors = FormErrors()
    if request.method == "POST":
        form = await portal.form()
        current_password = _field(form, "current_password")
        password, repeated = _field(form, "password"), _field(form, "password_repeat")
        throttle = _login_throttle(portal, current.recipient)
        if not current_password:
            status = await throttle.check()
            if not status.allowed:
                return portal.too_many_attempts(status)
            errors.add("current_password", portal.t("pdf.error.current_password_required"))
        else:
            status = await throttle.attempt()
            if not status.allowed:
                return portal.too_many_attempts(status)
            if await workflow.verify_login(current.recipient, current_password) is None:
                errors.add("current_password", portal.t("pdf.error.current_password_wrong"))
            else:
                await throttle.succeeded()
        problems: list[Text] = []
        if password:
            problems = password_problems(password, current.recipient,
                                         _settings(portal).minimum_password_length)
        _password_errors(portal, password, repeated, problems, errors)
        if not errors:
            problems = await workflow.change_password(current.recipient, password)
            _password_errors(portal, password, repeated, problems, errors)
        if not errors:
            changed = await workflow.portal_account(current.recipient)
            assert changed is not None
            await portal.session.rotate()
            portal.session[SESSION_LOGIN] = attrs.asdict(_Login.of(portal, changed))
            portal.session["pdf.done"] = "change"
            log.info("password_pdf: password changed in the portal (tenant %s)", portal.tenant.id)
            return portal.redirect("password_pdf.done")
    settings = _settings(portal)
    return portal.render("pdf_account.html", {
        "errors": errors, "recipient": str(current.recipient),
        "password_set_at": _when(portal, current.password_set_at),
        "minimum": settings.minimum_password_length, "maximum": MAX_PASSWORD_BYTES,
    }, status=422 if errors else 200)


async def logout(request: Request) -> Response:
    portal = _portal(request)
    await portal.session.end()
    portal.session[SESSION_LOGGED_OUT] = True  # starts a new session with a new id
    return portal.redirect("password_pdf.login")


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
        PortalRoute(name="password_pdf.login", path="/login", endpoint=login, methods=both,
                    description="log in with address and password"),
        PortalRoute(name="password_pdf.account", path="/account", endpoint=account,
                    methods=both, description="the account: change the password, log out"),
        PortalRoute(name="password_pdf.logout", path="/logout", endpoint=logout,
                    methods=("POST",), description="log out"),
    ]
