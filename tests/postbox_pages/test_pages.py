"""The postbox pages over HTTP against a real runtime: messages delivered by the pipeline are
listed, read (which marks them read), downloaded, answered into the pipeline (threaded), moved
to the bin, restored and purged; writing survives an ended session; a second account reaches
nothing of the first's."""

from __future__ import annotations

import hashlib
import re
from email.utils import parseaddr

from pages_helpers import CLERK, ERIKA, MAX, csrf, draft_token, message_links

from siegel import IdentityLevel, parse_email


def main(html: str) -> str:
    """The page's main content (the language links differ with the path)."""
    return html.split("<main", 1)[1].split("</main>", 1)[0]


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4
REPLY_PDF = b"%PDF-1.7\n% Nachweis\n" + b"1" * 300
HTML = ('<p>Sehr geehrte Frau Mustermann,</p><script>alert(1)</script>'
        '<p onclick="x()">Ihr <b>Bescheid</b> <img src="https://tracker.example/p.gif"></p>')


async def test_read_download_and_unread_marks(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.deliver(subject="Erste Nachricht", attachments=[("Bescheid März.pdf",
                                                                  "application/pdf", PDF)])
        pb.harness.clock.advance(minutes=1)
        await pb.deliver(subject="Zweite Nachricht", html=HTML)
        async with pb.visitor() as erika:
            await erika.sign_in()
            inbox = await erika.client.get("/t/test/postbox")
            assert inbox.status_code == 200
            text = inbox.text
            assert text.index("Zweite Nachricht") < text.index("Erste Nachricht")  # newest first
            assert text.count(">Ungelesen<") == 2
            second, first = message_links(text)

            html_view = await erika.client.get(second)
            assert "Ihr <b>Bescheid</b>" in html_view.text
            assert "alert(1)" not in html_view.text and "onclick" not in html_view.text
            assert "tracker.example" not in html_view.text
            assert "Bilder aus dieser Nachricht werden" in html_view.text
            assert "img-src 'self' data:" in html_view.headers["content-security-policy"]

            view = await erika.client.get(first)
            assert view.status_code == 200
            assert "Erste Nachricht" in view.text and CLERK in view.text
            assert hashlib.sha512(PDF).hexdigest() in view.text
            [download] = re.findall(r'href="([^"]+/attachments/0)"', view.text)
            got = await erika.client.get(download)
            assert got.content == PDF
            assert got.headers["content-type"] == "application/pdf"
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["content-disposition"].startswith("attachment; ")
            assert "filename*=UTF-8''Bescheid%20M%C3%A4rz.pdf" in got.headers[
                "content-disposition"]
            inbox = await erika.client.get("/t/test/postbox?lang=en")
            assert ">Unread<" not in inbox.text and "Messages in the inbox: 2, unread: 0." in inbox.text


async def test_a_signed_out_visitor_is_sent_to_sign_in(postbox) -> None:
    async with postbox() as pb, pb.visitor() as nobody:
        response = await nobody.client.get("/t/test/postbox")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/t/test/login?next=")


async def test_paging_newest_first(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        for number in range(23):
            pb.harness.clock.advance(seconds=10)
            await pb.deliver(subject=f"Nachricht {number:02d}")
        async with pb.visitor() as erika:
            await erika.sign_in()
            first = await erika.client.get("/t/test/postbox")
            assert len(message_links(first.text)) == 20
            assert "Nachricht 22" in first.text and "Nachricht 02" not in first.text
            [older] = re.findall(r'href="([^"]*after=[^"]*)"', first.text)
            second = await erika.client.get(older.replace("&amp;", "&"))
            assert len(message_links(second.text)) == 3
            assert "Nachricht 00" in second.text and "Seite 2" in second.text


async def test_a_reply_goes_through_the_pipeline_threaded(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.deliver(subject="Ihr Antrag", headers={"Message-ID": "<antrag-1@behoerde.example>",
                                                       "References": "<vorher@behoerde.example>"})
        async with pb.visitor() as erika:
            await erika.sign_in()
            [link] = message_links((await erika.client.get("/t/test/postbox")).text)
            form = await erika.client.get(f"{link}/reply")
            assert form.status_code == 200
            refused = await erika.client.post(f"{link}/reply", data={
                "csrf_token": csrf(form.text), "draft_token": draft_token(form.text),
                "text": "Anbei"}, files={"attachments": ("x.pdf", b"<html>no pdf</html>",
                                                        "application/pdf")})
            assert refused.status_code == 422
            assert 'href="#field-attachments"' in refused.text
            sent = await erika.client.post(f"{link}/reply", data={
                "csrf_token": csrf(form.text), "draft_token": draft_token(form.text),
                "text": "Vielen Dank, anbei der Nachweis."},
                files={"attachments": ("Nachweis.pdf", REPLY_PDF, "application/pdf")})
            assert sent.status_code == 303
            await pb.harness.process()
            [answer] = [m for m in pb.harness.sink.to(CLERK) if not m.parsed.get("X-Siegel-Notice")]
            parsed = parse_email(answer.raw)
            assert parseaddr(str(parsed["From"]))[1] == ERIKA
            assert parsed["Subject"] == "Re: Ihr Antrag"
            assert parsed["In-Reply-To"] == "<antrag-1@behoerde.example>"
            assert parsed["References"] == ("<vorher@behoerde.example> "
                                            "<antrag-1@behoerde.example>")
            [file] = list(parsed.iter_attachments())
            assert file.get_content() == REPLY_PDF
            assert "Vielen Dank" in parsed.get_body(("plain",)).get_content()


async def test_bin_restore_and_purge(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.deliver(subject="Wegwerfen")
        async with pb.visitor() as erika:
            await erika.sign_in()
            [link] = message_links((await erika.client.get("/t/test/postbox")).text)
            deleted = await erika.post(f"{link}/delete", form_page=link)
            assert deleted.status_code == 303
            inbox = await erika.client.get(deleted.headers["location"])
            assert "liegt jetzt im Papierkorb" in inbox.text and message_links(inbox.text) == []
            bin_page = await erika.client.get("/t/test/postbox/bin")
            assert "Wegwerfen" in bin_page.text
            [restore] = re.findall(r'action="([^"]+/restore)"', bin_page.text)
            assert (await erika.post(restore, form_page="/t/test/postbox/bin")).status_code == 303
            assert message_links((await erika.client.get("/t/test/postbox")).text) == [link]
            await erika.post(f"{link}/delete", form_page=link)
            bin_page = await erika.client.get("/t/test/postbox/bin")
            [purge] = re.findall(r'action="([^"]+/purge)"', bin_page.text)
            assert (await erika.post(purge, form_page="/t/test/postbox/bin")).status_code == 303
            assert "Wegwerfen" not in (await erika.client.get("/t/test/postbox/bin")).text
            assert (await erika.client.get(link)).status_code == 404


async def test_a_reply_written_when_the_session_ends_is_kept_for_its_writer_only(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.account(MAX)
        await pb.deliver(subject="Rückfrage")
        async with pb.visitor() as erika:
            await erika.sign_in()
            [link] = message_links((await erika.client.get("/t/test/postbox")).text)
            form = await erika.client.get(f"{link}/reply")
            pb.harness.clock.advance(minutes=16)  # idle timeout
            late = await erika.client.post(f"{link}/reply", data={
                "csrf_token": csrf(form.text), "draft_token": draft_token(form.text),
                "text": "Mein langer Text, der nicht verloren gehen darf."})
            assert late.status_code == 401
            assert "nicht gesendet, aber sicher gespeichert" in late.text
            [login] = re.findall(r'href="(/t/test/login\?next=[^"]+)"', late.text)
            assert not [m for m in pb.harness.sink.to(CLERK) if not m.parsed.get("X-Siegel-Notice")]
            rows = await pb.harness.store._run(lambda db: db.execute(
                "SELECT namespace, value FROM plugin_state").fetchall())
            assert "postbox.drafts" in {namespace for namespace, _ in rows}
            assert not [v for _, v in rows if b"Mein langer Text" in bytes(v)]  # encrypted
            await erika.sign_in()
            draft_path = login.split("next=", 1)[1].replace("%2F", "/").replace("%3F", "?") \
                .replace("%3D", "=")
            restored = await erika.client.get(draft_path)
            assert restored.status_code == 200
            assert "Mein langer Text, der nicht verloren gehen darf." in restored.text
            assert "Entwurf wurde wiederhergestellt" in restored.text
        async with pb.visitor(MAX) as other:
            await other.sign_in()
            assert (await other.client.get(draft_path)).status_code == 404


async def test_a_second_account_reaches_nothing_of_the_first(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.account(MAX)
        await pb.deliver(subject="Auch für Erika")
        pb.harness.clock.advance(minutes=1)  # ids sort by time: the newest is listed first
        await pb.deliver(subject="Nur für Erika", attachments=[("a.pdf", "application/pdf", PDF)])
        async with pb.visitor() as erika:
            await erika.sign_in()
            first, second = message_links((await erika.client.get("/t/test/postbox")).text)
            await erika.post(f"{second}/delete", form_page=second)
        unknown = "/t/test/postbox/messages/" + "0" * 26
        async with pb.visitor(MAX) as other:
            await other.sign_in()
            inbox = await other.client.get("/t/test/postbox")
            assert "Nur für Erika" not in inbox.text
            assert "Auch für Erika" not in (await other.client.get("/t/test/postbox/bin")).text
            expected = await other.client.get(unknown)
            assert expected.status_code == 404
            for path in (first, f"{first}/attachments/0", f"{first}/reply",
                         f"{first}/reply?draft=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
                response = await other.client.get(path)
                assert (response.status_code, main(response.text)) == (404, main(expected.text)), path
            form = await other.client.get("/t/test/postbox/settings")
            token = csrf(form.text)
            bin_id = second.rsplit("/", 1)[1]
            for path in (f"{first}/delete", f"/t/test/postbox/bin/{bin_id}/restore",
                         f"/t/test/postbox/bin/{bin_id}/purge", f"{first}/reply"):
                response = await other.client.post(path, data={"csrf_token": token,
                                                               "text": "x"})
                assert response.status_code == 404, path
        async with pb.visitor() as erika:  # nothing of hers changed
            await erika.sign_in()
            inbox = await erika.client.get("/t/test/postbox")
            assert message_links(inbox.text) == [first]
            assert "Auch für Erika" in (await erika.client.get("/t/test/postbox/bin")).text


async def test_a_message_above_the_account_level_says_why_and_how(postbox) -> None:
    config = {"tenants": {"test": {"plugin_set": "postbox", "read_level": "confirmed"}}}
    async with postbox(config) as pb:
        await pb.account(ERIKA)
        await pb.deliver(subject="Vertraulich", attachments=[("a.pdf", "application/pdf", PDF)])
        async with pb.visitor() as erika:
            await erika.sign_in()
            [link] = message_links((await erika.client.get("/t/test/postbox")).text)
            for path in (link, f"{link}/attachments/0", f"{link}/reply"):
                response = await erika.client.get(path)
                assert response.status_code == 403
                assert "PIN-Brief bestätigt" in response.text
                assert "Vertraulich" not in response.text.split("<main", 1)[1]
        await pb.account(MAX, level=IdentityLevel.CONFIRMED)
        await pb.deliver(to=MAX, subject="Vertraulich")
        async with pb.visitor(MAX) as confirmed:
            await confirmed.sign_in()
            [link] = message_links((await confirmed.client.get("/t/test/postbox")).text)
            assert (await confirmed.client.get(link)).status_code == 200


async def test_notice_mails_are_the_accounts_choice(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        async with pb.visitor() as erika:
            await erika.sign_in()
            page = await erika.client.get("/t/test/postbox/settings")
            was_on = 'name="notices" type="checkbox" value="yes" checked' in page.text
            data = {} if was_on else {"notices": "yes"}
            saved = await erika.post("/t/test/postbox/settings", data)
            assert saved.status_code == 303
            page = await erika.client.get(saved.headers["location"])
            assert ('name="notices" type="checkbox" value="yes" checked' in page.text) is not was_on
            assert "Einstellungen wurden gespeichert" in page.text


async def test_a_new_message_goes_to_the_topics_mailbox(postbox) -> None:
    topics = [{"name": "antrag", "label_de": "Anträge", "label_en": "Applications",
               "recipient": "antraege@behoerde.example"}]
    config = {"tenants": {"test": {"plugin_set": "postbox",
                                   "settings": {"postbox": {"topics": topics}}}}}
    async with postbox(config) as pb:
        await pb.account(ERIKA)
        async with pb.visitor() as erika:
            await erika.sign_in()
            form = await erika.client.get("/t/test/postbox/new")
            assert '<option value="antrag">Anträge</option>' in form.text
            empty = await erika.client.post("/t/test/postbox/new", data={
                "csrf_token": csrf(form.text), "draft_token": draft_token(form.text)})
            assert empty.status_code == 422
            for field in ("topic", "subject", "text"):
                assert f'href="#field-{field}"' in empty.text
            sent = await erika.client.post("/t/test/postbox/new", data={
                "csrf_token": csrf(form.text), "draft_token": draft_token(form.text),
                "topic": "antrag", "subject": "Wohngeld", "text": "Ich beantrage Wohngeld."})
            assert sent.status_code == 303
            await pb.harness.process()
            [mail] = pb.harness.sink.to("antraege@behoerde.example")
            assert mail.parsed["Subject"] == "Wohngeld"
            assert parseaddr(str(mail.parsed["From"]))[1] == ERIKA


async def test_without_topics_there_is_no_new_message_page(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        async with pb.visitor() as erika:
            await erika.sign_in()
            assert (await erika.client.get("/t/test/postbox/new")).status_code == 404
            assert "/postbox/new" not in (await erika.client.get("/t/test/postbox")).text


async def test_changes_need_the_forms_csrf_token(postbox) -> None:
    async with postbox() as pb:
        await pb.account(ERIKA)
        await pb.deliver(subject="Bleibt")
        async with pb.visitor() as erika:
            await erika.sign_in()
            [link] = message_links((await erika.client.get("/t/test/postbox")).text)
            for path, data in ((f"{link}/delete", {}), ("/t/test/postbox/settings",
                                                        {"notices": "yes"})):
                refused = await erika.client.post(path, data={**data, "csrf_token": "falsch"})
                assert refused.status_code == 403, path
            forged = await erika.client.post(f"{link}/delete", headers={
                "origin": "https://evil.example"}, data={"csrf_token": csrf(
                    (await erika.client.get(link)).text)})
            assert forged.status_code == 403
            assert message_links((await erika.client.get("/t/test/postbox")).text) == [link]
