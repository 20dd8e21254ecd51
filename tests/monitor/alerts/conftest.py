"""Fixtures for the alert channels: a Slack webhook stand-in, SMTP servers, TLS files.

Other test packages can build the same servers with
:func:`tests.monitor.alerts.slack_server.running_slack_server` and
:func:`tests.monitor.alerts.smtp_server.running_smtp_server` in fixtures of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from adapters.http import make_client_session
from tests.monitor.alerts.slack_server import SlackWebhookServer, running_slack_server
from tests.monitor.alerts.smtp_server import (
    SmtpServer,
    TlsFiles,
    make_tls_files,
    refused_port,
    running_smtp_server,
    silent_server,
)


@pytest_asyncio.fixture
async def slack_server() -> AsyncIterator[SlackWebhookServer]:
    """Slack's webhook endpoint on 127.0.0.1; hanging requests released at teardown."""
    async with running_slack_server() as server:
        yield server


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The shared client session, as the daemon makes it."""
    async with make_client_session() as session:
        yield session


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA (PEM on disk) and a certificate for 127.0.0.1/localhost."""
    return make_tls_files(Path(tmp_path_factory.mktemp("tls")))


@pytest_asyncio.fixture
async def smtp_starttls(tls_files: TlsFiles) -> AsyncIterator[SmtpServer]:
    """aiosmtpd requiring STARTTLS and AUTH, on a free port."""
    async with running_smtp_server(tls_files) as server:
        yield server


@pytest_asyncio.fixture
async def smtp_tls(tls_files: TlsFiles) -> AsyncIterator[SmtpServer]:
    """aiosmtpd speaking TLS from the first byte (port-465 style), requiring AUTH."""
    async with running_smtp_server(tls_files, implicit_tls=True) as server:
        yield server


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port that refuses connections."""
    with refused_port() as port:
        yield port


@pytest_asyncio.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local port that accepts connections and never greets."""
    async with silent_server() as port:
        yield port
