"""The configuration file's tables as attrs classes: what ``siegel.toml`` may contain, with the
defaults and checks of the core's own settings.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

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

    #: "sqlite" (embedded, one serving process) or "postgresql" (several instances on one
    #: database; see :doc:`/postgresql`).
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    #: SQLite database file (relative paths are relative to the config file).
    path: ConfigPath = _DEFAULT_DATABASE
    #: PostgreSQL connection string (``postgresql://siegel@db.example/siegel`` or
    #: ``host=... dbname=...``), without the password.
    dsn: str | None = None
    #: File holding the PostgreSQL password (one line), or ...
    password_file: ConfigPath | None = None
    #: ... the environment variable that holds it. Neither: no password (peer or trust auth,
    #: or ``~/.pgpass``).
    password_env: str | None = None
    #: The PostgreSQL schema siegel's tables live in (created if missing).
    schema: str = "public"
    #: Connections each instance keeps to PostgreSQL at most.
    pool_size: int = checked(10, positive)
    #: The key that encrypts message content at rest; created by ``siegel init``.
    key_file: ConfigPath = _DEFAULT_KEY_FILE
    #: Content of finished (delivered, failed, expired) messages is destroyed after this many days.
    retention_days: float = checked(7.0, positive)

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.backend == "postgresql":
            if not self.dsn:
                problems.append(SettingError(
                    "dsn", 'backend "postgresql" needs dsn, for example '
                    '"postgresql://siegel@db.example/siegel"'))
            elif _dsn_has_password(self.dsn):
                problems.append(SettingError(
                    "dsn", "holds a password; put it in password_file or name an environment "
                    "variable in password_env, never in the configuration"))
            if self.password_file is not None and self.password_env is not None:
                problems.append(SettingError(
                    "password_file", "give password_file or password_env, not both"))
        elif self.dsn is not None or self.password_file is not None or (
                self.password_env is not None):
            problems.append(SettingError(
                "dsn", f'dsn, password_file and password_env are for backend "postgresql", '
                f'not {self.backend!r}'))
        check_fields(self, problems)


def _dsn_has_password(dsn: str) -> bool:
    if "://" in dsn:
        return urlsplit(dsn).password is not None or "password=" in dsn
    return any(part.split("=", 1)[0].strip() == "password" for part in dsn.split())


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
    #: How long a claimed job belongs to its worker (renewed while it works on the job); the
    #: jobs of a process that died may be taken over once it has run out.
    lease_seconds: float = checked(900.0, positive)
    poll_seconds: float = checked(5.0, positive)

    def __attrs_post_init__(self) -> None:
        check_fields(self)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class HttpApiConfig:
    """The HTTP submission API (``[http_api]``, :mod:`siegel.http_api`), served by ``siegel
    serve`` when enabled. Its clients are kept in the store (``siegel api-client add``)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = checked(8026, listen_port)
    #: TLS certificate and key (PEM): the API speaks HTTPS itself.
    tls_certificate: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    #: Plain HTTP on an address other than loopback, for a TLS-terminating proxy in front.
    #: Without it, such a configuration is refused: tokens and mail must not cross a network
    #: unencrypted.
    allow_plain_http: bool = False
    #: Largest request body (a MIME message, or a JSON form with base64 attachments); larger
    #: requests get 413 unread.
    max_request_bytes: int = checked(36 * 1024 * 1024, positive)
    #: Largest message, header block and recipient count, as a listener's limits.
    max_message_size: int = checked(25 * 1024 * 1024, positive)
    max_header_size: int = checked(100 * 1024, positive)
    max_recipients: int = checked(100, positive)
    #: Seconds a client is told to wait (``Retry-After``) when a message was not stored (503).
    retry_after_seconds: int = checked(60, positive)
    #: uvicorn's access log (request lines; no bodies, no tokens).
    access_log: bool = False

    def __attrs_post_init__(self) -> None:
        problems = []
        if bool(self.tls_certificate) != bool(self.tls_key):
            problems.append(SettingError("tls_key", "give both tls_certificate and tls_key"))
        if self.enabled and not self.tls and not self.allow_plain_http and not _loopback(
                self.host):
            problems.append(SettingError(
                "host", f"{self.host!r} is not a loopback address: set tls_certificate and "
                "tls_key, or allow_plain_http = true when a TLS proxy is in front"))
        check_fields(self, problems)

    @property
    def tls(self) -> bool:
        return bool(self.tls_certificate and self.tls_key)


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
    http_api: HttpApiConfig = HttpApiConfig()
    #: The recipient portal (``siegel.portal.PortalSettings``); validated after the rest.
    portal: dict[str, Any] = attrs.field(factory=dict)
    settings: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    tenants: dict[str, TenantConfig] = attrs.field(factory=dict)
