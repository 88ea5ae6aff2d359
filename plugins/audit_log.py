"""Built-in audit observer: writes every audit event as one JSON line to the ``siegel.audit``
logger. Events carry ids, addresses, states and reasons, never bodies or secrets."""

from __future__ import annotations

import json
import logging

from siegel import AuditEvent, hookimpl

log = logging.getLogger("siegel.audit")


@hookimpl
def siegel_audit_event(event: AuditEvent) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(json.dumps({
            "at": event.at.isoformat(), "kind": event.kind, "tenant": event.tenant,
            "message_id": event.message_id, "recipient": event.recipient, **event.detail,
        }, ensure_ascii=False))
