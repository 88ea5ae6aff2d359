"""Mail addresses and domain matching.

Whether a recipient is *internal* decides whether personal data may reach it in plain text, so the
rules here are deliberately strict: the domain is whatever follows the *last* ``@`` of the
addr-spec, compared exactly after case folding and IDNA normalisation; subdomains count only where a
tenant says so. A display name, a quoted local part or a look-alike suffix never makes an address
internal.

An address whose local part can send the mail on to another host (the percent hack
``kunde%gmail.com@amt.de``, a ``!`` path ``host!kunde@amt.de``, a quoted ``"kunde@gmail.com"@amt.de``,
also when written with look-alike characters such as the full-width ``％``) is *never* internal,
whatever its domain: the next MTA (Postfix honours the percent hack for its own domains by
default) may deliver it anywhere. :meth:`Address.parse` refuses such addresses, so the listener
answers ``553`` at ``RCPT``; one that reaches siegel another way (older store records, a plugin
building an :class:`Address`) is judged external by :func:`internal_match`. The rules are in
``docs/architecture.rst``, "Addresses that route elsewhere".
"""

from __future__ import annotations

import functools
import re
import unicodedata
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
_QUOTED_PAIR = re.compile(r"\\(.)")
#: Characters with which a local part names another host (RFC 5321 appendix C, RFC 1123 5.2.16,
#: UUCP), after NFKC folding so that look-alikes count too.
_ROUTING = {
    "%": ("das Prozent-Routing (%)", "the percent hack (%)"),
    "!": ("einen !-Pfad (UUCP)", "a ! path (UUCP)"),
    "@": ("ein @ im lokalen Teil", "an @ in the local part"),
    ":": ("eine Quellroute (:)", "a source route (:)"),
}
#: Microsoft Exchange's encapsulation of foreign addresses (``IMCEASMTP-kunde+40gmail+2Ecom@amt.de``
#: is ``kunde@gmail.com`` to an Exchange server on the way).
_IMCEA = re.compile(r"^imcea[a-z0-9]*-", re.IGNORECASE)
_IMCEA_REASON = ("eine Exchange-Kapselung (IMCEA)", "an Exchange encapsulation (IMCEA)")


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


def local_content(local: str) -> str:
    """What a local part says once its quoting is undone: ``"a\\"b"`` is ``a"b``."""
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        return _QUOTED_PAIR.sub(r"\1", local[1:-1])
    return local


@functools.lru_cache(maxsize=4096)
def routing_in(local: str) -> tuple[str, str] | None:
    """Why a local part may route the mail to another host, in German and English; ``None``
    when it cannot. Look-alike characters (full-width ``％``, small ``﹫``) count as what they fold
    to (NFKC), because a mail server on the way may fold them."""
    folded = unicodedata.normalize("NFKC", local_content(local))
    for char, reason in _ROUTING.items():
        if char in folded:
            return reason
    if _IMCEA.match(folded):
        return _IMCEA_REASON
    return None


@attrs.frozen(order=True)
class Address:
    """An addr-spec (``local@domain``) with a normalised domain.

    The local part is kept exactly as given (RFC 5321: only the receiving host may interpret it);
    :attr:`key` is the form under which siegel keeps anything *about* an address (accounts,
    tokens, throttles), the same for every spelling in another case.
    """

    local: str
    domain: str

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse an SMTP or header addr-spec; no display names, no angle brackets.

        Refuses what siegel does not accept from a client: a domain with a trailing dot, an
        address literal, and a local part that routes elsewhere (:func:`routing_in`)."""
        address = cls._parse(text)
        routing = routing_in(address.local)
        if routing is not None:
            raise InvalidAddress(
                f"{text!r} routes the mail to another host with {routing[1]}; siegel does not "
                "accept routing addresses: write the final address instead")
        return address

    @classmethod
    def load(cls, text: str) -> Address:
        """Parse an address siegel stored itself (possibly before routing addresses were
        refused); such an address stays external wherever it is judged."""
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> Address:
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
        if domain.endswith("."):
            # RFC 5321's Domain has no root dot, and the listener's parser refuses it.
            raise InvalidAddress(f"the domain of {text!r} ends with a dot; leave the dot out")
        return cls(local, normalize_domain(domain))

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def display(self) -> str:
        return f"{self.local}@{display_domain(self.domain)}"

    @property
    def routing(self) -> tuple[str, str] | None:
        """Why this address may route elsewhere (German, English), or ``None``."""
        return routing_in(self.local)

    @property
    def key(self) -> str:
        """The address as siegel keys what it knows about it: the local part without needless
        quotes, NFC-normalised and in lower case, and the normalised domain.
        ``ANNA@Example.org``, ``anna@example.org`` and ``"anna"@example.org`` share one key."""
        content = local_content(self.local)
        local = content if _DOT_ATOM_LOCAL.match(content) else self.local
        return f"{unicodedata.normalize('NFC', local).lower()}@{self.domain}"


def internal_match(domains: DomainSet, address: Address) -> DomainMatch | None:
    """Which rule of ``domains`` makes ``address`` internal; ``None`` when none does, and always
    for an address that may route elsewhere (:attr:`Address.routing`). Every judgement of
    "internal" or "our domain" goes through here."""
    if address.routing is not None:
        return None
    return domains.match(address.domain)


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
