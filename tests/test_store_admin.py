"""Running a store: the PostgreSQL settings, ``siegel store migrate`` on both backends, moving
an SQLite installation to PostgreSQL with ``siegel store copy``, and the backup and restore
drill of docs/postgresql.rst (database dump plus the key file)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import uuid

import psycopg
import pytest

from postgres import DSN
from siegel import ConfigError, RecipientState, StoreError
from siegel.config import load_config
from siegel.crypto import ContentCipher, DecryptionError, create_key_file
from siegel.manager import PluginRegistry
from siegel.pg_store import PostgreSQLStore
from siegel.runtime import open_store
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"
CITIZEN = "buerger@example.net"


def use_postgresql(config_file, schema: str, extra: str = "", dsn: str = DSN) -> None:
    text = config_file.read_text()
    text = text.replace('backend = "sqlite"\npath = "var/siegel.db"               # relative to this file\n',
                        f'backend = "postgresql"\ndsn = "{dsn}"\nschema = "{schema}"\n{extra}')
    assert 'backend = "postgresql"' in text
    config_file.write_text(text)


def problems(config_file) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, PluginRegistry.load())
    return str(caught.value)


def test_postgresql_settings_are_checked(siegel_cli):
    use_postgresql(siegel_cli.config, "x", dsn="postgresql://siegel:geheim@db.example/siegel")
    assert "holds a password; put it in password_file" in problems(siegel_cli.config)
    text = siegel_cli.config.read_text().replace(
        'dsn = "postgresql://siegel:geheim@db.example/siegel"\n', "")
    siegel_cli.config.write_text(text)
    assert 'backend "postgresql" needs dsn' in problems(siegel_cli.config)
    siegel_cli.config.write_text(text.replace(
        'schema = "x"\n', 'schema = "x"\ndsn = "host=db password=geheim"\n'
        'password_file = "pw"\npassword_env = "PW"\n'))
    found = problems(siegel_cli.config)
    assert "holds a password" in found and "not both" in found


def test_the_password_comes_from_the_environment_or_a_file(siegel_cli, monkeypatch, pg_schema):
    use_postgresql(siegel_cli.config, pg_schema, 'password_env = "SIEGEL_TEST_DB_PASSWORD"\n')
    config = load_config(siegel_cli.config, PluginRegistry.load())
    monkeypatch.delenv("SIEGEL_TEST_DB_PASSWORD", raising=False)
    with pytest.raises(StoreError, match="SIEGEL_TEST_DB_PASSWORD is not set"):
        open_store(config)
    monkeypatch.setenv("SIEGEL_TEST_DB_PASSWORD", "s3cret")
    store = open_store(config)
    assert isinstance(store, PostgreSQLStore) and store._password == "s3cret"
    assert "s3cret" not in repr(store) and "s3cret" not in store.where


async def opened(store) -> None:
    async with store:
        pass


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_migrate_brings_an_older_schema_up_and_a_newer_one_is_refused(
        siegel_cli, backend_name, pg_schema):
    if backend_name == "postgresql":
        use_postgresql(siegel_cli.config, pg_schema)
    config = load_config(siegel_cli.config, PluginRegistry.load())
    asyncio.run(opened(open_store(config)))
    assert "version 4; nothing to do" in siegel_cli("store", "migrate").output

    def sql(statement: str) -> None:
        if backend_name == "sqlite":
            import sqlite3
            with sqlite3.connect(config.path(config.store.path)) as db:
                db.execute(statement)
            db.close()
        else:
            with psycopg.connect(DSN) as conn:
                conn.execute(f'SET search_path TO "{pg_schema}"')
                conn.execute(statement.encode())

    # What a store of schema 2 looks like.
    sql("DROP INDEX recipients_address")
    sql("ALTER TABLE recipients DROP COLUMN handoffs")
    sql("UPDATE schema_version SET version = 2")
    with pytest.raises(StoreError, match="schema version 2, expected 4; run 'siegel store migrate'"):
        asyncio.run(opened(open_store(config)))
    serving = siegel_cli("serve")
    assert serving.exit_code == 2 and "run 'siegel store migrate'" in serving.output
    result = siegel_cli("store", "migrate")
    assert result.exit_code == 0 and "migrated from version 2 to 4" in result.output
    asyncio.run(opened(open_store(config)))
    sql("UPDATE schema_version SET version = 5")
    result = siegel_cli("store", "migrate")
    assert result.exit_code == 2 and "schema version 5, expected 4" in result.output
    assert "upgrade siegel" in result.output


async def fill(siegel_harness) -> tuple[dict[str, str], object]:
    """An SQLite installation with delivered, held and destroyed messages, an attachment of
    several content chunks, events and plugin state."""
    async with siegel_harness(config={"tenants": {"test": {"plugin_set": "baseline"}}}) as harness:
        ids = {
            "internal": await harness.send(make_message(to=COLLEAGUE)),
            "large": await harness.send(make_message(
                to=COLLEAGUE, attachments=[("a.bin", "application/octet-stream",
                                            bytes(range(256)) * 12000)])),
            "external": await harness.send(make_message(to=CITIZEN)),
        }
        await harness.process()
        await harness.runtime.state("drill").put("k", b"value")
        return ids, harness.config


def test_copy_moves_an_sqlite_installation_to_postgresql_and_verifies_it(
        siegel_harness, siegel_cli, pg_schema, tmp_path):
    asyncio.run(copy_and_compare(siegel_harness, siegel_cli, pg_schema))


async def copy_and_compare(siegel_harness, siegel_cli, pg_schema) -> None:
    ids, config = await fill(siegel_harness)
    source = open_store(config)
    async with source:
        before = {i: await source.recipients(i) for i in ids.values()}
        stored = len({r.message_id for r in await source.list(limit=1000)})
        contents = {i: hashlib.sha256((await source.load(i)).raw).hexdigest() for i in ids.values()}
        events = {i: await source.events(i) for i in ids.values()}
    # The filled store and its key become the siegel_cli folder's installation.
    shutil.copy2(config.path(config.store.path), siegel_cli.directory / "var" / "siegel.db")
    shutil.copy2(config.path(config.store.key_file), siegel_cli.directory / "keys" / "store.key")
    result = await asyncio.to_thread(siegel_cli, "store", "copy", "--to", DSN,
                                     "--schema", pg_schema)
    assert result.exit_code == 0, result.output
    assert f"content of {stored} messages verified by SHA-256" in result.output
    async with PostgreSQLStore(DSN, source.cipher, schema=pg_schema) as target:
        for message_id in ids.values():
            assert await target.recipients(message_id) == before[message_id]
            assert await target.events(message_id) == events[message_id]
            loaded = hashlib.sha256((await target.load(message_id)).raw).hexdigest()
            assert loaded == contents[message_id]
        assert (await target.state_get("drill", "k")).value == b"value"
        states = {r.state for r in await target.list()}
        assert RecipientState.DELIVERED in states


async def test_copy_refuses_a_target_that_holds_messages(siegel_harness, pg_schema):
    from siegel.store_copy import CopyError, copy_to_postgresql

    _ids, config = await fill(siegel_harness)
    source = open_store(config)
    target = PostgreSQLStore(DSN, source.cipher, schema=pg_schema)
    await target.migrate()
    try:
        async with source:
            await copy_to_postgresql(source, target)
            with pytest.raises(CopyError, match="not empty"):
                await copy_to_postgresql(source, target)
    finally:
        await target.close()


def test_the_copy_command_needs_an_sqlite_source(siegel_cli, pg_schema):
    use_postgresql(siegel_cli.config, pg_schema)
    result = siegel_cli("store", "copy", "--to", DSN)
    assert result.exit_code == 2 and "copy moves an SQLite store" in result.output


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
async def test_restore_drill_dump_and_key_file_give_back_every_message(
        siegel_harness, pg_schema, tmp_path):
    """docs/postgresql.rst, "Restore drill": dump the schema, restore it into an empty
    database, open it with the backed-up key file; without that key nothing can be read."""
    from siegel.store_copy import copy_to_postgresql

    ids, config = await fill(siegel_harness)
    source = open_store(config)
    target = PostgreSQLStore(DSN, source.cipher, schema=pg_schema)
    await target.migrate()
    async with source:
        await copy_to_postgresql(source, target)
        originals = {i: (await source.load(i)).raw for i in ids.values()}
    await target.close()
    key_backup = tmp_path / "backup" / "store.key"
    key_backup.parent.mkdir()
    shutil.copy2(config.path(config.store.key_file), key_backup)
    dump = tmp_path / "backup" / "siegel.dump"
    subprocess.run(["pg_dump", "--format=custom", f"--schema={pg_schema}", "--file", dump,
                    DSN], check=True, timeout=60)
    database = f"siegel_drill_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"'.encode())
    try:
        restored_dsn = DSN.replace("dbname=test", f"dbname={database}")
        subprocess.run(["pg_restore", "--no-owner", "--dbname", restored_dsn, dump],
                       check=True, timeout=60)
        cipher = ContentCipher.from_key_file(key_backup)
        async with PostgreSQLStore(restored_dsn, cipher, schema=pg_schema) as restored:
            for message_id, raw in originals.items():
                assert (await restored.load(message_id)).raw == raw
            assert (await restored.state_get("drill", "k")).value == b"value"
        create_key_file(tmp_path / "other.key")
        async with PostgreSQLStore(restored_dsn, ContentCipher.from_key_file(
                tmp_path / "other.key"), schema=pg_schema) as without_key:
            with pytest.raises(DecryptionError, match="sealed with store key"):
                await without_key.load(ids["internal"])
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())
