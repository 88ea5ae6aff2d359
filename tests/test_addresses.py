"""Internal-domain matching must not be fooled (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siegel.addresses import Address, DomainSet, InvalidAddress, normalize_domain

INTERNAL = DomainSet.build(["goettingen.de", "landkreisgoettingen.de", "arbeitsagentur.de"],
                           with_subdomains=["intern.example"])

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: "--" not in s)  # IDNA reserves "??--" (punycode) labels
local = st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
internal_domain = st.sampled_from(sorted(INTERNAL.exact))


def is_internal(address: str) -> bool:
    return INTERNAL.match(Address.parse(address).domain) is not None


@given(local, internal_domain)
def test_exact_internal_domains_match_in_any_case(local_part, domain):
    assert is_internal(f"{local_part}@{domain}")
    assert is_internal(f"{local_part}@{domain.upper()}")
    assert is_internal(f"{local_part}@{domain}.")


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
    address = Address.parse(f'"someone@{domain}"@{evil}.example')
    assert address.domain == f"{evil}.example"
    assert INTERNAL.match(address.domain) is None


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
