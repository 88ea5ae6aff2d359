"""Done when: an application with its own event loop embeds siegel, submits a customer mail for a
citizen, sees it held, then protected and delivered to a real SMTP sink; the dry run, events,
refusals and the blocking wrapper on the same gateway."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from embed_helpers import (
    ATTACHMENT,
    BODY,
    CITIZEN,
    CLERK,
    OTHER_CLERK,
    PASSWORD,
    arrived,
    assert_protected,
    registration_token,
    write_gateway,
)

import siegel
from siegel import RecipientState
from siegel.embed import MessageStatus, Refused, UnknownMessage
from siegel.explain import as_json
from siegel.plugins.password_pdf.workflow import Workflow
from siegel.sink import SmtpSink
from siegel.testing import make_message

TUTORIAL_APP = Path(__file__).resolve().parents[2] / "docs" / "examples" / "notice_app.py"


def tutorial_app() -> ModuleType:
    """The tutorial's application (docs/examples/notice_app.py), as printed in the docs."""
    spec = importlib.util.spec_from_file_location("notice_app", TUTORIAL_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_application_sends_a_notice_that_arrives_protected(tmp_path, smtp_sink: SmtpSink,
                                                              capsys):
    config = write_gateway(tmp_path / "gw", smtp_sink)
    app = tutorial_app()
    notice = app.permit_notice(sender=CLERK, citizen=CITIZEN, customer_number="123A456789",
                               decision_pdf=ATTACHMENT[2])

    async def application() -> tuple[MessageStatus, MessageStatus, list[str]]:
        async with siegel.open(config) as gateway, gateway.events() as events:
            held = await app.send_notice(gateway, notice, tenant="test")
            message_id = held.id
            [invitation] = await arrived(smtp_sink, CITIZEN)  # not the notice itself
            workflow = Workflow(gateway.runtime, gateway.config.tenants["test"])
            _recipient, problems = await workflow.register(registration_token(invitation),
                                                           PASSWORD)
            assert problems == []
            delivered = await gateway.wait(message_id, max_seconds=30)
            kinds = [e.kind for e in events.drain() if e.message_id == message_id]
            return held, delivered, kinds

    held, delivered, kinds = asyncio.run(application())
    assert "buerger@example.net: will protect with password_pdf" in capsys.readouterr().out
    [copy] = held.recipients
    assert (copy.recipient, copy.state, copy.method) == (CITIZEN, RecipientState.HELD,
                                                        "password_pdf")
    assert held.tenant == "test" and held.sender == CLERK and not held.final
    assert delivered.recipients[0].state is RecipientState.DELIVERED and delivered.final
    assert kinds[0] == "accepted" and "delivered" in kinds
    [carrier] = [m for m in smtp_sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection")]
    assert_protected(carrier, tmp_path)


async def test_refusals_dry_run_and_status(tmp_path, smtp_sink: SmtpSink):
    config = write_gateway(tmp_path / "gw", smtp_sink)
    async with siegel.open(config, worker=False) as gateway:
        with pytest.raises(Refused) as relay:
            await gateway.submit(make_message(sender="x@example.org", to=CITIZEN))
        assert relay.value.reply.startswith("550 5.7.1 Relaying denied")
        with pytest.raises(Refused) as other_tenant:  # the listener's answer to an AUTH user
            await gateway.submit(make_message(sender=OTHER_CLERK, to=CITIZEN), tenant="test")
        assert other_tenant.value.reply.startswith("553 5.7.1")
        with pytest.raises(Refused) as long_line:
            await gateway.submit(make_message(to=CITIZEN).replace(b"Guten", b"x" * 1200))
        assert long_line.value.reply.startswith("500 Line too long")
        with pytest.raises(UnknownMessage):
            await gateway.status("no-such-message")

        raw = make_message(to=CITIZEN, body=BODY)
        explained = await gateway.explain(raw)
        [citizen] = explained.recipients
        assert citizen.outcome == "protect with password_pdf"
        # The same answer as the command line gives (it prints as_json of the same result).
        assert json.loads(as_json(explained))["recipients"][0]["outcome"] == citizen.outcome

        async with gateway.events() as events:
            message_id = await gateway.submit(raw)
            async for event in events:
                assert (event.kind, event.message_id) == ("accepted", message_id)
                break
        assert events.closed and await anext(events, None) is None
        status = await gateway.status(message_id)
        assert [r.state for r in status.recipients] == [RecipientState.ACCEPTED]
        assert (await gateway.audit_trail(message_id))[0].kind == "accepted"
        await gateway.process()  # no worker: the application drives it
        assert (await gateway.status(message_id)).recipients[0].state is RecipientState.HELD


def test_the_blocking_wrapper(tmp_path, smtp_sink: SmtpSink):
    config = write_gateway(tmp_path / "gw", smtp_sink)
    with siegel.open_sync(config) as gateway:
        # The other tenant has no protection method for citizens: it stops, nothing goes out.
        message_id = gateway.submit(make_message(sender=OTHER_CLERK, to=CITIZEN))
        status = gateway.wait(message_id, RecipientState.QUARANTINED, max_seconds=30)
        assert gateway.explain(make_message(sender=OTHER_CLERK, to=CITIZEN)).recipients[
            0].outcome.startswith("quarantine (no protection method")
    assert status.recipients[0].reasons[-1].startswith("no protection method can serve")
    assert smtp_sink.to(CITIZEN) == []
