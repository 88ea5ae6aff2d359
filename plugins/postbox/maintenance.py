"""The postbox's periodic work, run by the gateway's maintenance (``siegel_register_maintenance_
tasks``) for every tenant that enables the postbox, with the gateway's clock:

* ``warn``: tell an account, in one mail without content, how many of its messages expire and
  when (``expiry_notice_days`` before ``retention_days`` end);
* ``expire``: erase messages whose retention ended (the key first, see :meth:`Mailbox.purge`);
* ``purge``: erase messages that lay in the bin for ``bin_days`` (counted from the last time
  they were moved there);
* ``unretrieved``: tell the sender that a message lies unopened for ``not_retrieved_days``.

What is due is found by a range of the ``postbox.due`` index up to now, never by reading every
message. Each due record is deleted before it is acted on and only the instance whose delete
found it acts, so two instances never send the same mail twice.
"""

from __future__ import annotations

import json
from datetime import datetime

from siegel import Address, Services, Tenant

from . import records
from .mailbox import Mailbox, MessageMissing
from .method import Postbox
from .records import DUE

KINDS = ("warn", "expire", "purge", "unretrieved")
_BATCH = 200


async def _claim_due(services: Services, tenant: Tenant, kind: str,
                     now: datetime) -> list[tuple[Address, str]]:
    """The due records of ``kind`` up to ``now`` that this instance claimed (deleted)."""
    due = services.state(DUE)
    prefix = f"{tenant.id}/{kind}/"
    # "/" sorts before every character of an id, "~" after: every key stamped up to now.
    end = prefix + records.stamp(now) + "~"
    claimed: list[tuple[Address, str]] = []
    after: str | None = None
    while True:
        batch = await due.page(prefix, limit=_BATCH, after=after)
        ready = [r for r in batch if r.key <= end]
        for record in ready:
            if await due.delete(record.key):
                data = json.loads(record.value)
                claimed.append((Address.load(data["address"]), data["id"]))
        if len(ready) < len(batch) or len(batch) < _BATCH:
            return claimed
        after = batch[-1].key


async def run(services: Services, tenant: Tenant) -> dict[str, int]:
    """Do what is due now; returns how much of each kind was done."""
    now = services.clock.now()
    postbox = Postbox(services, tenant)
    done = dict.fromkeys(KINDS, 0)
    expiring: dict[str, tuple[Address, int, datetime]] = {}
    for address, message_id in await _claim_due(services, tenant, "warn", now):
        try:
            summary = await Mailbox(services, tenant, address).summary(message_id)
        except MessageMissing:
            continue
        if summary.expires_at is None:
            continue
        _, count, first = expiring.get(address.key, (address, 0, summary.expires_at))
        expiring[address.key] = (address, count + 1, min(first, summary.expires_at))
    for address, count, expires in expiring.values():
        await postbox.tell_expiry(address, count, expires)
        done["warn"] += count
    for address, message_id in await _claim_due(services, tenant, "expire", now):
        done["expire"] += await Mailbox(services, tenant, address).purge(message_id,
                                                                         why="expired")
    for address, message_id in await _claim_due(services, tenant, "purge", now):
        box = Mailbox(services, tenant, address)
        try:
            over = box.bin_days_over(await box.summary(message_id))
        except MessageMissing:
            continue
        if over:
            done["purge"] += await box.purge(message_id, why="purged")
    for address, message_id in await _claim_due(services, tenant, "unretrieved", now):
        done["unretrieved"] += await Mailbox(services, tenant, address).tell_not_retrieved(
            message_id)
    return done


async def maintain(services: Services, tenant: Tenant) -> None:
    await run(services, tenant)
