"""The directory policy: what makes a certificate usable (:class:`DirectoryPolicy`), the settings
it is built from (:class:`SmimeDirectorySettings`) and their validation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs
from cryptography import x509

from siegel import ConfigPath, SettingError
from siegel.settings import not_negative, positive

from .cert_files import load_anchor_file
from .keys import SUPPORTED_CURVES
from .profiles import AlgorithmChoice, Declined
from .revocation import REVOCATION_MODES, RevocationChecker, RevocationMode, load_crls
from .texts import describe

#: Below this no RSA key is used, whatever the policy allows.
RSA_FLOOR_BITS = 2048



def _certificates(values: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(values)


def _paths(values: Iterable[str | os.PathLike[str]]) -> tuple[Path, ...]:
    return tuple(Path(v) for v in values)


def _mode(_instance: object, _attribute: object, value: str) -> None:
    if value not in REVOCATION_MODES:
        raise ValueError(f"revocation must be one of {', '.join(REVOCATION_MODES)}, not {value!r}")


@attrs.frozen(kw_only=True)
class DirectoryPolicy:
    """What makes a certificate usable; built from the settings by :func:`policy_from_settings`."""

    trust_anchors: tuple[x509.Certificate, ...] = attrs.field(converter=_certificates)
    minimum_rsa_bits: int = 3000
    #: Use RSA keys below ``minimum_rsa_bits`` (never below 2048 bits).
    allow_rsa_below_minimum: bool = False
    #: `cryptography` curve names; default: NIST P-256/384/521 and brainpool 256/384/512.
    allowed_curves: frozenset[str] = frozenset(SUPPORTED_CURVES)
    revocation: RevocationMode = attrs.field(default="crl-or-ocsp", validator=_mode)
    crl_files: tuple[Path, ...] = attrs.field(default=(), converter=_paths)
    #: Fetch CRLs from distribution points and ask OCSP responders over HTTP.
    fetch_revocation: bool = True
    revocation_timeout_seconds: float = 10.0
    cache_seconds: float = 3600.0
    #: How long a failed fetch is not retried.
    failure_cache_seconds: float = 60.0

    def revocation_checker(self) -> RevocationChecker:
        return RevocationChecker(
            mode=self.revocation, crl_files=self.crl_files, fetch=self.fetch_revocation,
            timeout_seconds=self.revocation_timeout_seconds, cache_seconds=self.cache_seconds,
            failure_cache_seconds=self.failure_cache_seconds)


@attrs.frozen(kw_only=True)
class SmimeDirectorySettings:
    """Settings of the certificate directory (a config section; every key has a default)."""

    #: PEM files with the CA certificates that recipients' certificates must chain to (each may
    #: hold several). Without any, no certificate is used.
    trust_anchors: tuple[ConfigPath, ...] = ()
    #: BSI TR-02102-1: RSA keys of at least 3000 bits.
    minimum_rsa_bits: int = 3000
    #: Use RSA keys between 2048 bits and ``minimum_rsa_bits`` anyway.
    allow_weak_rsa: bool = False
    #: "crl-or-ocsp", "crl", "ocsp" or "off".
    revocation: str = "crl-or-ocsp"
    #: CRL files (PEM or DER) kept current by the administrator; read again when they change.
    crl_files: tuple[ConfigPath, ...] = ()
    #: Fetch CRLs from the certificates' distribution points and ask OCSP responders (HTTP).
    fetch_revocation: bool = True
    revocation_timeout_seconds: float = attrs.field(default=10.0, validator=positive)
    #: How long a fetched CRL or OCSP answer is reused (never past its nextUpdate).
    cache_seconds: float = attrs.field(default=3600.0, validator=not_negative)
    _anchors: tuple[x509.Certificate, ...] = attrs.field(init=False, repr=False, eq=False,
                                                         default=())

    def __attrs_post_init__(self) -> None:
        if not RSA_FLOOR_BITS <= self.minimum_rsa_bits <= 16384:
            raise SettingError("minimum_rsa_bits", f"must be between {RSA_FLOOR_BITS} and 16384, "
                               f"not {self.minimum_rsa_bits}")
        if self.revocation not in REVOCATION_MODES:
            raise SettingError("revocation", f"must be one of {', '.join(map(repr, REVOCATION_MODES))}"
                               f", not {self.revocation!r}")
        if not self.fetch_revocation:
            needs = {"ocsp": "OCSP needs fetch_revocation = true",
                     "crl": "without fetch_revocation, revocation = 'crl' needs crl_files",
                     "crl-or-ocsp": "without fetch_revocation, revocation = 'crl-or-ocsp' needs "
                                    "crl_files"}
            if self.revocation == "ocsp" or (self.revocation in needs and not self.crl_files):
                raise SettingError("revocation", needs[self.revocation] + " (or revocation = 'off')")
        anchors: list[x509.Certificate] = []
        for path in self.trust_anchors:
            try:
                anchors += load_anchor_file(path)
            except ValueError as exc:
                raise SettingError("trust_anchors", str(exc)) from None
        crls: list[x509.CertificateRevocationList] = []
        for path in self.crl_files:
            try:
                crls += load_crls(Path(path).read_bytes(), str(path))
            except OSError as exc:
                raise SettingError("crl_files", f"{path}: cannot read: {exc.strerror or exc}"
                                   ) from None
            except ValueError as exc:
                raise SettingError("crl_files", str(exc)) from None
        gaps = unchecked_anchors(anchors, crls) if (
            self.revocation in ("crl", "crl-or-ocsp") and not self.fetch_revocation) else []
        if gaps:
            raise SettingError("crl_files", "no CRL of " + "; ".join(gaps) + ": without "
                               "fetch_revocation nothing tells whether the certificates these CAs "
                               "issued are revoked, so S/MIME would be skipped for all their "
                               "holders; add their CRLs, set fetch_revocation = true, or "
                               "revocation = 'off'")
        object.__setattr__(self, "_anchors", tuple(anchors))

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The certificates of ``trust_anchors``, read when the settings were validated."""
        return self._anchors


AlgorithmChooser = Callable[[str, x509.Certificate, "tuple[str, ...] | None"],
                            "AlgorithmChoice | Declined"]
"""``(address, certificate, harvested capabilities) -> choice``, see :mod:`.profiles`."""


def unchecked_anchors(anchors: Sequence[x509.Certificate],
                      crls: Sequence[x509.CertificateRevocationList]) -> list[str]:
    """The trust anchors (described) that issued none of ``crls``: without fetching, the
    revocation of what they issue cannot be checked."""
    issuers = {crl.issuer for crl in crls}
    return [describe(anchor) for anchor in anchors if anchor.subject not in issuers]


def policy_from_settings(settings: SmimeDirectorySettings) -> DirectoryPolicy:
    modes: dict[str, RevocationMode] = {mode: mode for mode in REVOCATION_MODES}
    return DirectoryPolicy(
        trust_anchors=settings.anchors,
        minimum_rsa_bits=settings.minimum_rsa_bits,
        allow_rsa_below_minimum=settings.allow_weak_rsa,
        revocation=modes[settings.revocation],
        crl_files=settings.crl_files,
        fetch_revocation=settings.fetch_revocation,
        revocation_timeout_seconds=settings.revocation_timeout_seconds,
        cache_seconds=settings.cache_seconds,
    )


__all__ = [
    "RSA_FLOOR_BITS",
    "AlgorithmChooser",
    "DirectoryPolicy",
    "SmimeDirectorySettings",
    "policy_from_settings",
    "unchecked_anchors",
]
