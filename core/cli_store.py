"""``siegel store``: the store's schema and moving an installation to PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from siegel.cli_common import _fail, _load, _run, config_option
from siegel.crypto import ContentCipher, KeyFileError
from siegel.runtime import open_store
from siegel.store import StoreError


@click.group("store")
def store_group() -> None:
    """The message store: schema versions, moving to PostgreSQL."""


@store_group.command("migrate")
@config_option
def store_migrate(config_path: Path) -> None:
    """Bring the store's schema to this siegel's version (creating it in an empty database).
    Run it once after an upgrade, before starting the instances."""
    config, _ = _load(config_path)

    async def work() -> tuple[int, int]:
        store = open_store(config)
        try:
            return await store.migrate()
        finally:
            await store.close()

    try:
        before, after = _run(work())
    except (StoreError, KeyFileError) as exc:
        _fail(f"cannot migrate the store: {exc}", 2)
        return
    if before == after:
        click.echo(f"store schema is at version {after}; nothing to do")
    else:
        click.echo(f"store schema migrated from version {before} to {after}")


@store_group.command("copy")
@config_option
@click.option("--to", "dsn", required=True,
              help="PostgreSQL connection string of the new store (without the password).")
@click.option("--schema", default="public", show_default=True,
              help="PostgreSQL schema to copy into (created if missing; must hold no messages).")
@click.option("--password-env", default=None,
              help="Environment variable holding the PostgreSQL password.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File holding the PostgreSQL password.")
def store_copy(config_path: Path, dsn: str, schema: str, password_env: str | None,
               password_file: Path | None) -> None:
    """Copy the configured SQLite store into PostgreSQL and verify the copy (row counts,
    content hashes). Stop the gateway first; then set [store] backend = "postgresql"."""
    from siegel.pg_store import PostgreSQLStore
    from siegel.sqlite_store import SQLiteStore
    from siegel.store_copy import copy_to_postgresql

    config, _ = _load(config_path)
    if config.store.backend != "sqlite":
        _fail(f'the configured store is "{config.store.backend}"; copy moves an SQLite store', 2)
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            _fail(f"--password-env: the environment variable {password_env} is not set", 2)
    elif password_file is not None:
        password = password_file.read_text(encoding="utf-8").strip()
    try:
        cipher = ContentCipher.from_key_file(config.path(config.store.key_file))
    except KeyFileError as exc:
        _fail(str(exc), 2)
        return

    async def work() -> str:
        source = SQLiteStore(config.path(config.store.path), cipher)
        target = PostgreSQLStore(dsn, cipher, password=password, schema=schema)
        async with source:
            await target.migrate()
            try:
                report = await copy_to_postgresql(source, target)
            finally:
                await target.close()
        counts = ", ".join(f"{n} {table}" for table, n in report.counts.items())
        return (f"copied to {target.where}: {counts}; content of {report.messages_verified} "
                f"messages verified by SHA-256 ({report.content_destroyed} without content)")

    try:
        click.echo(_run(work()))
    except StoreError as exc:
        _fail(f"copy failed: {exc}", 1)
