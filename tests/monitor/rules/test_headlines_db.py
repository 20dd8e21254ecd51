"""The headline tables through the daemon's pipeline, on each database.

Every headline of tests/monitor/rules/test_headlines.py goes into one feed served on
loopback; one poll stores the items and the signals they raise, in one transaction.
What is stored must say what the tables say: the news rules that fire, the themes and
entities behind them, and no signal for a headline without a theme.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits, make_client_session
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import repo
from monitor.db.schema import Item, SignalItem, SignalRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.rules.engine import RulesEngine
from monitor.rules.match import tag
from monitor.rules.model import load_rules
from tests.monitor.rules.test_headlines import HEADLINES, RULES
from tests.servers import FakeSource

SM = async_sessionmaker[AsyncSession]


def feed(rows: list[tuple[str, str]], now: datetime) -> bytes:
    # Three days apart: beyond the 48 h story window, so no two rows share a story (a
    # Korean and an English row about one event would). All before ``now``: a date
    # ahead of the fetch is no date, and the item takes the fetch time.
    start = now - timedelta(days=3 * (len(rows) + 1))
    items = "".join(
        f"<item><guid>row-{n}</guid><title>{escape(title)}</title>"
        f"<description>{escape(summary)}</description>"
        f"<pubDate>{format_datetime(start + timedelta(days=3 * n))}</pubDate></item>"
        for n, (title, summary) in enumerate(rows)
    )
    head = '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
    return f"{head}{items}</channel></rss>".encode()


@pytest.fixture
async def stored(
    sessionmaker: SM, http_server: FakeSource
) -> dict[str, tuple[SignalRow | None, str]]:
    """title → (its signal or None, its summary), after one poll through the pipeline."""
    rows = [(text, "") for text, _, _ in HEADLINES] + [(t, s) for t, s, _ in RULES]
    now = datetime.now(UTC)
    http_server.serve("/feed.xml", feed(rows, now))
    async with sessionmaker.begin() as session:
        await repo.sync_sources(
            session, [SourceConfig(name="tables", url=http_server.url("/feed.xml"))], now=now
        )
    async with sessionmaker() as session:
        (source,) = await repo.load_sources(session)
    async with make_client_session() as http:
        ctx = PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=10),
            scheduling=SchedulerSettings(jitter=0),
            host_limiter=HostLimiter(1),
            rules=RulesEngine(load_rules(None)),
        )
        outcome = await poll_source(ctx, source)
    assert (outcome.status, len(outcome.new_item_ids)) == ("ok", len(rows))
    async with sessionmaker() as session:
        linked = await session.execute(
            select(Item.title, Item.summary, SignalRow)
            .join(SignalItem, SignalItem.item_id == Item.id, isouter=True)
            .join(SignalRow, SignalRow.id == SignalItem.signal_id, isouter=True)
        )
        return {(title, summary): signal for title, summary, signal in linked.all()}  # type: ignore[return-value]


async def test_the_rules_table_on_the_database(
    stored: dict[tuple[str, str], SignalRow | None],
) -> None:
    for title, summary, fired in RULES:
        signal = stored[(title, summary)]
        if not fired:
            assert signal is None, title
            continue
        assert signal is not None, title
        assert [r["rule_id"] for r in signal.explanation["rules"]] == fired.split(), title
        assert signal.headline == title


async def test_the_headline_table_on_the_database(
    stored: dict[tuple[str, str], SignalRow | None],
) -> None:
    """Every headline of the table, through the pipeline: a signal is stored exactly
    for the lines where news rules fire, with those rules, themes and entities."""
    ruleset = load_rules(None)
    fired_lines = silent_lines = 0
    for text, themes, entities in HEADLINES:
        signal = stored[(text, "")]
        tagging = tag(text, "", ruleset)
        fired = [f.rule_id for f in tagging.news_rules_fired]
        if not fired:
            assert signal is None, text
            silent_lines += 1
            continue
        assert signal is not None, text
        fired_lines += 1
        assert [r["rule_id"] for r in signal.explanation["rules"]] == fired, text
        assert set(signal.explanation["themes"]) == themes, text
        assert set(signal.explanation["entities"]) == entities, text
    # The table has both kinds in numbers, or this test would prove little.
    assert fired_lines >= 50 and silent_lines >= 50
