"""The portal pages of PIN letters, for the signed-in account holder:

* ``pin_letters.request`` (``/pin-letter``): the state of the account's letter and a form for
  the postal address a new letter goes to;
* ``pin_letters.confirm`` (``/pin-letter/confirm``, the QR code's target): enter the PIN.

Wrong, expired, used and void PINs get one answer. Attempts are limited twice: by the letter
(``max_attempts``, then it is void) and by the portal's throttle per account and client.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from siegel import Account, Address, IdentityLevel, PortalRoute
from siegel.portal import FormErrors, PortalContext

from .cli import CONFIRM_PATH
from .letters import Letter, LetterBook, LetterStatus, Outcome
from .pins import normalised
from .postal import FIELDS, check_address
from .settings import settings_of

REQUEST_PATH = "/pin-letter"
#: Letters an account may request a day (each one costs postage).
REQUESTS_PER_DAY = 3
#: PIN entries (right or wrong) per account and client an hour, on top of the letter's limit.
ENTRIES_PER_HOUR = 10


def _book(portal: PortalContext) -> LetterBook:
    settings = settings_of(portal.tenant)
    return LetterBook(portal.services, portal.tenant.id, valid_days=settings.valid_days,
                      max_attempts=settings.max_attempts)


def _letter_view(portal: PortalContext, letter: Letter | None) -> dict[str, Any]:
    if letter is None:
        return {"letter": None, "letter_state": None, "requested_at": None, "printed_at": None,
                "valid_until": None, "attempts_left": 0}
    now = portal.clock.now()
    expired = (letter.status is LetterStatus.PRINTED and letter.valid_until is not None
               and now >= letter.valid_until)
    max_attempts = settings_of(portal.tenant).max_attempts
    return {
        "letter": letter,
        "letter_state": "expired" if expired else letter.status.value,
        "requested_at": portal.tenant.format_time(letter.requested_at, portal.language),
        "printed_at": (portal.tenant.format_time(letter.printed_at, portal.language)
                       if letter.printed_at else None),
        "valid_until": (portal.tenant.format_time(letter.valid_until, portal.language)
                        if letter.valid_until else None),
        "attempts_left": max(max_attempts - letter.attempts, 0),
    }


async def _account(portal: PortalContext) -> Account | None:
    return await portal.signed_in()


async def request_letter(request: Request) -> Response:
    portal: PortalContext = request.state.portal
    account = await _account(portal)
    if account is None:
        return portal.sign_in_redirect()
    address = Address.parse(account.address)
    book = _book(portal)
    errors = FormErrors()
    values = {name: "" for name in FIELDS}
    if request.method == "POST":
        form = await portal.form()
        values = {name: str(form.get(name) or "").strip() for name in FIELDS}
        recipient, problems = check_address(values)
        for name in FIELDS:
            if name in problems:
                errors.add(name, portal.t(problems[name]))
        if recipient is not None:
            throttle = portal.throttle("pin_letters.request", account.key,
                                       limit=REQUESTS_PER_DAY, per=timedelta(days=1))
            if not (status := await throttle.attempt()).allowed:
                return portal.too_many_attempts(status)
            await book.request(address, recipient, requested_by="portal")
            # The page shows the pending letter: a refresh does not post again.
            return portal.redirect("pin_letters.request")
    return portal.render("pin_request.html", {
        "errors": errors, "values": values, "account": account,
        "confirmed": account.level >= IdentityLevel.CONFIRMED,
        **_letter_view(portal, await book.get(address)),
    }, status=422 if errors else 200)


async def confirm(request: Request) -> Response:
    portal: PortalContext = request.state.portal
    account = await _account(portal)
    if account is None:
        return portal.sign_in_redirect()
    address = Address.parse(account.address)
    book = _book(portal)
    errors = FormErrors()
    entered = ""
    if request.method == "POST" and account.level < IdentityLevel.CONFIRMED:
        form = await portal.form()
        entered = str(form.get("pin") or "")
        pin = normalised(entered)
        if pin is None:
            errors.add("pin", portal.t("pin.error.format"))
        else:
            throttle = portal.throttle("pin_letters.confirm", account.key,
                                       limit=ENTRIES_PER_HOUR, per=timedelta(hours=1))
            if not (status := await throttle.attempt()).allowed:
                return portal.too_many_attempts(status)
            async with portal.uniform_timing(0.3):
                outcome = await book.confirm(address, pin)
            if outcome is Outcome.CONFIRMED:
                await throttle.succeeded()
                # The page now shows the confirmed account.
                return portal.redirect("pin_letters.confirm")
            errors.add("pin", portal.t("pin.error.refused"))
    return portal.render("pin_confirm.html", {
        "errors": errors, "account": account, "entered": entered,
        "confirmed": account.level >= IdentityLevel.CONFIRMED,
        **_letter_view(portal, await book.get(address)),
    }, status=422 if errors else 200)


def routes() -> list[PortalRoute]:
    return [
        PortalRoute(name="pin_letters.request", path=REQUEST_PATH, endpoint=request_letter,
                    methods=("GET", "POST"), description="Request a PIN letter by post"),
        PortalRoute(name="pin_letters.confirm", path=CONFIRM_PATH, endpoint=confirm,
                    methods=("GET", "POST"), description="Enter the PIN of a letter"),
    ]
