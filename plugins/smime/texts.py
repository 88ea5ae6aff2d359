"""How certificates and points in time are named in texts for people."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.x509.oid import NameOID


def format_time(when: dt.datetime) -> tuple[str, str]:
    """A point in time for people: (German, English), always in UTC."""
    utc = when.astimezone(dt.UTC)
    return utc.strftime("%d.%m.%Y %H:%M UTC"), utc.strftime("%Y-%m-%d %H:%M UTC")


def describe(certificate: x509.Certificate) -> str:
    """A short, readable name of a certificate: its subject (RFC 4514)."""
    return (certificate.subject.rfc4514_string({NameOID.EMAIL_ADDRESS: "emailAddress"})
            or f"serial {certificate.serial_number:#x}")


__all__ = ["describe", "format_time"]
