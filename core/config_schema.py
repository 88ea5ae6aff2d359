"""The configuration file's tables as attrs classes: what ``siegel.toml`` may contain, with the
defaults and checks of the core's own settings.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from siegel.config_errors import ConfigPath, SettingError
from siegel.localtime import DEFAULT_TIME_ZONE
from siegel.settings import check_fields, checked, listen_port, networks, positive


@attrs.frozen(kw_only=True)
class ListenerConfig:
    """An SMTP listener (``[[listeners]]``)."""

    host: str = "127.0.0.1"
    port: int = checked(10025, listen_port)
    #: Largest message accepted, in bytes; larger ones get 552 before anything is stored.
    max_message_size: int = checked(50 * 1024 * 1024, positive)
    #: Largest header block (all header fields up to the blank line), in bytes; a message with a
    #: larger one gets 552 at the end of DATA. Postfix's header_size_limit is 100 kB too.
    max_header_size: int = checked(100 * 1024, positive)
    max_recipients: int = checked(100, positive)
    #: Client networks allowed to send; everyone else gets 554. siegel is never an open relay.
    allowed_clients: tuple[str, ...] = checked(("127.0.0.0/8", "::1/128"), networks)
    #: "off", "optional" (offered) or "required" (no MAIL before STARTTLS).
    starttls: Literal["off", "optional", "required"] = "off"
    #: TLS from the first byte (SMTPS, usually port 465) instead of STARTTLS.
    implicit_tls: bool = False
    tls_certificate: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    hostname: str | None = None
    #: Users who may authenticate (SMTP AUTH PLAIN/LOGIN, only over TLS) and then send from
    #: outside ``allowed_clients`` as their tenant's senders; see :mod:`siegel.smtp_auth`.
    auth_users_file: ConfigPath | None = None
    #: Failed AUTH attempts per client address within the window before AUTH is refused.
    auth_max_failures: int = checked(5, positive)
    auth_failure_window_seconds: float = checked(900.0, positive)

    def __attrs_post_init__(self) -> None:
        problems = []
        has_keys = bool(self.tls_certificate and self.tls_key)
        if self.starttls != "off" and not has_keys:
            problems.append(SettingError(
                "starttls", f"{self.starttls!r} needs tls_certificate and tls_key"))
        if self.implicit_tls:
            if not has_keys:
                problems.append(SettingError("implicit_tls", "needs tls_certificate and tls_key"))
            if self.starttls != "off":
                problems.append(SettingError(
                    "implicit_tls", 'the connection is encrypted from the start; set starttls = '
                    '"off"'))
        if self.auth_users_file is not None and not self.tls:
            problems.append(SettingError(
                "auth_users_file", "SMTP AUTH is offered only over TLS; set starttls (with "
                "tls_certificate and tls_key) or implicit_tls"))
        check_fields(self, problems)

    @property
    def tls(self) -> bool:
        """Whether this listener can speak TLS (STARTTLS or implicit)."""
        return self.implicit_tls or self.starttls != "off"


# Relative to the configuration file's folder (resolved by Config.path).
_DEFAULT_DATABASE = ConfigPath("var/siegel.db")
_DEFAULT_KEY_FILE = ConfigPath("keys/store.key")


@attrs.frozen(kw_only=True)
class StoreConfig:
    """The durable message store (``[store]``)."""

    backend: Literal["sqlite"] = "sqlite"
    #: SQLite database file (relative paths are relative to the config file).
    path: ConfigPath = _DEFAULT_DATABASE
    #: The key that encrypts message content at rest; created by ``siegel init``.
    key_file: ConfigPath = _DEFAULT_KEY_FILE
    #: Content of finished (delivered, failed, expired) messages is destroyed after this many days.
    retention_days: float = checked(7.0, positive)

    def __attrs_post_init__(self) -> None:
        check_fields(self)


@attrs.frozen(kw_only=True)
class DeliveryConfig:
    """Retries, concurrency and time-outs of the pipeline (``[delivery]``)."""

    concurrency: int = checked(8, positive)
    first_retry_seconds: float = checked(60.0, positive)
    max_retry_seconds: float = checked(3600.0, positive)
    #: A copy still undeliverable after this long fails and the sender is told.
    give_up_after_hours: float = checked(120.0, positive)
    classify_timeout_seconds: float = checked(30.0, positive)
    #: A copy with a larger header block (its own or a MIME part's) is quarantined unread.
    max_header_size: int = checked(100 * 1024, positive)
    protect_timeout_seconds: float = checked(120.0, positive)
    deliver_timeout_seconds: float = checked(300.0, positive)
    #: A copy whose processing was started this many times without finishing (the process
    #: crashed, hung or was stopped each time) is quarantined as a poison message at the next.
    max_processing_starts: int = checked(3, positive)
    #: A copy whose protection method answered "retry later" this many times in a row is
    #: quarantined with the method's reason.
    max_protect_retries: int = checked(3, positive)
    #: ``siegel serve`` ends itself (status 75, for the supervisor to restart it) when its event
    #: loop has not answered for this long: a plugin computing without awaiting.
    stall_exit_seconds: float = checked(300.0, positive)
    #: How long a worker may hold a claimed job before another may take it over.
    lease_seconds: float = checked(900.0, positive)
    poll_seconds: float = checked(5.0, positive)

    def __attrs_post_init__(self) -> None:
        check_fields(self)


@attrs.frozen(kw_only=True)
class PluginsConfig:
    """Plugin loading (``[plugins]``)."""

    #: Plugin names not to load at all, built-in or third-party.
    blocked: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class TenantConfig:
    """One authority (``[tenants.ID]``), as written in the file."""

    name: str
    #: The tenant's own mail domains: mail from these (or to these) belongs to the tenant.
    domains: tuple[str, ...]
    #: Further domains whose recipients are inside the trusted network (exact match).
    internal_domains: tuple[str, ...] = ()
    #: Domains that are internal together with all their subdomains.
    internal_subdomains: tuple[str, ...] = ()
    plugin_set: str | None = None
    plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    #: Protection methods in order of preference; default: the plugin set's.
    protection: tuple[str, ...] | None = None
    #: Channel for copies that may leave as they are, and for notices.
    delivery_channel: str = "smtp"
    language: Literal["de", "en"] = "de"
    #: The IANA time zone in which times in mails and portal pages are shown.
    time_zone: str = DEFAULT_TIME_ZONE
    #: Sender address of notices; default ``postmaster@`` the first own domain.
    notice_from: str | None = None
    #: Where bounces of invitations go back to (VERP, ``LOCAL+TOKEN@DOMAIN``); default
    #: ``siegel-bounce@`` the first own domain; "" sends them with the null sender.
    bounce_address: str | None = None
    settings: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: The identity level an account needs to read messages (in a postbox) and to write:
    #: "mailbox" or "confirmed"; default: the plugin set's ("mailbox").
    read_level: str | None = None
    write_level: str | None = None


@attrs.frozen(kw_only=True)
class FileConfig:
    """The whole file, before plugins are consulted."""

    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    store: StoreConfig = StoreConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    plugins: PluginsConfig = PluginsConfig()
    #: The recipient portal (``siegel.portal.PortalSettings``); validated after the rest.
    portal: dict[str, Any] = attrs.field(factory=dict)
    settings: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    tenants: dict[str, TenantConfig] = attrs.field(factory=dict)
