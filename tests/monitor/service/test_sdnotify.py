"""The systemd notify protocol against real unix datagram sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.service.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        yield sock, path


async def receive(sock: socket.socket) -> list[str]:
    async with asyncio.timeout(10):
        data = await asyncio.get_running_loop().sock_recv(sock, 4096)
    return data.decode().split("\n")


async def test_states_arrive_in_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    notifier.notify("READY=1", "STATUS=polling 3 sources")
    notifier.notify("STOPPING=1")
    assert await receive(sock) == ["READY=1", "STATUS=polling 3 sources"]
    assert await receive(sock) == ["STOPPING=1"]
    notifier.close()


async def test_abstract_socket_addresses() -> None:
    name = f"kmon-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        notifier.notify("READY=1")
        assert await receive(sock) == ["READY=1"]
        notifier.close()


async def test_watchdog_pings_every_half_interval(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    assert notifier.watchdog_interval == 0.05
    # Each wait between pings is recorded with the datagrams sent before it; the
    # third wait ends the watchdog, as cancelling it would.
    waits: list[tuple[float, list[bytes]]] = []

    async def sleep(seconds: float) -> None:
        sent = []
        with contextlib.suppress(BlockingIOError):
            while True:
                sent.append(sock.recv(4096))
        waits.append((seconds, sent))
        if len(waits) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await notifier.watchdog(sleep)
    notifier.close()
    # One ping, then half the interval, three times over.
    assert waits == [(0.05, [b"WATCHDOG=1"])] * 3


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        # Inherited from a parent the watchdog is meant for: not ours to ping.
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_only_for_this_process(environ: dict[str, str], interval: float | None) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/run/x", **environ})
    assert notifier.watchdog_interval == interval


async def test_without_a_service_manager_nothing_happens() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000"})
    assert not notifier.enabled
    notifier.notify("READY=1")
    # No socket to ping: the watchdog task ends at once instead of spinning.
    async with asyncio.timeout(5):
        await notifier.watchdog()


async def test_a_vanished_socket_is_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    notifier.notify("READY=1")
    notifier.notify("WATCHDOG=1")
    notifier.close()
    # One warning, not one per ping.
    assert capsys.readouterr().out.count("systemd_notify_failed") == 1
