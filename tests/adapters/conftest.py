from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from adapters.http import make_client_session


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The shared client session, as the daemon makes it."""
    async with make_client_session() as client:
        yield client
