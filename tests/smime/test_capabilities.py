"""SMIMECapabilities: what we announce, how a peer's announcement picks the content cipher."""

from __future__ import annotations

import pytest

from siegel.plugins.smime import (
    OUR_CAPABILITIES,
    Capability,
    ContentCipher,
    MalformedError,
    SmimeCapabilities,
    encode_capabilities,
    parse_capabilities,
)

AES256_GCM = "2.16.840.1.101.3.4.1.46"
AES256_CBC = "2.16.840.1.101.3.4.1.42"
AES128_GCM = "2.16.840.1.101.3.4.1.6"
DES_EDE3_CBC = "1.2.840.113549.3.7"


def _peer(*oids: str) -> SmimeCapabilities:
    return SmimeCapabilities(tuple(Capability(oid) for oid in oids))


def test_we_announce_gcm_first_and_no_legacy_cipher() -> None:
    names = [entry.name for entry in OUR_CAPABILITIES.entries]
    assert names[0] == "aes256-GCM"
    assert names.index("aes256-GCM") < names.index("aes256-CBC")
    assert not {"des-ede3-cbc", "rc2-cbc", "des-cbc"} & set(names)


def test_our_announcement_survives_a_der_round_trip() -> None:
    der = encode_capabilities(OUR_CAPABILITIES).dump()
    assert der.startswith(b"\x30")  # SEQUENCE OF SMIMECapability
    parsed = parse_capabilities(der)
    assert parsed == OUR_CAPABILITIES
    assert parsed.announces_aes256_gcm and parsed.announces_aes256_cbc
    assert parsed.announces_rsaes_oaep
    oaep = next(entry for entry in parsed.entries if entry.name == "rsaesOaep")
    assert (
        oaep.parameters is not None and b"\x60\x86\x48\x01\x65\x03\x04\x02\x01" in oaep.parameters
    )


@pytest.mark.parametrize(
    ("announced", "allow_aes128", "expected"),
    [
        pytest.param(
            (AES256_CBC, AES256_GCM), False, ContentCipher.AES256_GCM, id="gcm-listed-2nd"
        ),
        pytest.param((AES256_CBC, DES_EDE3_CBC), False, ContentCipher.AES256_CBC, id="cbc-only"),
        pytest.param((AES128_GCM,), False, ContentCipher.AES256_CBC, id="aes128-not-allowed"),
        pytest.param((AES128_GCM,), True, ContentCipher.AES128_GCM, id="aes128-allowed"),
        pytest.param((DES_EDE3_CBC,), False, ContentCipher.AES256_CBC, id="3des-only-fallback"),
        pytest.param((), False, ContentCipher.AES256_CBC, id="nothing-announced"),
    ],
)
def test_choose_content_cipher(
    announced: tuple[str, ...], allow_aes128: bool, expected: ContentCipher
) -> None:
    assert _peer(*announced).choose_content_cipher(allow_aes128=allow_aes128) is expected


def test_fallback_is_configurable() -> None:
    chosen = _peer().choose_content_cipher(fallback=ContentCipher.AES256_GCM)
    assert chosen is ContentCipher.AES256_GCM


def test_content_ciphers_keep_the_peer_order() -> None:
    peer = _peer(AES256_CBC, DES_EDE3_CBC, AES256_GCM)
    assert peer.content_ciphers == (ContentCipher.AES256_CBC, ContentCipher.AES256_GCM)
    assert [entry.name for entry in peer.entries] == ["aes256-CBC", "des-ede3-cbc", "aes256-GCM"]


def test_unknown_capability_keeps_its_oid_as_name() -> None:
    assert Capability("1.2.3.4").name == "1.2.3.4"


def test_garbage_is_malformed() -> None:
    with pytest.raises(MalformedError, match="SMIMECapabilit"):
        parse_capabilities(b"\x04\x03abc")
