"""The choice of algorithms per recipient (plugins/smime/profiles.py): evidence first, the
tenant's profile for the unknown, never AES-128, and 'strict' never below TR-02102-1 on its own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siegel.plugins.smime import ContentCipher, RsaKeyTransport, SignaturePadding
from siegel.plugins.smime.profiles import (
    AlgorithmChoice,
    Declined,
    RecipientAlgorithms,
    choose_algorithms,
    configured_for,
)

GCM, CBC = "2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.42"
GCM128, CBC128 = "2.16.840.1.101.3.4.1.6", "2.16.840.1.101.3.4.1.2"
OAEP, DES3 = "1.2.840.113549.1.1.7", "1.2.840.113549.3.7"
PSS = SignaturePadding.RSASSA_PSS


def choose(profile="interoperable", kind="rsa", harvested=None, configured=None):
    return choose_algorithms(profile=profile, key_kind=kind, harvested=harvested,
                             configured=configured, rsa_signature=PSS)


def test_unknown_recipients_by_profile() -> None:
    rsa = choose()
    assert isinstance(rsa, AlgorithmChoice) and rsa.source == "tenant-default"
    assert (rsa.content_cipher, rsa.rsa_key_transport) == (ContentCipher.AES256_CBC,
                                                           RsaKeyTransport.RSAES_PKCS1_V15)
    # An EC key needs ECDH, which NSS 3.87 and gpgsm 2.2 do not read: declined without evidence.
    declined_ec = choose(kind="ec")
    assert isinstance(declined_ec, Declined) and "ECDH" in declined_ec.reason.en
    assert choose(kind="ec", harvested=(CBC,)).label == "AES-256-CBC, ECDH, RSASSA-PSS"
    ecdsa = choose_algorithms(profile="interoperable", key_kind="rsa", harvested=None,
                              configured=None, rsa_signature=SignaturePadding.RSASSA_PKCS1_V15,
                              signer="ec")
    assert isinstance(ecdsa, AlgorithmChoice)
    assert ecdsa.label == "AES-256-CBC, RSAES-PKCS1-v1_5, ECDSA"
    assert len(ecdsa.tr02102_deviations) == 2  # the RSA signature setting does not apply
    for kind in ("rsa", "ec"):
        declined = choose("strict", kind)
        assert isinstance(declined, Declined)
        assert "profile 'strict'" in declined.reason.en and "Profil 'strict'" in declined.reason.de


def test_harvested_capabilities_win() -> None:
    choice = choose("strict", harvested=(CBC, GCM, OAEP))
    assert isinstance(choice, AlgorithmChoice) and choice.source == "harvested"
    assert choice.label == "AES-256-GCM, RSAES-OAEP, RSASSA-PSS"
    assert choice.tr02102_deviations == ()
    thunderbird = choose(harvested=(CBC, CBC128, DES3))
    assert isinstance(thunderbird, AlgorithmChoice)
    assert thunderbird.label == "AES-256-CBC, RSAES-PKCS1-v1_5, RSASSA-PSS"
    assert len(thunderbird.tr02102_deviations) == 2
    assert isinstance(choose("strict", harvested=(CBC, CBC128, DES3)), Declined)


def test_configuration_by_address_then_domain() -> None:
    entries = {"Kanzlei.example": RecipientAlgorithms(content_cipher="aes256-cbc"),
               "chef@kanzlei.example": RecipientAlgorithms(content_cipher="aes256-gcm",
                                                           rsa_signature="rsa-pkcs1v15")}
    assert configured_for(entries, "CHEF@kanzlei.example") == ("chef@kanzlei.example",
                                                               entries["chef@kanzlei.example"])
    assert configured_for(entries, "anna@kanzlei.example") == ("Kanzlei.example",
                                                               entries["Kanzlei.example"])
    assert configured_for(entries, "anna@other.example") is None
    choice = choose("strict", configured=configured_for(entries, "chef@kanzlei.example"))
    assert isinstance(choice, AlgorithmChoice) and choice.source == "configured"
    assert choice.label == "AES-256-GCM, RSAES-OAEP, RSASSA-PKCS1-v1_5"
    assert choice.why.en == "configured for chef@kanzlei.example"
    # An announcement without OAEP does not stop a configured choice under 'strict'.
    assert isinstance(choose("strict", harvested=(CBC,),
                             configured=configured_for(entries, "anna@kanzlei.example")),
                      AlgorithmChoice)


_OIDS = st.lists(st.sampled_from([GCM, CBC, GCM128, CBC128, OAEP, DES3, "1.2.3.4"]),
                 max_size=7).map(tuple)
_CONFIGURED = st.none() | st.builds(
    lambda cipher, transport: ("x.example", RecipientAlgorithms(content_cipher=cipher,
                                                                rsa_key_transport=transport)),
    st.sampled_from(["aes256-gcm", "aes256-cbc"]), st.sampled_from(["rsaes-oaep",
                                                                    "rsaes-pkcs1v15"]))


@given(profile=st.sampled_from(["interoperable", "strict"]), kind=st.sampled_from(["rsa", "ec"]),
       harvested=st.none() | _OIDS, configured=_CONFIGURED)
def test_choice_properties(profile, kind, harvested, configured) -> None:
    choice = choose(profile, kind, harvested, configured)
    announced_256 = harvested is not None and (GCM in harvested or CBC in harvested)
    if isinstance(choice, Declined):
        # strict: nothing known; interoperable: an EC key (ECDH) that nothing says is readable.
        assert configured is None
        assert profile == "strict" or (kind == "ec" and not announced_256)
        return
    assert choice.content_cipher.key_bytes == 32  # never AES-128
    if announced_256 and not (profile == "strict" and kind == "rsa" and OAEP not in harvested):
        assert choice.source == "harvested"
        assert choice.content_cipher.authenticated == (GCM in harvested)
        if kind == "rsa":
            assert (choice.rsa_key_transport is RsaKeyTransport.RSAES_OAEP_SHA256) == (
                OAEP in harvested)
    elif configured is not None:
        assert choice.source == "configured"
    else:
        assert profile == "interoperable" and kind == "rsa" and choice.source == "tenant-default"
    if profile == "strict" and choice.source != "configured" and kind == "rsa":
        assert choice.rsa_key_transport is RsaKeyTransport.RSAES_OAEP_SHA256
    assert choice.describe().en.startswith(f"algorithms: {choice.label} (")


@pytest.mark.parametrize("bad", ["", " x.example", "a@b@c.example"])
def test_recipient_keys_are_checked(bad: str, pki, tmp_path) -> None:
    from siegel.config import ConfigError, config_from_mapping
    from siegel.manager import PluginRegistry

    data = {"tenants": {"t": {"name": "T", "plugins": ["recipient_scope", "smtp_relay", "smime"],
                              "domains": ["behoerde.example"],
                              "settings": {"smime": {"sign": False, "recipients": {
                                  bad: {"content_cipher": "aes256-cbc"}}}}}},
            "settings": {"relay": {"tls": "none"}}}
    with pytest.raises(ConfigError, match="recipients"):
        config_from_mapping(data, PluginRegistry.load(), source="x", base_dir=tmp_path)
