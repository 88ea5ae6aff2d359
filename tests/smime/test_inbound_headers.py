"""Inbound S/MIME cannot forge what the clerk sees (issue 9): siegel alone writes X-Siegel-*, and
the delivered mail has one of each single-instance field, chosen by the rule in
plugins/smime/inbound.py (outer wins unless a valid signature covers the inner fields)."""

from __future__ import annotations

import email.policy
import subprocess
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smime_pki import OPENSSL, Pki
from test_smime_plugin import LAWYER, config, now

from siegel import RecipientState
from siegel.plugins.smime.inbound import SINGLE_INSTANCE, merge

CLERK = "rsa@behoerde.example"  # the tenant's identity in the smime plugin tests is pki.rsa
FORGED_STATUS = "X-Siegel-SMIME: decrypted; signature valid"


def openssl(*args: str | Path) -> bytes:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=True).stdout


def headers(raw: bytes) -> list[tuple[str, str]]:
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    return [(name.lower(), str(value)) for name, value in parsed.items()]


def encrypted_to_tenant(pki: Pki, tmp_path: Path, entity: bytes, *, outer: bytes,
                        signer=None) -> bytes:
    (tmp_path / "entity").write_bytes(entity)
    if signer is not None:
        signed = openssl("cms", "-sign", "-in", tmp_path / "entity", "-signer", signer.cert_path,
                         "-inkey", signer.key_path, "-certfile", pki.intermediate.cert_path,
                         "-md", "sha256", "-binary")
        (tmp_path / "entity").write_bytes(signed.replace(b"MIME-Version: 1.0\r\n", b"", 1))
    encrypted = openssl("cms", "-encrypt", "-in", tmp_path / "entity", "-aes-256-cbc", "-recip",
                        pki.rsa.cert_path, "-binary")
    return outer + encrypted


INNER = (b"From: Chef <chef@behoerde.example>\r\nSubject: Dienstanweisung\r\n"
         + FORGED_STATUS.encode() + b"\r\nX-Siegel-SMIME-Signer: chef@behoerde.example\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n\r\nBitte sofort ueberweisen.\r\n")
OUTER = (f"From: Fremd <fremd@evil.example>\r\nTo: {CLERK}\r\nSubject: Hallo\r\n"
         f"{FORGED_STATUS}\r\n").encode()


async def deliver(siegel_harness, pki, parties, raw: bytes) -> bytes:
    async with siegel_harness(config=config(pki, parties), clock=now()) as harness:
        message_id = await harness.send(raw, mail_from="fremd@evil.example", rcpt_to=[CLERK])
        await harness.process()
        assert (await harness.states(message_id))[CLERK] is RecipientState.DELIVERED
    [delivered] = harness.sink.to(CLERK)
    return delivered.raw


async def test_unsigned_inner_fields_cannot_forge_sender_subject_or_status(
        siegel_harness, pki, parties, tmp_path):
    raw = await deliver(siegel_harness, pki, parties,
                        encrypted_to_tenant(pki, tmp_path, INNER, outer=OUTER))
    fields = headers(raw)
    assert [v for n, v in fields if n == "from"] == ["Fremd <fremd@evil.example>"]
    assert [v for n, v in fields if n == "subject"] == ["Hallo"]
    assert [v for n, v in fields if n == "x-siegel-smime"] == [
        "decrypted; not signed; unsigned inner header fields ignored: from, subject"]
    assert "x-siegel-smime-signer" not in dict(fields)
    assert b"Bitte sofort ueberweisen." in raw


async def test_signed_inner_fields_win_and_a_different_from_is_flagged(
        siegel_harness, pki, parties, tmp_path):
    lawyer = parties["lawyer"]
    raw = await deliver(siegel_harness, pki, parties,
                        encrypted_to_tenant(pki, tmp_path, INNER, outer=OUTER, signer=lawyer))
    fields = headers(raw)
    assert [v for n, v in fields if n == "from"] == ["Chef <chef@behoerde.example>"]
    assert [v for n, v in fields if n == "subject"] == ["Dienstanweisung"]
    [status] = [v for n, v in fields if n == "x-siegel-smime"]
    assert status.startswith("decrypted; signature valid; ")
    assert "signed From differs from the outer From fremd@evil.example" in status
    assert "the signer's certificate does not name the From address" in status
    assert [v for n, v in fields if n == "x-siegel-smime-signer"] == [LAWYER]


async def test_signed_matching_from_is_not_flagged(siegel_harness, pki, parties, tmp_path):
    inner = (f"From: {LAWYER}\r\nSubject: Akte 17\r\n".encode()
             + b"Content-Type: text/plain\r\n\r\nAnbei.\r\n")
    outer = f"From: {LAWYER}\r\nTo: {CLERK}\r\nSubject: ...\r\n".encode()
    raw = await deliver(siegel_harness, pki, parties, encrypted_to_tenant(
        pki, tmp_path, inner, outer=outer, signer=parties["lawyer"]))
    fields = headers(raw)
    assert [v for n, v in fields if n == "subject"] == ["Akte 17"]  # the protected subject
    assert [v for n, v in fields if n == "x-siegel-smime"] == ["decrypted; signature valid"]


# --- the rule itself, for any header blocks -------------------------------------------------------

_NAMES = st.sampled_from([*SINGLE_INSTANCE, "x-siegel-smime", "x-siegel-smime-signer",
                          "x-siegel-encrypt", "keywords", "received", "content-type",
                          "mime-version"])
_VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                  max_size=30)
_BLOCK = st.lists(st.tuples(_NAMES, _VALUES), max_size=12)


def _block(fields: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in fields)


@settings(max_examples=300, deadline=None)
@given(outer=_BLOCK, inner=_BLOCK, signed=st.booleans(),
       body=st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")))
def test_merge_keeps_one_of_each_single_instance_field_and_no_foreign_status(
        outer, inner, signed, body):
    merged = merge(_block(outer) + b"\r\n" + b"outer body", _block(inner) + b"\r\n" + body,
                   signed=signed, signer_addresses=("a@example.org",))
    raw = merged.with_status([("X-Siegel-SMIME", "decrypted")])
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    fields = [(n.lower(), v) for n, _, v in (line.partition(": ") for line in head.split("\r\n"))]
    names = [name for name, _ in fields]
    for name in SINGLE_INSTANCE:
        assert names.count(name) <= 1, (name, fields)
    assert [n for n in names if n.startswith("x-siegel-")] == ["x-siegel-smime"]
    assert dict(fields)["x-siegel-smime"] == "decrypted"
    assert raw.endswith(b"\r\n\r\n" + body)
    outer_first = {}
    for name, value in outer:
        outer_first.setdefault(name, value)
    inner_first = {}
    for name, value in inner:
        inner_first.setdefault(name, value)
    for name in SINGLE_INSTANCE:
        shown = dict(fields).get(name)
        if signed and name in inner_first:
            assert shown == inner_first[name]
        elif not signed:
            assert shown == outer_first.get(name)
    if not signed:  # nothing of the inner block but its Content-* fields
        assert "keywords" not in names or any(n == "keywords" for n, _ in outer)


def test_status_fields_cannot_carry_line_breaks():
    merged = merge(b"From: a@example.org\r\n\r\n", b"Content-Type: text/plain\r\n\r\nx",
                   signed=False)
    with pytest.raises(ValueError):
        merged.with_status([("X-Siegel-SMIME", "ok\r\nFrom: chef@behoerde.example")])
    with pytest.raises(ValueError):
        merged.with_status([("From", "chef@behoerde.example")])
