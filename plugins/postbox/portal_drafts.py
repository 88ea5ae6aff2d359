"""Replies and new messages being written survive a broken session.

Each compose form carries a *draft token* made while the account was signed in:
``DRAFT_ID.OWNER.TAG``, where ``TAG`` is the portal's MAC over tenant, owner and draft id. When
the form is posted after the session ended (or the login was ended elsewhere), the page cannot
trust the session, but it can trust the token: it keeps the text under the owner the token names
(plugin state, encrypted at rest like all plugin state, never in the browser) and sends the
visitor to sign in again with a link back to the form and the draft's id. The form restores the
draft only for the account that owns it; any other account gets the same 404 as for an unknown
draft. Attachments are not kept (the visitor chooses them again, and is told so).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
from datetime import timedelta

import attrs

from siegel.portal import PortalContext

NAMESPACE = "postbox.drafts"
MAC_PURPOSE = "postbox.draft"
#: How long a kept draft waits for its owner to sign in again.
KEEP_FOR = timedelta(days=7)
_DRAFT_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


@attrs.frozen(kw_only=True)
class Draft:
    #: "reply" (to ``message_id``) or "new".
    kind: str
    message_id: str = ""
    topic: str = ""
    subject: str = ""
    text: str = ""

    def encode(self) -> bytes:
        return json.dumps(attrs.asdict(self), separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Draft:
        value = json.loads(raw.decode("utf-8"))
        return cls(kind=str(value["kind"]), message_id=str(value.get("message_id", "")),
                   topic=str(value.get("topic", "")), subject=str(value.get("subject", "")),
                   text=str(value.get("text", "")))


def _owner_part(owner: str) -> str:
    return base64.urlsafe_b64encode(owner.encode("utf-8")).decode("ascii").rstrip("=")


def _record_key(tenant: str, owner: str, draft_id: str) -> str:
    return f"{tenant}/{_owner_part(owner)}/{draft_id}"


async def new_token(portal: PortalContext, owner: str, draft_id: str | None = None) -> str:
    """A draft token for the signed-in ``owner`` (an account key), reusing ``draft_id`` if given."""
    draft_id = draft_id if draft_id and _DRAFT_ID.match(draft_id) else secrets.token_urlsafe(24)
    tag = await portal.mac(MAC_PURPOSE, f"{portal.tenant.id}\n{owner}\n{draft_id}")
    return f"{draft_id}.{_owner_part(owner)}.{tag}"


async def read_token(portal: PortalContext, token: str) -> tuple[str, str] | None:
    """(owner, draft id) of a token this portal gave out for this tenant, or ``None``."""
    parts = token.split(".")
    if len(parts) != 3 or not _DRAFT_ID.match(parts[0]):
        return None
    draft_id, owner_part, tag = parts
    try:
        owner = base64.urlsafe_b64decode(owner_part + "=" * (-len(owner_part) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = await portal.mac(MAC_PURPOSE, f"{portal.tenant.id}\n{owner}\n{draft_id}")
    if not hmac.compare_digest(expected.encode("ascii"), tag.encode("ascii", "replace")):
        return None
    return owner, draft_id


async def keep(portal: PortalContext, owner: str, draft_id: str, draft: Draft) -> None:
    await portal.state(NAMESPACE).put(_record_key(portal.tenant.id, owner, draft_id),
                                      draft.encode(), ttl=KEEP_FOR)


async def load(portal: PortalContext, owner: str, draft_id: str) -> Draft | None:
    """The owner's draft, or ``None`` (unknown, expired, or another account's)."""
    if not _DRAFT_ID.match(draft_id):
        return None
    record = await portal.state(NAMESPACE).get(_record_key(portal.tenant.id, owner, draft_id))
    if record is None:
        return None
    try:
        return Draft.decode(record.value)
    except (ValueError, KeyError, TypeError):
        return None


async def discard(portal: PortalContext, owner: str, draft_id: str) -> None:
    if _DRAFT_ID.match(draft_id):
        await portal.state(NAMESPACE).delete(_record_key(portal.tenant.id, owner, draft_id))
