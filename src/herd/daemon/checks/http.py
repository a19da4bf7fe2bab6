"""HTTP check: GET the path, expect the status and (if set) a piece of text in the body."""

from __future__ import annotations

import asyncio

from herd.spec import Check

LIMIT = 256 * 1024


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """The whole response (HTTP/1.0: the server closes when done), at most LIMIT bytes of it."""
    data = b""
    while len(data) < LIMIT:
        chunk = await reader.read(LIMIT - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def http_check(address: str, port: int, check: Check) -> str | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), check.timeout)
    except (OSError, TimeoutError) as exc:
        return f"connect: {str(exc) or 'timed out'}"
    try:
        request = f"GET {check.path} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: herdd-check\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        response = await asyncio.wait_for(_read_all(reader), check.timeout)
    except (OSError, TimeoutError) as exc:
        return f"request: {str(exc) or 'timed out'}"
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    # Three ASCII digits, as HTTP has them (bytes.isdigit is ASCII only): int() of any longer run of digits
    # is no status, and past 4300 of them raises.
    if len(status_line) < 2 or len(status_line[1]) != 3 or not status_line[1].isdigit():
        return "not an HTTP response"
    status = int(status_line[1])
    if status != check.status:
        return f"status {status}, expected {check.status}"
    if check.expect and check.expect.encode() not in body:
        return f"body lacks {check.expect!r}"
    return None
