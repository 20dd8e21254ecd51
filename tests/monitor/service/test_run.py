"""The real ``kmon run`` process as systemd runs it: notify socket, watchdog, endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.feeds import entries, rss
from tests.servers import FakeSource

pytestmark = pytest.mark.e2e

Line = dict[str, Any]


class LogLines:
    """The daemon's JSON lines on stderr, read as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[Line] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            async with self._changed:
                self.lines.append(json.loads(raw) if raw.startswith(b"{") else {"raw": raw})
                self._changed.notify_all()
        async with self._changed:
            self.lines.append({"event": "<eof>"})
            self._changed.notify_all()

    async def wait_for(self, wanted: Callable[[Line], bool]) -> Line:
        async with self._changed:
            while True:
                for line in self.lines:
                    if wanted(line):
                        return line
                    assert line.get("event") != "<eof>", f"the daemon exited: {self.lines}"
                await self._changed.wait()


class Notifications:
    """What the daemon sends to $NOTIFY_SOCKET, received as it comes.

    Read all the time, as systemd does: the kernel queues only a few datagrams per
    socket, and a sender meeting a full queue drops its message.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.messages: list[list[str]] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read(sock))

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(sock, 4096)
            async with self._changed:
                self.messages.append(data.decode().split("\n"))
                self._changed.notify_all()

    async def wait_for(self, state: str, *, after: int = 0) -> int:
        """The index of the first message from ``after`` on that carries ``state``."""
        async with self._changed:
            while True:
                for index in range(after, len(self.messages)):
                    if state in self.messages[index]:
                        return index
                await self._changed.wait()


async def kmon(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_ready_watchdog_endpoints_and_stopping(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    http_server.serve("/ai.xml", rss(entries(3)))
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "health:\n  port: 0\n"
        "quotes:\n  enabled: false\n"  # no quote sources here: loopback feeds only
        f"sources:\n  - name: ai-news\n    url: {http_server.url('/ai.xml')}\n    interval: 1h\n",
        encoding="utf-8",
    )
    notify_path = tmp_path / "notify"
    assert len(str(notify_path)) < 100, "a unix socket path must stay under 108 bytes"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    env = {
        **os.environ,
        "KMON_CONFIG": str(config),
        "KMON_LOG_FORMAT": "json",
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "200000",
    }
    env.pop("WATCHDOG_PID", None)
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--migrate", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert daemon.stderr is not None
    logs = LogLines(daemon.stderr)
    notified = Notifications(sock)
    try:
        async with asyncio.timeout(60):
            ready = await notified.wait_for("READY=1")
            assert "STATUS=polling 1 sources" in notified.messages[ready]
            # The watchdog keeps pinging once the daemon is up.
            await notified.wait_for("WATCHDOG=1", after=ready + 1)

            started = await logs.wait_for(lambda x: x.get("event") == "health_server_started")
            base = f"http://127.0.0.1:{started['port']}"
            poll = await logs.wait_for(lambda x: x.get("event") == "poll")
            assert (poll["source"], poll["status"], poll["new_items"]) == ("ai-news", "ok", 3)
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{base}/readyz") as response:
                    assert response.status == 200
                    assert (await response.json())["status"] == "ready"
                async with client.get(f"{base}/metrics") as response:
                    assert response.status == 200
                    samples = {
                        (s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(await response.text())
                        for s in family.samples
                    }
            assert samples[("kmon_polls_total", (("outcome", "ok"), ("source", "ai-news")))] == 1
            assert samples[("kmon_new_items_total", (("source", "ai-news"),))] == 3

            code, out = await kmon("health", env={**env, "KMON_HEALTH__PORT": str(started["port"])})
            assert (code, out) == (0, "ready\n")

            signalled = len(notified.messages)
            daemon.send_signal(signal.SIGTERM)
            stopping = await notified.wait_for("STOPPING=1", after=signalled)
            assert await daemon.wait() == 0
            await logs.task
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()
        notified.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await notified.task
        sock.close()

    # Only watchdog pings came between the signal and STOPPING=1.
    assert all(m == ["WATCHDOG=1"] for m in notified.messages[signalled:stopping])
    assert not any(line.get("event") == "systemd_notify_failed" for line in logs.lines)

    # The leases go back as soon as the polls have drained; the endpoints close last.
    assert [line["event"] for line in logs.lines[-3:-1]] == ["replica_stopped", "daemon_stopped"]
    code, out = await kmon("health", env={**env, "KMON_HEALTH__PORT": str(started["port"])})
    assert code == 1
    assert out.startswith(f"not ready: cannot reach {base}/readyz: ")
