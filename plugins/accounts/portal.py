"""Login, log-out and the account page of the recipient portal.

* ``/login`` (``accounts.login``): address and password (Argon2id, :mod:`siegel.passwords`).
  Failed attempts are counted per account and per client (:data:`LOGIN_FAILURES_PER_HOUR` each);
  an unknown address, an account without a password and a wrong password get the same answer in
  the same time. Success goes through ``portal.sign_in``: the second factor where one is set up
  or the tenant requires one, then ``next`` (a page of this portal) or the account page.
* ``/account`` (``accounts.account``): for a signed-in recipient: the address, when the password
  was set, a form to change it (current password, new one twice), the second factors and
  recovery codes (:mod:`.second_factor`) and the log-out button. A new password goes through
  :meth:`siegel.Accounts.set_password`, so every plugin's slot (the password PDF's key material)
  follows it in the same write.
* ``/logout`` (``accounts.logout``): ends the session (form post only).

Every form is CSRF-checked and posts back to itself; a GET never changes anything. The session id
changes at login, after the second factor, at log-out and after a password change.
"""

from __future__ import annotations

import email.utils
import logging
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from siegel import (
    Account,
    Address,
    InvalidAddress,
    PasswordRefused,
    PortalRoute,
    SystemMail,
    Text,
    mailtext,
    password_problems,
)
from siegel.portal import FormErrors, PortalContext, Throttle

from . import passkeys
from .settings import SECTION, AccountsSettings

log = logging.getLogger(__name__)

#: Failed logins (and wrong current passwords on the account page) allowed per hour, counted per
#: account and, separately, per client address (issue 3: at most 100 per hour and account). A
#: successful login does not clear the count: it runs out an hour after the first failure.
LOGIN_FAILURES_PER_HOUR = 100
LOGIN_THROTTLE = "accounts.login"
#: Every login answer takes at least this long, known account or not (an Argon2id check takes
#: about 0.1 s; the rest hides the difference between reading an account and finding none).
LOGIN_SECONDS = 0.5
#: The longest password accepted (bytes, UTF-8): longer ones only cost hashing time.
MAX_PASSWORD_BYTES = 1024


def portal_of(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


def settings_of(portal: PortalContext) -> AccountsSettings:
    settings: AccountsSettings = portal.tenant.settings[SECTION]
    return settings


def field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""


def login_throttle(portal: PortalContext, address: Address) -> Throttle:
    return portal.throttle(LOGIN_THROTTLE, address.key, limit=LOGIN_FAILURES_PER_HOUR,
                           per=timedelta(hours=1), client_limit=LOGIN_FAILURES_PER_HOUR)


async def login(request: Request) -> Response:
    portal = portal_of(request)
    errors = FormErrors()
    address_text = ""
    next_path = request.query_params.get("next", "")
    if request.method == "GET":
        if await portal.signed_in() is not None:
            return portal.redirect_to(portal.safe_next(next_path))
        if await portal.password_signed_in() is not None:  # the second factor is still to come
            return portal.redirect("accounts.second-factor", _query={"next": next_path})
    if request.method == "POST":
        form = await portal.form()
        address_text = field(form, "address").strip()
        password = field(form, "password")
        address: Address | None = None
        try:
            address = Address.parse(address_text)
        except InvalidAddress:
            errors.add("address", portal.t("accounts.error.address_invalid"))
        if not password:
            errors.add("password", portal.t("accounts.error.login_password_required"))
        if address is not None and password:
            throttle = login_throttle(portal, address)
            # Counted before the password is checked: parallel attempts cannot pass the limit.
            status = await throttle.attempt()
            if not status.allowed:
                log.warning("accounts: portal logins for an account of tenant %s blocked after "
                            "%d failures", portal.tenant.id, status.failures)
                return portal.too_many_attempts(status)
            async with portal.uniform_timing(LOGIN_SECONDS):
                account = (await portal.accounts.verify_password(address, password)
                           if len(password.encode()) <= MAX_PASSWORD_BYTES else None)
            if account is None:
                log.info("accounts: portal login refused (tenant %s)", portal.tenant.id)
                errors.add("password", portal.t("accounts.error.login_failed"))
            else:
                await throttle.succeeded()
                log.info("accounts: portal login, password proved (tenant %s)", portal.tenant.id)
                if account.passkeys:  # the second-factor page offers the passkey at once
                    passkeys.start(portal, account, "authenticate")
                return await portal.sign_in(account, next_path)
    return portal.render("accounts_login.html", {
        "errors": errors, "address": address_text,
        "signed_out": bool(portal.session.get("accounts.signed-out")),
        "reset_url": (portal.path_for("password_pdf.password")
                      if "password_pdf.password" in portal.routes
                      and "password_pdf" in portal.tenant.enabled_plugins else None),
    }, status=422 if errors else 200)


def new_password_errors(portal: PortalContext, password: str, repeated: str,
                        problems: list[Text], errors: FormErrors) -> FormErrors:
    if not password:
        errors.add("password", portal.t("accounts.error.password_required"))
    elif problems:
        errors.add("password", " ".join(portal.t(p) for p in problems))
    if password and password != repeated:
        errors.add("password_repeat", portal.t("accounts.error.password_mismatch"))
    return errors


async def _send_changed_mail(portal: PortalContext, account: Account) -> None:
    """Tell the owner of the address that the password changed (they may not have done it)."""
    tenant = portal.tenant
    now = portal.clock.now()
    languages = ("de", "en") if tenant.language == "de" else ("en", "de")
    sender = settings_of(portal).mail_from or tenant.notice_from
    message = mailtext.compose(
        package="siegel.plugins.accounts", name="password_changed", languages=languages,
        values={"tenant": tenant.name, "when": tenant.format_time(now, "de"),
                "when_en": tenant.format_time(now, "en"),
                "login_link": portal.url_for("accounts.login")},
        sender=email.utils.formataddr((tenant.name, sender)), to=account.address)
    message.add("X-Siegel-Mail", "accounts.password_changed")
    await portal.services.send_system_mail(tenant.id, SystemMail(
        mail_from="", recipients=[account.address], raw=message.to_bytes(),
        channel=tenant.delivery_channel))


async def _change_password(portal: PortalContext, current: Account,
                           errors: FormErrors) -> Response | None:
    form = await portal.form()
    address = Address.load(current.address)
    current_password = field(form, "current_password")
    password, repeated = field(form, "password"), field(form, "password_repeat")
    throttle = login_throttle(portal, address)
    if not current_password:
        status = await throttle.check()
        if not status.allowed:
            return portal.too_many_attempts(status)
        errors.add("current_password", portal.t("accounts.error.current_password_required"))
    else:
        status = await throttle.attempt()
        if not status.allowed:
            return portal.too_many_attempts(status)
        if await portal.accounts.verify_password(address, current_password) is None:
            errors.add("current_password", portal.t("accounts.error.current_password_wrong"))
        else:
            await throttle.succeeded()
    problems: list[Text] = []
    if password and len(password.encode()) > MAX_PASSWORD_BYTES:
        problems = [Text(de=f"Das Passwort darf höchstens {MAX_PASSWORD_BYTES} Byte haben.",
                         en=f"The password may have at most {MAX_PASSWORD_BYTES} bytes.")]
    elif password:
        problems = password_problems(password, address, settings_of(portal).minimum_password_length)
        problems += [p for p in await portal.accounts.password_problems(address, password)
                     if p not in problems]
    new_password_errors(portal, password, repeated, problems, errors)
    if errors:
        return None
    try:
        changed = await portal.accounts.set_password(address, password)
    except PasswordRefused as refused:  # a plugin's rule changed in between
        new_password_errors(portal, password, repeated, refused.problems, errors)
        return None
    await _send_changed_mail(portal, changed)
    log.info("accounts: password changed in the portal (tenant %s)", portal.tenant.id)
    return await portal.complete_sign_in(
        changed, portal.path_for("accounts.account", _query={"done": "password"}))


async def account(request: Request) -> Response:
    portal = portal_of(request)
    current = await portal.signed_in()
    if current is None:
        return portal.sign_in_redirect()
    errors = FormErrors()
    if request.method == "POST":
        answer = await _change_password(portal, current, errors)
        if answer is not None:
            return answer
    settings = settings_of(portal)
    from .second_factor import factor_summary

    return portal.render("accounts_account.html", {
        "errors": errors, "address": current.address,
        "password_set_at": (portal.tenant.format_time(current.password_set_at, portal.language)
                            if current.password_set_at else None),
        "minimum": settings.minimum_password_length,
        "done": request.query_params.get("done", ""),
        "factors": factor_summary(portal, current),
    }, status=422 if errors else 200)


async def logout(request: Request) -> Response:
    portal = portal_of(request)
    await portal.sign_out()
    log.info("accounts: signed out (tenant %s)", portal.tenant.id)
    return portal.redirect("accounts.login")


def routes() -> list[PortalRoute]:
    both = ("GET", "POST")
    return [
        PortalRoute(name="accounts.login", path="/login", endpoint=login, methods=both,
                    description="sign in with address and password"),
        PortalRoute(name="accounts.account", path="/account", endpoint=account, methods=both,
                    description="the account: password, second factors, log out"),
        PortalRoute(name="accounts.logout", path="/logout", endpoint=logout,
                    methods=("POST",), description="sign out"),
    ]
