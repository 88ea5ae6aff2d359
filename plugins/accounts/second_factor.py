"""The second-factor pages: the step after the password, setting factors up, recovery codes.

* ``/login/second-factor`` (``accounts.second-factor``): after the password, for an account with a
  second factor: a code from the authenticator app, the passkey, or a recovery code. Failures
  count per account and client (:data:`FAILURES_PER_HOUR`).
* ``/login/second-factor/setup`` (``accounts.second-factor-setup``): where the tenant requires a
  second factor and the account has none: set one up before anything else.
* ``/account/totp`` (``accounts.totp``): set up (QR code and the key as text) or remove the app.
* ``/account/passkeys`` (``accounts.passkeys``): add (needs JavaScript: ``passkeys.js``) or remove
  a passkey.
* ``/account/recovery-codes`` (``accounts.recovery-codes``): new codes, shown once.

Setting up the first factor creates recovery codes and shows them; in the set-up step it also
completes the login (``portal.complete_sign_in``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import attrs
import segno
from starlette.requests import Request
from starlette.responses import Response

from siegel import Account, Address, PortalRoute
from siegel.portal import FormErrors, PortalContext, Throttle

from . import factors, passkeys
from .portal import field, portal_of

log = logging.getLogger(__name__)

#: Wrong codes, recovery codes and passkey answers allowed per hour, per account and per client.
#: With a window of three steps a guessed TOTP code wins once in about 333 000 tries.
FAILURES_PER_HOUR = 10
CLIENT_FAILURES_PER_HOUR = 50
THROTTLE = "accounts.second-factor"
SESSION_TOTP = "accounts.totp-pending"
SESSION_CODES = "accounts.new-codes"


def _throttle(portal: PortalContext, account: Account) -> Throttle:
    return portal.throttle(THROTTLE, account.key, limit=FAILURES_PER_HOUR,
                           per=timedelta(hours=1), client_limit=CLIENT_FAILURES_PER_HOUR)


def _when(portal: PortalContext, moment: Any) -> str:
    return portal.tenant.format_time(moment, portal.language)


def factor_summary(portal: PortalContext, account: Account, *,
                   next_path: str = "") -> dict[str, Any]:
    """What the account page (and the set-up page) shows of the second factors."""
    required = portal.second_factor_required
    count = (1 if account.totp else 0) + len(account.passkeys)
    return {
        "required": required,
        "totp_since": _when(portal, account.totp.created_at) if account.totp else None,
        "may_remove_totp": not required or count > 1,
        "may_remove_passkey": not required or count > 1,
        "passkeys": [{"id": passkeys.passkey_id(p), "label": p.label,
                      "when": _when(portal, p.created_at)} for p in account.passkeys],
        "show_codes": account.has_second_factor,
        "codes_left": len(account.recovery_codes.hashes) if account.recovery_codes else 0,
        "next": next_path,
    }


async def _may_add_factor(portal: PortalContext) -> tuple[Account, bool] | Response:
    """The account that may add a factor, and whether this is the set-up step of a login (the
    tenant requires a factor, the account has none, the password was just proved)."""
    account = await portal.signed_in()
    if account is not None:
        return account, False
    pending = await portal.password_signed_in()
    if pending is not None and not pending.has_second_factor and portal.second_factor_required:
        return pending, True
    return portal.sign_in_redirect()


def _address(account: Account) -> Address:
    return Address.load(account.address)


async def _factor_added(portal: PortalContext, account: Account, setup: bool, next_path: str,
                        done: str) -> Response:
    """After a factor was added: recovery codes if the account has none yet (shown once), and
    the login marked complete (in the set-up step: it is complete only now)."""
    target = portal.safe_next(next_path) if setup else portal.path_for(
        "accounts.account", _query={"done": done})
    if account.recovery_codes is None:
        portal.session[SESSION_CODES] = await factors.replace_recovery_codes(
            portal.accounts, _address(account), portal.clock.now())
        target = portal.path_for("accounts.recovery-codes", _query={"next": target})
    # Proved just now (the code or the passkey): the login counts as done with the new factor.
    fresh = await portal.accounts.get(_address(account))
    assert fresh is not None
    return await portal.complete_sign_in(fresh, target)


# -- the step after the password -------------------------------------------------------------

async def second_factor(request: Request) -> Response:
    portal = portal_of(request)
    next_path = request.query_params.get("next", "")
    if await portal.signed_in() is not None:
        return portal.redirect_to(portal.safe_next(next_path))
    account = await portal.password_signed_in()
    if account is None:
        return portal.sign_in_redirect()
    if not account.has_second_factor:
        return portal.redirect("accounts.second-factor-setup", _query={"next": next_path})
    errors = FormErrors()
    if request.method == "POST":
        form = await portal.form()
        method = field(form, "method")
        if method == "passkey-start":
            passkeys.start(portal, account, "authenticate")
            return portal.redirect("accounts.second-factor", _query={"next": next_path})
        throttle = _throttle(portal, account)
        status = await throttle.attempt()
        if not status.allowed:
            log.warning("accounts: second factor of an account of tenant %s blocked after %d "
                        "failures", portal.tenant.id, status.failures)
            return portal.too_many_attempts(status)
        proved = await _prove(portal, account, method, form, errors)
        if proved is not None:
            await throttle.succeeded()
            log.info("accounts: portal login, second factor proved (%s, tenant %s)", method,
                     portal.tenant.id)
            return await portal.complete_sign_in(proved, next_path)
        if account.passkeys:  # a failed or used-up ceremony: offer a fresh one
            passkeys.start(portal, account, "authenticate")
    options = passkeys.pending_options(portal, account, "authenticate") if account.passkeys \
        else None
    return portal.render("accounts_second_factor.html", {
        "errors": errors, "has_totp": account.totp is not None,
        "has_passkeys": bool(account.passkeys), "passkey_options": options,
        "has_codes": bool(account.recovery_codes and account.recovery_codes.hashes),
        "next": next_path,
    }, status=422 if errors else 200)


async def _prove(portal: PortalContext, account: Account, method: str, form: Any,
                 errors: FormErrors) -> Account | None:
    address = _address(account)
    now = portal.clock.now()
    if method == "totp" and account.totp is not None:
        code = field(form, "code")
        if not code.strip():
            errors.add("code", portal.t("accounts.error.code_required"))
            return None
        proved = await factors.verify_totp(portal.accounts, address, code, now)
        if proved is None:
            errors.add("code", portal.t("accounts.error.code_wrong"))
        return proved
    if method == "recovery":
        code = field(form, "recovery_code")
        if not code.strip():
            errors.add("recovery_code", portal.t("accounts.error.code_required"))
            return None
        proved = await factors.use_recovery_code(portal.accounts, address, code)
        if proved is None:
            errors.add("recovery_code", portal.t("accounts.error.recovery_wrong"))
        return proved
    if method == "passkey" and account.passkeys:
        try:
            credential_id, count = passkeys.finish_authentication(
                portal, account, field(form, "credential"))
        except passkeys.PasskeyFailed as exc:
            log.info("accounts: passkey refused (tenant %s): %s", portal.tenant.id, exc)
            errors.add("passkey", portal.t("accounts.error.passkey_failed"))
            return None
        return await _record_passkey_use(portal, address, credential_id, count, errors)
    errors.add("code", portal.t("accounts.error.code_required"))
    return None


async def _record_passkey_use(portal: PortalContext, address: Address, credential_id: bytes,
                              count: int, errors: FormErrors) -> Account | None:
    now = portal.clock.now()
    accepted = False

    def change(current: Account | None) -> Account | None:
        nonlocal accepted
        accepted = False
        if current is None:
            return None
        found = [p for p in current.passkeys if p.credential_id == credential_id]
        if not found or (count and count <= found[0].sign_count):
            return current  # removed meanwhile, or a counter that did not move on (a clone)
        accepted = True
        return attrs.evolve(current, passkeys=tuple(
            attrs.evolve(p, sign_count=count, last_used_at=now)
            if p.credential_id == credential_id else p for p in current.passkeys))

    account = await portal.accounts.update(address, change)
    if not accepted:
        errors.add("passkey", portal.t("accounts.error.passkey_failed"))
        return None
    return account


async def setup(request: Request) -> Response:
    portal = portal_of(request)
    next_path = request.query_params.get("next", "")
    allowed = await _may_add_factor(portal)
    if isinstance(allowed, Response):
        return allowed
    account, setup_step = allowed
    if not setup_step:
        return portal.redirect_to(portal.safe_next(next_path))
    return portal.render("accounts_setup.html", {
        "factors": factor_summary(portal, account, next_path=next_path)})


# -- setting up ------------------------------------------------------------------------------

async def totp(request: Request) -> Response:
    portal = portal_of(request)
    next_path = request.query_params.get("next", "")
    allowed = await _may_add_factor(portal)
    if isinstance(allowed, Response):
        return allowed
    account, setup_step = allowed
    address = _address(account)
    errors = FormErrors()
    pending = portal.session.get(SESSION_TOTP)
    if request.method == "POST":
        form = await portal.form()
        action = field(form, "action")
        if action == "start":
            portal.session[SESSION_TOTP] = factors.secret_text(factors.new_totp_secret())
            return portal.redirect("accounts.totp", _query={"next": next_path})
        if action == "cancel":
            portal.session.pop(SESSION_TOTP)
            return portal.redirect_to(
                portal.path_for("accounts.second-factor-setup", _query={"next": next_path})
                if setup_step else portal.path_for("accounts.account"))
        if action == "remove" and not setup_step:
            if portal.second_factor_required and not account.passkeys:
                return portal.redirect("accounts.account")
            await factors.remove_totp(portal.accounts, address)
            return portal.redirect("accounts.account", _query={"done": "totp_removed"})
        if action == "confirm" and isinstance(pending, str):
            throttle = _throttle(portal, account)
            status = await throttle.attempt()
            if not status.allowed:
                return portal.too_many_attempts(status)
            code = field(form, "code")
            added = (await factors.set_up_totp(portal.accounts, address,
                                               factors.secret_from_text(pending), code,
                                               portal.clock.now())
                     if code.strip() else None)
            if added is not None:
                await throttle.succeeded()
                portal.session.pop(SESSION_TOTP)
                log.info("accounts: authenticator app set up (tenant %s)", portal.tenant.id)
                return await _factor_added(portal, added, setup_step, next_path, "totp")
            errors.add("code", portal.t("accounts.error.code_required" if not code.strip()
                                        else "accounts.error.code_wrong"))
    if not isinstance(pending, str):
        return portal.redirect("accounts.account")
    secret = factors.secret_from_text(pending)
    uri = factors.provisioning_uri(secret, account=account.address, issuer=portal.tenant.name)
    return portal.render("accounts_totp.html", {
        "errors": errors, "secret": pending,
        "qr": segno.make(uri, error="m").svg_data_uri(scale=5, border=4),
    }, status=422 if errors else 200)


async def passkey_page(request: Request) -> Response:
    portal = portal_of(request)
    next_path = request.query_params.get("next", "")
    allowed = await _may_add_factor(portal)
    if isinstance(allowed, Response):
        return allowed
    account, setup_step = allowed
    errors = FormErrors()
    label = ""
    if request.method == "POST":
        form = await portal.form()
        action = field(form, "action")
        if action == "start":
            passkeys.start(portal, account, "register")
            return portal.redirect("accounts.passkeys", _query={"next": next_path})
        if action == "remove" and not setup_step:
            return await _remove_passkey(portal, account, field(form, "passkey"))
        if action == "finish":
            label = field(form, "label").strip()[:60] or portal.t(
                "accounts.passkey.default_label", number=str(len(account.passkeys) + 1))
            try:
                passkey = passkeys.finish_registration(portal, account, field(form, "credential"),
                                                       label, portal.clock.now())
            except passkeys.PasskeyFailed as exc:
                log.info("accounts: passkey registration refused (tenant %s): %s",
                         portal.tenant.id, exc)
                errors.add("passkey", portal.t("accounts.error.passkey_failed"))
                passkeys.start(portal, account, "register")
            else:
                added = await portal.accounts.update(_address(account), lambda current: (
                    attrs.evolve(current, passkeys=(*current.passkeys, passkey))
                    if current is not None else None))
                assert added is not None
                log.info("accounts: passkey added (tenant %s)", portal.tenant.id)
                return await _factor_added(portal, added, setup_step, next_path, "passkey")
    options = passkeys.pending_options(portal, account, "register")
    if options is None:
        return portal.redirect("accounts.account")
    return portal.render("accounts_passkey.html", {
        "errors": errors, "options": options, "label": label,
        "back_url": (portal.path_for("accounts.second-factor-setup", _query={"next": next_path})
                     if setup_step else portal.path_for("accounts.account")),
    }, status=422 if errors else 200)


async def _remove_passkey(portal: PortalContext, account: Account, text: str) -> Response:
    credential_id = passkeys.passkey_from_id(text)
    count = (1 if account.totp else 0) + len(account.passkeys)
    if credential_id is None or (portal.second_factor_required and count <= 1):
        return portal.redirect("accounts.account")
    await portal.accounts.update(_address(account), lambda current: attrs.evolve(
        current, passkeys=tuple(p for p in current.passkeys if p.credential_id != credential_id))
        if current is not None else None)
    return portal.redirect("accounts.account", _query={"done": "passkey_removed"})


async def recovery_codes(request: Request) -> Response:
    portal = portal_of(request)
    next_path = request.query_params.get("next", "")
    account = await portal.signed_in()
    if account is None:
        return portal.sign_in_redirect()
    if request.method == "POST":
        form = await portal.form()
        if field(form, "action") == "new" and account.has_second_factor:
            portal.session[SESSION_CODES] = await factors.replace_recovery_codes(
                portal.accounts, _address(account), portal.clock.now())
            return portal.redirect("accounts.recovery-codes", _query={
                "next": portal.path_for("accounts.account", _query={"done": "codes"})})
        portal.session.pop(SESSION_CODES)  # "saved": they are not shown again
        return portal.redirect_to(portal.safe_next(next_path))
    codes = portal.session.get(SESSION_CODES)
    if not isinstance(codes, list):
        return portal.redirect_to(portal.safe_next(next_path))
    return portal.render("accounts_codes.html", {"codes": codes})


def routes() -> list[PortalRoute]:
    both = ("GET", "POST")
    return [
        PortalRoute(name="accounts.second-factor", path="/login/second-factor",
                    endpoint=second_factor, methods=both,
                    description="confirm the login with the second factor"),
        PortalRoute(name="accounts.second-factor-setup", path="/login/second-factor/setup",
                    endpoint=setup, description="set up the second factor the tenant requires"),
        PortalRoute(name="accounts.totp", path="/account/totp", endpoint=totp, methods=both,
                    description="set up or remove the authenticator app"),
        PortalRoute(name="accounts.passkeys", path="/account/passkeys", endpoint=passkey_page,
                    methods=both, description="add or remove a passkey"),
        PortalRoute(name="accounts.recovery-codes", path="/account/recovery-codes",
                    endpoint=recovery_codes, methods=both,
                    description="recovery codes, shown once"),
    ]
