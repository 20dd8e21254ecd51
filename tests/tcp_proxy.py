"""A TCP proxy on 127.0.0.1 that can cut the line: between a process and its database.

:meth:`TcpProxy.cut` closes every open connection and stops listening, so new ones
are refused; :meth:`TcpProxy.restore` listens again on the same port.

Why not a library: the forwarding is two ``read``/``write`` loops over asyncio
streams; what the tests need is the cut and the restore on one fixed port, which
the proxies on PyPI wrap in far more than that.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0  # a free one at the first start, the same one after a cut
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def restore(self) -> None:
        """Accept connections (again)."""
        if self._server is None:
            # While cut, nothing listens on the port: a connection is refused at once.
            self._server = await asyncio.start_server(
                self._forward, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self.cut()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    # An abort, not a polite close: the other side sees the line drop.
                    w.transport.abort()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
