"""The password PDF keeps its recipients in the core's shared accounts: stores written before the
move upgrade without losing a password, and another plugin reads the same account (over a real
store, SMTP sink and qpdf)."""

from __future__ import annotations

import base64
import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import pytest
from test_workflow import CONFIG, PASSWORD, link_from, pdf_of, run

from siegel import Address, IdentityLevel, RecipientState
from siegel.explain import DryRun
from siegel.plugins.password_pdf import verify_password
from siegel.plugins.password_pdf.accounts import SLOT, pdf_key
from siegel.plugins.password_pdf.encrypt import derive_recipient_key
from siegel.plugins.password_pdf.login import hash_password
from siegel.plugins.password_pdf.workflow import ACCOUNTS, PENDING, Workflow
from siegel.testing import make_message

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "account_choice_plugin.py"
ANNA = "anna.meier@example.net"
BERT = "bert@example.net"
PLAIN_BODY = "Guten Tag, der Termin am Dienstag findet statt.\n"


def workflow_of(harness) -> Workflow:
    return Workflow(harness.runtime, harness.config.tenants["test"])


async def write_legacy_account(harness, stored_key: str, password: str, *, days_ago: float,
                               login: bool = True) -> None:
    """A record exactly as siegel wrote it to ``password_pdf.accounts`` before the move."""
    key = derive_recipient_key(password)
    record = {"u": base64.b64encode(key.u_entry).decode(),
              "ue": base64.b64encode(key.ue_key).decode(),
              "set_at": (harness.clock.now() - timedelta(days=days_ago)).isoformat()}
    if login:
        record["login_hash"] = await hash_password(password)
    await harness.runtime.state(ACCOUNTS).put(f"test/{stored_key}", json.dumps(record).encode())


async def delivered_pdf(harness, to: str, tmp_path: Path) -> Path:
    message_id = await harness.send(make_message(to=to, body="Ihre Kundennummer 123A456789\n"))
    await harness.process()
    assert (await harness.states(message_id))[to] is RecipientState.DELIVERED
    carrier = [m for m in harness.sink.to(to) if m.parsed.get("X-Siegel-Protection")][-1]
    return pdf_of(carrier, tmp_path)


@pytest.mark.parametrize("case_upgraded", [False, True], ids=["spelt-keys", "case-upgraded"])
async def test_a_store_from_before_the_move_upgrades_without_losing_a_password(
        siegel_harness, tmp_path, case_upgraded):
    async with siegel_harness(config=CONFIG) as harness:
        legacy = harness.runtime.state(ACCOUNTS)
        if case_upgraded:  # written by the code that already keyed by Address.key
            await write_legacy_account(harness, ANNA, PASSWORD, days_ago=30)
            await legacy.put("test/.keys-case-insensitive", b"1")
        else:  # older: two spellings of one address, and a recipient from before the login
            await write_legacy_account(harness, "ANNA.Meier@example.net", "Altes Passwort 1990",
                                       days_ago=60)
            await write_legacy_account(harness, "Anna.Meier@example.net", PASSWORD, days_ago=30)
        await write_legacy_account(harness, BERT, "Bert sein Passwort!", days_ago=90, login=False)

        workflow = workflow_of(harness)
        login = await workflow.verify_login(Address.parse(ANNA), PASSWORD)
        assert login is not None
        assert login.password_set_at == harness.clock.now() - timedelta(days=30)
        assert await legacy.scan("") == []  # nothing left in the old namespace
        assert await harness.runtime.state(PENDING).get("test/.keys-case-insensitive")

        accounts = harness.runtime.accounts("test")
        anna = await accounts.get(Address.parse(ANNA))
        assert anna is not None and anna.level is IdentityLevel.MAILBOX
        bert = await accounts.get(Address.parse(BERT))
        assert bert is not None and not bert.can_log_in and bert.slot(SLOT) is not None
        assert await workflow.verify_login(Address.parse(BERT), "Bert sein Passwort!") is None

        # New PDFs open with the password the recipients chose before the upgrade.
        pdf = await delivered_pdf(harness, ANNA, tmp_path)
        run("qpdf", f"--password={PASSWORD}", "--decrypt", pdf, tmp_path / "anna.pdf")
        assert "Kundennummer 123A456789" in run("pdftotext", "-upw", PASSWORD, pdf, "-").stdout
        wrong = run("qpdf", "--password=Altes Passwort 1990", "--decrypt", pdf,
                    tmp_path / "x.pdf", check=False)
        assert wrong.returncode != 0 and "invalid password" in wrong.stderr
        pdf = await delivered_pdf(harness, BERT, tmp_path)
        run("qpdf", "--password=Bert sein Passwort!", "--decrypt", pdf, tmp_path / "bert.pdf")
        assert await legacy.scan("") == []


async def test_a_move_cut_short_leaves_a_usable_account_and_a_dry_run_writes_nothing(
        siegel_harness, tmp_path):
    async with siegel_harness(config=CONFIG) as harness:
        await write_legacy_account(harness, ANNA, PASSWORD, days_ago=3)
        legacy = harness.runtime.state(ACCOUNTS)
        # A dry run (siegel explain) reads the old record and moves nothing.
        dry = Workflow(DryRun(clock=harness.clock, store=harness.store),
                       harness.config.tenants["test"])
        key = await dry.recipient_key(Address.parse(ANNA))
        assert key is not None and verify_password(key, PASSWORD)
        assert len(await legacy.scan("test/")) == 1
        assert await harness.runtime.accounts("test").all() == []

        # A crash after the new record was written and before the old one was removed.
        [record] = await legacy.scan("test/")
        moved = await workflow_of(harness)._account(Address.parse(ANNA))
        assert moved is not None
        await harness.runtime.accounts("test").update(Address.parse(ANNA), lambda _: moved)
        await legacy.put(record.key, record.value)
        assert await dry.recipient_key(Address.parse(ANNA)) == key  # new first, then old
        assert await workflow_of(harness).verify_login(Address.parse(ANNA), PASSWORD) is not None
        assert await legacy.scan("test/") == []
        pdf = await delivered_pdf(harness, ANNA, tmp_path)
        run("qpdf", f"--password={PASSWORD}", "--decrypt", pdf, tmp_path / "anna.pdf")
        assert pdf_key(await harness.runtime.accounts("test").get(Address.parse(ANNA))) == key


def example_plugin():
    spec = importlib.util.spec_from_file_location("account_choice_plugin", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_another_plugin_reads_the_account_the_password_pdf_created(siegel_harness):
    """The documented example (docs/examples/account_choice_plugin.py) as an inline plugin."""
    plugin = example_plugin()
    async with siegel_harness(config=CONFIG, plugins=[("secure_by_choice", plugin)]) as harness:
        # Before the recipient has an account, plain mail leaves plain.
        first = await harness.send(make_message(to=ANNA, body=PLAIN_BODY))
        await harness.process()
        assert (await harness.states(first))[ANNA] is RecipientState.DELIVERED
        assert not harness.sink.to(ANNA)[-1].parsed.get("X-Siegel-Protection")

        # The password PDF creates the account (first contact, invitation, registration) ...
        held = await harness.send(make_message(to=ANNA, body="Kundennummer 123A456789\n"))
        await harness.process()
        [invitation] = [m for m in harness.sink.to(ANNA)
                        if m.parsed["X-Siegel-Mail"] == "password_pdf.invitation"]
        _, problems = await workflow_of(harness).register(link_from(invitation, "register"),
                                                          PASSWORD)
        assert problems == []
        await harness.process()
        assert (await harness.states(held))[ANNA] is RecipientState.DELIVERED

        # ... and the other plugin sees it: the same plain mail is now protected.
        second = await harness.send(make_message(to=ANNA, body=PLAIN_BODY))
        await harness.process()
        assert (await harness.states(second))[ANNA] is RecipientState.DELIVERED
        assert harness.sink.to(ANNA)[-1].parsed.get("X-Siegel-Protection") == "password_pdf"

        # The plugin's own slot sits beside the password PDF's; neither touches the other.
        await plugin.allow_plain_mail(harness.runtime, "test",
                                      Address.parse("Anna.Meier@Example.NET"))
        account = await harness.runtime.accounts("test").get(Address.parse(ANNA))
        assert account is not None and set(account.slots) == {SLOT, "secure_by_choice"}
        third = await harness.send(make_message(to=ANNA, body=PLAIN_BODY))
        await harness.process()
        assert not harness.sink.to(ANNA)[-1].parsed.get("X-Siegel-Protection")
        assert await workflow_of(harness).verify_login(Address.parse(ANNA), PASSWORD) is not None
        assert (await harness.states(third))[ANNA] is RecipientState.DELIVERED


async def test_a_record_under_a_key_that_names_no_address_does_not_stop_the_move(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await write_legacy_account(harness, "x y@example.net", "Irgendein Passwort 7", days_ago=400)
        await write_legacy_account(harness, ANNA, PASSWORD, days_ago=3)
        assert await workflow_of(harness).verify_login(Address.parse(ANNA), PASSWORD) is not None
        left = await harness.runtime.state(ACCOUNTS).scan("")
        assert [r.key for r in left] == ["test/x y@example.net"]  # no mail can reach it
        assert [a.key for a in await harness.runtime.accounts("test").all()] == [ANNA]
