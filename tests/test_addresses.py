"""Internal-domain matching must not be fooled (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siegel.addresses import (
    Address,
    DomainSet,
    InvalidAddress,
    internal_match,
    normalize_domain,
    routing_in,
)

INTERNAL = DomainSet.build(["goettingen.de", "landkreisgoettingen.de", "arbeitsagentur.de"],
                           with_subdomains=["intern.example"])

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: "--" not in s)  # IDNA reserves "??--" (punycode) labels
local = st.from_regex(r"[A-Za-z0-9._+-]{1,20}", fullmatch=True).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
internal_domain = st.sampled_from(sorted(INTERNAL.exact))


def is_internal(address: str) -> bool:
    return internal_match(INTERNAL, Address.parse(address)) is not None


@given(local, internal_domain)
def test_exact_internal_domains_match_in_any_case(local_part, domain):
    assert is_internal(f"{local_part}@{domain}")
    assert is_internal(f"{local_part}@{domain.upper()}")


@given(local, internal_domain)
def test_a_trailing_dot_is_refused_as_the_listener_refuses_it(local_part, domain):
    with pytest.raises(InvalidAddress, match="ends with a dot"):
        Address.parse(f"{local_part}@{domain}.")


@given(local, internal_domain, st.lists(label, min_size=1, max_size=3))
def test_internal_domain_followed_by_more_labels_is_external(local_part, domain, labels):
    suffix = ".".join(labels) + ".example"
    assert not is_internal(f"{local_part}@{domain}.{suffix}")


@given(local, internal_domain, label)
def test_prefixed_look_alikes_and_subdomains_are_external(local_part, domain, prefix):
    assert not is_internal(f"{local_part}@{prefix}-{domain}")
    assert not is_internal(f"{local_part}@{prefix}{domain}")
    assert not is_internal(f"{local_part}@{prefix}.{domain}")  # subdomains only where configured


@given(internal_domain, label)
def test_quoted_local_part_with_internal_address_is_judged_by_its_real_domain(domain, evil):
    address = Address.load(f'"someone@{domain}"@{evil}.example')
    assert address.domain == f"{evil}.example"
    assert internal_match(INTERNAL, address) is None


# -- addresses that route elsewhere -------------------------------------------------------------

#: Characters that route, with look-alikes that NFKC folds to them (full-width, small forms).
ROUTING_UNQUOTED = ["%", "!", "\uff05", "\ufe6a", "\uff01", "\ufe57"]
#: Inside quotes also "@" and ":" (source routes), again with look-alikes.
ROUTING_QUOTED = [*ROUTING_UNQUOTED, "@", ":", "\uff20", "\ufe6b", "\uff1a", "\ufe55"]
atom = st.from_regex(r"[A-Za-z0-9_+=-]{1,12}", fullmatch=True)


@st.composite
def routing_local_part(draw: st.DrawFn) -> str:
    quoted = draw(st.booleans())
    char = draw(st.sampled_from(ROUTING_QUOTED if quoted else ROUTING_UNQUOTED))
    before, after = draw(atom), draw(st.sampled_from(["", "gmail.com", "host", "a.b"]))
    text = f"{before}{char}{after}"
    return f'"{text}"' if quoted else text


@given(routing_local_part(), internal_domain, st.booleans())
def test_a_local_part_that_routes_is_never_internal(local_part, domain, upper):
    text = f"{local_part}@{domain.upper() if upper else domain}"
    with pytest.raises(InvalidAddress, match="routes the mail to another host"):
        Address.parse(text)
    stored = Address.load(text)  # e.g. accepted before such addresses were refused
    assert stored.routing is not None
    assert internal_match(INTERNAL, stored) is None


@pytest.mark.parametrize("text", [
    "kunde%gmail.com@landkreisgoettingen.de",
    "gmail.com!kunde@goettingen.de",
    '"kunde@gmail.com"@goettingen.de',
    '"kunde\\@gmail.com"@goettingen.de',
    '"@gmail.com:kunde"@goettingen.de',
    "kunde\uff05gmail.com@goettingen.de",
    "IMCEASMTP-kunde+40gmail+2Ecom@goettingen.de",
    "imceaex-_o=amt_ou=x@goettingen.de",
])
def test_the_known_routing_forms_are_refused_naming_the_form(text):
    with pytest.raises(InvalidAddress) as info:
        Address.parse(text)
    assert routing_in(Address.load(text).local)[1] in str(info.value)


@pytest.mark.parametrize("text", ["anna+steuer@goettingen.de", "anna.meier@goettingen.de",
                                  '"anna meier"@goettingen.de', "o'neill@goettingen.de"])
def test_ordinary_local_parts_stay_internal(text):
    assert is_internal(text)


# -- one account per address, whatever the case -----------------------------------------------

case_local = st.from_regex(r"[A-Za-z0-9._+-]{1,20}|[a-zäöüß]{1,10}", fullmatch=True).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)


@given(case_local, internal_domain, st.data())
def test_any_case_variant_has_the_same_key(local_part, domain, data):
    flips = data.draw(st.lists(st.booleans(), min_size=len(local_part), max_size=len(local_part)))
    variant = "".join(c.upper() if flip and c != "ß" else c
                      for c, flip in zip(local_part, flips, strict=True))
    original = Address.parse(f"{local_part}@{domain}")
    assert Address.parse(f"{variant}@{domain.upper()}").key == original.key
    assert Address.parse(f'"{variant}"@{domain}').key == original.key  # needless quotes


def test_different_mailboxes_keep_different_keys():
    assert Address.parse("anna@x.de").key != Address.parse("anna.b@x.de").key
    assert Address.parse("strasse@x.de").key != Address.parse("straße@x.de").key
    assert Address.parse('"anna b"@x.de').key != Address.parse("annab@x.de").key


@given(label, st.lists(label, min_size=0, max_size=2))
def test_configured_subdomains_match_only_below_the_dot(sub, more):
    name = ".".join([sub, *more, "intern.example"])
    assert is_internal(f"x@{name}")
    assert not is_internal(f"x@{sub}intern.example")


def test_idn_forms_are_one_domain():
    assert normalize_domain("Göttingen.DE") == normalize_domain("xn--gttingen-n4a.de")
    domains = DomainSet.build(["göttingen.de"])
    assert domains.match(Address.parse("a@XN--GTTINGEN-N4A.de").domain)
    assert not domains.match(Address.parse("a@goettingen.de").domain)


@pytest.mark.parametrize("bad", [
    "", "no-at-sign", "@domain.de", "a@", "a b@c.de", "a@b", "a@-x.de", "a@x..de", "a@[127.0.0.1]",
    "a@b.de\r\nRCPT TO:<c@d.de>", "x@goettingen.de@evil.example", "a" * 65 + "@x.de",
])
def test_invalid_addresses_are_refused_with_a_reason(bad):
    with pytest.raises(InvalidAddress) as info:
        Address.parse(bad)
    assert str(info.value)
