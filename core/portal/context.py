"""What a portal page gets: ``request.state.portal``, a :class:`PortalContext`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import attrs
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from siegel.accounts import NAMESPACE as ACCOUNTS_NAMESPACE
from siegel.accounts import Account, Accounts
from siegel.config import Tenant
from siegel.plugin import Clock, PortalRoute, Services
from siegel.portal import signin
from siegel.portal.i18n import LANGUAGES, Language, Translator
from siegel.portal.security import SECURE_KEY
from siegel.portal.sessions import Session, SessionProblem, StateChangeOnGet
from siegel.portal.settings import PortalSettings
from siegel.state import PluginState
from siegel.throttle import NAMESPACE as THROTTLE_NAMESPACE
from siegel.throttle import Throttle, ThrottleStatus

if TYPE_CHECKING:
    from siegel.portal.app import Portal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@attrs.frozen(kw_only=True)
class TenantBranding:
    """What the page header shows: the authority's name and, if configured, its logo."""

    name: str
    logo_url: str | None = None


@attrs.frozen(kw_only=True)
class LanguageLink:
    language: Language
    #: The language's name in itself ("Deutsch", "English").
    label: str
    href: str
    current: bool


class FormErrors:
    """Validation errors of a form, in field order: ``errors.add("email", t("..."))``.

    The form macros show them next to each field and, linked, in an error summary at the top.
    """

    def __init__(self) -> None:
        self._errors: dict[str, str] = {}

    def add(self, field: str, message: str) -> None:
        self._errors.setdefault(field, message)

    def get(self, field: str) -> str | None:
        return self._errors.get(field)

    def items(self) -> list[tuple[str, str]]:
        return list(self._errors.items())

    def __contains__(self, field: object) -> bool:
        return field in self._errors

    def __bool__(self) -> bool:
        return bool(self._errors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._errors)

    def __len__(self) -> int:
        return len(self._errors)


@contextlib.asynccontextmanager
async def uniform_timing(min_seconds: float) -> AsyncIterator[None]:
    """Make the enclosed work take at least ``min_seconds`` (wall time), whichever path it took.

    Use it around a check whose duration would otherwise tell known from unknown accounts (one
    path looks up and hashes, the other returns at once). Choose ``min_seconds`` above the slow
    path's usual duration; it hides timing differences, not work that takes longer.
    """
    started = time.monotonic()
    try:
        yield
    finally:
        remaining = min_seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)


class _ReadOnlyState(PluginState):
    """Plugin state as a GET request sees it: readable, not writable."""

    async def put(self, key: str, value: bytes, *, ttl: timedelta | None = None,
                  expect_version: int | None = None) -> int:
        raise StateChangeOnGet(f"plugin state {self.namespace!r} written in a GET request; "
                               "change state only in form posts")

    async def delete(self, key: str) -> bool:
        raise StateChangeOnGet(f"plugin state {self.namespace!r} deleted in a GET request; "
                               "change state only in form posts")


@attrs.define(kw_only=True, eq=False)
class PortalContext:
    """The portal's view of one request, as ``request.state.portal``.

    ``t(key, **params)`` translates a catalog key (or a :class:`siegel.Text`) into the visitor's
    ``language``; ``render`` returns the page as a response; ``session`` is the server-side
    session (read-only on GET); ``csrf_token`` is what forms post back (the ``forms.form`` macro
    adds it); ``url_for`` builds absolute links for mails, ``path_for`` links within pages.
    """

    request: Request
    tenant: Tenant
    branding: TenantBranding
    language: Language
    t: Translator
    session: Session
    services: Services
    clock: Clock
    settings: PortalSettings
    #: The visitor's address (after trusted proxies), for throttling and logs.
    client: str
    route: PortalRoute
    #: Why the browser's previous session was not used (shown as a notice on the page).
    session_problem: SessionProblem | None = None
    _portal: Portal = attrs.field(alias="portal", repr=False)

    # -- state -------------------------------------------------------------------------------

    @property
    def may_change_state(self) -> bool:
        """False on GET and HEAD: links are followed by mail scanners and prefetchers."""
        return self.request.method not in SAFE_METHODS

    @property
    def secure(self) -> bool:
        """Whether the visitor reached this page over TLS (directly or, with ``behind_tls``,
        through the proxy): pages that say how a form travels must say it truthfully."""
        return bool(self.request.scope.get(SECURE_KEY, False))

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    def state(self, namespace: str) -> PluginState:
        """Plugin state like ``services.state(namespace)``, but read-only in GET requests."""
        state = self.services.state(namespace)
        if self.may_change_state:
            return state
        return _ReadOnlyState(state.store, state.namespace, state.clock)

    @property
    def accounts(self) -> Accounts:
        """The tenant's recipient accounts (``services.accounts``), read-only in GET requests."""
        accounts = self.services.accounts(self.tenant.id)
        if self.may_change_state:
            return accounts
        return Accounts(self.state(ACCOUNTS_NAMESPACE), self.tenant.id,
                        password_hook=accounts.password_hook)

    # -- sign-in (see siegel.portal.signin) ----------------------------------------------------

    async def _login_account(self) -> tuple[signin.Login, Account] | None:
        login = signin.Login.from_session(self.session.get(signin.SESSION_KEY))
        if login is None or login.tenant != self.tenant.id:
            return None
        address = login.address_of()
        if address is None:
            return None
        account = await self.accounts.get(address)
        if account is None or not login.matches(self.tenant, account):
            return None
        return login, account

    async def signed_in(self) -> Account | None:
        """The account signed in to this session, or ``None``: nobody, another tenant's login,
        a password changed since, or a second factor still to prove (or, where the tenant
        requires one, still to set up)."""
        found = await self._login_account()
        if found is None:
            return None
        login, account = found
        if not login.second_factor and signin.needs_second_factor(self.tenant, account):
            return None
        return account

    async def password_signed_in(self) -> Account | None:
        """The account whose password was proved in this session, second factor done or not:
        for the second-factor pages only. Every other page asks :meth:`signed_in`."""
        found = await self._login_account()
        return found[1] if found is not None else None

    @property
    def second_factor_required(self) -> bool:
        """Whether the tenant requires a second factor of every account."""
        return signin.second_factor_policy(self.tenant) == "required"

    def safe_next(self, value: str | None, default: str = "accounts.account") -> str:
        """``value`` if it is a page of this tenant's portal, else the path of route ``default``:
        a ``next=`` from a link is never followed to another site."""
        safe = signin.same_portal_path(value, prefix=self._portal.prefix, tenant=self.tenant.id)
        if safe is not None:
            return safe
        if default in self._portal.routes:
            return self.path_for(default)
        return self.path_for("portal.start")

    def sign_in_redirect(self) -> Response:
        """303 to the login (``accounts.login``) with ``next=`` this page, so that the visitor
        comes back here after signing in. If the browser's session just ended, the portal's
        page says why first, one click from the login."""
        here = self.current_path if self.request.method in SAFE_METHODS else None
        query = {"next": here} if here else {}
        if self.session_problem is not None:
            return self.redirect("portal.session-expired", _query={
                "reason": self.session_problem.value, "page": signin.LOGIN_ROUTE, **query})
        return self.redirect(signin.LOGIN_ROUTE, _query=query or None)

    async def sign_in(self, account: Account, next: str) -> Response:
        """Sign ``account`` in to this session after its password was proved (by the login or a
        registration page): rotates the session id, records the login and returns the redirect
        to the second factor (or its set-up, where the tenant requires one and the account has
        none) or, without one, to ``next`` (only a page of this portal)."""
        await self.session.rotate()
        self.session.pop(signin.SIGNED_OUT_KEY)
        target = self.safe_next(next)
        needed = signin.needs_second_factor(self.tenant, account)
        self.session[signin.SESSION_KEY] = signin.Login.of(
            self.tenant, account, self.clock.now(), second_factor=False).as_session()
        if not needed:
            return RedirectResponse(target, status_code=303)
        route = (signin.SECOND_FACTOR_ROUTE if account.has_second_factor
                 else signin.SECOND_FACTOR_SETUP_ROUTE)
        return self.redirect(route, _query={"next": target})

    async def complete_sign_in(self, account: Account, next: str) -> Response:
        """The second factor is proved (or was just set up): the login counts from now on.
        Rotates the session id again and redirects to ``next`` (only a page of this portal)."""
        await self.session.rotate()
        self.session[signin.SESSION_KEY] = signin.Login.of(
            self.tenant, account, self.clock.now(), second_factor=True).as_session()
        return RedirectResponse(self.safe_next(next), status_code=303)

    async def sign_out(self) -> None:
        """End the session (every tenant's login in this browser) and remember, in a new one,
        that the visitor signed out."""
        await self.session.end()
        self.session[signin.SIGNED_OUT_KEY] = True

    def throttle(self, kind: str, key: str | None, limit: int = 100,
                 per: timedelta = timedelta(hours=1), *,
                 client_limit: int | None = None) -> Throttle:
        """Failures of ``kind`` for account ``key`` (``None``: count only the client) and for the
        visitor's address (``client_limit`` failures, default ``limit``), within ``per``."""
        return Throttle(self.services.state(THROTTLE_NAMESPACE), self.clock,
                        self._portal.throttle_secret,
                        kind=kind, scope=self.tenant.id, account=key, client=self.client,
                        limit=limit, per=per, client_limit=client_limit)

    async def form(self) -> FormData:
        """The posted form (already read and CSRF-checked by the portal)."""
        return await self.request.form(max_part_size=self.settings.max_form_bytes)

    # -- links -------------------------------------------------------------------------------

    def path_for(self, name: str, /, *, _query: Mapping[str, str] | None = None,
                 **params: str) -> str:
        """A link within the portal (path and query) to route ``name`` of this tenant."""
        return self._portal.path_for(name, tenant=self.tenant.id, query=_query, **params)

    def url_for(self, name: str, /, *, _query: Mapping[str, str] | None = None,
                **params: str) -> str:
        """An absolute link (``public_base_url`` + path), for mails and other outside use."""
        return self._portal.url_for(name, tenant=self.tenant.id, query=_query, **params)

    def static_url(self, path: str) -> str:
        return self._portal.static_url(path)

    def plugin_static_url(self, path: str) -> str:
        """A file of this route's plugin's ``portal_static/`` folder (a script, an image)."""
        return self._portal.plugin_static_url(self.route.plugin, path)

    @property
    def current_path(self) -> str:
        """This page's path and query, as a link within the portal (a form's default action)."""
        url = self.request.url
        return self._portal.prefix + url.path + (f"?{url.query}" if url.query else "")

    @property
    def routes(self) -> Mapping[str, PortalRoute]:
        """Every route the portal serves (its own and the plugins'), by name."""
        return self._portal.routes

    @property
    def language_links(self) -> list[LanguageLink]:
        return language_links(self.request, self.language)

    # -- responses ---------------------------------------------------------------------------

    def page_variables(self) -> dict[str, Any]:
        return {
            "portal": self,
            "t": self.t,
            "lang": self.language,
            "branding": self.branding,
            "tenant": self.tenant,
            "home_url": self.path_for("portal.start"),
            "static_url": self.static_url,
            "lang_links": self.language_links,
            "notice": self._portal.session_notice(self.session_problem),
        }

    def render(self, template: str, context: Mapping[str, Any] | None = None, *,
               status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """Render ``template`` (autoescaped) with the page variables and ``context``."""
        variables = self.page_variables()
        variables.update(context or {})
        html = self._portal.templates.render(template, variables, plugin=self.route.plugin)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    def redirect(self, name: str, /, *, _query: Mapping[str, str] | None = None,
                 **params: str) -> RedirectResponse:
        """303 See Other to a route of this tenant: the answer to a successful form post."""
        return RedirectResponse(self.path_for(name, _query=_query, **params), status_code=303)

    def redirect_to(self, path: str) -> RedirectResponse:
        """303 See Other to ``path``, a page of this tenant's portal (anything else: the
        account page or the start page; see :meth:`safe_next`)."""
        return RedirectResponse(self.safe_next(path), status_code=303)

    def too_many_attempts(self, status: ThrottleStatus) -> Response:
        """The portal's 429 page for a blocked :class:`Throttle`, with ``Retry-After``."""
        seconds = int(status.retry_after.total_seconds()) if status.retry_after else 60
        return self.render("too_many.html", {"minutes": status.retry_after_minutes}, status=429,
                           headers={"retry-after": str(max(seconds, 1))})

    def uniform_timing(self, min_seconds: float) -> contextlib.AbstractAsyncContextManager[None]:
        """See :func:`siegel.portal.uniform_timing`."""
        return uniform_timing(min_seconds)


def language_links(request: Request, current: Language) -> list[LanguageLink]:
    """Links to this page in each language: the same path and query, ``lang`` replaced."""
    names = {"de": "Deutsch", "en": "English"}
    links = []
    for language in LANGUAGES:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        query.append(("lang", language))
        links.append(LanguageLink(language=language, label=names[language],
                                  href="?" + urlencode(query), current=language == current))
    return links
