"""Mail addresses and domain matching.

Whether a recipient is *internal* decides whether personal data may reach it in plain text, so the
rules here are deliberately strict: the domain is whatever follows the *last* ``@`` of the
addr-spec, compared exactly after case folding and IDNA normalisation; subdomains count only where a
tenant says so. A display name, a quoted local part or a look-alike suffix never makes an address
internal.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import attrs
import idna


class InvalidAddress(ValueError):
    """An address that siegel cannot deliver to or classify. The message says what is wrong."""


# RFC 5321 limits.
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# atext of RFC 5322 plus "." for dot-atom, and any non-ASCII for SMTPUTF8 (RFC 6531).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]"
_DOT_ATOM_LOCAL = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")
_QUOTED_LOCAL = re.compile(r'^"([^"\\\r\n]|\\[ -~])*"$')


@functools.lru_cache(maxsize=4096)
def normalize_domain(domain: str) -> str:
    """Return the canonical (lower-case A-label) form of a domain, or raise :class:`InvalidAddress`.

    ``Göttingen.DE``, ``xn--gttingen-n4a.de`` and ``göttingen.de.`` are the same domain.
    """
    text = domain.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidAddress("the domain is empty")
    if text.startswith("["):
        raise InvalidAddress(f"address literals such as {domain!r} are not accepted")
    try:
        ascii_form = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddress(f"{domain!r} is not a valid domain name: {exc}") from None
    ascii_form = ascii_form.lower()
    if len(ascii_form) > _MAX_DOMAIN:
        raise InvalidAddress(f"the domain {domain!r} is longer than {_MAX_DOMAIN} characters")
    labels = ascii_form.split(".")
    if len(labels) < 2:
        raise InvalidAddress(f"{domain!r} has no top-level domain")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidAddress(f"{domain!r} has an invalid label {label!r}")
    return ascii_form


@functools.lru_cache(maxsize=4096)
def display_domain(ascii_domain: str) -> str:
    """The Unicode form of a normalised domain, for people to read."""
    try:
        return idna.decode(ascii_domain)
    except idna.IDNAError:
        return ascii_domain


@attrs.frozen(order=True)
class Address:
    """An addr-spec (``local@domain``) with a normalised domain.

    The local part is kept exactly as given (RFC 5321: only the receiving host may interpret it).
    """

    local: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse an SMTP or header addr-spec; no display names, no angle brackets."""
        value = text.strip()
        if value.startswith("<") and value.endswith(">"):
            value = value[1:-1].strip()
        if not value:
            raise InvalidAddress("the address is empty")
        if any(c in value for c in "\r\n\x00"):
            raise InvalidAddress(f"{text!r} contains control characters")
        local, at, domain = value.rpartition("@")
        if not at:
            raise InvalidAddress(f"{text!r} has no '@' and domain")
        if not local:
            raise InvalidAddress(f"{text!r} has an empty local part")
        if len(local.encode("utf-8")) > _MAX_LOCAL:
            raise InvalidAddress(f"the local part of {text!r} is longer than {_MAX_LOCAL} octets")
        if not (_DOT_ATOM_LOCAL.match(local) or _QUOTED_LOCAL.match(local)):
            raise InvalidAddress(f"{text!r} has an invalid local part {local!r}")
        return cls(local, normalize_domain(domain))

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def display(self) -> str:
        return f"{self.local}@{display_domain(self.domain)}"


@attrs.frozen
class DomainMatch:
    """Which rule of a :class:`DomainSet` an address matched."""

    rule: str
    subdomain: bool


@attrs.frozen
class DomainSet:
    """A set of domains, each matched exactly or (where configured) with all its subdomains."""

    exact: frozenset[str] = attrs.field(factory=frozenset)
    with_subdomains: frozenset[str] = attrs.field(factory=frozenset)

    @classmethod
    def build(cls, exact: Iterable[str] = (), with_subdomains: Iterable[str] = ()) -> DomainSet:
        return cls(
            frozenset(normalize_domain(d) for d in exact),
            frozenset(normalize_domain(d) for d in with_subdomains),
        )

    def match(self, domain: str) -> DomainMatch | None:
        if domain in self.exact or domain in self.with_subdomains:
            return DomainMatch(domain, subdomain=False)
        for parent in self.with_subdomains:
            if domain.endswith("." + parent):
                return DomainMatch(parent, subdomain=True)
        return None

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and self.match(domain) is not None

    def __bool__(self) -> bool:
        return bool(self.exact or self.with_subdomains)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.exact | self.with_subdomains))
