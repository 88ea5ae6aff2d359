"""``siegel explain`` predicts the live gateway: a corpus of tricky envelopes and messages goes
through a real listener (``SmtpGateway``, an SMTP client, the pipeline, a real SMTP sink) and
through explain, and both must tell the same outcome for every recipient: refused at MAIL or
RCPT or at the end of DATA (with the same reply), delivered, or quarantined.
"""

from __future__ import annotations

from typing import Any

import aiosmtplib
import attrs
import pytest

from siegel import RecipientState
from siegel.addresses import Address
from siegel.admission import Refused, smtp_path
from siegel.explain import DryRun, admit, explain
from siegel.gateway import SmtpGateway
from siegel.testing import make_message

CLERK = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"
OPEN_CLERK = "amt@offen.example"
OPEN_COLLEAGUE = "kollege@offen.example"
CITIZEN = "buerger@example.net"

CONFIG: dict[str, Any] = {
    "listeners": [{"host": "127.0.0.1", "port": 0, "max_message_size": 20_000}],
    "tenants": {
        "test": {"internal_domains": ["landkreis.example"]},
        # External mail goes out plain here, so only the structure decides: the case of the
        # broken message that explain once judged "deliver".
        "offen": {"name": "Offen", "domains": ["offen.example"], "plugin_set": "baseline",
                  "settings": {"recipient_scope": {"external": "plain"}}},
    },
}

BROKEN = (b"From: amt@offen.example\r\nTo: buerger@example.net\r\nSubject: x\r\n"
          b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\nno boundary ever starts\r\n")
NO_HEADERS = b"garbage without any header line at all\r\n"


@attrs.frozen
class Case:
    id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    #: What must happen, per recipient in order: "deliver", "quarantine", or the reply code of a
    #: refusal ("553"); a refused sender is ("MAIL 553",), a refused message ("DATA 552",).
    expect: tuple[str, ...]


def _mail(sender: str, to: str) -> bytes:
    return make_message(sender=sender, to=to)


CORPUS = [
    Case("internal", CLERK, (COLLEAGUE, "x@landkreis.example"),
         _mail(CLERK, COLLEAGUE), ("deliver", "deliver")),
    Case("external-needs-protection", CLERK, (CITIZEN,), _mail(CLERK, CITIZEN), ("quarantine",)),
    Case("external-plain", OPEN_CLERK, (CITIZEN,), _mail(OPEN_CLERK, CITIZEN), ("deliver",)),
    Case("broken-mime", OPEN_CLERK, (CITIZEN, OPEN_COLLEAGUE), BROKEN, ("quarantine", "deliver")),
    Case("no-headers", OPEN_CLERK, (CITIZEN, OPEN_COLLEAGUE), NO_HEADERS, ("quarantine", "deliver")),
    Case("percent-hack", CLERK, ("kunde%gmail.com@behoerde.example", COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("bang-path", CLERK, ("gmail.com!kunde@behoerde.example", COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("quoted-at", CLERK, ('"kunde@gmail.com"@behoerde.example', COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("quoted-source-route", CLERK, ('"@gmail.com:kunde"@landkreis.example', COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("full-width-percent", CLERK, ("kunde\uff05gmail.com@behoerde.example", COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("trailing-dot", CLERK, ("kollegin@behoerde.example.", COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("address-literal", CLERK, ("kollegin@[127.0.0.1]", COLLEAGUE),
         _mail(CLERK, COLLEAGUE), ("553", "deliver")),
    Case("source-route-is-ignored", CLERK, ("<@relay.example,@gmail.com:kollegin@behoerde.example>",),
         _mail(CLERK, COLLEAGUE), ("deliver",)),
    Case("comment", CLERK, ("<kollegin(Buero 3)@behoerde.example>",), _mail(CLERK, COLLEAGUE), ("deliver",)),
    Case("inbound-routing", CITIZEN, ("kunde%gmail.com@behoerde.example", COLLEAGUE),
         _mail(CITIZEN, COLLEAGUE), ("553", "deliver")),
    Case("relaying", CITIZEN, ("fremd@example.org", COLLEAGUE),
         _mail(CITIZEN, COLLEAGUE), ("550", "deliver")),
    Case("two-tenants", CITIZEN, (COLLEAGUE, OPEN_COLLEAGUE), _mail(CITIZEN, COLLEAGUE), ("deliver", "452")),
    Case("routing-sender", "kunde%gmail.com@behoerde.example", (COLLEAGUE,),
         _mail(CLERK, COLLEAGUE), ("MAIL 553",)),
    Case("long-line", CLERK, (COLLEAGUE,),
         make_message(sender=CLERK, to=COLLEAGUE).replace(b"\r\n\r\n", b"\r\n\r\n" + b"x" * 1000
                                                          + b"\r\n", 1), ("DATA 500",)),
    Case("line-at-the-limit", CLERK, (COLLEAGUE,),
         make_message(sender=CLERK, to=COLLEAGUE).replace(b"\r\n\r\n", b"\r\n\r\n" + b"x" * 999
                                                          + b"\r\n", 1), ("deliver",)),
    Case("dot-stuffed-line", CLERK, (COLLEAGUE,),
         make_message(sender=CLERK, to=COLLEAGUE).replace(b"\r\n\r\n", b"\r\n\r\n." + b"x" * 998
                                                          + b"\r\n", 1), ("DATA 500",)),
    Case("too-large", CLERK, (COLLEAGUE,),
         make_message(sender=CLERK, to=COLLEAGUE, body="Zeile mit Text\n" * 1500), ("DATA 552",)),
    # UTS 46 maps the ideographic full stop to "."; the copy goes to the normalised domain.
    Case("ideographic-dot", CLERK, ("kollegin@behoerde\u3002example",), _mail(CLERK, COLLEAGUE),
         ("deliver",)),
    # A Cyrillic "o" is another domain: external, so it needs protection (none here).
    Case("cyrillic-look-alike", CLERK, ("kollegin@beh\u043eerde.example",),
         _mail(CLERK, COLLEAGUE), ("quarantine",)),
    Case("upper-case-internal", CLERK, ("KOLLEGIN@BEHOERDE.EXAMPLE",), _mail(CLERK, COLLEAGUE), ("deliver",)),
]


def _path(text: str) -> str:
    return text if text.startswith("<") else f"<{text}>"


async def _live(gateway: SmtpGateway, host: str, port: int, harness: Any,
                case: Case) -> dict[str, str]:
    """What the live gateway does with each recipient."""
    outcome: dict[str, str] = {}
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10, start_tls=False) as client:
        await client.ehlo()
        reply = await client.execute_command(
            f"MAIL FROM:{_path(case.sender)} SMTPUTF8".encode())
        if reply.code != 250:
            return {"MAIL": f"refused {reply.code}: {reply.message}"}
        accepted: dict[str, str] = {}
        for text in case.recipients:
            reply = await client.execute_command(f"RCPT TO:{_path(text)}".encode())
            if reply.code == 250:
                accepted[text] = str(Address.parse(smtp_path(text)))
            else:
                outcome[text] = f"refused {reply.code}: {reply.message}"
        if not accepted:
            return outcome
        try:
            reply = await client.data(case.raw)
        except aiosmtplib.SMTPDataError as refusal:
            return {"DATA": f"refused {refusal.code}: {refusal.message}"}
        assert reply.code == 250, reply
        message_id = reply.message.rsplit(" ", 1)[-1]
    await harness.process()
    states = await harness.states(message_id)
    assert set(states) == set(accepted.values())
    for text, address in accepted.items():
        state = states[address]
        delivered = harness.sink.to(address)
        if state is RecipientState.DELIVERED:
            assert delivered, f"{address} is delivered but the sink has nothing"
            outcome[text] = "deliver"
        else:
            assert not delivered, f"{address} is {state} but the sink has a copy"
            outcome[text] = state.value.replace("quarantined", "quarantine")
    return outcome


async def _explained(harness: Any, case: Case) -> dict[str, str]:
    """What ``siegel explain`` predicts for each recipient."""
    config = harness.config
    try:
        admitted = admit(config, case.sender, list(case.recipients))
    except Refused as refusal:
        code, _, message = refusal.reply.partition(" ")
        return {"MAIL": f"refused {code}: {message}"}
    try:
        admit(config, case.sender, list(case.recipients), case.raw)
    except Refused as refusal:
        code, _, message = refusal.reply.partition(" ")
        return {"DATA": f"refused {code}: {message}"}
    outcome = {}
    for refused in admitted.refused:
        code, _, message = refused.reply.partition(" ")
        outcome[refused.address] = f"refused {code}: {message}"
    if not admitted.recipients:
        return outcome
    result = await explain(config, harness.registry, case.raw, admitted.sender,
                           list(admitted.recipients),
                           services=DryRun(store=harness.store, config=config))
    by_address = {str(r.recipient): r.outcome.split(" ")[0] for r in result.recipients}
    for text in case.recipients:
        if text not in outcome:
            outcome[text] = by_address[str(Address.parse(smtp_path(text)))]
    return outcome


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
async def test_explain_tells_what_the_live_gateway_does(siegel_harness, smtp_sink, case):
    async with siegel_harness(config=CONFIG) as harness:
        predicted = await _explained(harness, case)
        gateway = SmtpGateway(harness.runtime)
        [(host, port)] = await gateway.start()
        try:
            live = await _live(gateway, host, port, harness, case)
        finally:
            await gateway.stop()
    assert predicted == live
    if case.expect[0].startswith(("MAIL", "DATA")):
        stage, code = case.expect[0].split()
        assert live[stage].startswith(f"refused {code}")
    else:
        for text, expected in zip(case.recipients, case.expect, strict=True):
            assert live[text].startswith(expected if expected[0].isalpha()
                                         else f"refused {expected}"), (text, live[text])
    # Nothing in the corpus that routes elsewhere reached the sink.
    for mail in smtp_sink.messages:
        for rcpt in mail.rcpt_to:
            assert Address.parse(rcpt).routing is None
