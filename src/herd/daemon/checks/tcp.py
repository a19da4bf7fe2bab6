"""TCP check: the port accepts a connection."""

from __future__ import annotations

import asyncio

from herd.spec import Check


async def tcp_check(address: str, port: int, check: Check) -> str | None:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), check.timeout)
    except (OSError, TimeoutError) as exc:
        return f"connect: {str(exc) or 'timed out'}"
    writer.close()
    return None
