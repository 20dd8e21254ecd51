"""The server side of a benchmark: an aiohttp app in a child process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from aiohttp import web

HOST = "127.0.0.1"


def serve_until_told(
    app: web.Application,
    conn: Connection,
    lifetime: float,
    *,
    backlog: int = 1024,
    announce: Callable[[int], object] = lambda port: port,
) -> None:
    """Serve ``app`` on a free port, send ``announce(port)`` to the parent through
    ``conn``, and stop when the parent sends anything, goes away, or ``lifetime``
    seconds have passed: a crashed benchmark never leaves a server behind.
    """
    parent = os.getppid()

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0, backlog=backlog).start()
        conn.send(announce(runner.addresses[0][1]))
        deadline = time.monotonic() + lifetime
        try:
            while time.monotonic() < deadline and os.getppid() == parent:
                if conn.poll(0):
                    break
                await asyncio.sleep(0.2)  # the child's own idle loop, not a test wait
        finally:
            await runner.cleanup()

    asyncio.run(main())
