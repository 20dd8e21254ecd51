"""``kmon run`` SIGKILLed again and again while it dispatches an outbox of signals to a
Slack stand-in and an SMTP server (aiosmtpd, STARTTLS + AUTH), then restarted until
everything is out: every signal reaches each channel, each delivery is marked sent
once, and a signal reaches a channel twice only when its send was in flight at a kill.

Why a duplicate can happen at all: a send the server has taken but whose answer the
killed process never marked leaves the row leased; when the lease ends it is claimed
again and sent once more, with the same message key (docs/alerts.md, "Crashes"). A
channel's messages go one at a time, so a kill leaves at most one such send per
channel.
"""

from __future__ import annotations

import json
import random
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from monitor.alerting import AlertSettings
from monitor.alerts.dispatch import message_key
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery
from tests.faults.daemon import Daemon, Line, environment
from tests.monitor.alerts.outbox_support import signal_row, store
from tests.monitor.alerts.slack_server import SlackWebhookServer, running_slack_server
from tests.monitor.alerts.smtp_server import SmtpServer, make_tls_files, running_smtp_server

pytestmark = pytest.mark.e2e

SIGNALS = 24
KILLS = 6
SEED = 20250619
# A short lease, so that a restarted daemon takes over the killed one's rows within
# the test; one signal per message, so that a message is a delivery.
DISPATCH = {"lease": "2s", "max_per_message": 1}

_NUMBER = re.compile(r"#(\d{3})")


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[SlackWebhookServer]:
    async with running_slack_server() as server:
        yield server


@pytest_asyncio.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    async with running_smtp_server(make_tls_files(tmp_path)) as server:
        yield server


def sent_keys(lines: list[Line]) -> list[tuple[str, str]]:
    """(channel, message key) of every delivery the daemon logged sent."""
    return [
        (str(x["channel"]), str(x["message"]))
        for x in lines
        if x.get("event") == "delivery" and x.get("status") == "sent"
    ]


def some_sent(count: int, lines: list[Line]) -> bool:
    return len(sent_keys(lines)) >= count


def number_in(text: str) -> int:
    [number] = _NUMBER.findall(text)
    return int(number)


async def test_sigkill_during_dispatch_delivers_each_signal_once_but_for_sends_in_flight(
    db_url: str, slack: SlackWebhookServer, smtp: SmtpServer, tmp_path: Path
) -> None:
    alerts: dict[str, Any] = {
        "channels": {
            "slack": {"type": "slack", "webhook_url": slack.url, "timeout": 10},
            "mail": smtp.email_config(),
        },
        "dispatch": DISPATCH,
    }
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        rows = [
            signal_row(headline=f"인공지능 정책 속보 #{n:03d}", event_time=now, explanation={})
            for n in range(SIGNALS)
        ]
        # Pending in the outbox before the daemon starts: one row per signal and channel.
        assert await store(sessionmaker, AlertSettings.model_validate(alerts), *rows, now=now)
        number_of = {row.id: n for n, row in enumerate(rows)}
        async with sessionmaker() as session:
            deliveries = {
                d.id: (number_of[d.signal_id], d.channel)
                for d in (await session.scalars(select(Delivery))).all()
            }
        assert len(deliveries) == 2 * SIGNALS
        by_key = {message_key([id_]): target for id_, target in deliveries.items()}

        config = tmp_path / "kmon.yaml"
        settings = {
            "database": {"url": db_url},
            "sources": [],
            "quotes": {"enabled": False},
            "health": {"enabled": False},
            "alerts": alerts,
        }
        config.write_text(json.dumps(settings), encoding="utf-8")  # YAML reads JSON
        env = environment(config)

        def received() -> Counter[tuple[int, str]]:
            """(signal number, channel) of every message the servers took."""
            got = Counter((number_in(r.payload["text"]), "slack") for r in slack.received)
            for mail in smtp.deliveries:
                message = mail.message()
                key = str(message["Message-ID"]).strip("<>").partition("@")[0]
                assert by_key[key] == (number_in(str(message["Subject"])), "mail")
                got[by_key[key]] += 1
            return got

        async def unmarked() -> set[tuple[int, str]]:
            """What a server took whose row is not marked sent: sends in flight."""
            async with sessionmaker() as session:
                pending = {
                    deliveries[id_]
                    for id_ in await session.scalars(
                        select(Delivery.id).where(Delivery.status == "pending")
                    )
                }
            return pending & set(received())

        chance = random.Random(SEED)
        logged: list[tuple[str, str]] = []
        # How many kills found each delivery taken by its server and not marked sent.
        in_flight: Counter[tuple[int, str]] = Counter()
        for _ in range(KILLS):
            # Killed once a seeded number of messages were marked sent in this run: the
            # next ones are being sent, or claimed and waiting for their turn.
            after = chance.randint(1, 6)
            daemon = Daemon(env)
            await daemon.start()
            try:
                await daemon.wait_for(partial(some_sent, after), within=60)
                await daemon.stop(signal.SIGKILL)
            finally:
                await daemon.close()
            logged += sent_keys(daemon.lines)
            in_flight.update(await unmarked())
        assert len(logged) < 2 * SIGNALS, "the kills came too late to interrupt anything"

        async with sessionmaker() as session:
            left = {
                message_key([id_])
                for id_ in await session.scalars(
                    select(Delivery.id).where(Delivery.status == "pending")
                )
            }
        daemon = Daemon(env)
        await daemon.start()
        try:
            await daemon.wait_for(
                lambda lines: {key for _, key in sent_keys(lines)} >= left, within=60
            )
            assert await daemon.stop(signal.SIGTERM) == 0
        finally:
            await daemon.close()
        logged += sent_keys(daemon.lines)

        async with sessionmaker() as session:
            states = {
                deliveries[d.id]: (d.status, d.attempts)
                for d in (await session.scalars(select(Delivery))).all()
            }
    finally:
        await engine.dispose()

    # Every delivery marked sent, and never twice (a kill between the commit and its
    # log line can leave one out of the log, not the database).
    marked = Counter(by_key[key] for _, key in logged)
    assert set(marked) <= set(deliveries.values()) and set(marked.values()) == {1}
    assert {status for status, _ in states.values()} == {"sent"}
    # Every signal reached each channel, Slack's payloads within its limits.
    got = received()
    assert set(got) == set(deliveries.values())
    assert all(r.problems == () and r.status == 200 for r in slack.received)
    # A second copy only of a send in flight at a kill: at most one per channel a kill,
    # each from a row claimed again after its lease.
    extra = {target: count - 1 for target, count in got.items() if count > 1}
    assert all(copies <= in_flight[target] for target, copies in extra.items()), (extra, in_flight)
    for channel in ("slack", "mail"):
        assert sum(n for (_, c), n in in_flight.items() if c == channel) <= KILLS
    assert all(states[target][1] > extra[target] for target in extra)
    print(
        f"{KILLS} kills, {SIGNALS} signals x 2 channels, {sum(extra.values())} duplicates "
        f"{sorted(extra)}, in flight at the kills: {sorted(in_flight.items())}"
    )
