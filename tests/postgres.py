"""The PostgreSQL server the tests use: this machine's, on 127.0.0.1:5432 (``SIEGEL_TEST_PG``
names another). Each test gets a schema of its own (unique name, dropped afterwards), so
tests and parallel runs never see each other's tables.

If the server is not running it is started once (``pg_ctlcluster``, as root). Under CI (``CI``
set) an unreachable server fails the tests; elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from siegel.crypto import ContentCipher
from siegel.pg_store import PostgreSQLStore
from siegel.sqlite_store import SQLiteStore
from siegel.store import MessageStore

DSN = os.environ.get("SIEGEL_TEST_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
_state: dict[str, str | None] = {}


def _reachable() -> bool:
    try:
        with psycopg.connect(DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def start_server() -> None:
    """Start this machine's cluster (as the CI machine's set-up does) if it is not running."""
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                   check=False, capture_output=True, timeout=60)
    for _ in range(50):
        if _reachable():
            return
        time.sleep(0.2)


def require_server() -> None:
    """Skip (locally) or fail (CI) when no server can be reached; once per run."""
    if "problem" not in _state:
        if not _reachable():
            start_server()
        _state["problem"] = None if _reachable() else f"no PostgreSQL server at {DSN!r}"
    problem = _state["problem"]
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI runs the PostgreSQL tests; they do not skip there)")
        pytest.skip(f"{problem}: the PostgreSQL tests are skipped locally (not under CI)")


def new_schema() -> str:
    return f"siegel_test_{uuid.uuid4().hex[:12]}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            psycopg.sql.Identifier(schema)))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name on the test server (created by the store on first open)."""
    require_server()
    schema = new_schema()
    try:
        yield schema
    finally:
        drop_schema(schema)


class Backend:
    """One store backend under test: new store objects on the same database, and what the
    database holds at rest (to look for plain text in it)."""

    def __init__(self, name: str, tmp_path: Path, schema: str | None) -> None:
        self.name = name
        self.path = tmp_path / "siegel.db"
        self.schema = schema

    def store(self, cipher: ContentCipher, *, pool_size: int = 3) -> MessageStore:
        if self.schema is None:
            return SQLiteStore(self.path, cipher)
        return PostgreSQLStore(DSN, cipher, schema=self.schema, pool_size=pool_size)

    def at_rest(self) -> bytes:
        if self.schema is None:
            return b"".join(p.read_bytes() for p in self.path.parent.glob("siegel.db*"))
        with psycopg.connect(DSN) as conn:
            conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(
                psycopg.sql.Identifier(self.schema)))
            parts = [bytes(row[0]) for table, column in (
                ("message_chunks", "data"), ("plugin_state", "value"), ("messages", "mail_from"),
                ("events", "detail"), ("recipients", "detail"))
                for row in conn.execute(psycopg.sql.SQL("SELECT {}::bytea FROM {}").format(
                    psycopg.sql.Identifier(column), psycopg.sql.Identifier(table)))]
        return b"".join(parts)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement directly on the database (``?`` placeholders)."""
        if self.schema is None:
            with sqlite3.connect(self.path) as db:
                rows = db.execute(statement, params).fetchall()
            db.close()
            return rows
        with psycopg.connect(DSN) as conn:
            conn.execute(psycopg.sql.SQL("SET search_path TO {}").format(
                psycopg.sql.Identifier(self.schema)))
            cur = conn.execute(statement.replace("?", "%s").encode(), params)
            return cur.fetchall() if cur.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each store test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield Backend("sqlite", tmp_path, None)
        return
    require_server()
    schema = new_schema()
    try:
        yield Backend("postgresql", tmp_path, schema)
    finally:
        drop_schema(schema)
