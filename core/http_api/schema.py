"""What the HTTP API takes and gives, as JSON Schema, and its OpenAPI description built from them.

The handlers (:mod:`siegel.http_api.app`) read requests with :func:`read_form` against the
schemas here and answer with :func:`status_json` and :func:`problem`, so the published description
(``siegel api-client openapi``, checked in as ``docs/http-api/openapi.json``; a test keeps them
equal) says what the code does. The SMTP answers are mapped to status codes by
:func:`http_status`.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import re
from collections.abc import Mapping
from typing import Any

from siegel.embed import MessageStatus
from siegel.model import RecipientState

ADDRESS: dict[str, Any] = {"type": "string", "minLength": 3, "maxLength": 320,
                           "description": "A mail address (addr-spec), e.g. buerger@example.net"}
ADDRESSES: dict[str, Any] = {"type": "array", "items": ADDRESS, "maxItems": 1000}
_MIME_TYPE = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}$"

SCHEMAS: dict[str, dict[str, Any]] = {
    "Attachment": {
        "type": "object", "additionalProperties": False,
        "required": ["filename", "content_type", "content"],
        "properties": {
            "filename": {"type": "string", "minLength": 1, "maxLength": 255},
            "content_type": {"type": "string", "pattern": _MIME_TYPE,
                             "description": "e.g. application/pdf"},
            "content": {"type": "string", "format": "byte", "description": "base64"},
        },
    },
    "MessageForm": {
        "type": "object", "additionalProperties": False,
        "required": ["from", "to", "subject", "text"],
        "description": "A plain-text message with attachments. Envelope: the sender is 'from', "
                       "the recipients are to, cc and bcc (bcc is not written into the message).",
        "properties": {
            "from": ADDRESS,
            "from_name": {"type": "string", "maxLength": 200},
            "to": {**ADDRESSES, "minItems": 1},
            "cc": ADDRESSES,
            "bcc": ADDRESSES,
            "reply_to": ADDRESS,
            "subject": {"type": "string", "maxLength": 900},
            "text": {"type": "string"},
            "attachments": {"type": "array", "items": {"$ref": "#/components/schemas/Attachment"},
                            "maxItems": 100},
        },
    },
    "Submitted": {
        "type": "object", "required": ["id", "location"], "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "location": {"type": "string"}},
    },
    "RecipientStatus": {
        "type": "object", "additionalProperties": False,
        "required": ["recipient", "state", "level", "method", "detail", "reasons", "attempts",
                     "updated_at", "hold_until", "final"],
        "properties": {
            "recipient": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in RecipientState]},
            "level": {"type": ["string", "null"]},
            "method": {"type": ["string", "null"]},
            "detail": {"type": "string"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "attempts": {"type": "integer"},
            "updated_at": {"type": "string", "format": "date-time"},
            "hold_until": {"type": ["string", "null"], "format": "date-time"},
            "final": {"type": "boolean"},
        },
    },
    "MessageStatus": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "tenant", "sender", "received_at", "size", "final", "recipients"],
        "properties": {
            "id": {"type": "string"},
            "tenant": {"type": "string"},
            "sender": {"type": "string"},
            "received_at": {"type": "string", "format": "date-time"},
            "size": {"type": "integer"},
            "final": {"type": "boolean"},
            "recipients": {"type": "array",
                           "items": {"$ref": "#/components/schemas/RecipientStatus"}},
        },
    },
    "MessageList": {
        "type": "object", "required": ["messages"], "additionalProperties": False,
        "properties": {"messages": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/MessageStatus"}}},
    },
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail"],
        "description": "RFC 9457 problem details; smtp_reply is what the SMTP listener answers "
                       "for the same message.",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "smtp_reply": {"type": ["string", "null"]},
        },
    },
}

#: The SMTP answers and the status codes the HTTP API gives for them (``docs/http-api.rst``).
SMTP_TO_HTTP: tuple[tuple[str, int, str], ...] = (
    ("250", 202, "stored durably; it will be processed"),
    ("451, 454, 421", 503, "not stored (temporary problem): send again after Retry-After"),
    ("452", 422, "too many recipients, or recipients of two tenants: split the message"),
    ("530, 535", 401, "no or an unknown token"),
    ("550 5.7.1, 553 5.7.1, 554 5.7.1", 403, "not allowed: a sender the client may not use, "
                                             "relaying, no tenant owns the message"),
    ("552", 413, "the message or its header block is too large"),
    ("500, 501, 550, 553, 554 (others)", 422, "the message or an address cannot be accepted"),
)


def http_status(reply: str) -> int:
    """The status code for an SMTP reply (see :data:`SMTP_TO_HTTP`)."""
    code, _, rest = reply.partition(" ")
    if code.startswith("2"):
        return 202
    if code == "452":
        return 422
    if code.startswith("4"):
        return 503
    if code in ("530", "535"):
        return 401
    if code == "552":
        return 413
    if rest.startswith("5.7.1"):
        return 403
    return 422


class FormError(ValueError):
    """The request does not follow the schema; the message names the field."""


def _addresses(data: Mapping[str, Any], key: str, *, required: bool = False) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FormError(f"{key}: expected a list of addresses")
    if required and not value:
        raise FormError(f"{key}: at least one address is needed")
    if len(value) > ADDRESSES["maxItems"]:
        raise FormError(f"{key}: more than {ADDRESSES['maxItems']} addresses")
    return value


def _string(data: Mapping[str, Any], key: str, limit: int | None = None, *,
            required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise FormError(f"{key}: expected a string")
    if limit is not None and len(value) > limit:
        raise FormError(f"{key}: longer than {limit} characters")
    return value


def read_form(data: object, *, date: float) -> tuple[bytes, str, list[str]]:
    """A :data:`SCHEMAS` ``MessageForm`` as a message (SMTP line ends), its envelope sender and
    recipients. Raises :class:`FormError` for what the schema does not allow and
    :class:`ValueError` for what cannot be written into a message."""
    from email.message import EmailMessage

    if not isinstance(data, dict):
        raise FormError("expected a JSON object")
    unknown = set(data) - set(SCHEMAS["MessageForm"]["properties"])
    if unknown:
        raise FormError(f"unknown fields: {', '.join(sorted(unknown))}")
    sender = _string(data, "from", 320)
    to = _addresses(data, "to", required=True)
    cc, bcc = _addresses(data, "cc"), _addresses(data, "bcc")
    subject = _string(data, "subject", 900)
    text = _string(data, "text")
    from_name = _string(data, "from_name", 200, required=False)
    reply_to = _string(data, "reply_to", 320, required=False)
    attachments = data.get("attachments", [])
    if not isinstance(attachments, list) or len(attachments) > 100:
        raise FormError("attachments: expected a list of at most 100 attachments")
    assert sender is not None and subject is not None and text is not None
    message = EmailMessage()
    message["From"] = email.utils.formataddr((from_name or "", sender))
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(date, localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    for number, item in enumerate(attachments):
        where = f"attachments[{number}]"
        if not isinstance(item, dict) or set(item) != {"filename", "content_type", "content"}:
            raise FormError(f"{where}: expected filename, content_type and content")
        filename = _string(item, "filename", 255)
        content_type = _string(item, "content_type")
        content = _string(item, "content")
        assert filename is not None and content_type is not None and content is not None
        if not filename or not re.fullmatch(_MIME_TYPE, content_type):
            raise FormError(f"{where}: a file name and a MIME type (type/subtype) are needed")
        try:
            payload = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise FormError(f"{where}.content: not base64") from None
        maintype, _, subtype = content_type.lower().partition("/")
        if maintype == "text":
            try:
                message.add_attachment(payload.decode("utf-8"), subtype=subtype,
                                       filename=filename)
                continue
            except UnicodeDecodeError:
                pass
        if maintype in ("text", "multipart", "message"):
            maintype, subtype = "application", "octet-stream"  # carried as it is
        message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    raw = message.as_bytes(policy=email.policy.SMTP)
    return raw, sender, [*to, *cc, *bcc]


def status_json(status: MessageStatus) -> dict[str, Any]:
    return {
        "id": status.id, "tenant": status.tenant, "sender": status.sender,
        "received_at": status.received_at.isoformat(), "size": status.size,
        "final": status.final,
        "recipients": [{
            "recipient": r.recipient, "state": r.state.value,
            "level": r.level.name.lower() if r.level is not None else None,
            "method": r.method, "detail": r.detail, "reasons": list(r.reasons),
            "attempts": r.attempts, "updated_at": r.updated_at.isoformat(),
            "hold_until": r.hold_until.isoformat() if r.hold_until else None,
            "final": r.final,
        } for r in status.recipients],
    }


def _problem_response(status: int, what: str) -> dict[str, Any]:
    return {"description": what,
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(ref: str, what: str) -> dict[str, Any]:
    return {"description": what,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_COMMON = {"401": _problem_response(401, "no token, or an unknown one"),
           "503": _problem_response(503, "temporary problem (store); try again after "
                                         "Retry-After")}


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the HTTP API."""
    envelope = [
        {"name": "sender", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "Envelope sender (default: the From header)"},
        {"name": "recipient", "in": "query", "required": False, "explode": True,
         "schema": {"type": "array", "items": {"type": "string"}},
         "description": "Envelope recipients (default: To, Cc and Bcc)"},
    ]
    submit = {
        "operationId": "submitMessage",
        "summary": "Submit a message; answered once it is stored durably",
        "parameters": envelope,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/MessageForm"}},
            "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
        }},
        "responses": {
            "202": _json("Submitted", "stored; the Location header is its status"),
            "400": _problem_response(400, "not valid JSON, or not the form's schema"),
            **_COMMON,
            "403": _problem_response(403, "the client may not send this (sender, tenant)"),
            "413": _problem_response(413, "request or message too large"),
            "415": _problem_response(415, "neither application/json nor message/rfc822"),
            "422": _problem_response(422, "the listener would refuse this message"),
        },
    }
    listing = {
        "operationId": "listMessages",
        "summary": "The client's most recent messages, newest first",
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                   "default": 20}}],
        "responses": {"200": _json("MessageList", "the messages"),
                      "400": _problem_response(400, "limit is not a number from 1 to 100"),
                      **_COMMON},
    }
    status = {
        "operationId": "getMessage",
        "summary": "A message of the client's tenant and its recipients' states",
        "parameters": [{"name": "message_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": _json("MessageStatus", "the message"),
                      "404": _problem_response(404, "no such message in the client's tenant"),
                      **_COMMON},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "siegel HTTP submission API", "version": version,
                 "description": "Submit mail to the siegel gateway with the listener's "
                                "guarantees: stored durably before the answer, then classified, "
                                "protected, delivered and notified."},
        "paths": {"/v1/messages": {"post": submit, "get": listing},
                  "/v1/messages/{message_id}": {"get": status}},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "siegel api-client add"}},
        },
        "security": [{"token": []}],
    }
