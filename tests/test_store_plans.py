"""The held queue and the account operations read through indexes on both backends, so that
their cost does not grow with the number of stored messages (bench/store_scaling.py measures
it). A plan that scans a whole table fails here.

PostgreSQL is asked with sequential scans priced out (``enable_seqscan = off``): on these small
test tables it would otherwise rightly prefer them, and with no usable index it still has to
scan, which is what is checked."""

from __future__ import annotations

import re

import pytest

from postgres import Backend
from siegel import store_sql as q
from siegel.model import RecipientState

CASES = {
    "held queue of a tenant": q.list_query(states=[RecipientState.HELD], tenant="t", limit=100,
                                           recipient=None),
    "copies to one recipient (account view)": q.list_query(
        states=None, tenant=None, limit=100, recipient="buerger@example.net"),
    "due copies (claim)": (
        "SELECT message_id FROM recipients WHERE state = 'accepted' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT 8", ["2026-01-01T00:00:00.000000Z"]),
    "one account": (q.STATE_BY_KEY_SQL, ["accounts", "t:buerger@example.net"]),
    "accounts of a tenant": q.state_page_query("accounts", "t:", None),
    "a page of an account's records": q.state_page_query(
        "postbox", "t:b@example.net:", "2026-01-01T00:00:00.000000Z", limit=20,
        after="t:b@example.net:x", descending=True),
    "unread count": q.state_count_query("postbox", "t:b@example.net:",
                                        "2026-01-01T00:00:00.000000Z"),
    "one message's events": (q.EVENTS_SQL, ["m1"]),
}


def plan(backend: Backend, statement: str, params: list[object]) -> str:
    if backend.name == "sqlite":
        return "\n".join(str(row[-1]) for row in backend.sql(
            "EXPLAIN QUERY PLAN " + statement, tuple(params)))
    import psycopg

    from postgres import DSN
    with psycopg.connect(DSN) as conn:
        conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(
            psycopg.sql.Identifier(backend.schema)))
        conn.execute("SET enable_seqscan = off")
        rows = conn.execute(b"EXPLAIN " + q.pg(statement), params).fetchall()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("case", list(CASES))
async def test_the_plan_uses_indexes(backend, case, tmp_path):
    from siegel.crypto import ContentCipher, create_key_file

    create_key_file(tmp_path / "k")
    async with backend.store(ContentCipher.from_key_file(tmp_path / "k")):
        pass  # creates the schema
    statement, params = CASES[case]
    found = plan(backend, statement, list(params))
    if backend.name == "sqlite":
        scans = re.findall(r"^SCAN (\w+)(?! USING)", found, re.MULTILINE)
    else:
        scans = re.findall(r"Seq Scan on (\w+)", found)
    assert scans == [], f"{case} reads whole tables {scans}:\n{found}"
