"""What every ``siegel`` command shares: the ``--config`` option, failing with a message and an
exit status, loading plugins and configuration, and running a coroutine.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from siegel.bootstrap import bootstrap
from siegel.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    Config,
    ConfigError,
)
from siegel.manager import PluginError, PluginRegistry
from siegel.runtime import open_store
from siegel.store import MessageStore

_T = TypeVar("_T")

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path),
    envvar=CONFIG_ENV, default=DEFAULT_CONFIG_NAME, show_default=True,
    help=f"Configuration file (or ${CONFIG_ENV}).")


def _fail(message: str, code: int = 1) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _load(config_path: Path) -> tuple[Config, PluginRegistry]:
    try:
        return bootstrap(config_path)
    except (ConfigError, PluginError) as exc:
        _fail(str(exc), 2)
        raise AssertionError("unreachable") from None


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coroutine)


async def _with_store(config: Config, work: Callable[[MessageStore], Awaitable[_T]]) -> _T:
    store = open_store(config)
    async with store:
        return await work(store)
