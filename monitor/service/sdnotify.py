"""The systemd notify protocol: READY=1, WATCHDOG=1 and STOPPING=1 to $NOTIFY_SOCKET.

The protocol is a few newline-separated ``KEY=VALUE`` lines in one datagram on a unix
socket (sd_notify(3)). It is written out here because no maintained pure-Python library
for it is worth a dependency: the candidates are unmaintained or bind libsystemd, which
the container image and non-systemd hosts do not have.

Without $NOTIFY_SOCKET (a terminal, a container, tests) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger("kmon.systemd")


class Notifier:
    """Sends state changes to the service manager, if there is one listening."""

    def __init__(self, address: str | None, *, watchdog_interval: float | None = None) -> None:
        # An address starting with "@" is in the abstract namespace (sd_notify(3)).
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_interval = watchdog_interval
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """The notifier systemd asked for through $NOTIFY_SOCKET and $WATCHDOG_USEC."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_interval=_watchdog_interval(env, pid))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str) -> None:
        """Send ``states`` (e.g. ``"READY=1"``) in one datagram; never raises."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Never block the event loop on a full receive queue: a lost
                # notification is better than a stalled daemon.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(states).encode(), self.address)
        except OSError as exc:
            # Once, not on every watchdog ping: a vanished socket would flood the log.
            if not self._warned:
                self._warned = True
                log.warning("systemd_notify_failed", error=str(exc))

    async def watchdog(self, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        """Ping the watchdog every half interval until cancelled.

        The pings come from the event loop itself, so a loop that hangs stops them and
        systemd restarts the service. ``sleep`` waits between pings.
        """
        if self.watchdog_interval is None or self.address is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str], pid: int | None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds when the watchdog is meant for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    # $WATCHDOG_PID names the process the watchdog is for; a child that inherited the
    # environment must not ping on its parent's behalf.
    owner = env.get("WATCHDOG_PID")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 2 / 1_000_000
