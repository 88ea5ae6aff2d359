"""The store key must be the one the store's content was sealed with.

A key file that is missing or malformed stops the gateway before the store is opened
(:class:`siegel.crypto.KeyFileError`). A well-formed key of another installation (a key file
mixed up in a restore, a new ``siegel init`` over an old database) would open nothing the store
holds and seal new content that the right key could not read: :func:`verify_store_key` refuses it
before the gateway accepts a message. The store keeps a small record sealed with its key (plugin
state ``siegel.store-key``); a store without that record (made by an older siegel) is checked
against the newest stored message still holding content, and the record is then written.
"""

from __future__ import annotations

from siegel.crypto import DecryptionError
from siegel.store import ContentDestroyed, MessageStore, StateConflict, StoreError

NAMESPACE = "siegel.store-key"
_KEY = "check"
_CHECK = b"siegel store key check v1"
#: How many of the newest messages a store without the check record is tried with.
_MESSAGES_TRIED = 20


class StoreKeyMismatch(StoreError):
    """The configured store key does not open the store's content."""


async def verify_store_key(store: MessageStore, key_file: str) -> None:
    """Raise :class:`StoreKeyMismatch` unless the store's content opens with its key; on a store
    without the check record, write it (sealed with the key, like all content)."""
    refusal = (f"the store key in {key_file} does not belong to this store (%s); start with the "
               "key file this store was created with (restore it from the key's backup). "
               "Nothing was written.")
    try:
        record = await store.state_get(NAMESPACE, _KEY)
    except DecryptionError as exc:
        raise StoreKeyMismatch(refusal % exc) from None
    if record is not None:
        if record.value != _CHECK:
            raise StoreKeyMismatch(refusal % "the check record reads wrong")
        return
    tried: set[str] = set()
    for found in await store.list(limit=_MESSAGES_TRIED):
        if found.content_destroyed or found.message_id in tried:
            continue
        tried.add(found.message_id)
        try:
            await store.load(found.message_id)
        except ContentDestroyed:
            continue
        except DecryptionError as exc:
            raise StoreKeyMismatch(refusal % exc) from None
        break
    try:
        await store.state_put(NAMESPACE, _KEY, _CHECK, expect_version=0)
    except StateConflict:  # another instance on the same database wrote it first: check that
        await verify_store_key(store, key_file)
