"""The real ``kmon`` process for the fault tests: a daemon whose JSON log is read as it
runs, and one-shot CLI commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Line = dict[str, Any]


def environment(config: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KMON_CONFIG": str(config),
        "KMON_LOG_FORMAT": "json",
        # A free port: 9108 may be taken by a kmon on this machine.
        "KMON_HEALTH__PORT": "0",
    }


async def kmon_json(*args: str, env: dict[str, str]) -> Any:
    """Run ``kmon ARGS --format json`` and return its parsed output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args, "--format", "json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


class Daemon:
    """``kmon run --migrate``; every log line is kept in ``lines`` as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[Line] = []
        # What it wrote that is not a JSON line (a traceback before logging is set up).
        self.other: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--migrate",
            env=self.env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while raw := await self._proc.stderr.readline():
            if raw.startswith(b"{"):
                self.lines.append(json.loads(raw))
            else:
                self.other.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    @property
    def exited(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def wait_for(self, done: Callable[[list[Line]], Any], *, within: float) -> Any:
        """Wait until ``done(lines)`` is truthy and return it; fail if the daemon exits."""
        async with asyncio.timeout(within):
            while not (result := done(self.lines)):
                assert not self.exited, (
                    f"the daemon exited early: {self.lines[-3:]} {self.other[-5:]}"
                )
                self._changed.clear()
                await self._changed.wait()
        return result

    async def changed(self) -> None:
        """Return at the next log line (or at once if the daemon has exited)."""
        if not self.exited:
            self._changed.clear()
            await self._changed.wait()

    def events(self, name: str) -> list[Line]:
        return [x for x in self.lines if x.get("event") == name]

    def peak_rss_kib(self) -> int:
        """The process's resident-memory high-water mark (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code once the log is read to its end."""
        assert self._proc is not None and self._reader is not None
        self._proc.send_signal(sig)
        async with asyncio.timeout(30):
            await self._reader
            return await self._proc.wait()

    async def close(self) -> None:
        """Kill the process if a test left it running."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
