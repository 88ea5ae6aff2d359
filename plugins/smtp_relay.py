"""Built-in delivery channel ``smtp``: hand copies to a relay (the authority's mail server) with
aiosmtplib.

TLS 1.2 or newer with certificate verification is the default (``tls = "starttls-required"``). Plain
SMTP is allowed only to a loopback address (Postfix's re-injection port in a content-filter setup)
unless the administrator says the network is trusted. 4xx answers and connection problems are
temporary failures (retried with back-off by the pipeline); 5xx answers are permanent.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Literal

import aiosmtplib
import attrs

from siegel import (
    ConfigPath,
    ConfigSection,
    DeliveryChannel,
    DeliveryResult,
    Outgoing,
    SettingError,
    Tenant,
    hookimpl,
)

SECTION = "relay"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen(kw_only=True)
class RelaySettings:
    host: str = "127.0.0.1"
    port: int = 25
    #: "starttls-required", "starttls-opportunistic", "implicit" (SMTPS) or "none".
    tls: Literal["starttls-required", "starttls-opportunistic", "implicit", "none"] = (
        "starttls-required"
    )
    verify_certificate: bool = True
    #: CA bundle (PEM) to verify the relay against, instead of the system's.
    ca_file: ConfigPath | None = None
    #: Allow tls = "none" to a host that is not loopback (only on a trusted network segment).
    allow_plaintext_remote: bool = False
    timeout_seconds: float = 60.0
    local_hostname: str | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingError("port", f"must be between 1 and 65535, not {self.port}")
        if self.tls == "none" and not _is_loopback(self.host) and not self.allow_plaintext_remote:
            raise SettingError(
                "tls", f"tls = 'none' would send mail unencrypted to {self.host}; use TLS, or set "
                "allow_plaintext_remote = true if that network segment is trusted")

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verify_certificate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _reply(response: aiosmtplib.SMTPResponse | aiosmtplib.SMTPResponseException) -> str:
    return f"{response.code} {response.message}".strip()


async def deliver(outgoing: Outgoing, tenant: Tenant) -> DeliveryResult:
    settings: RelaySettings = tenant.settings[SECTION]
    uses_tls = settings.tls != "none"
    client = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        use_tls=settings.tls == "implicit",
        start_tls={"starttls-required": True, "starttls-opportunistic": None}.get(settings.tls,
                                                                                  False),
        validate_certs=settings.verify_certificate,
        tls_context=settings.tls_context() if uses_tls else None,
        timeout=settings.timeout_seconds,
        local_hostname=settings.local_hostname,
    )
    target = f"{settings.host}:{settings.port}"
    try:
        needs_utf8 = not all(a.isascii() for a in (outgoing.mail_from, *outgoing.recipients))
        async with client:
            refused, reply = await client.sendmail(
                outgoing.mail_from, list(outgoing.recipients), outgoing.raw,
                mail_options=["SMTPUTF8"] if needs_utf8 else None,
            )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(500 <= c < 600 for c in codes):
            return DeliveryResult.permanent_failure(f"{target} refused: {detail}")
        return DeliveryResult.temporary_failure(f"{target} refused: {detail}")
    except aiosmtplib.SMTPNotSupported as exc:
        return DeliveryResult.permanent_failure(f"{target}: {exc}")
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            return DeliveryResult.permanent_failure(f"{target}: {_reply(exc)}")
        return DeliveryResult.temporary_failure(f"{target}: {_reply(exc)}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return DeliveryResult.temporary_failure(f"{target}: {type(exc).__name__}: {exc}")
    if refused:
        detail = "; ".join(f"{rcpt}: {_reply(r)}" for rcpt, r in refused.items())
        return DeliveryResult.permanent_failure(f"{target} refused: {detail}")
    return DeliveryResult.delivered(f"{target}: {reply}")


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=RelaySettings,
                          description="The SMTP relay that outgoing copies are handed to")]


@hookimpl
def siegel_register_delivery_channels() -> list[DeliveryChannel]:
    return [DeliveryChannel(name="smtp", deliver=deliver,
                            description="SMTP to the configured relay (aiosmtplib, TLS by default)")]
