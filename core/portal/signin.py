"""One sign-in for every plugin's pages: who is signed in to a portal session.

The accounts plugin (routes ``accounts.login``, ``accounts.logout``, ``accounts.account`` and the
second-factor pages) proves the password and the second factor; every page that needs a signed-in
recipient asks the core (:meth:`PortalContext.signed_in`) and sends everyone else to the login
(:meth:`PortalContext.sign_in_redirect`), so that no plugin keeps a login of its own.

The session keeps a :class:`Login` under :data:`SESSION_KEY`: the tenant, the address, the
account's :attr:`~siegel.Account.password_version` at sign-in (a password changed elsewhere ends
every older login) and whether the second factor was proved in this session. A login counts only
for its tenant, only while the password is unchanged, and only when the second factor is done
where the account has one or the tenant requires one (``[settings.accounts] second_factor =
"required"``: then an account without one is sent to set one up first).
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from siegel.accounts import Account
from siegel.addresses import Address, InvalidAddress
from siegel.config import Tenant

#: The session key of the login (per tenant, like all session data).
SESSION_KEY = "accounts.login"
#: Session flag: the visitor just signed out (the login page says so).
SIGNED_OUT_KEY = "accounts.signed-out"
#: The accounts plugin's routes the core sends visitors to.
LOGIN_ROUTE = "accounts.login"
SECOND_FACTOR_ROUTE = "accounts.second-factor"
SECOND_FACTOR_SETUP_ROUTE = "accounts.second-factor-setup"
#: The config section whose ``second_factor`` setting ("optional" or "required") the core reads.
SETTINGS_SECTION = "accounts"

SecondFactorPolicy = Literal["optional", "required"]


@attrs.frozen(kw_only=True)
class Login:
    """Who signed in to this session (kept as JSON in the session)."""

    tenant: str
    address: str
    #: :attr:`siegel.Account.password_version` at sign-in.
    password_version: str
    #: The second factor (TOTP, passkey or a recovery code) was proved in this session.
    second_factor: bool = False
    at: str = ""

    @classmethod
    def of(cls, tenant: Tenant, account: Account, now: datetime, *,
           second_factor: bool = False) -> Login:
        assert account.password_version is not None
        return cls(tenant=tenant.id, address=account.address,
                   password_version=account.password_version, second_factor=second_factor,
                   at=now.isoformat())

    @classmethod
    def from_session(cls, value: object) -> Login | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(tenant=str(value["tenant"]), address=str(value["address"]),
                       password_version=str(value["password_version"]),
                       second_factor=bool(value.get("second_factor", False)),
                       at=str(value.get("at", "")))
        except KeyError:
            return None

    def as_session(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def address_of(self) -> Address | None:
        try:
            return Address.parse(self.address)
        except InvalidAddress:
            return None

    def matches(self, tenant: Tenant, account: Account | None) -> bool:
        """The login is for this tenant and the account's password is unchanged since."""
        if self.tenant != tenant.id or account is None or account.password_version is None:
            return False
        return hmac.compare_digest(account.password_version.encode(),
                                   self.password_version.encode())


def second_factor_policy(tenant: Tenant) -> SecondFactorPolicy:
    """The tenant's rule: ``required`` when every account must use a second factor."""
    section = tenant.settings.get(SETTINGS_SECTION)
    return "required" if getattr(section, "second_factor", "optional") == "required" else "optional"


def needs_second_factor(tenant: Tenant, account: Account) -> bool:
    """Whether a login to ``account`` is complete only after a second factor."""
    return account.has_second_factor or second_factor_policy(tenant) == "required"


def same_portal_path(value: str | None, *, prefix: str, tenant: str) -> str | None:
    """``value`` if it is a path of this tenant's portal pages (never another site, scheme-
    relative link or another tenant), else ``None``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    base = f"{prefix}/t/{tenant}/"
    path = parts.path
    if not (path + "/").startswith(base) or "/../" in path + "/" or "/./" in path + "/":
        return None
    return value
