"""Fetching CRLs and OCSP answers over HTTP: bounded in size and time, every failure a
:class:`FetchError` that says how.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

MAX_CRL_BYTES = 64 * 1024 * 1024
MAX_OCSP_BYTES = 1024 * 1024


class FetchError(Exception):
    """An HTTP fetch of a CRL or an OCSP answer failed; the message says how."""


HttpClientFactory = Callable[[float], httpx.AsyncClient]


def default_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True,
                             max_redirects=3)


def is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


async def fetch_bytes(http_client: HttpClientFactory, timeout_seconds: float, method: str,
                      url: str, body: bytes | None, limit: int) -> bytes:
    """``method`` ``url`` with ``body``: the answer's bytes, at most ``limit`` of them, within
    ``timeout_seconds``. Raises :class:`FetchError` saying what went wrong."""
    headers = {"Content-Type": "application/ocsp-request"} if body is not None else {}
    try:
        async with asyncio.timeout(timeout_seconds), \
                http_client(timeout_seconds) as client, \
                client.stream(method, url, content=body, headers=headers) as response:
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"answer larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except TimeoutError:
        raise FetchError(f"no answer within {timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                         ) from None


__all__ = [
    "MAX_CRL_BYTES",
    "MAX_OCSP_BYTES",
    "FetchError",
    "HttpClientFactory",
    "default_client",
    "fetch_bytes",
    "is_http",
]
