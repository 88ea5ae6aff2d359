"""Revocation checking for the certificate directory: CRLs (local files and distribution points
fetched over HTTP) and OCSP (RFC 6960), failing closed.

A certificate is only *not revoked* when a CRL or an OCSP response that siegel verified says so:
signed by the issuer (or, for OCSP, by a responder the issuer delegated with the OCSPSigning
extended key usage), covering the certificate, and fresh. An unreachable responder, an OCSP
"unknown", an expired CRL or a bad signature all mean *unknown*, and the directory does not use the
certificate.

Fetched CRLs are cached by URL and OCSP answers by certificate for ``cache_seconds`` (never past
their own nextUpdate); failures are cached briefly so that a dead responder does not stall every
message for the full time-out.
"""

from .checker import REVOCATION_MODES, RevocationChecker, RevocationMode
from .crl import crl_urls, load_crls
from .fetch import FetchError
from .ocsp import ocsp_urls
from .status import RevocationFailure

__all__ = [
    "REVOCATION_MODES",
    "FetchError",
    "RevocationChecker",
    "RevocationFailure",
    "RevocationMode",
    "crl_urls",
    "load_crls",
    "ocsp_urls",
]
