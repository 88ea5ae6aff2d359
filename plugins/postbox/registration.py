"""The postbox's registration page (``postbox.register``, ``/postbox/register/TOKEN``): the
link in the invitation. The recipient chooses a password and whether to get notice mails (the box
is not ticked in advance: seed 003 makes notices opt-in); the account is created at level
``mailbox``, the held messages are released into the postbox, and the recipient is signed in
through ``portal.sign_in`` (the second factor next where the tenant requires one).

Texts are :class:`siegel.Text` values here, not catalog keys, so that the pages' catalogs
(``portal_locales``) stay with the mailbox pages.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from siegel import PasswordRefused, PortalRoute, Text
from siegel.invitations import LinkInvalid
from siegel.portal import FormErrors, PortalContext

from .method import Postbox

MAX_PASSWORD_BYTES = 1024
#: Wrong (unknown, used, expired) registration links per client and hour.
LINK_FAILURES_PER_HOUR = 30

TEXTS = {
    "title": Text(de="Postfach eröffnen", en="Open your postbox"),
    "intro": Text(de="{tenant} hat vertrauliche Nachrichten für {recipient}. Wählen Sie ein "
                  "Passwort für Ihr Postfach.",
                  en="{tenant} has confidential messages for {recipient}. Choose a password "
                  "for your postbox."),
    "rules": Text(de="Mindestens {minimum} Zeichen; ein Satz aus mehreren Wörtern ist gut zu "
                  "merken und schwer zu erraten.",
                  en="At least {minimum} characters; a sentence of several words is easy to "
                  "remember and hard to guess."),
    "password": Text(de="Passwort", en="Password"),
    "repeat": Text(de="Passwort wiederholen", en="Repeat the password"),
    "notices": Text(de="Bei neuen Nachrichten eine E-Mail ohne Inhalt an mich senden",
                    en="Send me an e-mail without content when new messages arrive"),
    "notices_hint": Text(de="Freiwillig; Sie können das in den Einstellungen jederzeit ändern.",
                         en="Optional; you can change this in the settings at any time."),
    "submit": Text(de="Postfach eröffnen", en="Open postbox"),
    "missing": Text(de="Bitte geben Sie ein Passwort ein.", en="Please enter a password."),
    "mismatch": Text(de="Die Passwörter stimmen nicht überein.",
                     en="The passwords do not match."),
    "too_long": Text(de="Das Passwort ist zu lang.", en="The password is too long."),
    "invalid_title": Text(de="Link ungültig", en="Link not valid"),
    "invalid": Text(de="Dieser Link ist unbekannt, abgelaufen oder wurde schon verwendet. Wenn "
                    "Sie Ihr Postfach schon eröffnet haben, melden Sie sich an.",
                    en="This link is unknown, expired or was used already. If you opened your "
                    "postbox already, please sign in."),
    "sign_in": Text(de="Anmelden", en="Sign in"),
}


def _portal(request: Request) -> PortalContext:
    portal: PortalContext = request.state.portal
    return portal


def _field(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""


def _after_registration(portal: PortalContext) -> str:
    for name in ("postbox.inbox", "accounts.account"):
        if name in portal.routes:
            return portal.path_for(name)
    return "/"


async def _invalid(portal: PortalContext) -> Response:
    status = await portal.throttle("postbox.link", None, limit=LINK_FAILURES_PER_HOUR,
                                   client_limit=LINK_FAILURES_PER_HOUR).attempt()
    if not status.allowed:
        return portal.too_many_attempts(status)
    return portal.render("postbox_link_invalid.html", {"texts": TEXTS}, status=404)


async def register(request: Request) -> Response:
    portal = _portal(request)
    postbox = Postbox(portal.services, portal.tenant)
    token = request.path_params["token"]
    try:
        recipient = await postbox.invited(token)
    except LinkInvalid:
        return await _invalid(portal)
    errors = FormErrors()
    notices = False
    if request.method == "POST":
        form = await portal.form()
        password, repeated = _field(form, "password"), _field(form, "password_repeat")
        notices = _field(form, "notices") == "yes"
        if not password:
            errors.add("password", portal.t(TEXTS["missing"]))
        elif len(password.encode()) > MAX_PASSWORD_BYTES:
            errors.add("password", portal.t(TEXTS["too_long"]))
        elif password != repeated:
            errors.add("password_repeat", portal.t(TEXTS["mismatch"]))
        else:
            try:
                _recipient, problems = await postbox.register(token, password, notices=notices)
            except LinkInvalid:
                return await _invalid(portal)
            except PasswordRefused as refused:
                problems = refused.problems
            for problem in problems:
                errors.add("password", portal.t(problem))
            if not errors:
                account = await portal.services.accounts(portal.tenant.id).get(recipient)
                assert account is not None
                return await portal.sign_in(account, _after_registration(portal))
    settings = postbox.settings
    return portal.render("postbox_register.html", {
        "texts": TEXTS, "errors": errors, "recipient": str(recipient), "notices": notices,
        "minimum": settings.minimum_password_length,
    }, status=422 if errors else 200)


def routes() -> list[PortalRoute]:
    return [PortalRoute(name="postbox.register", path="/postbox/register/{token}",
                        endpoint=register, methods=("GET", "POST"),
                        description="Open a postbox through the invitation's link")]
