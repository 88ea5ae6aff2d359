"""How the portal listens, where its links point, and how long sessions live.

:class:`PortalSettings` is an attrs class whose fields all have defaults and whose validators raise
:class:`siegel.SettingError`, so the configuration file can later read it as a ``[portal]`` table
with the usual ``key.path: what`` error messages.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from siegel.config import ConfigPath, SettingError
from siegel.settings import listen_port, networks, positive


def _base_url(_instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingError(attribute.name, f"must be an http:// or https:// address, not {value!r}")
    if parts.query or parts.fragment:
        raise SettingError(attribute.name, f"must not contain '?' or '#': {value!r}")


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _logos(values: Mapping[str, str]) -> dict[str, ConfigPath]:
    return {tenant: ConfigPath(path) for tenant, path in dict(values).items()}


@attrs.frozen(kw_only=True)
class PortalSettings:
    """Settings of the recipient portal (``siegel.portal.create_app``)."""

    #: Serve the portal with ``siegel serve``. Without it, links in mails lead nowhere, so
    #: first-contact recipients of the password PDF cannot choose a password.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = attrs.field(default=8025, validator=listen_port)
    #: The address recipients reach the portal at; links in mails are built from it
    #: (``https://portal.landkreis.example``, optionally with a path prefix). Default:
    #: ``http://HOST:PORT``.
    public_base_url: str | None = attrs.field(default=None, validator=_base_url)
    #: The portal is reached over TLS (a TLS-terminating proxy in front): cookies get ``Secure`` and
    #: the ``__Host-`` prefix, responses get ``Strict-Transport-Security``. Also true per request
    #: when a trusted proxy says ``X-Forwarded-Proto: https``.
    behind_tls: bool = False
    #: Proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed (addresses or
    #: networks). Everyone else's forwarding headers are ignored.
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), converter=_strings,
                                                   validator=networks)
    #: A session ends after this long without a request.
    session_idle_minutes: float = attrs.field(default=15.0, validator=positive)
    #: A session ends this long after it began, however active it is.
    session_absolute_hours: float = attrs.field(default=8.0, validator=positive)
    #: Largest request body accepted (forms, uploads); larger ones get a 413 page unread.
    max_form_bytes: int = attrs.field(default=1024 * 1024, validator=positive)
    #: A logo per tenant id (PNG, JPEG, GIF, WebP or SVG file), shown next to the tenant's name.
    logos: dict[str, ConfigPath] = attrs.field(factory=dict, converter=_logos)
    #: Also serve the demonstration contact form (it sends nothing; for trying the portal out).
    demo_pages: bool = False
    #: uvicorn's access log. Off by default: request lines can carry one-time tokens.
    access_log: bool = False
    #: ``Strict-Transport-Security`` max-age in seconds (sent only over TLS).
    hsts_max_age: int = attrs.field(default=63072000, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.session_absolute_hours * 60 < self.session_idle_minutes:
            raise SettingError(
                "session_absolute_hours",
                f"must not be shorter than session_idle_minutes ({self.session_idle_minutes} min)")
        if self.behind_tls and self.public_base_url and self.public_base_url.startswith("http:"):
            raise SettingError("public_base_url",
                               "behind_tls is set, so links must start with https://")

    @property
    def base_url(self) -> str:
        """``public_base_url`` without a trailing slash, or ``http://HOST:PORT``."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def session_idle(self) -> timedelta:
        return timedelta(minutes=self.session_idle_minutes)

    @property
    def session_absolute(self) -> timedelta:
        return timedelta(hours=self.session_absolute_hours)

    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)
