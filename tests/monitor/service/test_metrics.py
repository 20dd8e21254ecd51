"""Metrics as a scraper sees them: quote cycles, and the stored state read per scrape."""

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from adapters.records import Validators
from monitor.alerting import AlertSettings
from monitor.alerts.outbox import enqueue
from monitor.config import SourceConfig
from monitor.db import repo
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery
from monitor.ingest.quotes import QuoteCycle
from monitor.ingest.sources import PollOutcome
from monitor.service.metrics import Metrics
from tests.monitor.alerts.outbox_support import signal_row
from tests.monitor.alerts.smtp_server import refused_port

SM = async_sessionmaker[AsyncSession]


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_quote_cycles_move_the_quote_counters() -> None:
    metrics = Metrics()
    before = scrape(metrics)
    assert before[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 0
    metrics.observe_quotes(
        QuoteCycle(stored=3, served_by={"naver": 2, "yahoo": 1}, rejected=[("x", "why")])
    )
    metrics.observe_quotes(QuoteCycle(stored=0, served_by={"yahoo": 2}, missing=["KOSPI"]))
    after = scrape(metrics)
    assert after[("kmon_quotes_served_total", (("source", "naver"),))] == 2
    assert after[("kmon_quotes_served_total", (("source", "yahoo"),))] == 3
    assert after[("kmon_quotes_stored_total", ())] == 3
    assert after[("kmon_quotes_rejected_total", ())] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "complete"),))] == 1
    assert after[("kmon_quote_cycles_total", (("outcome", "partial"),))] == 1


async def test_stored_state_is_read_when_scraped(sessionmaker: SM) -> None:
    """Source statuses, signals by kind and rule, and the outbox per channel, as the
    database has them, whichever process wrote them."""
    now = datetime.now(UTC)
    configs = [SourceConfig(name=n, url=f"https://{n}.example.kr/rss") for n in ("a", "b", "c")]
    alerts = AlertSettings.model_validate({"channels": {"desk": {"type": "console"}}})
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=now)
        ids = {s.name: s.id for s in await repo.load_sources(session)}
        await repo.record_success(
            session, ids["a"], now=now, validators=Validators(), next_check_at=now
        )
        await repo.record_failure(
            session, ids["b"], now=now, status="auth_failed", error="http_401: x", next_check_at=now
        )
        old = signal_row(rule_id="ai-policy", created_at=now - timedelta(minutes=30))
        new = signal_row(kind="move", rule_id="big-move", tickers=("035420",))
        session.add_all([old, new])
        await session.flush()
        await enqueue(session, [old], alerts, now=now - timedelta(minutes=30))
        await enqueue(session, [new], alerts, now=now)
        await session.execute(
            update(Delivery).where(Delivery.signal_id == new.id).values(status="dead")
        )
    metrics = Metrics()
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    status = {
        (dict(labels)["source"], dict(labels)["status"]): value
        for (name, labels), value in got.items()
        if name == "kmon_source_status"
    }
    assert {key for key, value in status.items() if value == 1} == {
        ("a", "ok"),
        ("b", "auth_failed"),
        ("c", "new"),
    }
    assert len(status) == 3 * 5  # every status word, 0 for all but the current one
    assert got[("kmon_signals_total", (("kind", "news"), ("rule", "ai-policy")))] == 1
    assert got[("kmon_signals_total", (("kind", "move"), ("rule", "big-move")))] == 1
    assert got[("kmon_outbox_pending", (("channel", "desk"),))] == 1
    assert got[("kmon_outbox_dead", (("channel", "desk"),))] == 1
    age = got[("kmon_outbox_oldest_pending_age_seconds", (("channel", "desk"),))]
    assert 30 * 60 <= age < 31 * 60
    assert got[("kmon_metrics_database_up", ())] == 1


async def test_an_unreachable_database_keeps_the_last_reading() -> None:
    metrics = Metrics()
    metrics.stored.sources = {"a": "ok"}
    metrics.stored.database_up = True
    with refused_port() as port:
        engine = make_engine(f"postgresql+asyncpg://kmon@127.0.0.1:{port}/kmon")
        try:
            await metrics.refresh(make_sessionmaker(engine))
        finally:
            await engine.dispose()
    got = scrape(metrics)
    assert got[("kmon_metrics_database_up", ())] == 0
    assert got[("kmon_source_status", (("source", "a"), ("status", "ok")))] == 1


async def test_configured_channels_read_zero_until_they_have_a_backlog(sessionmaker: SM) -> None:
    alerts = AlertSettings.model_validate(
        {"channels": {"desk": {"type": "console"}, "mail": {"type": "console"}}}
    )
    metrics = Metrics(channels=alerts.channels)
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    for channel in ("desk", "mail"):
        assert got[("kmon_outbox_pending", (("channel", channel),))] == 0
        assert got[("kmon_outbox_dead", (("channel", channel),))] == 0
        assert got[("kmon_outbox_oldest_pending_age_seconds", (("channel", channel),))] == 0

    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        row = signal_row(created_at=now)
        session.add(row)
        await session.flush()
        await enqueue(session, [row], alerts, now=now - timedelta(minutes=2))
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    assert got[("kmon_outbox_pending", (("channel", "desk"),))] == 1
    assert got[("kmon_outbox_pending", (("channel", "mail"),))] == 1
    assert 120 <= got[("kmon_outbox_oldest_pending_age_seconds", (("channel", "mail"),))] < 180

    async with sessionmaker.begin() as session:
        await session.execute(update(Delivery).values(status="sent", sent_at=now))
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    # Drained: back to 0, not gone, so a graph and a rule see the channel recover.
    assert got[("kmon_outbox_pending", (("channel", "desk"),))] == 0
    assert got[("kmon_outbox_oldest_pending_age_seconds", (("channel", "desk"),))] == 0


async def test_freshness_follows_the_sources_table(sessionmaker: SM) -> None:
    """A success recorded by another process shows at the next scrape; a source taken
    out of the config leaves no series behind."""
    now = datetime.now(UTC).replace(microsecond=0)
    configs = [SourceConfig(name=n, url=f"https://{n}.example.kr/rss") for n in ("a", "b")]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=now)
    metrics = Metrics(clock=lambda: now.timestamp() + 30)
    await metrics.seed(sessionmaker)
    got = scrape(metrics)
    assert ("kmon_source_last_success_timestamp_seconds", (("source", "a"),)) not in got
    assert got[("kmon_source_interval_seconds", (("source", "b"),))] > 0

    async with sessionmaker.begin() as session:
        ids = {s.name: s.id for s in await repo.load_sources(session)}
        await repo.record_success(
            session, ids["a"], now=now, validators=Validators(), next_check_at=now
        )
        await repo.sync_sources(session, configs[:1], now=now)  # b is disabled
    await metrics.refresh(sessionmaker)
    got = scrape(metrics)
    assert got[("kmon_source_last_success_timestamp_seconds", (("source", "a"),))] == (
        now.timestamp()
    )
    assert got[("kmon_source_seconds_since_last_success", (("source", "a"),))] == 30
    freshness = ("kmon_source_interval_seconds", "kmon_source_status")
    assert not [name for name, labels in got if name in freshness and ("source", "b") in labels]


async def test_a_database_outage_is_logged_once_and_its_end_once(sessionmaker: SM) -> None:
    metrics = Metrics()
    await metrics.refresh(sessionmaker)
    with refused_port() as port:
        engine = make_engine(f"postgresql+asyncpg://kmon@127.0.0.1:{port}/kmon")
        try:
            with capture_logs() as lines:
                for _ in range(3):
                    await metrics.refresh(make_sessionmaker(engine))
                await metrics.refresh(sessionmaker)
        finally:
            await engine.dispose()
    assert [(line["event"], line["up"]) for line in lines] == [
        ("metrics_database", False),
        ("metrics_database", True),
    ]
    assert lines[0]["error"]


def test_freshness_is_kept_for_news_sources_only() -> None:
    """A quote provider's polls count, but it gets no freshness series: it is asked only
    while KRX is open and would look stale every night."""
    metrics = Metrics(clock=lambda: 1000.0)
    metrics.add_source("yna", interval=60)
    for source in ("yna", "quotes-naver"):
        metrics.observe(
            PollOutcome(
                source=source,
                status="ok",
                new_item_ids=[],
                next_check_at=datetime.now(UTC),
                duration=0.5,
            )
        )
    got = scrape(metrics)
    assert got[("kmon_polls_total", (("outcome", "ok"), ("source", "quotes-naver")))] == 1
    assert got[("kmon_source_last_success_timestamp_seconds", (("source", "yna"),))] == 999.5
    stale = [k for k in got if k[0].startswith("kmon_source_") and "quotes-naver" in str(k)]
    assert not [k for k in stale if k[0] != "kmon_source_status"]
