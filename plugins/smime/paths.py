"""Chain building: the path search from a certificate to a configured trust anchor, with a precise
reason when none is found, then RFC 5280 path validation by `cryptography` (:mod:`.pki`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509 import verification as x509_verification

from siegel import Text

from .certificates import fingerprint, is_self_signed
from .checks import extension_value, validity_problems
from .pki import MAX_CHAIN_DEPTH, validate_path
from .records import Problem
from .texts import describe

_WEAK_SIGNATURE_HASHES = ("md5", "sha1")


def _untrusted(de: str, en: str) -> Problem:
    return Problem("untrusted", Text(de=f"Zertifikatskette nicht vertrauenswürdig: {de}",
                                     en=f"untrusted chain: {en}"))


def _key_identifier_mismatch(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    aki: x509.AuthorityKeyIdentifier | None = extension_value(child, x509.AuthorityKeyIdentifier)
    ski: x509.SubjectKeyIdentifier | None = extension_value(issuer, x509.SubjectKeyIdentifier)
    return (aki is not None and aki.key_identifier is not None and ski is not None
            and aki.key_identifier != ski.digest)


def _issuer_problem(child: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                    anchor: bool) -> Problem | None:
    """Why ``issuer`` cannot have issued ``child`` in a valid path, or None."""
    name = describe(issuer)
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        detail = str(exc) or type(exc).__name__
        return _untrusted(f"Signatur von „{describe(child)}“ passt nicht zu „{name}“ ({detail})",
                          f"the signature of \"{describe(child)}\" does not verify with the key "
                          f"of \"{name}\" ({detail})")
    hash_algorithm = child.signature_hash_algorithm
    if hash_algorithm is not None and hash_algorithm.name in _WEAK_SIGNATURE_HASHES:
        return _untrusted(f"„{describe(child)}“ ist mit {hash_algorithm.name.upper()} signiert",
                          f"\"{describe(child)}\" is signed with {hash_algorithm.name.upper()}")
    if now < issuer.not_valid_before_utc or now > issuer.not_valid_after_utc:
        kind_de, kind_en = ("Vertrauensanker", "trust anchor") if anchor else (
            "Zwischenzertifikat", "intermediate")
        validity = validity_problems(issuer, now)[0].reason
        return _untrusted(f"{kind_de} „{name}“ {validity.de}", f"{kind_en} \"{name}\" {validity.en}")
    constraints: x509.BasicConstraints | None = extension_value(issuer, x509.BasicConstraints)
    if (constraints is None and not anchor) or (constraints is not None and not constraints.ca):
        return _untrusted(f"„{name}“ ist kein CA-Zertifikat (basicConstraints)",
                          f"\"{name}\" is not a CA certificate (basicConstraints)")
    usage: x509.KeyUsage | None = extension_value(issuer, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return _untrusted(f"„{name}“ darf keine Zertifikate signieren (keyUsage)",
                          f"\"{name}\" may not sign certificates (keyUsage)")
    return None


@attrs.define
class _PathSearch:
    anchors: Sequence[x509.Certificate]
    intermediates: Sequence[x509.Certificate]
    now: dt.datetime
    problem: Problem | None = None
    depth: int = -1

    def note(self, depth: int, problem: Problem) -> None:
        # The problem found furthest up the chain explains the failure best.
        if depth > self.depth:
            self.depth, self.problem = depth, problem

    def extend(self, path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        depth = len(path)
        if depth > MAX_CHAIN_DEPTH:
            self.note(depth, _untrusted(f"Kette länger als {MAX_CHAIN_DEPTH} Zertifikate",
                                        f"chain longer than {MAX_CHAIN_DEPTH} certificates"))
            return None
        in_path = {fingerprint(c) for c in path}
        candidates = [(c, True) for c in self.anchors if c.subject == current.issuer] + [
            (c, False) for c in self.intermediates
            if c.subject == current.issuer and fingerprint(c) not in in_path]
        candidates = [(c, a) for c, a in candidates if not _key_identifier_mismatch(current, c)]
        if not candidates:
            issuer = current.issuer.rfc4514_string()
            if is_self_signed(current):
                self.note(depth, _untrusted(
                    f"„{issuer}“ ist kein konfigurierter Vertrauensanker",
                    f"\"{issuer}\" is not a configured trust anchor"))
            else:
                self.note(depth, _untrusted(
                    f"Aussteller „{issuer}“ von „{describe(current)}“ fehlt (weder gespeichertes "
                    "Zwischenzertifikat noch Vertrauensanker)",
                    f"issuer \"{issuer}\" of \"{describe(current)}\" is missing (neither a stored "
                    "intermediate nor a trust anchor)"))
            return None
        for candidate, anchor in candidates:
            problem = _issuer_problem(current, candidate, self.now, anchor)
            if problem is not None:
                self.note(depth, problem)
                continue
            found = [*path, candidate]
            path_problem = _path_length_problem(found)
            if path_problem is not None:
                self.note(depth, path_problem)
                continue
            if anchor:
                return found
            result = self.extend(found)
            if result is not None:
                return result
        return None


def _path_length_problem(path: Sequence[x509.Certificate]) -> Problem | None:
    for index in range(1, len(path)):
        constraints: x509.BasicConstraints | None = extension_value(path[index], x509.BasicConstraints)
        below = index - 1  # intermediate CAs between this CA and the end entity
        if constraints is not None and constraints.path_length is not None and (
                below > constraints.path_length):
            name = describe(path[index])
            return _untrusted(f"„{name}“ erlaubt nur {constraints.path_length} Zwischen-CAs darunter",
                              f"\"{name}\" allows only {constraints.path_length} intermediate CAs "
                              "below it")
    return None


def trusted_path(leaf: x509.Certificate, anchors: Sequence[x509.Certificate],
                   intermediates: Sequence[x509.Certificate], now: dt.datetime
                   ) -> tuple[x509.Certificate, ...] | Problem:
    if not anchors:
        return _untrusted("keine Vertrauensanker konfiguriert (trust_anchors)",
                          "no trust anchors are configured (trust_anchors)")
    search = _PathSearch(anchors, intermediates, now)
    path = search.extend([leaf])
    if path is None:
        assert search.problem is not None
        return search.problem
    try:
        return validate_path(leaf, path[1:-1], anchors, now, "encryption")
    except x509_verification.VerificationError as exc:
        return _untrusted(f"RFC-5280-Prüfung fehlgeschlagen: {exc}",
                          f"RFC 5280 path validation failed: {exc}")


__all__ = [
    "trusted_path",
]
