"""The HTTP API through a real HTTP client against the running server: the done-when flow
(held, then protected and delivered), tenant isolation, and the answers for what is refused."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
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
)

from siegel import parse_email
from siegel.http_api import http_status, openapi_document
from siegel.http_api.schema import read_form
from siegel.plugins.password_pdf.workflow import Workflow
from siegel.testing import make_message

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "docs" / "http-api" / "openapi.json"


def form(sender: str = CLERK, **extra: object) -> dict[str, object]:
    name, mime_type, content = ATTACHMENT
    return {"from": sender, "from_name": "Bauamt", "to": [CITIZEN], "subject": "Ihr Bescheid",
            "text": BODY, "attachments": [{"filename": name, "content_type": mime_type,
                                           "content": base64.b64encode(content).decode()}],
            **extra}


def wait_for(client: httpx.Client, message_id: str, state: str, auth: dict[str, str]) -> dict:
    deadline = time.monotonic() + 30
    while True:
        answer = client.get(f"/v1/messages/{message_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        status = answer.json()
        if status["recipients"][0]["state"] == state or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_a_notice_through_the_http_api_arrives_protected(served):
    with httpx.Client(base_url=served.base_url) as client:
        answer = client.post("/v1/messages", json=form(), headers=served.auth("clerk"))
        assert answer.status_code == 202, answer.text
        message_id = answer.json()["id"]
        assert answer.headers["location"] == f"/v1/messages/{message_id}"
        held = wait_for(client, message_id, "held", served.auth("clerk"))
        assert held["recipients"][0]["method"] == "password_pdf" and not held["final"]

        [invitation] = served.gateway.run(arrived(served.sink, CITIZEN))
        gateway = served.gateway.gateway
        workflow = Workflow(gateway.runtime, gateway.config.tenants["test"])
        assert served.gateway.run(workflow.register(registration_token(invitation),
                                                    PASSWORD))[1] == []
        delivered = wait_for(client, message_id, "delivered", served.auth("clerk"))
        assert delivered["final"] and delivered["sender"] == CLERK

        listed = client.get("/v1/messages", headers=served.auth("clerk")).json()["messages"]
        assert [m["id"] for m in listed][:1] == [message_id]
    [carrier] = [m for m in served.sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection")]
    assert carrier.parsed["From"] == f"Bauamt <{CLERK}>" or CLERK in carrier.parsed["From"]
    assert_protected(carrier, served.folder)


def test_a_client_stays_in_its_tenant(served):
    with httpx.Client(base_url=served.base_url) as client:
        mine = client.post("/v1/messages", json=form(), headers=served.auth("test"))
        assert mine.status_code == 202
        message_id = mine.json()["id"]

        # The other tenant's client can neither send as this tenant nor read its messages.
        posing = client.post("/v1/messages", json=form(), headers=served.auth("other"))
        assert posing.status_code == 403
        assert posing.json()["smtp_reply"].startswith("553 5.7.1 User formulare may not send")
        assert client.get(f"/v1/messages/{message_id}",
                          headers=served.auth("other")).status_code == 404
        assert message_id not in [m["id"] for m in client.get(
            "/v1/messages", headers=served.auth("other")).json()["messages"]]
        # Its own tenant's messages it reads, and only its own submissions are listed.
        assert client.get(f"/v1/messages/{message_id}",
                          headers=served.auth("test")).status_code == 200
        assert message_id not in [m["id"] for m in client.get(
            "/v1/messages", headers=served.auth("clerk")).json()["messages"]]

        # A client restricted to one sender: not another one of its tenant, in envelope or From.
        other_sender = client.post("/v1/messages", json=form("leitung@behoerde.example"),
                                   headers=served.auth("clerk"))
        assert other_sender.status_code == 403
        raw = make_message(sender="leitung@behoerde.example", to=CITIZEN)
        forged = client.post("/v1/messages", content=raw, params={"sender": CLERK},
                             headers={**served.auth("clerk"), "Content-Type": "message/rfc822"})
        assert forged.status_code == 403
        assert "(From header)" in forged.json()["smtp_reply"]
        # The other tenant's client sends as its own addresses (MIME, envelope from headers).
        own = client.post("/v1/messages", content=make_message(sender=OTHER_CLERK, to=CITIZEN),
                          headers={**served.auth("other"), "Content-Type": "message/rfc822"})
        assert own.status_code == 202, own.text


@pytest.mark.parametrize(("request_kwargs", "status"), [
    ({"json": form()}, 401),
    ({"json": form(), "headers": {"Authorization": "Bearer siegel_api_wrong"}}, 401),
    ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ({"json": {**form(), "to": "nobody"}}, 400),
    ({"json": {**form(), "colour": "red"}}, 400),
    ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"content": b"x" * 300001, "headers": {"Content-Type": "message/rfc822"}}, 413),
    ({"json": form(to=["not an address"])}, 422),
    ({"json": form(subject="a\r\nBcc: evil@example.org")}, 422),
    ({"json": form(to=["x@example.org"] * 101)}, 422),
])
def test_what_is_refused(served, request_kwargs, status):
    headers = {**({} if status == 401 else served.auth("clerk")),
               **request_kwargs.pop("headers", {})}
    with httpx.Client(base_url=served.base_url) as client:
        answer = client.post("/v1/messages", headers=headers, **request_kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == status


@pytest.mark.parametrize(("reply", "status"), [
    ("250 2.0.0 OK", 202),
    ("451 4.3.0 Message not stored (temporary problem); please try again later", 503),
    ("452 4.5.3 Too many recipients; send the rest in another transaction", 422),
    ("550 5.7.1 Relaying denied: neither sender nor recipient is a local domain", 403),
    ("553 5.7.1 User x may not send as <a@b.example>", 403),
    ("553 5.1.3 Invalid recipient address: no @", 422),
    ("552 5.3.4 Message header block too large (limit 10 bytes)", 413),
    ("500 Line too long (see RFC5321 4.5.3.1.6)", 422),
])
def test_smtp_answers_map_to_status_codes(reply, status):
    assert http_status(reply) == status


def test_the_checked_in_openapi_file_is_the_generated_one(served):
    generated = json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=True)
    assert OPENAPI_FILE.read_text(encoding="utf-8").strip() == generated, (
        "regenerate: siegel api-client openapi > docs/http-api/openapi.json")
    with httpx.Client(base_url=served.base_url) as client:
        assert client.get("/v1/openapi.json").json() == openapi_document()


def test_the_form_becomes_a_message():
    data = form(cc=["akte@behoerde.example"], bcc=["leitung@behoerde.example"])
    data["attachments"] += [
        {"filename": "Hinweise.txt", "content_type": "text/plain",
         "content": base64.b64encode(b"Kundennummer 123A456789").decode()},
        {"filename": "alt.txt", "content_type": "text/plain",
         "content": base64.b64encode(b"\xff\xfe latin").decode()}]
    raw, sender, recipients = read_form(data, date=1767600000)
    message = parse_email(raw)
    assert sender == CLERK
    assert recipients == [CITIZEN, "akte@behoerde.example", "leitung@behoerde.example"]
    assert message["Bcc"] is None and message["Cc"] == "akte@behoerde.example"
    assert message["From"] == f"Bauamt <{CLERK}>"
    parts = {p.get_filename(): p for p in message.iter_attachments()}
    assert parts["Bescheid_Müller.pdf"].get_content() == ATTACHMENT[2]
    assert parts["Hinweise.txt"].get_content().strip() == "Kundennummer 123A456789"
    assert parts["alt.txt"].get_content_type() == "application/octet-stream"
