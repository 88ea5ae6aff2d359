"""Passkeys (WebAuthn Level 2) as a second factor, with py_webauthn.

The relying party is the portal as mails link to it: its id is the host of ``public_base_url``
and the only origin accepted is that URL's scheme, host and port (browsers allow WebAuthn only on
HTTPS or ``localhost``). A ceremony's challenge (32 random bytes) is kept in the server-side
session, used once, and only for the purpose it was made for; the browser's answer arrives as a
form post (the page's script fills a hidden field), so CSRF checks and the session apply as to any
form. A passkey's signature counter is stored; one that goes backwards (a cloned authenticator)
is refused, except for authenticators that never count (0).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs
import webauthn
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from siegel import Account, Passkey
from siegel.portal import PortalContext

#: Session key of the ceremony in progress.
SESSION_CEREMONY = "accounts.webauthn"
#: How long a ceremony may take (the browser's timeout; the session's idle limit applies too).
TIMEOUT_MS = 300_000

Purpose = Literal["register", "authenticate"]


class PasskeyFailed(Exception):
    """The browser's answer does not prove what it should (wrong challenge, origin, key, ...)."""


@attrs.frozen
class RelyingParty:
    id: str
    origin: str
    name: str

    @classmethod
    def of(cls, portal: PortalContext) -> RelyingParty:
        parts = urlsplit(portal.url_for("portal.start"))
        return cls(id=parts.hostname or "localhost", origin=f"{parts.scheme}://{parts.netloc}",
                   name=portal.tenant.name)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def user_handle(account: Account) -> bytes:
    """A stable id for the account that says nothing about the address (WebAuthn user.id)."""
    return hashlib.sha256(f"siegel-account:{account.tenant}/{account.key}".encode()).digest()[:32]


def _descriptors(account: Account) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=p.credential_id) for p in account.passkeys]


def _options(portal: PortalContext, account: Account, purpose: Purpose,
             challenge: bytes) -> str:
    rp = RelyingParty.of(portal)
    options: Any
    if purpose == "register":
        options = webauthn.generate_registration_options(
            rp_id=rp.id, rp_name=rp.name, user_id=user_handle(account),
            user_name=account.address, user_display_name=account.address, challenge=challenge,
            timeout=TIMEOUT_MS, exclude_credentials=_descriptors(account),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED))
    else:
        options = webauthn.generate_authentication_options(
            rp_id=rp.id, challenge=challenge, timeout=TIMEOUT_MS,
            allow_credentials=_descriptors(account),
            user_verification=UserVerificationRequirement.PREFERRED)
    return webauthn.options_to_json(options)


def start(portal: PortalContext, account: Account, purpose: Purpose) -> None:
    """Begin a ceremony: keep a new challenge in the session (a form post); the page shown
    next gets the options from :func:`pending_options`."""
    portal.session[SESSION_CEREMONY] = {"purpose": purpose,
                                        "challenge": _b64(secrets.token_bytes(32)),
                                        "account": account.key}


def pending_options(portal: PortalContext, account: Account, purpose: Purpose) -> str | None:
    """The options (JSON) of the ceremony in progress, for the page's script
    (``navigator.credentials.create`` or ``.get``); ``None`` if none is in progress."""
    ceremony = portal.session.get(SESSION_CEREMONY)
    if not isinstance(ceremony, dict) or ceremony.get("purpose") != purpose \
            or ceremony.get("account") != account.key:
        return None
    return _options(portal, account, purpose, _unb64(str(ceremony["challenge"])))


def _take_challenge(portal: PortalContext, account: Account, purpose: Purpose) -> bytes:
    ceremony = portal.session.pop(SESSION_CEREMONY)
    if not isinstance(ceremony, dict) or ceremony.get("purpose") != purpose \
            or ceremony.get("account") != account.key:
        raise PasskeyFailed("no ceremony of this kind in progress")
    return _unb64(str(ceremony["challenge"]))


def finish_registration(portal: PortalContext, account: Account, credential: str, label: str,
                        now: datetime) -> Passkey:
    """The passkey the browser created, checked against the session's challenge."""
    challenge = _take_challenge(portal, account, "register")
    rp = RelyingParty.of(portal)
    try:
        json.loads(credential)
        verified = webauthn.verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin)
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
        raise PasskeyFailed(str(exc)) from exc
    if any(p.credential_id == verified.credential_id for p in account.passkeys):
        raise PasskeyFailed("this passkey is registered already")
    return Passkey(credential_id=verified.credential_id,
                   public_key=verified.credential_public_key, sign_count=verified.sign_count,
                   created_at=now, label=label)


def finish_authentication(portal: PortalContext, account: Account,
                          credential: str) -> tuple[bytes, int]:
    """(credential id, new signature counter) of the account's passkey that signed the session's
    challenge."""
    challenge = _take_challenge(portal, account, "authenticate")
    rp = RelyingParty.of(portal)
    try:
        raw_id = _unb64(str(json.loads(credential)["rawId"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise PasskeyFailed("malformed answer") from exc
    passkey = next((p for p in account.passkeys if p.credential_id == raw_id), None)
    if passkey is None:
        raise PasskeyFailed("not a passkey of this account")
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count)
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
        raise PasskeyFailed(str(exc)) from exc
    return passkey.credential_id, verified.new_sign_count


def passkey_id(passkey: Passkey) -> str:
    return _b64(passkey.credential_id)


def passkey_from_id(text: str) -> bytes | None:
    try:
        return _unb64(text)
    except ValueError:
        return None
