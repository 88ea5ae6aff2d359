"""What a revocation check found: the verdict a source gave (good, revoked, unknown) and the
failure the directory reports.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import attrs
from cryptography import x509

from siegel import Text

#: Clocks of CAs, responders and siegel differ a little.
CLOCK_SKEW = dt.timedelta(minutes=5)


@attrs.frozen(kw_only=True)
class RevocationFailure:
    """Why a certificate of a chain must not be used: ``code`` is ``revoked`` or
    ``revocation-unknown``."""

    code: str
    reason: Text
    certificate: x509.Certificate = attrs.field(repr=False, eq=False)
    revoked_at: dt.datetime | None = None


@attrs.frozen
class RevocationStatus:
    kind: Literal["good", "revoked", "unknown"]
    detail: Text
    revoked_at: dt.datetime | None = None
    reason: str | None = None


def unknown_status(de: str, en: str) -> RevocationStatus:
    return RevocationStatus("unknown", Text(de=de, en=en))


__all__ = [
    "CLOCK_SKEW",
    "RevocationFailure",
    "RevocationStatus",
    "unknown_status",
]
